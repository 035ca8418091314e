"""Generation speed: tunesmith with and without the KV cache (and compiled), and
transformers' generate.

Every engine decodes greedily from the same checkpoint and the same random prompts,
for exactly ``--new-tokens`` tokens (no stop token), at each of ``--batch-sizes``,
and the script checks they produce the same token ids. ``--compile`` adds tunesmith
with its one-token step compiled (``tunesmith.generation.compile_for_generation``, what
``generate compile=true`` runs). Rounds are interleaved (every engine once per round),
and the weight-read bound is printed: batch-1 tokens/s if a token cost only one
product of a row by each weight matrix, computed as tunesmith computes it. Without
``--checkpoint`` it writes a random ~23M-parameter Llama 3.2-style model (6 layers,
width 512, GQA, vocab 8192; ``--vocab-size`` changes the last) to a temporary directory.

Examples::

    python benchmarks/generation.py
    python benchmarks/generation.py --batch-sizes 1,8 --compile
    python benchmarks/generation.py --new-tokens 256 --batch-sizes 4 --prompt-len 128
    python benchmarks/generation.py --batch-sizes 4,8 --vocab-size 32000 --each-product
    python benchmarks/generation.py --checkpoint /models/Llama-3.2-1B-Instruct --device cuda --dtype bf16
    python benchmarks/generation.py --no-transformers --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TORCHAO_FORCE_SKIP_LOADING_SO_FILES", "1")

# Width 512, 6 layers, GQA 8/4 heads, tied vocab 8192: ~23M parameters.
BENCH_MODEL = {
    "vocab_size": 8192,
    "hidden_size": 512,
    "intermediate_size": 1536,
    "num_hidden_layers": 6,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 64,
    "max_position_embeddings": 2048,
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=(
            "examples:\n"
            "  python benchmarks/generation.py\n"
            "  python benchmarks/generation.py --new-tokens 256 --batch-size 4\n"
            "  python benchmarks/generation.py --checkpoint /models/Llama-3.2-1B-Instruct "
            "--device cuda --dtype bf16\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--checkpoint", type=Path, help="HF checkpoint directory (default: a random ~23M Llama)"
    )
    parser.add_argument(
        "--vocab-size", type=int, default=BENCH_MODEL["vocab_size"],
        help=f"the random model's vocabulary (default {BENCH_MODEL['vocab_size']})",
    )  # fmt: skip
    parser.add_argument(
        "--prompt-len", type=int, default=64, help="prompt tokens per row (default 64)"
    )
    parser.add_argument(
        "--new-tokens", type=int, default=128, help="tokens generated per row (default 128)"
    )
    parser.add_argument(
        "--batch-sizes",
        "--batch-size",
        dest="batch_sizes",
        default="1",
        help="comma-separated numbers of prompts decoded together (default 1)",
    )
    parser.add_argument(
        "--compile", action="store_true", help="also time tunesmith with compiled layers"
    )
    parser.add_argument(
        "--each-product", action="store_true",
        help="also time tunesmith (KV cache) with each of the CPU's decoding products "
        "forced (F.linear's and the weight-major one), not the one its probe chose",
    )  # fmt: skip
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs per engine; the median is kept"
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    parser.add_argument("--dtype", default="fp32", help="fp32 | bf16 | fp16 (default fp32)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument(
        "--no-transformers", action="store_true", help="skip transformers' generate"
    )
    parser.add_argument("--no-cache-baseline", dest="no_cache", action="store_false",
                        help="skip tunesmith without the KV cache (slow for long outputs)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    try:
        args.batch_sizes = [int(n) for n in str(args.batch_sizes).split(",") if n.strip()]
    except ValueError:
        parser.error(f"--batch-sizes takes comma-separated integers, got {args.batch_sizes!r}")
    if not args.batch_sizes or min(args.batch_sizes) < 1:
        parser.error("--batch-sizes must be positive integers")
    return args


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, device, repeats: int, *, warm: bool = True) -> tuple[float, object]:
    if warm:
        fn()  # warm-up: allocator, kernels, lazy inits
    times, result = [], None
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        result = fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _weight_read_floor(model, repeats: int) -> float:
    """Tokens/s of batch-1 decoding if a token cost nothing but one product of a row by
    each weight matrix (the head included), computed as ``generate_tokens`` computes them
    (with the product its probe chose on the CPU): the bound memory and matmul speed set."""
    import torch
    import torch.nn.functional as F

    from tunesmith.generation._matmul import decoding_products

    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    head = model.output.weight  # a tied head's is the embedding's
    if all(w is not head for w in weights):
        weights.append(head)
    inputs = {w.shape[1]: torch.randn(1, w.shape[1], dtype=w.dtype, device=w.device) for w in weights}

    def one_token():
        for w in weights:
            F.linear(inputs[w.shape[1]], w)

    device = weights[0].device
    with torch.inference_mode(), decoding_products(model, 1):
        seconds, _ = _time(lambda: [one_token() for _ in range(32)], device, repeats)
    return 32 / seconds


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    import torch

    from tunesmith import training
    from tunesmith.checkpoint import Checkpointer, load_model_weights, resolve_dtype

    if args.threads:
        torch.set_num_threads(args.threads)
    device = training.resolve_device(args.device)
    dtype = resolve_dtype(args.dtype)

    with tempfile.TemporaryDirectory(prefix="tunesmith-bench-") as tmp:
        directory = args.checkpoint
        if directory is None:
            from tunesmith_llama import write_tiny_llama_checkpoint

            directory = write_tiny_llama_checkpoint(
                Path(tmp) / "model", variant="llama3_2",
                **{**BENCH_MODEL, "vocab_size": args.vocab_size},
            )  # fmt: skip
        ckpt = Checkpointer(directory)
        model = ckpt.build_model()
        load_model_weights(model, ckpt.load_state_dict())
        model = model.to(device=device, dtype=dtype).eval()
        params = sum(p.numel() for p in model.parameters())
        vocab = model.tok_embeddings.num_embeddings
        if args.prompt_len + args.new_tokens > model.max_seq_len:
            print(
                f"--prompt-len + --new-tokens must fit max_seq_len {model.max_seq_len}",
                file=sys.stderr,
            )
            return 2

        hf = None
        if not args.no_transformers:
            import transformers

            hf = transformers.AutoModelForCausalLM.from_pretrained(str(directory), dtype=dtype)
            hf = hf.to(device).eval()
        compiled = None
        if args.compile:
            import copy

            from tunesmith.generation import compile_for_generation

            compiled = compile_for_generation(copy.deepcopy(model))
        floor = _weight_read_floor(model, args.repeats)
        runs = [
            _run_batch(args, model, compiled, hf, vocab, batch_size, device)
            for batch_size in args.batch_sizes
        ]

    summary = {
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "parameters": params,
        "prompt_len": args.prompt_len,
        "new_tokens": args.new_tokens,
        "weight_read_bound_tokens_per_s": floor,
        "batches": runs,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(
        f"{params / 1e6:.1f}M parameters on {device} ({summary['dtype']}, {summary['threads']} "
        f"threads); prompt {args.prompt_len}, {args.new_tokens} new tokens per row, median of "
        f"{args.repeats} interleaved rounds"
    )
    print(
        f"weight-read bound: {floor:.1f} tokens/s at batch 1 (each weight matrix read once per "
        "token, by tunesmith's products, nothing else)"
    )
    for run in runs:
        print(f"batch {run['batch_size']} (decoding products: {run['products']}):")
        for name, r in run["results"].items():
            same = "" if r["same_tokens_as_kv_cache"] else "  (DIFFERENT tokens!)"
            extra = f", first call {r['first_call_seconds']:.1f} s" if "compiled" in name else ""
            print(
                f"  {name:<34} {r['tokens_per_s']:9.1f} tokens/s  {r['seconds']:7.3f} s"
                f"{extra}{same}"
            )
        hf_name = next((n for n in run["results"] if n.startswith("transformers")), None)
        if hf_name:
            ours = max(r["tokens_per_s"] for n, r in run["results"].items() if "tunesmith" in n)
            print(f"  tunesmith's best is {ours / run['results'][hf_name]['tokens_per_s']:.2f}x "
                  "transformers' generate")  # fmt: skip
    return 0


def _run_batch(args, model, compiled, hf, vocab: int, batch_size: int, device) -> dict:
    """Every engine on ``batch_size`` random prompts."""
    import torch

    from tunesmith.generation import generate_tokens

    generator = torch.Generator().manual_seed(batch_size)
    prompts = torch.randint(3, vocab, (batch_size, args.prompt_len), generator=generator)
    rows = prompts.tolist()
    produced = batch_size * args.new_tokens

    def ours(which, cache: bool):
        return lambda: generate_tokens(
            which, rows, max_new_tokens=args.new_tokens, enable_kv_cache=cache
        )

    def forced(weight_major: bool):
        from tunesmith.generation import _matmul

        def run():
            choices, probe = dict(_matmul._CHOICES), _matmul._probe_seconds
            _matmul._CHOICES.clear()
            _matmul._probe_seconds = lambda weights, rows: (1.0, 0.0 if weight_major else 2.0)
            try:
                return ours(model, True)()
            finally:
                _matmul._CHOICES.clear()
                _matmul._CHOICES.update(choices)
                _matmul._probe_seconds = probe

        return run

    engines = [("tunesmith (KV cache)", ours(model, True))]
    if args.each_product:
        engines.append(("tunesmith (KV cache, F.linear)", forced(weight_major=False)))
        engines.append(("tunesmith (KV cache, weight-major)", forced(weight_major=True)))
    if compiled is not None:
        engines.append(("tunesmith (KV cache, compiled)", ours(compiled, True)))
    if args.no_cache:
        engines.append(("tunesmith (no cache)", ours(model, False)))
    if hf is not None:
        import transformers

        hf_prompts = prompts.to(device)

        def theirs():
            with torch.inference_mode():
                out = hf.generate(
                    hf_prompts, attention_mask=torch.ones_like(hf_prompts), do_sample=False,
                    max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                    pad_token_id=0, use_cache=True,
                )  # fmt: skip
            return out[:, args.prompt_len :].tolist()

        engines.append((f"transformers {transformers.__version__} generate", theirs))

    first_call = {}
    for name, fn in engines:
        started = time.perf_counter()
        fn()  # warm-up (compilation for the compiled engine)
        first_call[name] = time.perf_counter() - started
    times: dict[str, list[float]] = {name: [] for name, _ in engines}
    tokens: dict[str, object] = {}
    for _ in range(args.repeats):  # rounds interleaved: a noisy host slows every engine alike
        for name, fn in engines:
            seconds, tokens[name] = _time(fn, device, 1, warm=False)
            times[name].append(seconds)
    reference = tokens[engines[0][0]]
    results = {}
    for name, _ in engines:
        seconds = statistics.median(times[name])
        results[name] = {
            "seconds": seconds,
            "tokens_per_s": produced / seconds,
            "first_call_seconds": first_call[name],
            "same_tokens_as_kv_cache": tokens[name] == reference,
        }
    return {"batch_size": batch_size, "products": _products(model, batch_size), "results": results}


def _products(model, rows: int) -> str:
    """Which product ``generate_tokens`` computes a step's ``rows`` rows with (the probe's
    choice, remembered from the engines' runs)."""
    import contextlib

    from tunesmith.generation._matmul import decoding_products

    chosen = decoding_products(model, rows)
    return "F.linear" if isinstance(chosen, contextlib.nullcontext) else "weight-major"


if __name__ == "__main__":
    raise SystemExit(main())
