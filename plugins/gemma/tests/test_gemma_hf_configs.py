"""The released checkpoints' config.json files (as transformers 4 wrote them on the
Hub, and as transformers 5 re-saves them) build exactly the registered size builders."""

from __future__ import annotations

import pytest
import torch

import tunesmith
from tunesmith import CheckpointError
from tunesmith_gemma import (
    gemma2_2b,
    gemma2_9b,
    gemma2_27b,
    gemma3_1b,
    gemma3_4b,
    gemma3_12b,
    gemma3_27b,
    gemma_2b,
    gemma_7b,
    gemma_layer_types,
)

transformers = pytest.importorskip("transformers")

_GEMMA = {"architectures": ["GemmaForCausalLM"], "model_type": "gemma", "bos_token_id": 2,
          "eos_token_id": 1, "pad_token_id": 0, "head_dim": 256, "hidden_act": "gelu",
          "max_position_embeddings": 8192, "rms_norm_eps": 1e-06, "rope_scaling": None,
          "rope_theta": 10000.0, "torch_dtype": "bfloat16", "vocab_size": 256000}  # fmt: skip
_GEMMA2 = {"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2",
           "attention_bias": False, "attn_logit_softcapping": 50.0, "bos_token_id": 2,
           "cache_implementation": "hybrid", "eos_token_id": 1, "final_logit_softcapping": 30.0,
           "head_dim": 256, "hidden_act": "gelu_pytorch_tanh",
           "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 8192,
           "pad_token_id": 0, "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06,
           "rope_theta": 10000.0, "sliding_window": 4096, "sliding_window_size": 4096,
           "torch_dtype": "float32", "vocab_size": 256000}  # fmt: skip
_GEMMA3_MM = {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
              "boi_token_index": 255999, "eoi_token_index": 256000, "eos_token_id": [1, 106],
              "image_token_index": 262144, "mm_tokens_per_image": 256,
              "torch_dtype": "bfloat16",
              "vision_config": {"hidden_size": 1152, "image_size": 896,
                                "intermediate_size": 4304, "model_type": "siglip_vision_model",
                                "num_attention_heads": 16, "num_hidden_layers": 27,
                                "patch_size": 14, "vision_use_head": False}}  # fmt: skip
_LINEAR_8 = {"factor": 8.0, "rope_type": "linear"}

#: model id -> (its config.json on the Hub, the builder of that size)
RELEASED = {
    "gemma-2b": ({**_GEMMA, "hidden_size": 2048, "intermediate_size": 16384,
                  "num_attention_heads": 8, "num_hidden_layers": 18, "num_key_value_heads": 1},
                 gemma_2b),
    "gemma-7b": ({**_GEMMA, "hidden_size": 3072, "intermediate_size": 24576,
                  "num_attention_heads": 16, "num_hidden_layers": 28,
                  "num_key_value_heads": 16, "hidden_activation": "gelu_pytorch_tanh"}, gemma_7b),
    "gemma-2-2b": ({**_GEMMA2, "hidden_size": 2304, "intermediate_size": 9216,
                    "num_attention_heads": 8, "num_hidden_layers": 26, "num_key_value_heads": 4},
                   gemma2_2b),
    "gemma-2-9b": ({**_GEMMA2, "hidden_size": 3584, "intermediate_size": 14336,
                    "num_attention_heads": 16, "num_hidden_layers": 42, "num_key_value_heads": 8},
                   gemma2_9b),
    "gemma-2-27b": ({**_GEMMA2, "head_dim": 128, "hidden_size": 4608,
                     "intermediate_size": 36864, "num_attention_heads": 32,
                     "num_hidden_layers": 46, "num_key_value_heads": 16,
                     "query_pre_attn_scalar": 144}, gemma2_27b),
    "gemma-3-1b-pt": ({"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
                       "attention_bias": False, "attn_logit_softcapping": None,
                       "bos_token_id": 2, "eos_token_id": [1, 106],
                       "final_logit_softcapping": None, "head_dim": 256,
                       "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 1152,
                       "intermediate_size": 6912, "max_position_embeddings": 32768,
                       "num_attention_heads": 4, "num_hidden_layers": 26,
                       "num_key_value_heads": 1, "pad_token_id": 0,
                       "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06,
                       "rope_local_base_freq": 10000, "rope_scaling": None,
                       "rope_theta": 1000000, "sliding_window": 512,
                       "sliding_window_pattern": 6, "torch_dtype": "bfloat16",
                       "vocab_size": 262144}, gemma3_1b),
    # The 4B text_config lists only what differs from Gemma3TextConfig's defaults.
    "gemma-3-4b-pt": ({**_GEMMA3_MM, "text_config": {
                           "hidden_size": 2560, "intermediate_size": 10240,
                           "model_type": "gemma3_text", "num_hidden_layers": 34,
                           "rope_scaling": _LINEAR_8, "sliding_window": 1024}}, gemma3_4b),
    "gemma-3-12b-pt": ({**_GEMMA3_MM, "text_config": {
                            "head_dim": 256, "hidden_size": 3840, "intermediate_size": 15360,
                            "model_type": "gemma3_text", "num_attention_heads": 16,
                            "num_hidden_layers": 48, "num_key_value_heads": 8,
                            "query_pre_attn_scalar": 256, "rope_scaling": _LINEAR_8,
                            "sliding_window": 1024, "vocab_size": 262208}}, gemma3_12b),
    "gemma-3-27b-pt": ({**_GEMMA3_MM, "text_config": {
                            "head_dim": 128, "hidden_size": 5376, "intermediate_size": 21504,
                            "model_type": "gemma3_text", "num_attention_heads": 32,
                            "num_hidden_layers": 62, "num_key_value_heads": 16,
                            "query_pre_attn_scalar": 168, "rope_scaling": _LINEAR_8,
                            "sliding_window": 1024}}, gemma3_27b),
}  # fmt: skip


