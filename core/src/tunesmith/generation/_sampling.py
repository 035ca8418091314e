"""Turning next-token logits into a token: greedy, temperature, top-k and top-p."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from tunesmith.errors import ConfigError

__all__ = ["checkpoint_sampling", "check_sampling", "sample_next_token", "token_probabilities"]


#: Temperatures below this decode greedily, as in vLLM: dividing logits by less
#: overflows fp32 and leaves no distribution to sample.
GREEDY_BELOW = 1e-5


def check_sampling(temperature: float | None, top_k: int | None, top_p: float | None) -> None:
    """Reject sampling settings that define no distribution.

    Raises:
        ConfigError: ``temperature`` not a number ``>= 0``, ``top_k`` not an integer
            ``>= 0`` (0: off), or ``top_p`` outside ``(0, 1]``.
    """
    if temperature is not None and (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not 0 <= temperature < math.inf
    ):
        raise ConfigError(
            f"temperature must be a number >= 0 (0 means greedy), not {temperature!r}"
        )
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0):
        raise ConfigError(f"top_k must be a positive integer, 0 (off) or null, not {top_k!r}")
    if top_p is not None and (
        isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1
    ):
        raise ConfigError(f"top_p must be in (0, 1] or null, not {top_p!r}")


#: What transformers' GenerationConfig samples with where generation_config.json is silent.
_HF_SAMPLING = {"temperature": 1.0, "top_k": 50, "top_p": 1.0}


def checkpoint_sampling(directory: str | Path) -> dict[str, Any]:
    """The sampling settings transformers' ``generate()`` uses for a checkpoint when it
    is called with none: its ``generation_config.json``.

    Returns:
        ``{"temperature", "top_k", "top_p", "source"}``: temperature ``0.0`` (greedy)
        unless the file sets ``do_sample: true``; ``top_k`` / ``top_p`` as the file
        sets them, else GenerationConfig's defaults (50, off), ``None`` where off
        (``top_k`` 0, ``top_p`` 1); ``source``: the file's path, ``None`` without one.
        Values the file sets out of range are left out (the defaults apply).
    """
    path = Path(directory) / "generation_config.json"
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        found = None
    if not isinstance(found, dict):
        found = {}
    values = dict(_HF_SAMPLING)
    for key in values:
        value = found.get(key)
        try:
            check_sampling(**{"temperature": None, "top_k": None, "top_p": None, key: value})
        except ConfigError:
            continue
        if value is not None:
            values[key] = value
    if found.get("do_sample") is not True:
        values["temperature"] = 0.0
    return {
        "temperature": float(values["temperature"]),
        "top_k": values["top_k"] or None,
        "top_p": values["top_p"] if values["top_p"] < 1 else None,
        "source": path if path.is_file() else None,
    }


def token_probabilities(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """The distribution :func:`sample_next_token` draws from, for ``temperature > 0``.

    Applied in this order (as in transformers):

    1. temperature: ``softmax(logits / temperature)``;
    2. top-k: keep the ``top_k`` most likely tokens (tokens tied with the k-th are
       kept too), zero the rest;
    3. top-p (nucleus): sort what is left by probability and keep the smallest
       prefix whose cumulative probability is at least ``top_p`` (the most likely
       token is always kept);

    then renormalise to sum to 1.

    Args:
        logits: ``(..., vocab)``.
        temperature: Must be ``> 0``; below 1 sharpens, above 1 flattens.
        top_k: Keep this many tokens, or ``None`` (or 0) for all.
        top_p: Cumulative-probability threshold in ``(0, 1]``, or ``None`` for no cut.

    Returns:
        ``(..., vocab)`` float32 probabilities.
    """
    if temperature <= 0:
        raise ValueError(
            "token_probabilities needs temperature > 0; temperature 0 is greedy (argmax)"
        )
    scaled = logits.float() / temperature  # (..., vocab)
    if top_k and top_k < scaled.shape[-1]:
        kth = torch.topk(scaled, top_k, dim=-1).values[..., -1:]  # (..., 1)
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    probs = torch.softmax(scaled, dim=-1)  # (..., vocab)
    if top_p is not None and top_p < 1:
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)  # (..., vocab)
        # The mass of the tokens ranked above each one, summed (not a cumsum minus the
        # token, which rounds: [0.5, 0.4] with top_p 0.5 would keep the 0.4).
        cumsum = sorted_probs.cumsum(dim=-1)
        before = torch.cat([torch.zeros_like(cumsum[..., :1]), cumsum[..., :-1]], dim=-1)
        # A token stays if the tokens above it do not yet reach top_p.
        drop_sorted = before >= top_p
        drop_sorted[..., 0] = False
        drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


def sample_next_token(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Choose the next token of every row.

    ``temperature == 0`` (or below :data:`GREEDY_BELOW`, as vLLM) is greedy
    decoding: the first token with the highest logit (what ``transformers``'
    ``generate(do_sample=False)`` picks), whatever ``top_k`` and ``top_p`` say. Otherwise one token per row is drawn from
    :func:`token_probabilities`; ``top_k=1`` therefore equals greedy (up to ties).

    Args:
        logits: ``(b, vocab)`` logits of the last position.
        temperature: ``0`` for greedy, else the softmax temperature.
        top_k: Sample only among the ``top_k`` most likely tokens.
        top_p: Sample only from the nucleus of cumulative probability ``top_p``.
        generator: Random source, for reproducible sampling; ``None`` uses torch's
            global one.

    Returns:
        ``(b,)`` token ids (int64).

    Raises:
        ConfigError: invalid ``temperature``, ``top_k`` or ``top_p``.
    """
    check_sampling(temperature, top_k, top_p)
    if temperature < GREEDY_BELOW:
        return logits.argmax(dim=-1)
    probs = token_probabilities(
        logits, temperature=temperature, top_k=top_k, top_p=top_p
    )  # (b, vocab)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (b,)
