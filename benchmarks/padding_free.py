"""Padded against padding-free batches, in one process: the same samples through the
same model, one optimizer step each, alternating.

Whole runs of ``compare.py`` swing by 20% between identical rounds on these hosts,
more than the gain measured; here both ways share one process, one model and one set
of batches (``compare.py``'s model and rows: its ``--work-dir``, built on first use),
so the ratio is the batches' own. A step is forward + backward + AdamW, as in
training. tokens/s counts non-padding tokens (medians); "ratio" is the median of the
rounds' speed-ups (each round times both ways back to back); "work" is the ratio of
the two ways' matmul FLOPs, the gain at an equal cost per FLOP (padding costs in the
decoder body only: the loss applies the head to labelled positions either way).

``--cold`` measures what rounding row counts and documents' attention lengths buys
(``gemm_row_multiple``, ``document_length_multiple``: bf16 on the CPU compiles kernels
for every new product shape): each way, rounded and with rows as they are, trains on
batches no earlier step had, the dataset's rows in order, as in a training run (the
default reuses one set of batches, whose kernels are then compiled).

``--compile`` times padding-free steps with the decoder layers eager and compiled
(as ``compile: true`` compiles them; the loss stays eager), alternating in one process once both are warm, and prints the
compiled layers' warm-up: the first steps' time beyond what eager ones take.

Examples::

    python benchmarks/padding_free.py
    python benchmarks/padding_free.py --methods lora --dtypes fp32,bf16 --rounds 5
    python benchmarks/padding_free.py --cold --methods lora,full --dtypes bf16
    python benchmarks/padding_free.py --compile --methods lora --dtypes fp32 --rounds 4
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
_TRUSTED = "TUNESMITH_TRUSTED_MODULES"  # the runs' dataset and logger live in _compare_support
os.environ[_TRUSTED] = ",".join(filter(None, [os.environ.get(_TRUSTED), "_compare_support"]))

import compare  # noqa: E402  (benchmarks/ is not a package)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__[__doc__.index("Examples::") :].replace("Examples::", "examples:"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--methods", default="lora,full", help="lora,full")
    parser.add_argument("--dtypes", default="fp32,bf16", help="fp32,bf16")
    parser.add_argument("--batches", type=int, default=12, help="batches of 4 rows per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--work-dir", type=Path, default=Path.home() / ".cache" / "tunesmith-compare",
                        help="compare.py's model and rows (built on first use)")  # fmt: skip
    parser.add_argument("--cold", action="store_true",
                        help="new batches for every way and round, rounded row counts against "
                        "rows as they are")  # fmt: skip
    parser.add_argument("--compile", action="store_true",
                        help="padding-free steps, decoder layers eager against compiled")  # fmt: skip
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cold and args.compile:
        parser.error("--cold and --compile measure different things: choose one")
    args.methods = compare._choices(parser, "methods", args.methods, compare.METHODS)
    args.dtypes = compare._choices(parser, "dtypes", args.dtypes, compare.DTYPES)
    return args


def _setup_run(method: str, dtype: str, assets: dict, args: argparse.Namespace, tmp: Path):
    """The finetune recipe's run of compare.py's tunesmith config for ``method``/``dtype``."""
    from omegaconf import OmegaConf

    from tunesmith.recipes import FINETUNE_SCHEMA, finetune

    variant = compare.Variant("tunesmith", method, dtype, "eager")
    _, path = compare._config(variant, assets, tmp, argparse.Namespace(steps=args.batches))
    return finetune._setup(FINETUNE_SCHEMA.with_defaults(OmegaConf.load(path)))


def _first_groups(run, args: argparse.Namespace) -> list[list[dict]]:
    """The dataset's first ``args.batches`` batches of rows, in order, uncollated."""
    rows = [run.loader.dataset[i] for i in range(compare.BATCH_SIZE * args.batches)]
    return [rows[i : i + compare.BATCH_SIZE] for i in range(0, len(rows), compare.BATCH_SIZE)]


