"""One builder per released Llama size; each matches the Hugging Face repo it names."""

from __future__ import annotations

from tunesmith.modules import TransformerDecoder
from tunesmith_llama._component_builders import llama

__all__ = [
    "code_llama2_13b",
    "code_llama2_70b",
    "code_llama2_7b",
    "llama2_13b",
    "llama2_70b",
    "llama2_7b",
    "llama3_1_405b",
    "llama3_1_70b",
    "llama3_1_8b",
    "llama3_2_1b",
    "llama3_2_3b",
    "llama3_3_70b",
    "llama3_70b",
    "llama3_8b",
]

_LLAMA2 = dict(vocab_size=32_000, max_seq_len=4096, norm_eps=1e-5, rope_base=10_000.0)
# Code Llama: 16 extra tokens for infilling, 16k context, a larger RoPE base.
_CODE_LLAMA2 = dict(vocab_size=32_016, max_seq_len=16_384, norm_eps=1e-5, rope_base=1_000_000.0)
_LLAMA3 = dict(vocab_size=128_256, max_seq_len=8192, norm_eps=1e-5, rope_base=500_000.0)
# Llama 3.1 and 3.2 stretch Llama 3's 8k context to 128k by rescaling RoPE frequencies.
_LLAMA3_1 = dict(
    _LLAMA3,
    max_seq_len=131_072,
    rope_scaling=dict(
        rope_type="llama3",
        factor=8.0,
        low_freq_factor=1.0,
        high_freq_factor=4.0,
        original_max_position_embeddings=8192,
    ),
)
_LLAMA3_2 = dict(
    _LLAMA3_1, rope_scaling=dict(_LLAMA3_1["rope_scaling"], factor=32.0), tie_word_embeddings=True
)

_7B = dict(num_layers=32, num_heads=32, num_kv_heads=32, embed_dim=4096, intermediate_dim=11_008)
_13B = dict(num_layers=40, num_heads=40, num_kv_heads=40, embed_dim=5120, intermediate_dim=13_824)
_70B = dict(num_layers=80, num_heads=64, num_kv_heads=8, embed_dim=8192, intermediate_dim=28_672)
_8B = dict(num_layers=32, num_heads=32, num_kv_heads=8, embed_dim=4096, intermediate_dim=14_336)


def llama2_7b() -> TransformerDecoder:
    """Llama 2 7B (meta-llama/Llama-2-7b-hf): 6.74B parameters."""
    return llama(**_LLAMA2, **_7B)


def llama2_13b() -> TransformerDecoder:
    """Llama 2 13B (meta-llama/Llama-2-13b-hf): 13.0B parameters."""
    return llama(**_LLAMA2, **_13B)


def llama2_70b() -> TransformerDecoder:
    """Llama 2 70B (meta-llama/Llama-2-70b-hf): 69.0B parameters, grouped-query attention."""
    return llama(**_LLAMA2, **_70B)


def code_llama2_7b() -> TransformerDecoder:
    """Code Llama 7B (codellama/CodeLlama-7b-hf): 6.74B parameters."""
    return llama(**_CODE_LLAMA2, **_7B)


def code_llama2_13b() -> TransformerDecoder:
    """Code Llama 13B (codellama/CodeLlama-13b-hf): 13.0B parameters."""
    return llama(**_CODE_LLAMA2, **_13B)


def code_llama2_70b() -> TransformerDecoder:
    """Code Llama 70B (codellama/CodeLlama-70b-hf): 69.0B parameters."""
    return llama(**_CODE_LLAMA2, **_70B)


def llama3_8b() -> TransformerDecoder:
    """Llama 3 8B (meta-llama/Meta-Llama-3-8B): 8.03B parameters."""
    return llama(**_LLAMA3, **_8B)


def llama3_70b() -> TransformerDecoder:
    """Llama 3 70B (meta-llama/Meta-Llama-3-70B): 70.6B parameters."""
    return llama(**_LLAMA3, **_70B)


def llama3_1_8b() -> TransformerDecoder:
    """Llama 3.1 8B (meta-llama/Llama-3.1-8B): 8.03B parameters, 128k context."""
    return llama(**_LLAMA3_1, **_8B)


def llama3_1_70b() -> TransformerDecoder:
    """Llama 3.1 70B (meta-llama/Llama-3.1-70B): 70.6B parameters, 128k context."""
    return llama(**_LLAMA3_1, **_70B)


def llama3_1_405b() -> TransformerDecoder:
    """Llama 3.1 405B (meta-llama/Llama-3.1-405B): 406B parameters, 128k context."""
    return llama(
        **_LLAMA3_1,
        num_layers=126,
        num_heads=128,
        num_kv_heads=8,
        embed_dim=16_384,
        intermediate_dim=53_248,
    )


def llama3_2_1b() -> TransformerDecoder:
    """Llama 3.2 1B (meta-llama/Llama-3.2-1B): 1.24B parameters, tied embeddings."""
    return llama(
        **_LLAMA3_2,
        num_layers=16,
        num_heads=32,
        num_kv_heads=8,
        embed_dim=2048,
        intermediate_dim=8192,
    )


def llama3_2_3b() -> TransformerDecoder:
    """Llama 3.2 3B (meta-llama/Llama-3.2-3B): 3.21B parameters, tied embeddings."""
    return llama(
        **_LLAMA3_2,
        num_layers=28,
        num_heads=24,
        num_kv_heads=8,
        embed_dim=3072,
        intermediate_dim=8192,
    )


def llama3_3_70b() -> TransformerDecoder:
    """Llama 3.3 70B (meta-llama/Llama-3.3-70B-Instruct): Llama 3.1 70B's architecture."""
    return llama(**_LLAMA3_1, **_70B)


#: Builder -> the Hugging Face repository whose weights it loads.
HF_REPOS = {
    llama2_7b: "meta-llama/Llama-2-7b-hf",
    llama2_13b: "meta-llama/Llama-2-13b-hf",
    llama2_70b: "meta-llama/Llama-2-70b-hf",
    code_llama2_7b: "codellama/CodeLlama-7b-hf",
    code_llama2_13b: "codellama/CodeLlama-13b-hf",
    code_llama2_70b: "codellama/CodeLlama-70b-hf",
    llama3_8b: "meta-llama/Meta-Llama-3-8B",
    llama3_70b: "meta-llama/Meta-Llama-3-70B",
    llama3_1_8b: "meta-llama/Llama-3.1-8B",
    llama3_1_70b: "meta-llama/Llama-3.1-70B",
    llama3_1_405b: "meta-llama/Llama-3.1-405B",
    llama3_2_1b: "meta-llama/Llama-3.2-1B",
    llama3_2_3b: "meta-llama/Llama-3.2-3B",
    llama3_3_70b: "meta-llama/Llama-3.3-70B-Instruct",
}