def _signature(model: torch.nn.Module) -> dict:
    """Everything that tells two Gemma decoders apart, without weights."""
    layers = []
    for layer in model.layers:
        attn, rope = layer.attn, layer.attn.pos_embeddings
        layers.append((
            attn.num_heads, attn.num_kv_heads, attn.head_dim, attn.sliding_window, attn.softcap,
            round(attn.scale, 12), rope.base, rope.scaling, attn.q_norm is not None,
            layer.sa_post_norm is not None, type(layer.mlp.activation).__name__,
            getattr(layer.mlp.activation, "approximate", None),
        ))  # fmt: skip
    return {
        "shapes": {k: tuple(v.shape) for k, v in model.state_dict().items()},
        "layers": layers,
        "embed_scale": model.embed_scale,
        "final_softcap": model.final_softcap,
        "max_seq_len": model.max_seq_len,
        "norm": (model.norm.eps, model.norm.weight_offset, model.norm.scale_in_fp32),
    }


def _build(config: dict) -> torch.nn.Module:
    adapter = tunesmith.get_registry().get("checkpoint_adapters", config["model_type"])
    with torch.device("meta"):
        return adapter.build_from_hf_config(config)


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_released_config_builds_the_size_builder(name):
    config, builder = RELEASED[name]
    with torch.device("meta"):
        expected = _signature(builder())
    assert _signature(_build(config)) == expected
    # transformers 5 reads the same file and re-saves it in its own layout
    # (rope_parameters per layer type, layer_types): the same model again.
    resaved = transformers.AutoConfig.for_model(**config).to_dict()
    assert _signature(_build(resaved)) == expected


def test_layer_patterns():
    assert gemma_layer_types(4, 2) == ["sliding_attention", "full_attention"] * 2
    six = gemma_layer_types(12, 6)
    assert [i for i, t in enumerate(six) if t == "full_attention"] == [5, 11]
    with torch.device("meta"):
        model = gemma3_1b()
    windows = [layer.attn.sliding_window for layer in model.layers]
    assert windows.count(None) == 4 and windows[5] is None and windows[0] == 512
    bases = {layer.attn.pos_embeddings.base for layer in model.layers}
    assert bases == {10_000.0, 1_000_000.0}


@pytest.mark.parametrize(
    ("model_type", "change", "message"),
    [
        ("gemma", {"hidden_act": "silu"}, "hidden_act='silu'"),
        ("gemma2", {"use_bidirectional_attention": True}, "EmbeddingGemma"),
        ("gemma2", {"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "no Gemma 2 release"),
        ("gemma3", {"text_config": None}, "no text_config"),
    ],
)
def test_configs_gemma_never_has_are_refused_in_one_line(model_type, change, message):
    config = {
        "gemma": RELEASED["gemma-2b"][0],
        "gemma2": RELEASED["gemma-2-2b"][0],
        "gemma3": RELEASED["gemma-3-4b-pt"][0],
    }[model_type]
    with pytest.raises(CheckpointError, match=message) as error:
        _build({**config, **change})
    assert "\n" not in str(error.value)
