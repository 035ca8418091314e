"""One builder per released Qwen checkpoint; each matches the Hugging Face repo it names.

Base and instruct checkpoints share an architecture except where their ``config.json``
differs (context length, and the RMSNorm epsilon of Qwen 2.5's large base models);
there the builders come in ``_base`` / ``_instruct`` pairs, with torchtune's names.
Coder, Math and other fine-tunes load with ``model: {_component_: auto}``, which reads
their ``config.json``.
"""

from __future__ import annotations

from tunesmith.modules import TransformerDecoder
from tunesmith_qwen._component_builders import qwen2, qwen3

__all__ = [
    "HF_REPOS",
    "qwen2_0_5b",
    "qwen2_1_5b",
    "qwen2_5_0_5b",
    "qwen2_5_14b_base",
    "qwen2_5_14b_instruct",
    "qwen2_5_1_5b_base",
    "qwen2_5_1_5b_instruct",
    "qwen2_5_32b_base",
    "qwen2_5_32b_instruct",
    "qwen2_5_3b",
    "qwen2_5_72b_base",
    "qwen2_5_72b_instruct",
    "qwen2_5_7b_base",
    "qwen2_5_7b_instruct",
    "qwen2_72b",
    "qwen2_7b",
    "qwen3_0_6b_base",
    "qwen3_0_6b_instruct",
    "qwen3_14b_base",
    "qwen3_14b_instruct",
    "qwen3_1_7b_base",
    "qwen3_1_7b_instruct",
    "qwen3_32b",
    "qwen3_4b_base",
    "qwen3_4b_instruct",
    "qwen3_8b_base",
    "qwen3_8b_instruct",
]

_SMALL_VOCAB, _LARGE_VOCAB = 151_936, 152_064  # 7B and up pad the table to 152064
_32K, _40K, _128K = 32_768, 40_960, 131_072

# Widths shared by Qwen 2 and 2.5 (layers, heads, kv heads, width, MLP width).
_0_5B = dict(num_layers=24, num_heads=14, num_kv_heads=2, embed_dim=896, intermediate_dim=4864)
_1_5B = dict(num_layers=28, num_heads=12, num_kv_heads=2, embed_dim=1536, intermediate_dim=8960)
_3B = dict(num_layers=36, num_heads=16, num_kv_heads=2, embed_dim=2048, intermediate_dim=11_008)
_7B = dict(num_layers=28, num_heads=28, num_kv_heads=4, embed_dim=3584, intermediate_dim=18_944)
_14B = dict(num_layers=48, num_heads=40, num_kv_heads=8, embed_dim=5120, intermediate_dim=13_824)
_32B = dict(num_layers=64, num_heads=40, num_kv_heads=8, embed_dim=5120, intermediate_dim=27_648)
_72B = dict(num_layers=80, num_heads=64, num_kv_heads=8, embed_dim=8192, intermediate_dim=29_568)
_TIED = dict(vocab_size=_SMALL_VOCAB, tie_word_embeddings=True)
_UNTIED = dict(vocab_size=_LARGE_VOCAB)
# Qwen 2.5's 14B/32B/72B base checkpoints were trained with RMSNorm epsilon 1e-5.
_BASE_LARGE = dict(_UNTIED, max_seq_len=_128K, norm_eps=1e-5)

# Qwen 3: head_dim 128 at every width.
_Q3_0_6B = dict(num_layers=28, num_heads=16, num_kv_heads=8, embed_dim=1024, intermediate_dim=3072)
_Q3_1_7B = dict(num_layers=28, num_heads=16, num_kv_heads=8, embed_dim=2048, intermediate_dim=6144)
_Q3_4B = dict(num_layers=36, num_heads=32, num_kv_heads=8, embed_dim=2560, intermediate_dim=9728)
_Q3_8B = dict(num_layers=36, num_heads=32, num_kv_heads=8, embed_dim=4096, intermediate_dim=12_288)
_Q3_14B = dict(num_layers=40, num_heads=40, num_kv_heads=8, embed_dim=5120, intermediate_dim=17_408)
_Q3_32B = dict(num_layers=64, num_heads=64, num_kv_heads=8, embed_dim=5120, intermediate_dim=25_600)


# ---------------------------------------------------------------- Qwen 2 ---


def qwen2_0_5b() -> TransformerDecoder:
    """Qwen2 0.5B (Qwen/Qwen2-0.5B-Instruct): 0.49B parameters, tied embeddings."""
    return qwen2(**_0_5B, **_TIED, max_seq_len=_32K)


def qwen2_1_5b() -> TransformerDecoder:
    """Qwen2 1.5B (Qwen/Qwen2-1.5B-Instruct): 1.54B parameters, tied embeddings."""
    return qwen2(**_1_5B, **_TIED, max_seq_len=_32K)


