"""The ``generate`` recipe: load a checkpoint (optionally plus a PEFT adapter) and
answer a prompt, or hold a conversation, streaming the text as it comes.

::

    tunesmith run generate --config generation checkpointer.checkpoint_dir=out/epoch_0 \\
        prompt.user="Tell me a joke."
    tunesmith run generate --config generation checkpointer.checkpoint_dir=base \\
        adapter=out/epoch_0 --chat

The answer goes to stdout; the speed line ("N tokens in X s (Y tokens/s)") and
the interactive prompt marker go to stderr, so ``> answer.txt`` keeps just the text.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from omegaconf import DictConfig, OmegaConf

from tunesmith.data import Message
from tunesmith.errors import ConfigError, TunesmithError
from tunesmith.recipes import GENERATE_KEYS, GENERATE_SCHEMA, load_for_inference

__all__ = ["GENERATE_KEYS", "GENERATE_SCHEMA", "run"]

_EXIT_WORDS = {"exit", "quit", "/exit", "/quit"}
#: The keys that, left null, take the checkpoint's generation_config.json.
_SAMPLING_KEYS = ("temperature", "top_k", "top_p", "min_p", "repetition_penalty")


@dataclass(frozen=True)
class _Settings:
    max_new_tokens: int
    temperature: float
    top_k: int | None
    top_p: float | None
    min_p: float | None
    repetition_penalty: float | None
    seed: int | None
    enable_kv_cache: bool


def _settings(cfg: DictConfig) -> _Settings:
    """The run's settings; sampling keys left null take the checkpoint's
    generation_config.json, as transformers' ``generate()`` and vLLM read it."""
    from tunesmith.generation import check_sampling, checkpoint_sampling

    given = {key: cfg[key] for key in _SAMPLING_KEYS}
    check_sampling(**given)
    sampling = checkpoint_sampling(Path(str(cfg.checkpointer.checkpoint_dir)).expanduser())
    chosen = {key: sampling[key] if value is None else value for key, value in given.items()}
    settings = _Settings(
        max_new_tokens=cfg.max_new_tokens,
        temperature=float(chosen["temperature"]),
        top_k=chosen["top_k"] or None,
        top_p=chosen["top_p"],
        min_p=chosen["min_p"] or None,
        repetition_penalty=chosen["repetition_penalty"]
        if chosen["repetition_penalty"] != 1
        else None,
        seed=cfg.seed,
        enable_kv_cache=cfg.enable_kv_cache,
    )
    print(_describe(settings, given, sampling["source"]), file=sys.stderr, flush=True)
    return settings


def _describe(settings: _Settings, given: dict[str, Any], source: Path | None) -> str:
    """The line saying how answers are decoded, and where the null keys' values came from."""
    penalty = settings.repetition_penalty
    if settings.temperature == 0:
        what = "greedy decoding" + (f", repetition_penalty {penalty:g}" if penalty else "")
    else:
        parts = [f"temperature {settings.temperature:g}"]
        for key in _SAMPLING_KEYS[1:]:
            value = getattr(settings, key)
            parts += [f"{key} {value:g}"] if value else []
        what = "sampling: " + ", ".join(parts)
    unset = [key for key, value in given.items() if value is None]
    if not unset:
        return what
    keys = "" if len(unset) == len(given) else f"{', '.join(unset)} "
    if source is None:
        return f"{what} ({keys}as transformers' generate without a generation_config.json)"
    return f"{what} ({keys}from the checkpoint's generation_config.json, as transformers' generate)"


def _answer(
    model: Any, tokenizer: Any, ids: list[int], settings: _Settings, out: TextIO
) -> list[int]:
    """Generate a reply to ``ids``, streaming it to ``out``; print the speed to stderr."""
    from tunesmith.generation import TextStreamer, generate_tokens

    def write(piece: str) -> None:
        out.write(piece)
        out.flush()

    stop_tokens = list(tokenizer.stop_tokens)
    streamer = TextStreamer(tokenizer, write, stop_tokens=stop_tokens)
    start = time.perf_counter()
    [reply] = generate_tokens(
        model,
        [ids],
        max_new_tokens=settings.max_new_tokens,
        stop_tokens=stop_tokens,
        pad_id=tokenizer.pad_id if tokenizer.pad_id is not None else 0,
        temperature=settings.temperature,
        top_k=settings.top_k,
        top_p=settings.top_p,
        min_p=settings.min_p,
        repetition_penalty=settings.repetition_penalty,
        seed=settings.seed,
        enable_kv_cache=settings.enable_kv_cache,
        on_token=lambda row, token: streamer.put(token),
    )
    elapsed = time.perf_counter() - start
    streamer.end()
    write("\n")
    rate = len(reply) / elapsed if elapsed > 0 else float("inf")
    print(
        f"{len(reply)} tokens in {elapsed:.2f} s ({rate:.1f} tokens/s)", file=sys.stderr, flush=True
    )
    return reply[:-1] if reply and reply[-1] in stop_tokens else reply


