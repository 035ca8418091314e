"""Reference numbers from transformers, and the tiny lm_eval tasks the tests run.

Everything here is computed without the plugin: log-probs come from
``transformers.LlamaForCausalLM`` and ``AutoTokenizer`` on the same checkpoint, so a
match is evaluation parity with Hugging Face, not the plugin agreeing with itself.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

#: Multiple-choice questions: (question, choices). The answer index is chosen from the
#: reference log-probs (see :func:`write_tasks`), so the expected accuracy is known.
MC_DOCS = [
    ("What is the capital of France?", ["Paris", "London", "a small garden"]),
    ("How many legs does a spider have?", ["eight", "two", "one hundred"]),
    ("What do bakers sell in the morning?", ["fresh bread", "ships", "tomatoes and basil"]),
    ("Which animal jumps over the lazy dog?", ["the quick brown fox", "the cat", "a train"]),
    ("When did two astronauts walk on the Moon?", ["1969", "at 7:45", "on Tuesday"]),
    ("What does the keeper write in every evening?", ["his logbook", "the sea", "JSON"]),
]
MC_TEMPLATE = "Question: {q}\nAnswer:"

GEN_PROMPTS = [
    "Question: What is the capital of France?\nAnswer:",
    "The lighthouse keeper wrote",
    "Translate to French: Good morning",
    "def add(a, b):",
    "Rivers carry sediment from",
]
GEN_MAX_TOKENS = 8

PPL_TEXTS = [
    "The quick brown fox jumps over the lazy dog while the cat watches.",
    "Learning rates that are too high make the loss diverge; rates that are too low make "
    "training slow, and a small model learns to predict the next word one token at a time.",
    "Hello world!",
]
#: Window length for the perplexity task: shorter than the longer texts, so they span
#: several windows.
PPL_WINDOW = 16


class HF:
    """transformers' model and tokenizer for a checkpoint directory, in fp32."""

    def __init__(self, directory: Path) -> None:
        from transformers import AutoTokenizer, LlamaForCausalLM

        self.model = LlamaForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(directory)

    def encode(self, text: str, *, bos: bool = True) -> list[int]:
        return self.tokenizer(text, add_special_tokens=bos).input_ids

    @torch.no_grad()
    def logprobs(self, tokens: list[int]) -> torch.Tensor:
        """``out[i]`` = log p(tokens[i + 1] | tokens[: i + 1]), shape ``(len - 1,)``."""
        logits = self.model(torch.tensor([tokens])).logits[0].float()  # (s, vocab)
        logprobs = torch.log_softmax(logits[:-1], dim=-1)
        return logprobs.gather(-1, torch.tensor(tokens[1:])[:, None])[:, 0]

    @torch.no_grad()
    def continuation(
        self, context: str, continuation: str, *, max_len: int | None = None
    ) -> tuple[float, bool]:
        """(log p(continuation | context), greedy?) as lm_eval's HF model defines them:
        encode context and context + continuation (bos first); the continuation is
        the tokens after the context's; keep the last ``max_len + 1`` tokens."""
        whole = self.encode(context + continuation)
        n = len(whole) - len(self.encode(context))
        if max_len is not None:
            whole = whole[-(max_len + 1) :]
        logits = self.model(torch.tensor([whole[:-1]])).logits[0, -n:].float()  # (n, vocab)
        target = torch.tensor(whole[-n:])
        logprobs = torch.log_softmax(logits, dim=-1)
        total = float(logprobs.gather(-1, target[:, None]).sum())
        return total, bool(torch.equal(logprobs.argmax(-1), target))

    def rolling(self, text: str, window: int) -> float:
        """The text as lm_eval 0.4.13's HF model encodes it (bos first), scored after
        one more bos (its prefix token): log p(bos, t0, t1, ... | bos), each token
        predicted once in windows of ``window`` inputs: a window predicts up to
        ``window`` new tokens from the ``window`` tokens that end just before its last one."""
        seq = [self.tokenizer.bos_token_id, *self.encode(text)]  # [bos, bos, t0, t1, ...]
        n_tokens = len(seq) - 1
        total, done = 0.0, 0
        while done < n_tokens:
            n = min(window, n_tokens - done)
            end = done + n  # predict seq[done + 1 : end + 1]
            inputs = seq[max(0, end - window) : end + 1]
            total += float(self.logprobs(inputs)[-n:].sum())
            done = end
        return total