def measure(method: str, dtype: str, assets: dict, args: argparse.Namespace) -> dict:
    """Median seconds per round of ``args.batches`` steps, padded and padding-free."""
    from tunesmith.recipes import finetune

    with tempfile.TemporaryDirectory(prefix="tunesmith-padding-free-") as tmp:
        run = _setup_run(method, dtype, assets, args, Path(tmp))
        collate = run.loader.collate_fn
        groups = _first_groups(run, args)
        rows = [row for group in groups for row in group]
        batches = {}
        for name, free in (("padded", False), ("padding-free", True)):
            collate.padding_free = free
            batches[name] = [collate(group) for group in groups]

        def steps(name: str) -> float:
            finetune._train_step(run, [batches[name][0]])  # warm: first-call allocations
            start = time.perf_counter()
            for batch in batches[name]:
                finetune._train_step(run, [batch])
            return time.perf_counter() - start

        seconds = {name: [] for name in batches}
        for round_index in range(args.rounds):
            order = list(batches) if round_index % 2 == 0 else list(reversed(batches))
            for name in order:
                seconds[name].append(steps(name))
    lengths = [len(row["tokens"]) for row in rows]
    padded_rows = [b["tokens"].shape[1] for b in batches["padded"] for _ in range(len(b["tokens"]))]
    labelled = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches["padded"])
    tokens, padded_positions = sum(lengths), sum(padded_rows)
    padded_work = _work(method, padded_rows, labelled)
    free_work = _work(method, lengths, labelled)
    result = {name: statistics.median(s) for name, s in seconds.items()}
    return {
        "tokens": tokens,
        "padding_share": 1 - tokens / padded_positions,
        "work": padded_work / free_work,
        "tokens_per_s": {name: tokens / s for name, s in result.items()},
        "rounds": seconds,
    }


def measure_cold(method: str, dtype: str, assets: dict, args: argparse.Namespace) -> dict:
    """Non-padding tokens/s of padding-free steps on batches no step had before, with
    row counts and attention lengths rounded (``gemm_row_multiple``,
    ``document_length_multiple``) and as they are, per round."""
    from tunesmith.modules import _attention
    from tunesmith.recipes import finetune

    with tempfile.TemporaryDirectory(prefix="tunesmith-padding-free-") as tmp:
        run = _setup_run(method, dtype, assets, args, Path(tmp))
        collate, dataset = run.loader.collate_fn, run.loader.dataset
        rounded = collate.row_multiple
        weight = next(run.model.parameters())
        lengths = _attention.document_length_multiple(weight.device, weight.dtype)
        fresh = iter(range(len(dataset)))
        finetune._train_step(run, [collate([dataset[next(fresh)] for _ in range(4)])])  # warm
        rates = {"rounded": [], "rows as they are": []}
        for round_index in range(args.rounds):
            order = list(rates) if round_index % 2 == 0 else list(reversed(rates))
            for name in order:
                multiple = rounded if name == "rounded" else 1
                collate.row_multiple = multiple
                groups = [[dataset[next(fresh)] for _ in range(compare.BATCH_SIZE)]
                          for _ in range(args.batches)]  # fmt: skip
                batches = [collate(group) for group in groups]
                tokens = sum(len(row["tokens"]) for group in groups for row in group)
                with _rounding(on=name == "rounded"):
                    start = time.perf_counter()
                    for batch in batches:
                        finetune._train_step(run, [batch])
                    rates[name].append(tokens / (time.perf_counter() - start))
    return {"multiple": rounded, "length_multiple": lengths, "tokens_per_s": rates}


def measure_compiled(method: str, dtype: str, assets: dict, args: argparse.Namespace) -> dict:
    """Tokens/s of padding-free steps per round, decoder layers eager and compiled (as
    ``compile: true`` compiles them), and the compiled layers' warm-up in seconds."""
    from tunesmith.recipes import finetune

    with tempfile.TemporaryDirectory(prefix="tunesmith-padding-free-") as tmp:
        run = _setup_run(method, dtype, assets, args, Path(tmp))
        groups = _first_groups(run, args)
        batches = [run.loader.collate_fn(group) for group in groups]
        layers = list(run.model.layers)
        for layer in layers:
            layer.compile()
        compiled = [layer._compiled_call_impl for layer in layers]

        def steps(way: str, some: list) -> float:
            for layer, call in zip(layers, compiled, strict=True):  # None: the eager forward
                layer._compiled_call_impl = call if way == "compiled" else None
            start = time.perf_counter()
            for batch in some:
                finetune._train_step(run, [batch])
            return time.perf_counter() - start

        # two shapes compile a static and then a dynamic graph; eager's first steps
        # allocate: the warm-up is the difference
        warm_up = steps("compiled", batches[:3]) - steps("eager", batches[:3])
        tokens = sum(len(row["tokens"]) for group in groups for row in group)
        rates = {"eager": [], "compiled": []}
        for round_index in range(args.rounds):
            order = list(rates) if round_index % 2 == 0 else list(reversed(rates))
            for way in order:
                rates[way].append(tokens / steps(way, batches))
    return {"tokens_per_s": rates, "warm_up_s": max(0.0, warm_up)}


