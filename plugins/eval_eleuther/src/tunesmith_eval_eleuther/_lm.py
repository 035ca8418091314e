"""``TunesmithLM``: a native tunesmith model and its tokenizer as an lm_eval language model.

lm_eval asks three questions of a model; each is answered with the native model:

- ``loglikelihood``: the summed log-probability of a continuation after a context,
  and whether greedy decoding would have produced it (right-padded batches, one
  forward pass each, exact per-token log-probs in fp32);
- ``loglikelihood_rolling``: a whole text's log-probability, scored in windows of
  ``max_seq_len`` tokens so that every token is predicted exactly once;
- ``generate_until``: text from :func:`tunesmith.generation.generate_tokens`, stopped
  by the tokenizer's stop tokens, ``max_gen_toks`` or the request's ``until`` strings
  (the text is cut before the first one).

This module imports lm_eval and torch; the plugin imports it only when an evaluation
runs.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from lm_eval.api.model import TemplateLM
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from torch import nn
from tqdm import tqdm

from tunesmith.errors import ConfigError, DataError

__all__ = ["TunesmithLM"]

log = logging.getLogger(__name__)

# What lm_eval hands _loglikelihood_tokens: ((context, continuation) or None, ids, ids).
_Request = tuple[Any, Sequence[int], Sequence[int]]


@dataclass(frozen=True)
class _Generation:
    """One request's generation settings (lm_eval's ``generation_kwargs``)."""

    until: tuple[str, ...]
    max_gen_toks: int
    temperature: float
    top_k: int | None
    top_p: float | None
    min_p: float | None = None
    repetition_penalty: float | None = None


class _AllStopped(Exception):
    """Raised from ``on_token`` once every row hit a stop string: ends decoding early."""


def cut_at_stop(text: str, until: Sequence[str]) -> str:
    """``text`` up to (not including) the earliest occurrence of any ``until`` string."""
    end = len(text)
    for stop in until:
        if stop:
            found = text.find(stop)
            if found != -1:
                end = min(end, found)
    return text[:end]


def _with_template_args(
    tokenizer: Any, args: Mapping[str, Any] | None, enable_thinking: bool | None
) -> Any:
    """A copy of ``tokenizer`` that renders its chat template with ``args`` (and
    ``enable_thinking``) too; ``tokenizer`` itself when there are none."""
    from tunesmith.tokenizers import check_chat_template_kwargs

    extra = check_chat_template_kwargs(args, key="chat_template_args")
    if enable_thinking is not None:
        extra["enable_thinking"] = enable_thinking
    if not extra:
        return tokenizer
    if getattr(tokenizer, "chat_template", None) is None or not hasattr(
        tokenizer, "chat_template_kwargs"
    ):
        raise ConfigError(
            f"chat_template_args / enable_thinking: {type(tokenizer).__name__} does not "
            "render a chat template: remove them, or evaluate with a tokenizer that "
            "renders the checkpoint's (tokenizer._component_=hf_tokenizer)"
        )
    copied = copy.copy(tokenizer)
    copied.chat_template_kwargs = {**tokenizer.chat_template_kwargs, **extra}
    return copied


class TunesmithLM(TemplateLM):
    """An lm_eval model backed by a native tunesmith model.

    Args:
        model: A :class:`tunesmith.modules.TransformerDecoder` (or anything with its
            ``forward(tokens) -> logits`` and, for fast generation, ``setup_caches``),
            e.g. from :func:`tunesmith.load_pretrained`.
        tokenizer: Its :class:`tunesmith.data.ModelTokenizer`.
        batch_size: Requests per forward pass.
        max_seq_len: The longest sequence scored or generated: contexts are
            left-truncated to it and ``loglikelihood_rolling`` uses windows of it.
            Default: ``model.max_seq_len``.
        max_gen_toks: Generated tokens per request when the task does not say.
        enable_kv_cache: Generate with the model's KV cache.
        name: Names the tokenizer in lm_eval's results (``tokenizer_name``).
        chat_template_args: More variables for the tokenizer's chat template, as
            lm_eval's HF model passes them to ``apply_chat_template``.
        enable_thinking: Sets the chat template's ``enable_thinking`` (Qwen 3); true
            needs ``think_end_token`` and generative tasks only, as in lm_eval.
        think_end_token: The text or token id that ends a reasoning trace: a generated
            answer is what follows its last occurrence.

    Raises:
        ConfigError: ``batch_size`` or ``max_seq_len`` out of range; chat template
            settings for a tokenizer without a chat template, or ``enable_thinking``
            without ``think_end_token``.

    Example:
        >>> model, tokenizer = tunesmith.load_pretrained("out/epoch_0")
        >>> lm = TunesmithLM(model, tokenizer, batch_size=8)
        >>> lm_eval.simple_evaluate(model=lm, tasks=["hellaswag"])
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        *,
        batch_size: int = 8,
        max_seq_len: int | None = None,
        max_gen_toks: int = 256,
        enable_kv_cache: bool = True,
        name: str | None = None,
        chat_template_args: Mapping[str, Any] | None = None,
        enable_thinking: bool | None = None,
        think_end_token: str | int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, not {batch_size!r}")
        model_len = getattr(model, "max_seq_len", None)
        if max_seq_len is None:
            max_seq_len = model_len
        if max_seq_len is None:
            raise ConfigError(
                f"{type(model).__name__} has no max_seq_len attribute: pass max_seq_len"
            )
        if isinstance(max_seq_len, bool) or not isinstance(max_seq_len, int) or max_seq_len < 2:
            raise ConfigError(f"max_seq_len must be an integer of at least 2, not {max_seq_len!r}")
        if model_len is not None and max_seq_len > model_len:
            raise ConfigError(
                f"max_seq_len={max_seq_len} exceeds the model's max_seq_len of {model_len}: "
                f"set max_seq_len to at most {model_len}"
            )
        self.model = model
        self.tokenizer = _with_template_args(tokenizer, chat_template_args, enable_thinking)
        if enable_thinking and think_end_token is None:
            raise ConfigError(
                "enable_thinking=true needs think_end_token, the text or id that ends the "
                "model's reasoning (e.g. think_end_token='</think>'): the answer is scored "
                "without its reasoning"
            )
        self.enable_thinking = enable_thinking
        digits = isinstance(think_end_token, str) and think_end_token.isdigit()
        self.think_end_token = int(think_end_token) if digits else think_end_token
        self.batch_size = batch_size
        self.max_length = max_seq_len
        self.max_gen_toks = max_gen_toks
        self.enable_kv_cache = enable_kv_cache and hasattr(model, "setup_caches")
        self._name = name or type(tokenizer).__name__
        # [bos] where the model uses one, [] where it does not (the tokenizer knows).
        self._bos = list(tokenizer.encode("", add_bos=True, add_eos=False))
        self._pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0
        # Special tokens met in chat-formatted prompts: their text -> id (see tok_encode).
        self._specials: dict[str, int] = {}
        self._special_pattern: re.Pattern[str] | None = None
        self._ignored_gen_kwargs: set[str] = set()
        param = next(model.parameters(), None)
        self._device = param.device if param is not None else torch.device("cpu")

    # ---- tokens ----------------------------------------------------------------

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_id

    @property
    def prefix_token_id(self) -> int:
        """What an empty context (and a rolling window's first token) conditions on:
        ``bos`` wherever the tokenizer has one (even if it never adds it), else ``eos``,
        as lm_eval's HF model chooses."""
        bos = getattr(self.tokenizer, "bos_id", None)
        return bos if bos is not None else self.tokenizer.eos_id

    def tok_encode(
        self,
        string: str,
        add_special_tokens: bool | None = None,
        left_truncate_len: int | None = None,
        **kwargs: Any,
    ) -> list[int]:
        """Token ids of ``string``, with ``bos`` first where the model uses one.

        ``add_special_tokens=False`` leaves ``bos`` out; a string that already starts
        with it (a chat-formatted prompt) does not get a second one.
        """
        ids = self._encode_text(string)
        if add_special_tokens is not False and self._bos and ids[: len(self._bos)] != self._bos:
            ids = [*self._bos, *ids]
        if left_truncate_len:
            ids = ids[-left_truncate_len:]
        return ids

    def tok_decode(self, tokens: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(list(tokens), skip_special_tokens=skip_special_tokens)

    def _encode_text(self, string: str) -> list[int]:
        encode = self.tokenizer.encode
        if self._special_pattern is None:
            return list(encode(string, add_bos=False, add_eos=False))
        # A chat-formatted prompt comes back from lm_eval as text: map its special
        # tokens' text back to their ids (tokenizers differ on whether encode does).
        ids: list[int] = []
        for piece in self._special_pattern.split(string):
            if piece in self._specials:
                ids.append(self._specials[piece])
            elif piece:
                ids.extend(encode(piece, add_bos=False, add_eos=False))
        return ids

    # ---- chat format -------------------------------------------------------------

    @property
    def tokenizer_name(self) -> str:
        return self._name

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        if not chat_template:
            return None
        template = getattr(self.tokenizer, "chat_template", None)
        source = getattr(template, "source", template)
        if isinstance(source, str):
            return source
        return f"{type(self.tokenizer).__name__} chat format"

    def apply_chat_template(
        self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True
    ) -> str:
        """The conversation in the model family's chat format, as text.

        It ends with the header that asks for an assistant turn, or, when the last
        message is the assistant's (lm_eval's ``gen_prefix``), continues that turn.
        """
        from tunesmith.generation import to_messages, tokenize_prompt

        ids = tokenize_prompt(self.tokenizer, to_messages(chat_history))
        self._learn_specials(ids)
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def _learn_specials(self, ids: Sequence[int]) -> None:
        known = set(self._specials.values())
        for token in set(ids) - known:
            # A special token is one that decoding drops unless asked to keep it.
            if self.tokenizer.decode([token], skip_special_tokens=True) == "":
                text = self.tokenizer.decode([token], skip_special_tokens=False)
                if text:
                    self._specials[text] = token
        if self._specials:
            alternatives = sorted(self._specials, key=len, reverse=True)
            self._special_pattern = re.compile("(" + "|".join(map(re.escape, alternatives)) + ")")

    # ---- scoring -----------------------------------------------------------------

    @contextmanager
    def _scoring(self) -> Iterator[None]:
        """Eval mode and no autograd; the model's mode is restored afterwards."""
        model = self.model
        was_training = model.training
        if getattr(model, "caches_are_enabled", lambda: False)():
            model.remove_caches()  # a filled cache would turn each forward into a decode step
        model.eval()
        try:
            with torch.inference_mode():
                yield
        finally:
            model.train(was_training)

    def _score_batch(self, batch: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """``(input ids, continuation ids)`` rows -> (summed log-prob, is greedy) each.

        Rows are right-padded: under the causal mask padding after a row's last real
        token changes nothing before it, and positions count from 0 as usual.
        """
        width = max(len(inp) for inp, _ in batch)
        tokens = torch.full((len(batch), width), self._pad_id, dtype=torch.long)  # (b, s)
        for row, (inp, _) in enumerate(batch):
            tokens[row, : len(inp)] = torch.tensor(inp, dtype=torch.long)
        logits = self.model(tokens.to(self._device))  # (b, s, vocab)
        scores = []
        for row, (inp, continuation) in enumerate(batch):
            end, n = len(inp), len(continuation)
            # Position i predicts token i + 1: the continuation is predicted by the
            # last n input positions.
            # In the model's dtype, as lm_eval's HF model scores (a bf16 model in bf16).
            logprobs = torch.log_softmax(logits[row, end - n : end], dim=-1)  # (n, vocab)
            target = torch.tensor(continuation, dtype=torch.long, device=logprobs.device)
            total = logprobs.gather(-1, target[:, None]).sum()
            greedy = torch.equal(logprobs.argmax(dim=-1), target)
            scores.append((float(total), bool(greedy)))
        return scores

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[Any]:
        if self.enable_thinking:
            tasks = sorted({r.task_name for r in requests if getattr(r, "task_name", None)})
            raise ConfigError(
                "enable_thinking=true is for generative tasks only, and "
                f"{', '.join(tasks) or 'a task'} scores answer choices by log-likelihood: "
                "set enable_thinking=false or evaluate generative tasks"
            )
        return super().loglikelihood(requests, disable_tqdm=disable_tqdm)

    def _loglikelihood_tokens(
        self, requests: list[_Request], disable_tqdm: bool = False, **kwargs: Any
    ) -> list[tuple[float, bool]]:
        rows: list[tuple[int, list[int], list[int]]] = []
        results: list[tuple[float, bool]] = [(0.0, True)] * len(requests)
        for i, (_, context, continuation) in enumerate(requests):
            continuation = list(continuation)
            if not continuation:
                continue  # nothing to predict: log-prob 0, trivially greedy
            if len(continuation) > self.max_length:
                raise DataError(
                    f"a continuation of {len(continuation)} tokens does not fit in "
                    f"max_seq_len={self.max_length}: raise max_seq_len or shorten the task's "
                    "answer choices"
                )
            # Keep the end of a context too long for the model, as lm_eval's HF model does.
            whole = [*context, *continuation][-(self.max_length + 1) :]
            rows.append((i, whole[:-1], continuation))
        # Longest first: similar lengths share a batch, and an out-of-memory shows early.
        rows.sort(key=lambda row: -len(row[1]))
        batches = [rows[s : s + self.batch_size] for s in range(0, len(rows), self.batch_size)]
        with self._scoring():
            for batch in tqdm(batches, desc="Scoring", disable=disable_tqdm):
                scores = self._score_batch([(inp, cont) for _, inp, cont in batch])
                for (i, _, _), score in zip(batch, scores, strict=True):
                    results[i] = score
        for (key, _, _), score in zip(requests, results, strict=True):
            if key is not None:
                self.cache_hook.add_partial("loglikelihood", key, score)
        return results

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        """Each text's log-probability after ``prefix_token_id``, in windows of
        ``max_seq_len`` tokens (every token is predicted once, with as much context as
        fits). The text is encoded as :meth:`tok_encode` encodes it, ``bos`` included
        where the model uses one, so it is scored after two: lm_eval 0.4.13's HF model
        scores it so, and perplexities are compared with its."""
        windows: list[_Request] = []
        owners: list[int] = []
        for i, (text,) in enumerate(req.args for req in requests):
            tokens = self.tok_encode(text)
            for context, continuation in map(
                make_disjoint_window,
                get_rolling_token_windows(
                    token_list=tokens,
                    prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length,
                    context_len=1,
                ),
            ):
                windows.append((None, context, continuation))
                owners.append(i)
        totals = [0.0] * len(requests)
        for i, (logprob, _) in zip(
            owners, self._loglikelihood_tokens(windows, disable_tqdm=disable_tqdm), strict=True
        ):
            totals[i] += logprob
        for req, total in zip(requests, totals, strict=True):
            self.cache_hook.add_partial("loglikelihood_rolling", (req.args[0],), total)
        return totals

    # ---- generation ----------------------------------------------------------------

    def _generation(self, gen_kwargs: dict[str, Any] | None) -> _Generation:
        kwargs = dict(gen_kwargs or {})
        until = kwargs.pop("until", None) or []
        if isinstance(until, str):
            until = [until]
        if not isinstance(until, (list, tuple)) or not all(isinstance(u, str) for u in until):
            raise DataError(
                f"generation 'until' must be a string or a list of strings, not {until!r}"
            )
        max_gen_toks = int(kwargs.pop("max_gen_toks", self.max_gen_toks))
        # As transformers' generate: sample only when asked to (do_sample: true).
        do_sample = bool(kwargs.pop("do_sample", False))
        temperature = kwargs.pop("temperature", None)
        top_k, top_p = kwargs.pop("top_k", None), kwargs.pop("top_p", None)
        min_p = kwargs.pop("min_p", None)
        # transformers' generate applies it whether it samples or not.
        penalty = kwargs.pop("repetition_penalty", None)
        penalty = None if penalty is None else float(penalty)
        new = set(kwargs) - self._ignored_gen_kwargs
        if new:
            self._ignored_gen_kwargs |= new
            log.warning(
                "ignoring generation settings tunesmith does not implement: %s", sorted(new)
            )
        if not do_sample:
            return _Generation(tuple(until), max_gen_toks, 0.0, None, None, None, penalty)
        return _Generation(
            tuple(until),
            max_gen_toks,
            1.0 if temperature is None else float(temperature),
            None if top_k is None else int(top_k),
            None if top_p is None else float(top_p),
            None if min_p is None else float(min_p),
            penalty,
        )

    def _prompt(self, context: str, max_gen_toks: int) -> list[int]:
        room = self.max_length - max_gen_toks
        if room < 1:
            raise DataError(
                f"max_gen_toks={max_gen_toks} leaves no room for a prompt in "
                f"max_seq_len={self.max_length}: raise max_seq_len or lower the task's max_gen_toks"
            )
        ids = self.tok_encode(context) or [self.prefix_token_id]
        return ids[-room:]  # keep the end of a long prompt, next to what is generated

    def _generate(self, prompts: list[list[int]], settings: _Generation) -> list[str]:
        from tunesmith.generation import generate_tokens

        stop_tokens = list(self.tokenizer.stop_tokens)
        stop_set = set(stop_tokens)
        produced: list[list[int]] = [[] for _ in prompts]
        finished = [False] * len(prompts)

        def on_token(row: int, token: int) -> None:
            if finished[row]:
                return
            if token in stop_set:
                finished[row] = True
            else:
                produced[row].append(token)
                text = self.tok_decode(produced[row])
                finished[row] = any(stop and stop in text for stop in settings.until)
            if all(finished):
                raise _AllStopped

        try:
            generate_tokens(
                self.model,
                prompts,
                max_new_tokens=settings.max_gen_toks,
                stop_tokens=stop_tokens,
                pad_id=self._pad_id,
                temperature=settings.temperature,
                top_k=settings.top_k,
                top_p=settings.top_p,
                min_p=settings.min_p,
                repetition_penalty=settings.repetition_penalty,
                enable_kv_cache=self.enable_kv_cache,
                on_token=on_token,
            )
        except _AllStopped:
            pass  # every row has its answer: no need to decode up to max_gen_toks
        return [cut_at_stop(self._answer(ids), settings.until) for ids in produced]

    def _answer(self, ids: list[int]) -> str:
        """The generated text, after the reasoning where ``think_end_token`` ends one
        (lm_eval's HF model cuts it the same way, before the stop strings)."""
        end = self.think_end_token
        if isinstance(end, int):
            ends = [i for i, token in enumerate(ids) if token == end]
            return self.tok_decode(ids[ends[-1] + 1 :] if ends else ids).lstrip()
        text = self.tok_decode(ids)
        return text.split(end)[-1].lstrip() if end else text

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        """Continue each context until a stop string, a stop token or ``max_gen_toks``."""
        results: list[str] = [""] * len(requests)
        groups: dict[_Generation, list[tuple[int, list[int]]]] = {}
        for i, req in enumerate(requests):
            context, gen_kwargs = req.args
            settings = self._generation(gen_kwargs)
            groups.setdefault(settings, []).append(
                (i, self._prompt(context, settings.max_gen_toks))
            )
        progress = tqdm(total=len(requests), desc="Generating", disable=disable_tqdm)
        for settings, items in groups.items():
            items.sort(key=lambda item: -len(item[1]))
            for start in range(0, len(items), self.batch_size):
                batch = items[start : start + self.batch_size]
                texts = self._generate([prompt for _, prompt in batch], settings)
                for (i, _), text in zip(batch, texts, strict=True):
                    results[i] = text
                    self.cache_hook.add_partial("generate_until", requests[i].args, text)
                progress.update(len(batch))
        progress.close()
        return results
