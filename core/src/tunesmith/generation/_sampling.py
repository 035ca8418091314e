"""Turning next-token logits into a token: greedy, temperature, top-k and top-p."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from tunesmith.errors import ConfigError

__all__ = [
    "check_sampling",
    "checkpoint_sampling",
    "penalize_repeats",
    "sample_next_token",
    "token_probabilities",
]


#: Temperatures below this decode greedily, as in vLLM: dividing logits by less
#: overflows fp32 and leaves no distribution to sample.
GREEDY_BELOW = 1e-5


def check_sampling(
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    *,
    min_p: float | None = None,
    repetition_penalty: float | None = None,
) -> None:
    """Reject sampling settings that define no distribution.

    Raises:
        ConfigError: ``temperature`` not a number ``>= 0``, ``top_k`` not an integer
            ``>= 0`` (0: off), ``top_p`` outside ``(0, 1]``, ``min_p`` outside
            ``[0, 1]`` or ``repetition_penalty`` not a number ``> 0``.
    """
    if temperature is not None and not _number_in(temperature, 0, math.inf, high_open=True):
        raise ConfigError(
            f"temperature must be a number >= 0 (0 means greedy), not {temperature!r}"
        )
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0):
        raise ConfigError(f"top_k must be a positive integer, 0 (off) or null, not {top_k!r}")
    if top_p is not None and not _number_in(top_p, 0, 1, low_open=True):
        raise ConfigError(f"top_p must be in (0, 1] or null, not {top_p!r}")
    if min_p is not None and not _number_in(min_p, 0, 1):
        raise ConfigError(f"min_p must be in [0, 1] (0: off) or null, not {min_p!r}")
    if repetition_penalty is not None and not _number_in(
        repetition_penalty, 0, math.inf, low_open=True, high_open=True
    ):
        raise ConfigError(
            f"repetition_penalty must be a number > 0 (1: off) or null, not {repetition_penalty!r}"
        )


def _number_in(
    value: Any, low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return False
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    return above and below


def penalize_repeats(
    logits: torch.Tensor, ids: torch.Tensor, real: torch.Tensor, penalty: float
) -> torch.Tensor:
    """transformers' (and vLLM's) repetition penalty: the logit of every token already
    in a row's sequence is divided by ``penalty`` where positive, multiplied where
    negative (``penalty > 1`` discourages repeats).

    Args:
        logits: ``(b, vocab)``.
        ids: ``(b, s)`` the sequences so far (prompt and generated tokens).
        real: ``(b, s)`` bool, False at padding, which counts as no token.
    """
    seen = torch.zeros(logits.shape, dtype=torch.long, device=logits.device)
    seen = seen.scatter_add(1, ids, real.long()) > 0  # (b, vocab)
    penalized = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalized, logits)


#: What transformers' GenerationConfig samples with where generation_config.json is silent.
_HF_SAMPLING = {
    "temperature": 1.0,
    "top_k": 50,
    "top_p": 1.0,
    "min_p": None,
    "repetition_penalty": 1.0,
}


def checkpoint_sampling(directory: str | Path) -> dict[str, Any]:
    """The sampling settings transformers' ``generate()`` uses for a checkpoint when it
    is called with none: its ``generation_config.json``.

    Returns:
        ``{"temperature", "top_k", "top_p", "min_p", "repetition_penalty", "source"}``:
        temperature ``0.0`` (greedy) unless the file sets ``do_sample: true``; the
        others as the file sets them, else GenerationConfig's defaults (top_k 50, the
        rest off), ``None`` where off (``top_k`` 0, ``top_p`` 1, ``min_p`` 0,
        ``repetition_penalty`` 1; the penalty applies to greedy decoding too);
        ``source``: the file's path, ``None`` without one. Values the file sets out of
        range are left out (the defaults apply).
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
            check_sampling(**{key: value})
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
        "min_p": values["min_p"] or None,
        "repetition_penalty": values["repetition_penalty"]
        if values["repetition_penalty"] != 1
        else None,
        "source": path if path.is_file() else None,
    }


def token_probabilities(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
) -> torch.Tensor:
    """The distribution :func:`sample_next_token` draws from, for ``temperature > 0``.

    Applied in this order (as in transformers):

    1. temperature: ``softmax(logits / temperature)``;
    2. top-k: keep the ``top_k`` most likely tokens (tokens tied with the k-th are
       kept too), zero the rest;
    3. top-p (nucleus): sort what is left by probability and keep the smallest
       prefix whose cumulative probability is at least ``top_p`` (the most likely
       token is always kept);
    4. min-p: drop what is left with less than ``min_p`` times the probability of
       the most likely token;

    then renormalise to sum to 1.

    Args:
        logits: ``(..., vocab)``.
        temperature: Must be ``> 0``; below 1 sharpens, above 1 flattens.
        top_k: Keep this many tokens, or ``None`` (or 0) for all.
        top_p: Cumulative-probability threshold in ``(0, 1]``, or ``None`` for no cut.
        min_p: Probability threshold relative to the top token, or ``None`` (or 0).

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
    if min_p:
        top = probs.max(dim=-1, keepdim=True).values  # (..., 1)
        probs = probs.masked_fill(probs < min_p * top, 0.0)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


def sample_next_token(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Choose the next token of every row.

    ``temperature == 0`` (or below :data:`GREEDY_BELOW`, as vLLM) is greedy
    decoding: the first token with the highest logit (what ``transformers``'
    ``generate(do_sample=False)`` picks), whatever ``top_k``, ``top_p`` and ``min_p``
    say. Otherwise one token per row is drawn from :func:`token_probabilities`;
    ``top_k=1`` therefore equals greedy (up to ties).

    Args:
        logits: ``(b, vocab)`` logits of the last position.
        temperature: ``0`` for greedy, else the softmax temperature.
        top_k: Sample only among the ``top_k`` most likely tokens.
        top_p: Sample only from the nucleus of cumulative probability ``top_p``.
        min_p: Sample only tokens with ``min_p`` times the top token's probability.
        generator: Random source, for reproducible sampling; ``None`` uses torch's
            global one.

    Returns:
        ``(b,)`` token ids (int64).

    Raises:
        ConfigError: invalid ``temperature``, ``top_k``, ``top_p`` or ``min_p``.
    """
    check_sampling(temperature, top_k, top_p, min_p=min_p)
    if temperature < GREEDY_BELOW:
        return logits.argmax(dim=-1)
    probs = token_probabilities(
        logits, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p
    )  # (b, vocab)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (b,)
