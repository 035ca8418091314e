"""build_decoder against the transformers model of each family whose options it covers.

Each case builds a tiny random transformers model, reads its config.json with
``tunesmith.checkpoint.hf_decoder_config``, builds ours with the family's options, loads
the renamed weights (strictly: the keys match both ways) and compares logits.
"""

from __future__ import annotations

import math
import re

import pytest
import torch

from tunesmith.checkpoint import hf_decoder_config, hf_rope_settings
from tunesmith.modules import RotaryPositionalEmbeddings, build_decoder

transformers = pytest.importorskip("transformers")

TINY = dict(
    vocab_size=128,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
)
GEMMA = dict(head_dim=16, rms_norm_eps=1e-6)


def _gemma_options(config, hf):
    return dict(
        norm_weight_offset=1.0,
        norm_scale_in_fp32=True,
        activation=config.get("hidden_activation") or config["hidden_act"],
        embed_scale=config["hidden_size"] ** 0.5,
    )


def _gemma2_options(config, hf):
    return _gemma_options(config, hf) | dict(
        norm_placement="both",
        attn_scale=config["query_pre_attn_scalar"] ** -0.5,
        attn_softcap=config["attn_logit_softcapping"],
        final_softcap=config["final_logit_softcapping"],
    )


def _gemma3_options(config, hf):
    ropes = []
    for layer_type in hf.layer_types:  # local and global layers rotate differently
        base, scaling = hf_rope_settings(config, layer_type=layer_type)
        ropes.append(RotaryPositionalEmbeddings(hf.head_dim, base=base, scaling=scaling))
    return _gemma2_options(config, hf) | dict(qk_norm="head", rope=ropes)


# family -> (config class, config kwargs, our options, what HF's post_attention_layernorm is)
CASES = {
    "mistral": ("MistralConfig", dict(sliding_window=5), lambda c, hf: {}, "mlp_norm"),
    "qwen2": (
        "Qwen2Config",
        dict(
            use_sliding_window=True,
            sliding_window=5,
            max_window_layers=1,
            tie_word_embeddings=True,
            rope_parameters={
                "rope_type": "yarn",
                "rope_theta": 1e6,
                "factor": 4.0,
                "original_max_position_embeddings": 16,
            },
        ),
        lambda c, hf: dict(qkv_bias=True),
        "mlp_norm",
    ),
    "qwen3": ("Qwen3Config", dict(head_dim=16), lambda c, hf: dict(qk_norm="head"), "mlp_norm"),
    "phi3": (
        "Phi3Config",
        dict(
            pad_token_id=0,
            original_max_position_embeddings=16,
            rope_parameters={
                "rope_type": "longrope",
                "rope_theta": 10_000.0,
                "partial_rotary_factor": 0.5,
                "short_factor": [1.0, 1.3],
                "long_factor": [2.0, 7.0],
            },
        ),
        lambda c, hf: dict(rope_dim=hf.rope_dim),
        "mlp_norm",
    ),
    "olmo2": (
        "Olmo2Config",
        dict(rms_norm_eps=1e-6),
        lambda c, hf: dict(
            norm_placement="post", qk_norm="full", norm_scale_in_fp32=True, rope_in_fp32=True
        ),
        "sa_post_norm",
    ),
    "gemma": ("GemmaConfig", GEMMA, _gemma_options, "mlp_norm"),
    "gemma2": (
        "Gemma2Config",
        GEMMA
        | dict(
            sliding_window=5,
            query_pre_attn_scalar=24,
            attn_logit_softcapping=2.0,
            final_logit_softcapping=3.0,
        ),
        _gemma2_options,
        "sa_post_norm",
    ),
    "gemma3": (
        "Gemma3TextConfig",
        GEMMA
        | dict(
            sliding_window=5,
            query_pre_attn_scalar=24,
            layer_types=["sliding_attention", "full_attention"],
            rope_parameters={
                "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
                "full_attention": {"rope_type": "linear", "rope_theta": 1e6, "factor": 8.0},
            },
        ),
        _gemma3_options,
        "sa_post_norm",
    ),
}