@contextlib.contextmanager
def _rounding(*, on: bool):
    """The model's own rounding of the head's chunks and of documents' attention
    lengths, or (``on=False``) none."""
    from tunesmith.modules import _attention
    from tunesmith.training import _loss

    saved = _loss.gemm_row_multiple, _attention.document_length_multiple
    if not on:
        _loss.gemm_row_multiple = _attention.document_length_multiple = lambda device, dtype: 1
    try:
        yield
    finally:
        _loss.gemm_row_multiple, _attention.document_length_multiple = saved


def _work(method: str, row_lengths: list[int], labelled: int) -> float:
    """Matmul FLOPs of a step (compare.py's formula) whose attention spans rows (or
    documents) of ``row_lengths``: the decoder body on every position, the head on the
    labelled ones only, as the loss applies it."""
    body = sum(n * compare.flops_per_token(method, n, head_share=0.0)[0] for n in row_lengths)
    with_head = compare.flops_per_token(method, 1, head_share=1.0)[0]
    return body + labelled * (with_head - compare.flops_per_token(method, 1, head_share=0.0)[0])


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.tiny:
        compare.MODEL.update(compare.TINY)
        compare.ROWS = 48
    args.work_dir.mkdir(parents=True, exist_ok=True)
    assets = compare.build_assets(args)
    if args.cold:
        return _print_cold(assets, args)
    if args.compile:
        return _print_compiled(assets, args)
    print(f"{args.batches} batches of {compare.BATCH_SIZE} rows, {args.rounds} alternating "
          "rounds, medians; non-padding tokens/s")  # fmt: skip
    print(f"{'config':<12} {'padded':>8} {'padding-free':>13} {'ratio':>6} {'work':>6}  per round")
    for method in args.methods:
        for dtype in args.dtypes:
            r = measure(method, dtype, assets, args)
            padded, free = r["tokens_per_s"]["padded"], r["tokens_per_s"]["padding-free"]
            ratios = [a / b for a, b in zip(*r["rounds"].values(), strict=True)]  # speed-ups
            rounds = " ".join(f"{x:.2f}" for x in ratios)
            print(f"{method + ' ' + dtype:<12} {padded:8.0f} {free:13.0f} "
                  f"{statistics.median(ratios):5.2f}x "
                  f"{r['work']:5.2f}x  {rounds}  ({100 * r['padding_share']:.0f}% of padded "
                  "positions are padding)", flush=True)  # fmt: skip
    return 0


def _print_cold(assets: dict, args: argparse.Namespace) -> int:
    print(f"padding-free, {args.batches} new batches of {compare.BATCH_SIZE} rows per way and "
          f"round, {args.rounds} alternating rounds; non-padding tokens/s (medians)")  # fmt: skip
    print(f"{'config':<12} {'rounded':>8} {'as they are':>12} {'ratio':>6}  per round")
    for method in args.methods:
        for dtype in args.dtypes:
            r = measure_cold(method, dtype, assets, args)
            rounded, plain = r["tokens_per_s"].values()
            ratios = [a / b for a, b in zip(rounded, plain, strict=True)]
            print(f"{method + ' ' + dtype:<12} {statistics.median(rounded):8.0f} "
                  f"{statistics.median(plain):12.0f} {statistics.median(ratios):5.2f}x  "
                  + " ".join(f"{x:.2f}" for x in ratios)
                  + f"  (rows rounded to multiples of {r['multiple']}, documents' "
                  f"attention to {r['length_multiple']})", flush=True)  # fmt: skip
    return 0


def _print_compiled(assets: dict, args: argparse.Namespace) -> int:
    print(f"padding-free, {args.batches} batches of {compare.BATCH_SIZE} rows, {args.rounds} "
          "alternating rounds once warm; tokens/s (medians)")  # fmt: skip
    print(f"{'config':<12} {'eager':>8} {'compiled':>9} {'ratio':>6}  per round")
    for method in args.methods:
        for dtype in args.dtypes:
            r = measure_compiled(method, dtype, assets, args)
            eager, compiled = r["tokens_per_s"]["eager"], r["tokens_per_s"]["compiled"]
            ratios = [a / b for a, b in zip(compiled, eager, strict=True)]
            print(f"{method + ' ' + dtype:<12} {statistics.median(eager):8.0f} "
                  f"{statistics.median(compiled):9.0f} {statistics.median(ratios):5.2f}x  "
                  + " ".join(f"{x:.2f}" for x in ratios)
                  + f"  (compile warm-up {r['warm_up_s']:.1f} s)", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
