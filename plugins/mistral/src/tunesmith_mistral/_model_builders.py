"""One builder per released Mistral size; each matches the Hugging Face repo it names."""

from __future__ import annotations

from tunesmith.modules import TransformerDecoder
from tunesmith_mistral._component_builders import mistral

__all__ = [
    "mistral_7b",
    "mistral_7b_v0_1",
    "mistral_7b_v0_2",
    "mistral_7b_v0_3",
    "mistral_nemo_12b",
    "mistral_small_24b",
]

_7B = dict(
    num_layers=32,
    num_heads=32,
    num_kv_heads=8,
    embed_dim=4096,
    intermediate_dim=14_336,
    max_seq_len=32_768,
    norm_eps=1e-5,
)


def mistral_7b_v0_1() -> TransformerDecoder:
    """Mistral 7B v0.1 (mistralai/Mistral-7B-v0.1): 7.24B parameters, 4096-token sliding window."""
    return mistral(**_7B, vocab_size=32_000, rope_base=10_000.0, sliding_window=4096)


def mistral_7b() -> TransformerDecoder:
    """Mistral 7B v0.1 under torchtune's name for it (``torchtune.models.mistral.mistral_7b``,
    whose configs point at mistralai/Mistral-7B-v0.1)."""
    return mistral_7b_v0_1()


def mistral_7b_v0_2() -> TransformerDecoder:
    """Mistral 7B v0.2 (mistralai/Mistral-7B-Instruct-v0.2): 7.24B parameters, full attention."""
    return mistral(**_7B, vocab_size=32_000, rope_base=1_000_000.0)


def mistral_7b_v0_3() -> TransformerDecoder:
    """Mistral 7B v0.3 (mistralai/Mistral-7B-v0.3): 7.25B parameters, 32,768-token vocabulary."""
    return mistral(**_7B, vocab_size=32_768, rope_base=1_000_000.0)


def mistral_nemo_12b() -> TransformerDecoder:
    """Mistral NeMo 12B (mistralai/Mistral-Nemo-Base-2407): 12.2B parameters, head_dim 128."""
    return mistral(
        vocab_size=131_072,
        num_layers=40,
        num_heads=32,
        num_kv_heads=8,
        head_dim=128,
        embed_dim=5120,
        intermediate_dim=14_336,
        max_seq_len=1_024_000,
        norm_eps=1e-5,
        rope_base=1_000_000.0,
    )


def mistral_small_24b() -> TransformerDecoder:
    """Mistral Small 3 24B (mistralai/Mistral-Small-24B-Base-2501): 23.6B parameters."""
    return mistral(
        vocab_size=131_072,
        num_layers=40,
        num_heads=32,
        num_kv_heads=8,
        head_dim=128,
        embed_dim=5120,
        intermediate_dim=32_768,
        max_seq_len=32_768,
        norm_eps=1e-5,
        rope_base=100_000_000.0,
    )


#: Builder -> the Hugging Face repository whose weights it loads.
HF_REPOS = {
    mistral_7b: "mistralai/Mistral-7B-v0.1",
    mistral_7b_v0_1: "mistralai/Mistral-7B-v0.1",
    mistral_7b_v0_2: "mistralai/Mistral-7B-Instruct-v0.2",
    mistral_7b_v0_3: "mistralai/Mistral-7B-v0.3",
    mistral_nemo_12b: "mistralai/Mistral-Nemo-Base-2407",
    mistral_small_24b: "mistralai/Mistral-Small-24B-Base-2501",
}
