"""One builder per released Gemma size; each matches the Hugging Face repo it names.

The Gemma 3 4B/12B/27B builders are the language model of the multimodal
``Gemma3ForConditionalGeneration`` checkpoints (the vision tower is kept aside by the
``gemma3`` checkpoint adapter and written back unchanged).
"""

from __future__ import annotations

from tunesmith.modules import TransformerDecoder
from tunesmith_gemma._component_builders import gemma, gemma2, gemma3

__all__ = [
    "HF_REPOS",
    "gemma2_2b",
    "gemma2_9b",
    "gemma2_27b",
    "gemma3_1b",
    "gemma3_4b",
    "gemma3_12b",
    "gemma3_27b",
    "gemma_2b",
    "gemma_7b",
]

_GEMMA = dict(vocab_size=256_000, max_seq_len=8192, head_dim=256)
_GEMMA3 = dict(vocab_size=262_208, max_seq_len=131_072, sliding_window=1024,
               rope_scaling={"rope_type": "linear", "factor": 8.0})  # fmt: skip


def gemma_2b() -> TransformerDecoder:
    """Gemma 2B (google/gemma-2b): 2.51B parameters, multi-query attention."""
    return gemma(**_GEMMA, num_layers=18, num_heads=8, num_kv_heads=1, embed_dim=2048,
                 intermediate_dim=16_384)  # fmt: skip


def gemma_7b() -> TransformerDecoder:
    """Gemma 7B (google/gemma-7b): 8.54B parameters."""
    return gemma(**_GEMMA, num_layers=28, num_heads=16, num_kv_heads=16, embed_dim=3072,
                 intermediate_dim=24_576)  # fmt: skip


def gemma2_2b() -> TransformerDecoder:
    """Gemma 2 2B (google/gemma-2-2b): 2.61B parameters."""
    return gemma2(**_GEMMA, num_layers=26, num_heads=8, num_kv_heads=4, embed_dim=2304,
                  intermediate_dim=9216)  # fmt: skip


def gemma2_9b() -> TransformerDecoder:
    """Gemma 2 9B (google/gemma-2-9b): 9.24B parameters."""
    return gemma2(**_GEMMA, num_layers=42, num_heads=16, num_kv_heads=8, embed_dim=3584,
                  intermediate_dim=14_336)  # fmt: skip


def gemma2_27b() -> TransformerDecoder:
    """Gemma 2 27B (google/gemma-2-27b): 27.2B parameters, head_dim 128."""
    return gemma2(**{**_GEMMA, "head_dim": 128}, query_pre_attn_scalar=144, num_layers=46,
                  num_heads=32, num_kv_heads=16, embed_dim=4608, intermediate_dim=36_864)  # fmt: skip


def gemma3_1b() -> TransformerDecoder:
    """Gemma 3 1B (google/gemma-3-1b-pt): 1.00B parameters, text only, 32k context."""
    return gemma3(vocab_size=262_144, max_seq_len=32_768, sliding_window=512, num_layers=26,
                  num_heads=4, num_kv_heads=1, embed_dim=1152, intermediate_dim=6912)  # fmt: skip


def gemma3_4b() -> TransformerDecoder:
    """Gemma 3 4B (google/gemma-3-4b-pt): its 3.88B-parameter language model."""
    return gemma3(**_GEMMA3, num_layers=34, num_heads=8, num_kv_heads=4, embed_dim=2560,
                  intermediate_dim=10_240)  # fmt: skip


def gemma3_12b() -> TransformerDecoder:
    """Gemma 3 12B (google/gemma-3-12b-pt): its 11.8B-parameter language model."""
    return gemma3(**_GEMMA3, num_layers=48, num_heads=16, num_kv_heads=8, embed_dim=3840,
                  intermediate_dim=15_360)  # fmt: skip


def gemma3_27b() -> TransformerDecoder:
    """Gemma 3 27B (google/gemma-3-27b-pt): its 27.0B-parameter language model, head_dim 128."""
    return gemma3(**_GEMMA3, head_dim=128, query_pre_attn_scalar=168, num_layers=62,
                  num_heads=32, num_kv_heads=16, embed_dim=5376, intermediate_dim=21_504)  # fmt: skip


#: Builder -> the Hugging Face repository whose weights it loads.
HF_REPOS = {
    gemma_2b: "google/gemma-2b",
    gemma_7b: "google/gemma-7b",
    gemma2_2b: "google/gemma-2-2b",
    gemma2_9b: "google/gemma-2-9b",
    gemma2_27b: "google/gemma-2-27b",
    gemma3_1b: "google/gemma-3-1b-pt",
    gemma3_4b: "google/gemma-3-4b-pt",
    gemma3_12b: "google/gemma-3-12b-pt",
    gemma3_27b: "google/gemma-3-27b-pt",
}
