"""Phi-3 against transformers: the conformance kit on the 4k and 128k (LongRoPE) layouts,
LongRoPE across its switch with and without the KV cache, the real config.json files of
both released sizes, the registrations and the chat format."""

from __future__ import annotations

import math

import pytest
import torch

import tunesmith
from tunesmith import CheckpointError
from tunesmith.checkpoint import Checkpointer, find_adapter
from tunesmith.testing import (
    check_chat_template,
    check_family,
    check_tokenizer,
    reference_checkpoint,
)
from tunesmith_phi3 import (
    build_from_hf_config,
    phi3_args_from_hf_config,
    phi3_mini_4k,
    phi3_mini_128k,
    tiny_phi3_config,
)

transformers = pytest.importorskip("transformers")

# config.json of microsoft/Phi-3-mini-4k-instruct, less its auto_map and pdrop keys.
MINI_4K_CONFIG = {
    "architectures": ["Phi3ForCausalLM"],
    "bos_token_id": 1,
    "eos_token_id": 32000,
    "hidden_act": "silu",
    "hidden_size": 3072,
    "intermediate_size": 8192,
    "max_position_embeddings": 4096,
    "model_type": "phi3",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 32,
    "original_max_position_embeddings": 4096,
    "pad_token_id": 32000,
    "rms_norm_eps": 1e-05,
    "rope_scaling": None,
    "rope_theta": 10000.0,
    "sliding_window": 2047,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "vocab_size": 32064,
}


def _mini_128k_config(rope_type: str = "longrope") -> dict:
    """microsoft/Phi-3-mini-128k-instruct's config.json (transformers 4 keys); its first
    release named LongRoPE ``su``."""
    with torch.device("meta"):
        scaling = phi3_mini_128k().layers[0].attn.pos_embeddings.scaling
    return MINI_4K_CONFIG | {
        "max_position_embeddings": 131072,
        "sliding_window": 262144,
        "rope_scaling": {
            "type": rope_type,
            "short_factor": scaling["short_factor"],
            "long_factor": scaling["long_factor"],
        },
    }


def test_conformance_4k_and_128k_longrope(tmp_path):
    ran = check_family(
        "phi3",
        configs=[tiny_phi3_config("mini_4k"), tiny_phi3_config("mini_128k")],
        work_dir=tmp_path,
    )
    assert not [name for name in ran if "skipped" in name], ran
    checks = {name.partition(" [")[0] for name in ran}
    assert {"round_trip", "kv_cache", "logits", "generation", "lora"} <= checks
    assert len(ran) == 2 * len(checks)  # every check on both layouts


def _pair(tmp_path, config):
    reference = reference_checkpoint(tmp_path, config, seed=1)
    model = Checkpointer(tmp_path).load_model().eval()
    return model, reference


@torch.no_grad()
def test_longrope_short_and_long_factors_match_transformers(tmp_path):
    """Below ``original_max_position_embeddings`` (16) the short factors apply, above it the
    long ones — for a whole sequence, and for a cached decode that crosses the switch,
    which keeps the keys it cached before it (as transformers' DynamicCache does)."""
    config = tiny_phi3_config("mini_128k")
    model, reference = _pair(tmp_path, config)
    tokens = torch.randint(0, 512, (1, 28), generator=torch.Generator().manual_seed(4))
    for length in (16, 28):
        torch.testing.assert_close(
            model(tokens[:, :length]), reference(tokens[:, :length]).logits, atol=1e-4, rtol=0
        )
    # The long factors are in play: the first positions' logits change once the sequence
    # passes 16, in both implementations.
    assert (model(tokens[:, :28])[:, :16] - model(tokens[:, :16])).abs().max() > 1e-3

    prefix = 10
    cache = transformers.DynamicCache(config=reference.config)
    theirs = [reference(tokens[:, :prefix], cache=cache, use_cache=True).logits]
    model.setup_caches(1, torch.float32, max_seq_len=28)
    try:
        ours = [model(tokens[:, :prefix])]
        for i in range(prefix, 28):
            ours.append(model(tokens[:, i : i + 1]))
            theirs.append(reference(tokens[:, i : i + 1], cache=cache, use_cache=True).logits)
    finally:
        model.remove_caches()
    torch.testing.assert_close(torch.cat(ours, 1), torch.cat(theirs, 1), atol=1e-4, rtol=0)


