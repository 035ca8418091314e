"""What the kit does not cover: left-padded batches through soft-capped and windowed
attention, the training loss (final soft-cap, tied head) and its gradients, and that
each Gemma feature of the tiny configs really changes the logits."""

from __future__ import annotations

import pytest
import torch

from tunesmith.checkpoint import Checkpointer
from tunesmith.testing import reference_checkpoint
from tunesmith.training import ChunkedCrossEntropyLoss, shift_labels
from tunesmith_gemma import (
    build_gemma2_from_hf_config,
    tiny_gemma2_config,
    tiny_gemma3_text_config,
    tiny_gemma_config,
)

pytest.importorskip("transformers")

ATOL = 1e-4


def _tokens(batch: int, seq: int, seed: int) -> torch.Tensor:
    return torch.randint(3, 512, (batch, seq), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("config", [tiny_gemma2_config(), tiny_gemma3_text_config()],
                         ids=["gemma2", "gemma3_text"])  # fmt: skip
def test_left_padded_batch_matches_transformers(tmp_path, config):
    """Rows padded on the left, longer than the window of 8, soft-capped (Gemma 2)."""
    reference = reference_checkpoint(tmp_path, config)
    model = Checkpointer(tmp_path).load_model().eval()
    lengths, width = [21, 12, 17], 21
    tokens = torch.zeros(3, width, dtype=torch.long)
    real = torch.zeros(3, width, dtype=torch.bool)
    for row, (n, seed) in enumerate(zip(lengths, (1, 2, 3), strict=True)):
        tokens[row, width - n :] = _tokens(1, n, seed)[0]
        real[row, width - n :] = True
    positions = (real.cumsum(-1) - 1).clamp(min=0)  # each row counts from its first token
    mask = torch.ones(width, width, dtype=torch.bool).tril()[None] & real[:, None, :]
    with torch.no_grad():
        ours = model(tokens, mask=mask, input_pos=positions)
        theirs = reference(tokens, attention_mask=real.long(), position_ids=positions).logits
        alone = model(tokens[1:2, width - 12 :])  # the short row on its own
    torch.testing.assert_close(ours[real], theirs[real], atol=ATOL, rtol=0)
    torch.testing.assert_close(ours[1, width - 12 :], alone[0], atol=ATOL, rtol=0)


def test_training_loss_and_tied_gradient_match_transformers(tmp_path):
    """The recipe's chunked loss over soft-capped logits of a tied head is transformers'
    loss, and the embedding (used twice) gets transformers' gradient."""
    reference = reference_checkpoint(tmp_path, tiny_gemma2_config())
    model = Checkpointer(tmp_path).load_model()
    tokens = _tokens(2, 20, seed=4)
    labels = tokens.clone()
    labels[:, :6] = -100  # a masked prompt
    loss_sum, count = ChunkedCrossEntropyLoss(num_output_chunks=3)(
        model(tokens), shift_labels(labels)
    )
    (loss_sum / count).backward()
    theirs = reference(tokens, labels=labels).loss
    theirs.backward()
    torch.testing.assert_close(loss_sum / count, theirs, atol=1e-5, rtol=0)
    ours_grad = model.tok_embeddings.weight.grad
    their_grad = reference.model.embed_tokens.weight.grad
    assert their_grad.abs().max() > 1e-4
    torch.testing.assert_close(ours_grad, their_grad, atol=1e-6, rtol=1e-4)


def test_gemma3_ignores_attention_soft_capping_as_transformers_does(tmp_path):
    """Gemma 3's attention never applies attn_logit_softcapping (transformers reads the
    key and passes no cap; the released configs leave it null): set, it changes nothing."""
    reference = reference_checkpoint(tmp_path, tiny_gemma3_text_config(attn_logit_softcapping=0.5))
    model = Checkpointer(tmp_path).load_model().eval()
    tokens = _tokens(2, 20, seed=6)
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), reference(tokens).logits, atol=ATOL, rtol=0)


def _logits(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    # The weights reference_checkpoint gives the parity checks.
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            param.copy_(1.0 + 0.1 * noise if "norm" in name else 0.02 * noise)
        return model(tokens)


@pytest.mark.parametrize(
    "override",
    [
        {"attn_softcap": None},
        {"final_softcap": None},
        {"sliding_window": None},
        {"query_pre_attn_scalar": 32},
    ],
    ids=lambda o: next(iter(o)),
)
def test_each_gemma2_feature_of_the_tiny_config_changes_the_logits(override):
    """So the parity checks above would see it missing."""
    tokens = _tokens(1, 20, seed=5)
    config = tiny_gemma2_config()
    base = _logits(build_gemma2_from_hf_config(config), tokens)
    changed = _logits(build_gemma2_from_hf_config(config, **override), tokens)
    assert (base - changed).abs().max() > 1e-2


def test_gemma_scales_embeddings_and_offsets_norms(tmp_path):
    """Gemma 1: x * sqrt(hidden) embeddings, (1 + w) norms, tanh GELU — checked through
    the parts, against the formulas the reference computes."""
    model = build_gemma2_from_hf_config(tiny_gemma2_config())
    assert model.embed_scale == pytest.approx(64**0.5)
    from tunesmith_gemma import build_gemma_from_hf_config

    gemma = build_gemma_from_hf_config(tiny_gemma_config())
    norm, mlp = gemma.norm, gemma.layers[0].mlp
    assert float(norm.weight.detach().abs().max()) == 0.0  # stored offset: a fresh norm scales by 1
    x = torch.randn(2, 64)
    expected = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(norm(x), expected)
    assert mlp.activation.approximate == "tanh"
    assert gemma.layers[0].attn.num_kv_heads == 1  # multi-query, as Gemma 2B


@pytest.mark.slow
def test_compiled_decoding_through_the_window_and_soft_caps_equals_eager(tmp_path, monkeypatch):
    """Gemma 2 decodes past its window of 8 with soft-capped attention and head: the
    compiled one-token step (the whole cache, the window from a traced fill level)
    picks eager decoding's tokens."""
    from tunesmith.generation import compile_for_generation, generate_tokens

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    reference_checkpoint(tmp_path / "model", tiny_gemma2_config())
    model = Checkpointer(tmp_path / "model").load_model().eval()
    prompts = [_tokens(1, 11, 4)[0].tolist(), _tokens(1, 6, 5)[0].tolist()]
    want = generate_tokens(model, prompts, max_new_tokens=14)
    torch._dynamo.reset()
    compile_for_generation(model)
    assert generate_tokens(model, prompts, max_new_tokens=14) == want