@dataclass
class Reference:
    """What the tasks in ``tasks_dir`` should score, computed with transformers."""

    tasks_dir: Path
    mc_lls: list[list[float]] = field(default_factory=list)
    mc_greedy: list[list[bool]] = field(default_factory=list)
    mc_answers: list[int] = field(default_factory=list)
    gen_full: list[str] = field(default_factory=list)  # greedy, GEN_MAX_TOKENS tokens
    gen_until: str = ""
    gen_expected: list[str] = field(default_factory=list)
    ppl_lls: list[float] = field(default_factory=list)

    @property
    def acc(self) -> float:
        hits = [max(range(len(lls)), key=lls.__getitem__) == a
                for lls, a in zip(self.mc_lls, self.mc_answers, strict=True)]  # fmt: skip
        return sum(hits) / len(hits)

    @property
    def acc_norm(self) -> float:
        hits = []
        for (_, choices), lls, answer in zip(MC_DOCS, self.mc_lls, self.mc_answers, strict=True):
            normed = [ll / len(c) for ll, c in zip(lls, choices, strict=True)]
            hits.append(max(range(len(normed)), key=normed.__getitem__) == answer)
        return sum(hits) / len(hits)

    @property
    def byte_perplexity(self) -> float:
        n_bytes = sum(len(t.encode("utf-8")) for t in PPL_TEXTS)
        return math.exp(-sum(self.ppl_lls) / n_bytes)


def _stop_string(outputs: list[str]) -> str:
    """A short string that first appears inside some output (not at its start, so the
    cut keeps a prefix) and is absent from another, so one task tests both the
    ``until`` cut and the ``max_gen_toks`` limit."""
    for size in (2, 1, 3):
        for text in outputs:
            for start in range(1, len(text) - size + 1):
                candidate = text[start : start + size]
                if (
                    candidate.strip()
                    and text.find(candidate) == start
                    and any(candidate not in t for t in outputs)
                ):
                    return candidate
    raise AssertionError(f"no stop string splits these outputs: {outputs!r}")


def _write_task(directory: Path, name: str, rows: list[dict], cache: Path, **config) -> None:
    data = directory / f"{name}.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    task = {
        "task": name,
        "dataset_path": "json",
        # cache_dir keeps the datasets cache in the test's temp dir.
        "dataset_kwargs": {"data_files": {"test": str(data)}, "cache_dir": str(cache)},
        "test_split": "test",
        **config,
    }
    (directory / f"{name}.yaml").write_text(yaml.safe_dump(task, sort_keys=False))


def write_tasks(directory: Path, hf: HF, greedy_texts: list[str]) -> Reference:
    """Write ``tiny_mc`` (multiple choice), ``tiny_gen`` (generate_until) and ``tiny_ppl``
    (loglikelihood_rolling) into ``directory`` and return their expected scores.

    Args:
        greedy_texts: Greedy tunesmith.generate output (GEN_MAX_TOKENS tokens, plain
            text prompts) for each of GEN_PROMPTS.
    """
    directory.mkdir(parents=True, exist_ok=True)
    cache = directory.parent / "datasets-cache"
    ref = Reference(tasks_dir=directory)

    rows = []
    for i, (question, choices) in enumerate(MC_DOCS):
        scored = [hf.continuation(MC_TEMPLATE.format(q=question), " " + c) for c in choices]
        lls = [ll for ll, _ in scored]
        ranked = sorted(range(len(choices)), key=lls.__getitem__, reverse=True)
        # Half the answers are the model's favourite, half are not: accuracy 0.5.
        answer = ranked[0] if i % 2 == 0 else ranked[-1]
        ref.mc_lls.append(lls)
        ref.mc_greedy.append([g for _, g in scored])
        ref.mc_answers.append(answer)
        rows.append({"question": question, "choices": choices, "answer": answer})
    _write_task(
        directory,
        "tiny_mc",
        rows,
        cache,
        output_type="multiple_choice",
        doc_to_text="Question: {{question}}\nAnswer:",
        doc_to_choice="{{choices}}",
        doc_to_target="{{answer}}",
        metric_list=[
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
    )

    ref.gen_full = list(greedy_texts)
    ref.gen_until = _stop_string(ref.gen_full)
    ref.gen_expected = [t.split(ref.gen_until)[0] for t in ref.gen_full]
    # Half the targets are what the model says: exact_match is 3/5 or so, known exactly.
    targets = [e if i % 2 == 0 else "no" for i, e in enumerate(ref.gen_expected)]
    _write_task(
        directory,
        "tiny_gen",
        [{"prompt": p, "target": t} for p, t in zip(GEN_PROMPTS, targets, strict=True)],
        cache,
        output_type="generate_until",
        doc_to_text="{{prompt}}",
        doc_to_target="{{target}}",
        target_delimiter="",
        generation_kwargs={
            "until": [ref.gen_until],
            "max_gen_toks": GEN_MAX_TOKENS,
            "do_sample": False,
        },
        metric_list=[{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
    )

    ref.ppl_lls = [hf.rolling(t, PPL_WINDOW) for t in PPL_TEXTS]
    _write_task(
        directory,
        "tiny_ppl",
        [{"text": t} for t in PPL_TEXTS],
        cache,
        output_type="loglikelihood_rolling",
        doc_to_text="",
        doc_to_target="{{text}}",
        metric_list=[{"metric": "byte_perplexity"}, {"metric": "word_perplexity"}],
    )
    return ref