def test_released_configs_build_the_released_models():
    """The Hub's config.json of each size builds exactly what its model builder builds:
    the same parameters and the same RoPE tables as transformers computes from the file."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    cases = [(MINI_4K_CONFIG, phi3_mini_4k), (_mini_128k_config(), phi3_mini_128k)]
    cases.append((_mini_128k_config("su"), phi3_mini_128k))
    for config, builder in cases:
        with torch.device("meta"):
            from_file, built = build_from_hf_config(config), builder()
        assert [(n, p.shape) for n, p in from_file.named_parameters()] == [
            (n, p.shape) for n, p in built.named_parameters()
        ]
        ours, theirs = from_file.layers[0].attn.pos_embeddings, built.layers[0].attn.pos_embeddings
        assert ours.scaling == theirs.scaling and ours.dim == theirs.dim == 96
        assert from_file.layers[0].attn.sliding_window == config["sliding_window"]

        # transformers 5 cannot read the old name itself: give it the current one
        hf = transformers.Phi3Config(**(config | {"rope_scaling": _longrope(config)}))
        rope_type = hf.rope_parameters["rope_type"]
        if rope_type == "default":
            assert ours.scaling is None
            continue
        assert rope_type == "longrope"
        short, factor = ROPE_INIT_FUNCTIONS[rope_type](hf, None)
        long, _ = ROPE_INIT_FUNCTIONS[rope_type](hf, None, seq_len=4097)
        torch.testing.assert_close(ours.inv_freq, short, atol=0, rtol=0)
        torch.testing.assert_close(ours.long_inv_freq, long, atol=0, rtol=0)
        assert math.isclose(ours.attention_factor, factor) and factor > 1.1


def _longrope(config: dict) -> dict | None:
    scaling = config["rope_scaling"]
    return None if scaling is None else scaling | {"type": "longrope"}


def test_params_of_the_released_sizes():
    with torch.device("meta"):
        sizes = [sum(p.numel() for p in b().parameters()) for b in (phi3_mini_4k, phi3_mini_128k)]
    assert sizes == [3_821_079_552, 3_821_079_552]


def test_registrations():
    registry = tunesmith.get_registry()
    models = {m.name: m for m in registry.values("models") if m.origin.plugin == "phi3"}
    assert {n: m.hf_repo for n, m in models.items()} == {
        "phi3_mini_4k": "microsoft/Phi-3-mini-4k-instruct",
        "phi3_mini_128k": "microsoft/Phi-3-mini-128k-instruct",
        "phi3_mini": "microsoft/Phi-3-mini-4k-instruct",  # torchtune's name of the 4k model
        "phi4_14b": "microsoft/phi-4",
    }
    assert all(m.family == "phi3" for m in models.values())
    assert find_adapter("phi3").family == "phi3"
    assert find_adapter("PHI3_MINI").family == "phi3"  # torchtune's checkpointer model_type
    assert registry.plugins["phi3"].distribution == "tunesmith-phi3"


def test_biases_are_refused_with_the_cause():
    with pytest.raises(CheckpointError, match="attention_bias or mlp_bias") as error:
        phi3_args_from_hf_config(tiny_phi3_config(attention_bias=True))
    assert "\n" not in str(error.value)


def test_an_activation_tunesmith_lacks_is_a_checkpoint_error():
    with pytest.raises(CheckpointError, match="hidden_act='gelu_new'.*a Phi-3 model"):
        phi3_args_from_hf_config(tiny_phi3_config(hidden_act="gelu_new"))


def test_fused_tensor_that_does_not_fit_config_json(tmp_path):
    """A checkpoint whose fused rows do not match its config.json is reported, not loaded."""
    import json

    config = tiny_phi3_config()
    reference_checkpoint(tmp_path, config)
    written = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(written | {"num_key_value_heads": 4}))
    with pytest.raises(CheckpointError, match="qkv_proj.weight has 128 rows"):
        Checkpointer(tmp_path).load_model()


def test_tokenizer_and_chat_format(phi3_dir):
    """``tokenizer: auto`` picks the generic hf_tokenizer for a Phi-3 download, which lays
    conversations out as Phi-3's own chat template does in transformers, trains ``<|end|>``
    and stops at it."""
    from tunesmith.tokenizers import auto_tokenizer

    tokenizer = auto_tokenizer(phi3_dir)
    assert type(tokenizer).__name__ == "HFTokenizer"
    assert tokenizer.token_to_id("<|end|>") in tokenizer.stop_tokens
    check_tokenizer(tokenizer)
    ran = check_chat_template(tokenizer, phi3_dir)
    assert ran and not [name for name in ran if "skipped" in name], ran