def qwen2_7b() -> TransformerDecoder:
    """Qwen2 7B (Qwen/Qwen2-7B-Instruct): 7.62B parameters."""
    return qwen2(**_7B, **_UNTIED, max_seq_len=_32K)


def qwen2_72b() -> TransformerDecoder:
    """Qwen2 72B (Qwen/Qwen2-72B-Instruct): 72.7B parameters."""
    return qwen2(**_72B, **_UNTIED, max_seq_len=_32K)


# -------------------------------------------------------------- Qwen 2.5 ---


def qwen2_5_0_5b() -> TransformerDecoder:
    """Qwen2.5 0.5B (Qwen/Qwen2.5-0.5B-Instruct; base the same): tied embeddings."""
    return qwen2(**_0_5B, **_TIED, max_seq_len=_32K)


def qwen2_5_1_5b_base() -> TransformerDecoder:
    """Qwen2.5 1.5B base (Qwen/Qwen2.5-1.5B): 128k context, tied embeddings."""
    return qwen2(**_1_5B, **_TIED, max_seq_len=_128K)


def qwen2_5_1_5b_instruct() -> TransformerDecoder:
    """Qwen2.5 1.5B instruct (Qwen/Qwen2.5-1.5B-Instruct): tied embeddings."""
    return qwen2(**_1_5B, **_TIED, max_seq_len=_32K)


def qwen2_5_3b() -> TransformerDecoder:
    """Qwen2.5 3B (Qwen/Qwen2.5-3B-Instruct; base the same): tied embeddings."""
    return qwen2(**_3B, **_TIED, max_seq_len=_32K)


def qwen2_5_7b_base() -> TransformerDecoder:
    """Qwen2.5 7B base (Qwen/Qwen2.5-7B): 7.62B parameters, 128k context."""
    return qwen2(**_7B, **_UNTIED, max_seq_len=_128K)


def qwen2_5_7b_instruct() -> TransformerDecoder:
    """Qwen2.5 7B instruct (Qwen/Qwen2.5-7B-Instruct; Coder-7B-Instruct the same)."""
    return qwen2(**_7B, **_UNTIED, max_seq_len=_32K)


def qwen2_5_14b_base() -> TransformerDecoder:
    """Qwen2.5 14B base (Qwen/Qwen2.5-14B): 14.7B parameters, 128k context."""
    return qwen2(**_14B, **_BASE_LARGE)


def qwen2_5_14b_instruct() -> TransformerDecoder:
    """Qwen2.5 14B instruct (Qwen/Qwen2.5-14B-Instruct): 14.7B parameters."""
    return qwen2(**_14B, **_UNTIED, max_seq_len=_32K)


def qwen2_5_32b_base() -> TransformerDecoder:
    """Qwen2.5 32B base (Qwen/Qwen2.5-32B): 32.8B parameters, 128k context."""
    return qwen2(**_32B, **_BASE_LARGE)


def qwen2_5_32b_instruct() -> TransformerDecoder:
    """Qwen2.5 32B instruct (Qwen/Qwen2.5-32B-Instruct): 32.8B parameters."""
    return qwen2(**_32B, **_UNTIED, max_seq_len=_32K)


def qwen2_5_72b_base() -> TransformerDecoder:
    """Qwen2.5 72B base (Qwen/Qwen2.5-72B): 72.7B parameters, 128k context."""
    return qwen2(**_72B, **_BASE_LARGE)


def qwen2_5_72b_instruct() -> TransformerDecoder:
    """Qwen2.5 72B instruct (Qwen/Qwen2.5-72B-Instruct): 72.7B parameters."""
    return qwen2(**_72B, **_UNTIED, max_seq_len=_32K)


# ---------------------------------------------------------------- Qwen 3 ---


def qwen3_0_6b_base() -> TransformerDecoder:
    """Qwen3 0.6B base (Qwen/Qwen3-0.6B-Base): tied embeddings."""
    return qwen3(**_Q3_0_6B, **_TIED, max_seq_len=_32K)


def qwen3_0_6b_instruct() -> TransformerDecoder:
    """Qwen3 0.6B (Qwen/Qwen3-0.6B, thinking and non-thinking): tied embeddings."""
    return qwen3(**_Q3_0_6B, **_TIED, max_seq_len=_40K)


def qwen3_1_7b_base() -> TransformerDecoder:
    """Qwen3 1.7B base (Qwen/Qwen3-1.7B-Base): tied embeddings."""
    return qwen3(**_Q3_1_7B, **_TIED, max_seq_len=_32K)


def qwen3_1_7b_instruct() -> TransformerDecoder:
    """Qwen3 1.7B (Qwen/Qwen3-1.7B): tied embeddings."""
    return qwen3(**_Q3_1_7B, **_TIED, max_seq_len=_40K)