def _fit(model: Any, tokenizer: Any, history: list[Message], settings: _Settings) -> list[int]:
    """The prompt ids of ``history``, dropping the oldest exchanges until it fits."""
    from tunesmith.generation import check_prompts, tokenize_prompt

    max_seq_len = getattr(model, "max_seq_len", None)
    while True:
        ids = tokenize_prompt(tokenizer, history)
        first = 1 if history[0].role == "system" else 0
        turns = sum(m.role == "user" for m in history)
        if max_seq_len is None or len(ids) + settings.max_new_tokens <= max_seq_len or turns <= 1:
            check_prompts([ids], settings.max_new_tokens, max_seq_len)
            return ids
        # Forget the oldest user turn and the answers to it.
        end = first + 1
        while end < len(history) and history[end].role != "user":
            end += 1
        del history[first:end]


def _history_file() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "tunesmith" / "chat_history"


def _line_reader() -> Callable[[], str]:
    """Read one turn (with a newline; ``""`` at end of input). On a terminal: readline's
    line editing and history, kept across sessions in ``~/.cache/tunesmith/chat_history``;
    from a pipe or file: plain lines, the prompt marker on stderr."""
    if not sys.stdin.isatty():

        def read_plain() -> str:
            print("> ", end="", file=sys.stderr, flush=True)
            return sys.stdin.readline()

        return read_plain
    try:
        import readline
    except ImportError:  # Windows without pyreadline: input() still edits the line
        readline = None
    history = _history_file()
    if readline is not None:
        try:
            readline.read_history_file(history)
        except OSError:
            pass
        readline.set_history_length(1000)

    def read_line() -> str:
        try:
            text = input("> ")
        except EOFError:
            return ""
        if readline is not None:
            try:
                history.parent.mkdir(parents=True, exist_ok=True)
                readline.write_history_file(history)
            except OSError:
                pass
        return text + "\n"

    return read_line


def _chat(model: Any, tokenizer: Any, system: str | None, settings: _Settings) -> None:
    history: list[Message] = [Message(role="system", content=system)] if system else []
    print("Chatting; type 'exit' or press Ctrl-D to stop.", file=sys.stderr, flush=True)
    read = _line_reader()
    while True:
        try:
            line = read()
        except KeyboardInterrupt:
            print(file=sys.stderr)
            return
        if not line:  # EOF
            print(file=sys.stderr)
            return
        text = line.strip()
        if not text:
            continue
        if text.lower() in _EXIT_WORDS:
            return
        history.append(Message(role="user", content=text))
        try:
            ids = _fit(model, tokenizer, history, settings)
        except TunesmithError as exc:
            history.pop()
            print(f"error: {exc}", file=sys.stderr, flush=True)
            continue
        try:
            reply = _answer(model, tokenizer, ids, settings, sys.stdout)
        except KeyboardInterrupt:
            print(file=sys.stderr)
            return
        history.append(
            Message(role="assistant", content=tokenizer.decode(reply, skip_special_tokens=True))
        )


def run(cfg: DictConfig) -> None:
    """Answer ``prompt.user`` (or chat when ``prompt.interactive``) with the checkpoint's model.

    Config keys: ``checkpointer.checkpoint_dir``; ``adapter`` (a PEFT adapter directory
    such as ``output_dir/epoch_0``, applied on top); ``prompt.system``, ``prompt.user``,
    ``prompt.interactive``; ``max_new_tokens``, ``temperature`` (0 = greedy),
    ``top_k``, ``top_p``, ``min_p``, ``repetition_penalty`` (null: the checkpoint's
    ``generation_config.json``), ``seed``, ``enable_kv_cache``, ``compile``; ``device``,
    ``dtype``.

    Raises:
        ConfigError: no checkpoint directory, no prompt, or invalid sampling settings.
        DataError: a prompt too long for the model.
    """
    from tunesmith.generation import tokenize_prompt

    cfg = GENERATE_SCHEMA.with_defaults(cfg)  # (tunesmith run has filled them in already)
    prompt = cfg.prompt or OmegaConf.create({})
    if not isinstance(prompt, DictConfig):
        raise ConfigError(
            f"'prompt' must be a mapping, not {prompt!r}: use prompt.user=\"...\" (and prompt.system=...)"
        )
    system = prompt.get("system")
    interactive = bool(prompt.get("interactive") or cfg.chat)
    user = prompt.get("user")
    if not interactive and (user is None or not str(user).strip()):
        raise ConfigError(
            'the prompt is empty: set prompt.user="Tell me a joke.", or chat with --chat '
            "(prompt.interactive=true)"
        )
    settings = _settings(cfg)
    if cfg.compile and not settings.enable_kv_cache:
        raise ConfigError(
            "compile speeds up the KV-cached one-token steps: set enable_kv_cache=true, or "
            "remove compile"
        )
    model, tokenizer, _ = load_for_inference(cfg)
    if cfg.compile:
        from tunesmith.generation import compile_for_generation

        compile_for_generation(model)
        print("compile: the first answer includes compiling the decoding step", file=sys.stderr)
    if interactive:
        _chat(model, tokenizer, system, settings)
        return
    ids = tokenize_prompt(tokenizer, str(user), system=system)
    _answer(model, tokenizer, ids, settings, sys.stdout)
