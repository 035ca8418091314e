"""The decoding loop: left-padded batches, with or without the model's KV cache."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from tunesmith.errors import ConfigError, DataError
from tunesmith.generation._compile import cache_length
from tunesmith.generation._matmul import decoding_products
from tunesmith.generation._sampling import check_sampling, penalize_repeats, sample_next_token

__all__ = ["check_prompts", "generate_tokens"]


def _model_dtype(model: nn.Module) -> torch.dtype:
    for param in model.parameters():
        if param.is_floating_point():
            return param.dtype
    return torch.get_default_dtype()


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def check_prompts(
    prompts: Sequence[Sequence[int]], max_new_tokens: int, max_seq_len: int | None
) -> None:
    """Reject prompts the model cannot continue.

    Raises:
        DataError: no prompt, an empty prompt, or one whose length plus
            ``max_new_tokens`` exceeds ``max_seq_len``.
        ConfigError: ``max_new_tokens < 1``.
    """
    if (
        isinstance(max_new_tokens, bool)
        or not isinstance(max_new_tokens, int)
        or max_new_tokens < 1
    ):
        raise ConfigError(f"max_new_tokens must be a positive integer, not {max_new_tokens!r}")
    if not prompts:
        raise DataError("no prompt to generate from: pass at least one prompt")
    for i, prompt in enumerate(prompts):
        where = f"prompt {i}" if len(prompts) > 1 else "the prompt"
        if len(prompt) == 0:
            raise DataError(f"{where} is empty: give the model some text to continue")
        if max_seq_len is not None and len(prompt) + max_new_tokens > max_seq_len:
            room, left = max_seq_len - max_new_tokens, max_seq_len - len(prompt)
            fixes = [f"shorten the prompt to at most {room} tokens"] if room > 0 else []
            fixes += [f"lower max_new_tokens to at most {left}"] if left > 0 else []
            fixes = fixes or [f"shorten the prompt and lower max_new_tokens to fit {max_seq_len}"]
            raise DataError(
                f"{where} has {len(prompt)} tokens, and with max_new_tokens={max_new_tokens} that "
                f"exceeds the model's max_seq_len of {max_seq_len}: {' or '.join(fixes)}"
            )


def _projects_hidden(model: nn.Module) -> bool:
    """Whether ``model(..., return_hidden=True)`` and ``model.project`` exist (the core
    decoder's split of the body and the head)."""
    if not callable(getattr(model, "project", None)):
        return False
    try:
        return "return_hidden" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


@contextlib.contextmanager
def _inference(model: nn.Module, batch_size: int, cache_len: int | None) -> Iterator[None]:
    """Eval mode, no autograd and (optionally) fresh KV caches with the faster of the
    CPU's products for one token per row; undone on exit (caches removed, train/eval
    mode restored) so the model can go back to training."""
    was_training = model.training
    uses_caches = hasattr(model, "remove_caches") and hasattr(model, "caches_are_enabled")
    if uses_caches and model.caches_are_enabled():
        model.remove_caches()  # stale caches would corrupt both decoding paths
    model.eval()
    try:
        with torch.inference_mode(), contextlib.ExitStack() as stack:
            if cache_len is not None:  # a step's products then take batch_size rows
                stack.enter_context(decoding_products(model, batch_size))
                model.setup_caches(batch_size, _model_dtype(model), max_seq_len=cache_len)
            yield
    finally:
        if uses_caches and model.caches_are_enabled():
            model.remove_caches()
        model.train(was_training)


def generate_tokens(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    stop_tokens: Sequence[int] = (),
    pad_id: int = 0,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    repetition_penalty: float | None = None,
    seed: int | None = None,
    enable_kv_cache: bool = True,
    on_token: Callable[[int, int], None] | None = None,
) -> list[list[int]]:
    """Continue each prompt (token ids) until a stop token or ``max_new_tokens``.

    Prompts of different lengths are left-padded into one batch. Each row's rotary
    positions count from its own first real token and its attention mask hides the
    padding, so a row generates exactly what it would alone. With
    ``enable_kv_cache`` the model's KV caches (``setup_caches``) are filled by one
    forward pass over the prompts and then by one token per step; without, the
    whole sequence is recomputed every step under the same masks. The caches are
    removed afterwards (as are any the model had before) and its train/eval mode
    restored, so a model being
    fine-tuned can be sampled between steps.

    Args:
        model: A :class:`tunesmith.modules.TransformerDecoder` (or anything with its
            ``forward(tokens, *, mask, input_pos)``; ``setup_caches`` /
            ``remove_caches`` / ``caches_are_enabled`` for the cache path).
        prompts: One list of token ids per row, none empty.
        max_new_tokens: The most tokens generated per row.
        stop_tokens: A row stops after producing one of these (it is included in
            the row's output).
        pad_id: Token fed for padding and for rows that already stopped; never
            attended to.
        temperature: ``0`` for greedy decoding, else the sampling temperature.
        top_k: Sample among the ``top_k`` most likely tokens only.
        top_p: Sample from the nucleus of cumulative probability ``top_p`` only.
        min_p: Sample only tokens with ``min_p`` times the top token's probability.
        repetition_penalty: Penalize the tokens already in a row's prompt or output
            (see :func:`~tunesmith.generation.penalize_repeats`), greedy or not, as
            transformers and vLLM do; ``None`` (or 1): off.
        seed: Seed of a private random generator, for reproducible sampling;
            ``None`` uses torch's global generator.
        enable_kv_cache: Reuse keys and values of earlier tokens (fast); ``False``
            recomputes the whole sequence each step.
        on_token: Called as ``on_token(row, token_id)`` for every token as soon as it
            is chosen (stop tokens included), e.g. to stream text.

    Returns:
        The generated ids of each row (without the prompt), in prompt order.

    Raises:
        DataError: an empty prompt, or a prompt too long for ``model.max_seq_len``.
        ConfigError: invalid sampling settings or ``max_new_tokens``.
    """
    check_sampling(temperature, top_k, top_p, min_p=min_p, repetition_penalty=repetition_penalty)
    check_prompts(prompts, max_new_tokens, getattr(model, "max_seq_len", None))
    if enable_kv_cache and not hasattr(model, "setup_caches"):
        raise ConfigError(
            f"{type(model).__name__} has no KV cache (setup_caches): pass enable_kv_cache=False"
        )
    device = _model_device(model)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    stops = torch.tensor(sorted(set(stop_tokens)), dtype=torch.long, device=device)

    b = len(prompts)
    prompt_len = max(len(p) for p in prompts)
    total = prompt_len + max_new_tokens
    # KV cache slots: at least total (a compiled model's are rounded up; see cache_length).
    cache_len = cache_length(model, total) if enable_kv_cache else total
    tokens = torch.full((b, total), pad_id, dtype=torch.long, device=device)  # (b, total)
    valid = torch.zeros(b, cache_len, dtype=torch.bool, device=device)  # (b, cache_len): real
    for row, prompt in enumerate(prompts):
        first = prompt_len - len(prompt)
        tokens[row, first:prompt_len] = torch.tensor(list(prompt), dtype=torch.long, device=device)
        valid[row, first:prompt_len] = True
    valid[:, prompt_len:total] = True  # generated slots are real (a stopped row's are ignored)
    # Rotary positions count real tokens only: a row's first real token is at 0.
    positions = (valid[:, :total].long().cumsum(dim=-1) - 1).clamp(min=0)  # (b, total)
    slots = torch.arange(cache_len, device=device)

    def mask(start: int, end: int, kv_len: int) -> torch.Tensor:
        # [r, q, k]: query slot start + q of row r may attend key slot k (causal, no padding).
        causal = slots[None, :kv_len] <= slots[start:end, None]  # (end - start, kv_len)
        return causal[None] & valid[:, None, :kv_len]  # (b, end - start, kv_len)

    # Only the last position's logits are sampled from: a model that can return hidden
    # states gets its head applied to that position alone (not to the whole prompt).
    last_only = _projects_hidden(model)

    def last_logits(ids: torch.Tensor, **kwargs) -> torch.Tensor:
        if last_only:
            hidden = model(ids, return_hidden=True, **kwargs)  # (b, s, d)
            return model.project(hidden[:, -1:])[:, -1]  # (b, vocab)
        return model(ids, **kwargs)[:, -1]  # (b, vocab)

    out: list[list[int]] = [[] for _ in range(b)]
    done = torch.zeros(b, dtype=torch.bool, device=device)
    with _inference(model, b, cache_len if enable_kv_cache else None):
        start, end = 0, prompt_len  # the slots fed this step
        for _ in range(max_new_tokens):
            if enable_kv_cache:
                logits = last_logits(
                    tokens[:, start:end],
                    mask=mask(start, end, cache_len),
                    input_pos=positions[:, start:end],
                )  # (b, vocab)
            else:
                logits = last_logits(
                    tokens[:, :end], mask=mask(0, end, end), input_pos=positions[:, :end]
                )  # (b, vocab)
            if repetition_penalty not in (None, 1):
                seen = tokens[:, :end]
                logits = penalize_repeats(logits, seen, valid[:, :end], repetition_penalty)
            next_ids = sample_next_token(
                logits,
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                min_p=min_p,
                generator=generator,
            )  # (b,)
            next_ids = torch.where(done, torch.full_like(next_ids, pad_id), next_ids)
            tokens[:, end] = next_ids
            for row, (token, finished) in enumerate(
                zip(next_ids.tolist(), done.tolist(), strict=True)
            ):
                if not finished:
                    out[row].append(token)
                    if on_token is not None:
                        on_token(row, token)
            done |= torch.isin(next_ids, stops)
            if bool(done.all()):
                break
            start, end = end, end + 1
    return out