def qwen3_4b_base() -> TransformerDecoder:
    """Qwen3 4B base (Qwen/Qwen3-4B-Base): tied embeddings."""
    return qwen3(**_Q3_4B, **_TIED, max_seq_len=_32K)


def qwen3_4b_instruct() -> TransformerDecoder:
    """Qwen3 4B (Qwen/Qwen3-4B): tied embeddings."""
    return qwen3(**_Q3_4B, **_TIED, max_seq_len=_40K)


def qwen3_8b_base() -> TransformerDecoder:
    """Qwen3 8B base (Qwen/Qwen3-8B-Base): 8.19B parameters."""
    return qwen3(**_Q3_8B, vocab_size=_SMALL_VOCAB, max_seq_len=_32K)


def qwen3_8b_instruct() -> TransformerDecoder:
    """Qwen3 8B (Qwen/Qwen3-8B): 8.19B parameters."""
    return qwen3(**_Q3_8B, vocab_size=_SMALL_VOCAB, max_seq_len=_40K)


def qwen3_14b_base() -> TransformerDecoder:
    """Qwen3 14B base (Qwen/Qwen3-14B-Base): 14.8B parameters."""
    return qwen3(**_Q3_14B, vocab_size=_SMALL_VOCAB, max_seq_len=_32K)


def qwen3_14b_instruct() -> TransformerDecoder:
    """Qwen3 14B (Qwen/Qwen3-14B): 14.8B parameters."""
    return qwen3(**_Q3_14B, vocab_size=_SMALL_VOCAB, max_seq_len=_40K)


def qwen3_32b() -> TransformerDecoder:
    """Qwen3 32B (Qwen/Qwen3-32B; released without a base model): 32.8B parameters."""
    return qwen3(**_Q3_32B, vocab_size=_SMALL_VOCAB, max_seq_len=_40K)


#: Builder -> (checkpoint family, the Hugging Face repository whose weights it loads).
HF_REPOS = {
    qwen2_0_5b: ("qwen2", "Qwen/Qwen2-0.5B-Instruct"),
    qwen2_1_5b: ("qwen2", "Qwen/Qwen2-1.5B-Instruct"),
    qwen2_7b: ("qwen2", "Qwen/Qwen2-7B-Instruct"),
    qwen2_72b: ("qwen2", "Qwen/Qwen2-72B-Instruct"),
    qwen2_5_0_5b: ("qwen2", "Qwen/Qwen2.5-0.5B-Instruct"),
    qwen2_5_1_5b_base: ("qwen2", "Qwen/Qwen2.5-1.5B"),
    qwen2_5_1_5b_instruct: ("qwen2", "Qwen/Qwen2.5-1.5B-Instruct"),
    qwen2_5_3b: ("qwen2", "Qwen/Qwen2.5-3B-Instruct"),
    qwen2_5_7b_base: ("qwen2", "Qwen/Qwen2.5-7B"),
    qwen2_5_7b_instruct: ("qwen2", "Qwen/Qwen2.5-7B-Instruct"),
    qwen2_5_14b_base: ("qwen2", "Qwen/Qwen2.5-14B"),
    qwen2_5_14b_instruct: ("qwen2", "Qwen/Qwen2.5-14B-Instruct"),
    qwen2_5_32b_base: ("qwen2", "Qwen/Qwen2.5-32B"),
    qwen2_5_32b_instruct: ("qwen2", "Qwen/Qwen2.5-32B-Instruct"),
    qwen2_5_72b_base: ("qwen2", "Qwen/Qwen2.5-72B"),
    qwen2_5_72b_instruct: ("qwen2", "Qwen/Qwen2.5-72B-Instruct"),
    qwen3_0_6b_base: ("qwen3", "Qwen/Qwen3-0.6B-Base"),
    qwen3_0_6b_instruct: ("qwen3", "Qwen/Qwen3-0.6B"),
    qwen3_1_7b_base: ("qwen3", "Qwen/Qwen3-1.7B-Base"),
    qwen3_1_7b_instruct: ("qwen3", "Qwen/Qwen3-1.7B"),
    qwen3_4b_base: ("qwen3", "Qwen/Qwen3-4B-Base"),
    qwen3_4b_instruct: ("qwen3", "Qwen/Qwen3-4B"),
    qwen3_8b_base: ("qwen3", "Qwen/Qwen3-8B-Base"),
    qwen3_8b_instruct: ("qwen3", "Qwen/Qwen3-8B"),
    qwen3_14b_base: ("qwen3", "Qwen/Qwen3-14B-Base"),
    qwen3_14b_instruct: ("qwen3", "Qwen/Qwen3-14B"),
    qwen3_32b: ("qwen3", "Qwen/Qwen3-32B"),
}