_RENAMES = [
    (r"^model\.embed_tokens\.", "tok_embeddings."),
    (r"^model\.norm\.", "norm."),
    (r"^lm_head\.", "output."),
    (r"\.input_layernorm\.", ".sa_norm."),
    (r"\.pre_feedforward_layernorm\.", ".mlp_norm."),
    (r"\.post_feedforward_layernorm\.", ".mlp_post_norm."),
    (r"\.self_attn\.o_proj\.", ".attn.output_proj."),
    (r"\.self_attn\.", ".attn."),
    (r"\.mlp\.gate_proj\.", ".mlp.w1."),
    (r"\.mlp\.down_proj\.", ".mlp.w2."),
    (r"\.mlp\.up_proj\.", ".mlp.w3."),
    (r"^model\.layers\.", "layers."),
]


def _to_native(state_dict, post_attention, hf):
    native = {}
    for key, tensor in state_dict.items():
        key = key.replace(".post_attention_layernorm.", f".{post_attention}.")
        for pattern, new in _RENAMES:
            key = re.sub(pattern, new, key)
        if key.endswith("attn.qkv_proj.weight"):  # Phi-3 fuses q, k, v ...
            q_dim, kv_dim = hf.num_heads * hf.head_dim, hf.num_kv_heads * hf.head_dim
            q, k, v = tensor.split([q_dim, kv_dim, kv_dim])
            prefix = key.removesuffix("qkv_proj.weight")
            native |= {f"{prefix}q_proj.weight": q, f"{prefix}k_proj.weight": k}
            native[f"{prefix}v_proj.weight"] = v
        elif key.endswith("mlp.gate_up_proj.weight"):  # ... and gate, up
            gate, up = tensor.chunk(2)
            prefix = key.removesuffix("gate_up_proj.weight")
            native |= {f"{prefix}w1.weight": gate, f"{prefix}w3.weight": up}
        else:
            native[key] = tensor
    if hf.tie_word_embeddings:
        native.pop("output.weight")
    return native


def _hf_model(family):
    cls, kwargs, _, _ = CASES[family]
    config = getattr(transformers, cls)(**TINY, **kwargs)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(
        config, attn_implementation="eager", dtype=torch.float32
    ).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.uniform_(0.5, 1.5)  # HF starts norms at identity: make them matter
            else:
                param.normal_(0.0, 0.1)
    return model


def _ours(family, theirs):
    _, _, options, post_attention = CASES[family]
    config = theirs.config.to_dict()  # what config.json holds
    hf = hf_decoder_config(config)
    common = dict(
        vocab_size=hf.vocab_size,
        num_layers=hf.num_layers,
        num_heads=hf.num_heads,
        num_kv_heads=hf.num_kv_heads,
        head_dim=hf.head_dim,
        embed_dim=hf.embed_dim,
        intermediate_dim=hf.intermediate_dim,
        max_seq_len=hf.max_seq_len,
        norm_eps=hf.norm_eps,
        rope_base=hf.rope_base,
        rope_scaling=hf.rope_scaling,
        sliding_window=list(hf.sliding_windows),
        activation=hf.hidden_act,
        tie_word_embeddings=hf.tie_word_embeddings,
    )
    model = build_decoder(**common | options(config, hf))
    model.load_state_dict(_to_native(theirs.state_dict(), post_attention, hf), strict=True)
    return model.eval()


