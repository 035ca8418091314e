"""The Mistral models against transformers' MistralForCausalLM: logits, KV cache, greedy
generation and a LoRA step loaded in PEFT (the conformance kit), the sliding window,
config.json files of both transformers generations, and the released sizes."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from tunesmith import CheckpointError
from tunesmith.checkpoint import Checkpointer
from tunesmith.testing import check_family, reference_checkpoint
from tunesmith_mistral import (
    build_from_hf_config,
    mistral_7b_v0_1,
    mistral_7b_v0_2,
    mistral_7b_v0_3,
    mistral_nemo_12b,
    mistral_small_24b,
    tiny_mistral_config,
)

pytest.importorskip("transformers")


def test_conformance_against_transformers_and_peft(tmp_path):
    # Every check on v0.1 with a window of 8 (the kit's sequences are 24 tokens long and
    # the KV-cache check decodes past the window token by token) and on NeMo's free
    # head_dim; the numeric ones on v0.3 and on a config.json as transformers 4 wrote it.
    ran = check_family(
        "mistral", configs=[tiny_mistral_config(v) for v in ("v0_1", "nemo")], work_dir=tmp_path
    )
    ran += check_family(
        "mistral",
        configs=[tiny_mistral_config(v) for v in ("v0_3", "hf4")],
        checks=("round_trip", "kv_cache", "logits"),
        work_dir=tmp_path / "numeric",
    )
    for check, configs in (("logits", 4), ("kv_cache", 4), ("generation", 2), ("lora", 2)):
        assert sum(name.startswith(f"{check} ") for name in ran) == configs, ran
    assert not [name for name in ran if "skipped" in name]


def _tokens(n: int) -> torch.Tensor:
    return torch.randint(0, 512, (2, n), generator=torch.Generator().manual_seed(3))


def test_the_window_is_in_effect_past_8_tokens(tmp_path):
    reference = reference_checkpoint(tmp_path, tiny_mistral_config("v0_1"))
    windowed = Checkpointer(tmp_path).load_model().eval()
    full = Checkpointer(tmp_path).load_model(sliding_window=None).eval()
    assert {layer.attn.sliding_window for layer in windowed.layers} == {8}
    tokens = _tokens(20)
    with torch.no_grad():
        ours, unwindowed, theirs = windowed(tokens), full(tokens), reference(tokens).logits
    assert (ours - theirs).abs().max() < 1e-4
    # Within the window both agree; beyond it only the windowed model matches transformers.
    assert (unwindowed[:, :8] - theirs[:, :8]).abs().max() < 1e-4
    assert (unwindowed[:, 8:] - theirs[:, 8:]).abs().max() > 1e-3


def test_a_transformers_4_config_json_is_read_as_transformers_reads_it(tmp_path):
    # reference_checkpoint saves a transformers-5 config.json; put back what Hub
    # checkpoints hold (rope_theta, torch_dtype, no head_dim or rope_parameters).
    config = tiny_mistral_config("hf4", rope_theta=1_000_000.0)
    reference = reference_checkpoint(tmp_path, config)
    (tmp_path / "config.json").write_text(json.dumps(config))
    model = Checkpointer(tmp_path).load_model().eval()
    assert model.layers[0].attn.pos_embeddings.base == 1_000_000.0
    tokens = _tokens(20)
    with torch.no_grad():
        assert (model(tokens) - reference(tokens).logits).abs().max() < 1e-4


def _released(**changes):
    # The config.json of mistralai/Mistral-7B-v0.1, as written by transformers 4.34.
    config = {
        "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
        "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
        "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mistral",
        "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
        "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_cache": True,
        "vocab_size": 32000,
    }  # fmt: skip
    return {**config, **changes}


_V0_3 = dict(rope_theta=1e6, sliding_window=None, vocab_size=32768)
_NEMO = dict(
    rope_theta=1e6, sliding_window=None, vocab_size=131072, head_dim=128, hidden_size=5120,
    num_hidden_layers=40, max_position_embeddings=1024000,
)  # fmt: skip
RELEASED = {
    mistral_7b_v0_1: _released(),
    mistral_7b_v0_2: _released(rope_theta=1e6, sliding_window=None),
    mistral_7b_v0_3: _released(**_V0_3),
    mistral_nemo_12b: _released(**_NEMO),
    mistral_small_24b: _released(**{**_NEMO, "rope_theta": 1e8, "intermediate_size": 32768,
                                    "max_position_embeddings": 32768}),
}  # fmt: skip


def _describe(model):
    attn = model.layers[0].attn
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    rope = attn.pos_embeddings
    return shapes, attn.sliding_window, rope.base, rope.scaling, model.max_seq_len


@pytest.mark.parametrize("builder", list(RELEASED), ids=lambda b: b.__name__)
def test_each_builder_is_its_released_config_json(builder):
    with torch.device("meta"):
        assert _describe(builder()) == _describe(build_from_hf_config(RELEASED[builder]))


def test_bfloat16_checkpoints_build_in_their_dtype():
    with torch.device("meta"):
        model = build_from_hf_config(
            tiny_mistral_config("hf4", torch_dtype="bfloat16"), dtype="auto"
        )
    assert next(model.parameters()).dtype == torch.bfloat16


def test_mixtral_is_refused_in_one_line_naming_what_to_use(tmp_path):
    config = {**tiny_mistral_config("v0_3"), "model_type": "mixtral", "num_local_experts": 8}
    (tmp_path / "config.json").write_text(json.dumps(config))
    save_file({"model.embed_tokens.weight": torch.zeros(4, 4)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError) as info:
        Checkpointer(tmp_path).load_model()
    message = str(info.value)
    assert "\n" not in message
    assert "mixture of experts: 8 experts per layer" in message
    assert "fine-tune a dense Mistral checkpoint instead" in message


def test_an_activation_tunesmith_lacks_is_one_clear_error():
    with pytest.raises(CheckpointError, match="hidden_act='gelu_new'.*check that checkpoint_dir"):
        build_from_hf_config(tiny_mistral_config(hidden_act="gelu_new"))
