"""Qwen 2/2.5/3 against transformers' Qwen2ForCausalLM / Qwen3ForCausalLM, through the
conformance kit, plus what the kit cannot see: config.json files as transformers 4 wrote
them, the released sizes, and the refusal of mixture-of-experts checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from tunesmith import CheckpointError
from tunesmith.checkpoint import Checkpointer
from tunesmith.testing import check_family, reference_checkpoint
from tunesmith_qwen import (
    qwen2_5_0_5b,
    qwen2_5_3b,
    qwen2_5_7b_instruct,
    qwen2_5_14b_instruct,
    qwen2_5_32b_instruct,
    qwen2_5_72b_instruct,
    qwen2_args_from_hf_config,
    qwen3_0_6b_instruct,
    qwen3_1_7b_instruct,
    qwen3_4b_instruct,
    qwen3_8b_instruct,
    qwen3_14b_instruct,
    qwen3_32b,
    qwen3_args_from_hf_config,
    tiny_qwen2_config,
    tiny_qwen3_config,
    write_tiny_qwen_tokenizer,
)

pytest.importorskip("transformers")
QUICK = ("round_trip", "kv_cache", "packing", "logits", "bf16")
FULL = (*QUICK, "generation", "lora")


@pytest.mark.parametrize(
    ("family", "config", "checks"),
    [
        # untied, sliding window on layer 1, YaRN, transformers-4 keys: every check
        ("qwen2", tiny_qwen2_config("transformers4"), FULL),
        ("qwen2", tiny_qwen2_config("tied"), QUICK),
        # tied, head_dim wider than hidden / heads: every check
        ("qwen3", tiny_qwen3_config("tied"), FULL),
        # untied, sliding window on layer 1 (generation with windows: the qwen2 case)
        ("qwen3", tiny_qwen3_config("transformers4"), QUICK),
    ],
    ids=["qwen2-windowed-yarn-t4", "qwen2.5-tied", "qwen3-tied", "qwen3-windowed-t4"],
)
def test_conformance_against_transformers(tmp_path, family, config, checks):
    ran = check_family(family, configs=[config], checks=checks, work_dir=tmp_path)
    assert not [name for name in ran if "skipped" in name], ran
    assert len(ran) == len(checks) + 1  # + "load"


@pytest.mark.parametrize(
    ("tiny", "args_of", "model_class"),
    [
        (tiny_qwen2_config, qwen2_args_from_hf_config, "Qwen2ForCausalLM"),
        (tiny_qwen3_config, qwen3_args_from_hf_config, "Qwen3ForCausalLM"),
    ],
)
def test_a_transformers4_config_json_loads_as_transformers_reads_it(
    tmp_path, tiny, args_of, model_class
):
    """The kit re-saves configs with transformers 5; Hub checkpoints keep the old keys."""
    import transformers

    legacy = tiny("transformers4")
    reference = reference_checkpoint(tmp_path, legacy, seed=1)
    resaved = json.loads((tmp_path / "config.json").read_text())
    assert "rope_theta" not in resaved  # transformers 5 rewrote it: put the old file back
    (tmp_path / "config.json").write_text(json.dumps(legacy))
    assert args_of(legacy) == args_of(resaved)
    assert args_of(legacy)["sliding_window"] == [None, 8]
    model = Checkpointer(tmp_path).load_model().eval()
    theirs = getattr(transformers, model_class).from_pretrained(tmp_path, dtype=torch.float32)
    tokens = torch.randint(0, 512, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(tokens).logits
        torch.testing.assert_close(model(tokens), expected, atol=1e-4, rtol=0)
        torch.testing.assert_close(theirs.eval()(tokens).logits, expected, atol=1e-5, rtol=0)


def test_windows_and_yarn_change_the_logits(tmp_path):
    """The windowed/YaRN config tests something: without them the logits differ."""
    config = tiny_qwen2_config("transformers4")
    reference_checkpoint(tmp_path, config)
    checkpointer = Checkpointer(tmp_path)
    tokens = torch.randint(0, 512, (1, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = checkpointer.load_model().eval()(tokens)
        for override in ({"sliding_window": None}, {"rope_scaling": None}):
            plain = checkpointer.load_model(**override).eval()(tokens)
            assert (plain - full).abs().max() > 1e-3, override


# Parameter counts the model cards publish (billions), tied embeddings counted once.
PUBLISHED = [
    (qwen2_5_0_5b, 0.49), (qwen2_5_3b, 3.09), (qwen2_5_7b_instruct, 7.61),
    (qwen2_5_14b_instruct, 14.7), (qwen2_5_32b_instruct, 32.5), (qwen2_5_72b_instruct, 72.7),
    (qwen3_0_6b_instruct, 0.6), (qwen3_1_7b_instruct, 1.7), (qwen3_4b_instruct, 4.0),
    (qwen3_8b_instruct, 8.2), (qwen3_14b_instruct, 14.8), (qwen3_32b, 32.8),
]  # fmt: skip


@pytest.mark.parametrize(
    ("builder", "billions"), PUBLISHED, ids=lambda v: getattr(v, "__name__", v)
)
def test_released_sizes_have_the_published_parameter_counts(builder, billions):
    with torch.device("meta"):
        model = builder()
    count = sum(p.numel() for p in model.parameters()) / 1e9
    assert count == pytest.approx(billions, rel=0.02)


QWEN2_5_7B_INSTRUCT_CONFIG = {  # config.json of Qwen/Qwen2.5-7B-Instruct (transformers 4)
    "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
    "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": 3584,
    "initializer_range": 0.02, "intermediate_size": 18944, "max_position_embeddings": 32768,
    "max_window_layers": 28, "model_type": "qwen2", "num_attention_heads": 28,
    "num_hidden_layers": 28, "num_key_value_heads": 4, "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0, "sliding_window": 131072, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "transformers_version": "4.43.1", "use_cache": True,
    "use_sliding_window": False, "vocab_size": 152064,
}  # fmt: skip
QWEN3_8B_CONFIG = {  # config.json of Qwen/Qwen3-8B (transformers 4.51)
    "architectures": ["Qwen3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu",
    "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 12288,
    "max_position_embeddings": 40960, "max_window_layers": 36, "model_type": "qwen3",
    "num_attention_heads": 32, "num_hidden_layers": 36, "num_key_value_heads": 8,
    "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 1000000, "sliding_window": None,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.51.0",
    "use_cache": True, "use_sliding_window": False, "vocab_size": 151936,
}  # fmt: skip


@pytest.mark.parametrize(
    ("config", "builder"),
    [(QWEN2_5_7B_INSTRUCT_CONFIG, qwen2_5_7b_instruct), (QWEN3_8B_CONFIG, qwen3_8b_instruct)],
    ids=["qwen2.5-7b-instruct", "qwen3-8b"],
)
def test_named_builders_equal_the_released_config_json(qwen_registry, config, builder):
    adapter = qwen_registry.get("checkpoint_adapters", config["model_type"])
    with torch.device("meta"):
        auto, named = adapter.build_from_hf_config(config), builder()
    assert {k: v.shape for k, v in auto.state_dict().items()} == {
        k: v.shape for k, v in named.state_dict().items()
    }
    assert auto.max_seq_len == named.max_seq_len == config["max_position_embeddings"]
    assert all(layer.attn.sliding_window is None for layer in auto.layers)


@pytest.mark.parametrize("model_type", ["qwen2_moe", "qwen3_moe"])
def test_mixture_of_experts_checkpoints_are_refused_in_one_line(tmp_path, model_type):
    from click.testing import CliRunner
    from safetensors.torch import save_file

    from tunesmith.cli import cli

    config = {**tiny_qwen3_config(), "model_type": model_type, "num_experts": 8}
    (tmp_path / "config.json").write_text(json.dumps(config))
    save_file({"model.embed_tokens.weight": torch.zeros(512, 64)}, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError) as error:
        Checkpointer(tmp_path).load_model()
    message = str(error.value)
    assert "\n" not in message
    assert model_type in message and "8 experts" in message and "dense Qwen" in message
    write_tiny_qwen_tokenizer(tmp_path)
    args = ["run", "generate", "--config", "generation", f"checkpointer.checkpoint_dir={tmp_path}",
            "prompt.user=Hi", "device=cpu"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code != 0 and message in result.output, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("alias", "family"), [("QWEN2", "qwen2"), ("QWEN2_5", "qwen2"),
                                               ("qwen3", "qwen3")])  # fmt: skip
def test_torchtune_model_type_aliases(alias, family):
    from tunesmith.checkpoint import find_adapter

    assert find_adapter(alias).family == family