@pytest.mark.parametrize("family", list(CASES))
def test_logits_match_transformers(family):
    theirs = _hf_model(family)
    ours = _ours(family, theirs)
    # 24 tokens: past every sliding window (5) and past longrope's original length (16).
    tokens = torch.randint(0, 128, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = theirs(tokens).logits
        actual = ours(tokens)
        short = ours(tokens[:, :12])
        expected_short = theirs(tokens[:, :12]).logits
    assert expected.std() > 0.1
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(short, expected_short, atol=1e-5, rtol=1e-5)


def test_options_show_in_the_state_dict():
    def keys(**options):
        model = build_decoder(
            vocab_size=16,
            num_layers=1,
            num_heads=2,
            num_kv_heads=1,
            embed_dim=8,
            intermediate_dim=16,
            max_seq_len=8,
            **options,
        )
        return {k: tuple(v.shape) for k, v in model.state_dict().items()}

    llama = keys()
    assert set(llama) == {
        "tok_embeddings.weight",
        "layers.0.sa_norm.weight",
        "layers.0.attn.q_proj.weight",
        "layers.0.attn.k_proj.weight",
        "layers.0.attn.v_proj.weight",
        "layers.0.attn.output_proj.weight",
        "layers.0.mlp_norm.weight",
        "layers.0.mlp.w1.weight",
        "layers.0.mlp.w2.weight",
        "layers.0.mlp.w3.weight",
        "norm.weight",
        "output.weight",
    }
    post = keys(norm_placement="post", qk_norm="full")
    assert set(post) - set(llama) == {
        "layers.0.sa_post_norm.weight",
        "layers.0.mlp_post_norm.weight",
        "layers.0.attn.q_norm.weight",
        "layers.0.attn.k_norm.weight",
    }
    assert set(llama) - set(post) == {"layers.0.sa_norm.weight", "layers.0.mlp_norm.weight"}
    assert (post["layers.0.attn.q_norm.weight"], post["layers.0.attn.k_norm.weight"]) == (
        (8,),
        (4,),
    )
    per_head = keys(qk_norm="head", head_dim=6, norm_placement="both", tie_word_embeddings=True)
    assert per_head["layers.0.attn.q_norm.weight"] == (6,)
    assert per_head["layers.0.attn.q_proj.weight"] == (12, 8)
    assert "output.weight" not in per_head and "layers.0.mlp_post_norm.weight" in per_head
    biased = keys(qkv_bias=True, mlp_bias=True)
    assert {k for k in biased if k.endswith("bias")} == {
        "layers.0.attn.q_proj.bias",
        "layers.0.attn.k_proj.bias",
        "layers.0.attn.v_proj.bias",
        "layers.0.mlp.w1.bias",
        "layers.0.mlp.w2.bias",
        "layers.0.mlp.w3.bias",
    }
    assert "layers.0.attn.output_proj.bias" in keys(output_bias=True)


def test_per_layer_options():
    rope_local = RotaryPositionalEmbeddings(4, base=10_000.0)
    rope_global = RotaryPositionalEmbeddings(4, base=1e6)
    model = build_decoder(
        vocab_size=16,
        num_layers=3,
        num_heads=2,
        embed_dim=8,
        intermediate_dim=16,
        max_seq_len=8,
        sliding_window=[4, 4, None],
        rope=[rope_local, rope_local, rope_global],
        norm_weight_offset=1.0,
    )
    attns = [layer.attn for layer in model.layers]
    assert [a.sliding_window for a in attns] == [4, 4, None]
    assert [a.pos_embeddings for a in attns] == [rope_local, rope_local, rope_global]
    assert torch.equal(model.norm.weight, torch.zeros(8))
    assert (
        build_decoder(
            vocab_size=16,
            num_layers=2,
            num_heads=2,
            embed_dim=8,
            intermediate_dim=16,
            max_seq_len=8,
            sliding_window=3,
            embed_scale=math.sqrt(8),
        )
        .layers[1]
        .attn.sliding_window
        == 3
    )


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"sliding_window": [4]}, "sliding_window has 1 entries for 2 layers"),
        ({"norm_placement": "sandwich"}, "norm_placement"),
        ({"qk_norm": "layer"}, "qk_norm"),
        ({"activation": "gelu_new"}, "unknown activation 'gelu_new'.*gelu_pytorch_tanh"),
    ],
)
def test_bad_options_are_clear_errors(options, match):
    with pytest.raises(ValueError, match=match):
        build_decoder(
            vocab_size=16,
            num_layers=2,
            num_heads=2,
            embed_dim=8,
            intermediate_dim=16,
            max_seq_len=8,
            **options,
        )
