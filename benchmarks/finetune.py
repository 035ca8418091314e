"""Fine-tuning speed and memory: full fine-tuning, LoRA and QLoRA on one device.

Each method trains the same checkpoint through the ``finetune`` recipe's own setup
and training step (``tunesmith.recipes.finetune._build_model`` and ``_train_step``:
forward, ``ChunkedCrossEntropyLoss``, backward, per-token ``scale_grads``, gradient
clipping, AdamW; private on purpose, so the benchmark measures exactly what ``tunesmith
run`` does and breaks loudly when the step changes) for ``--warmup-steps`` untimed and
``--steps`` timed optimizer steps, and reports the median step. Rows are synthetic:
fixed-length random token ids, so the numbers are not data-bound. Every method runs in
a fresh subprocess so peak memories do not mix: the process's peak RSS on CPU, the
caching allocator's peak allocation on CUDA, both from the end of setup (weights
loaded, adapters applied) to the last step.

Achieved FLOP/s = tokens/s x training FLOPs per token, against this machine's matmul
peak: square matmuls in the training dtype, timed 3 times per size in each method's
process right after its steps (so under the same load), the best of all. FLOPs
per token = 6 N_trainable + 4 N_frozen + 12 L s d (see ``--help``): a frozen weight
still costs its forward and its input gradient, only the weight gradient is saved.

Without ``--checkpoint`` the script writes a random ~100M-parameter Llama (12 layers,
width 768, GQA 12/4 heads, tied vocab 32000) and a tokenizer to a temporary directory.

Examples::

    python benchmarks/finetune.py
    python benchmarks/finetune.py --size small --steps 4
    python benchmarks/finetune.py --method lora --batch-size 8 --seq-len 512 --device cuda
    python benchmarks/finetune.py --checkpoint /models/Llama-3.2-1B-Instruct --dtype bf16 --json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TORCHAO_FORCE_SKIP_LOADING_SO_FILES", "1")

METHODS = ("full", "lora", "qlora")

# HF config.json values per preset; --hidden, --layers, ... override single fields.
SIZES = {
    # 12 layers, width 768, GQA 12/4 heads, tied vocab 32000: 100.1M parameters.
    "100m": {"vocab_size": 32000, "hidden_size": 768, "intermediate_size": 2048,
             "num_hidden_layers": 12, "num_attention_heads": 12, "num_key_value_heads": 4},
    # The generation benchmark's model: 6 layers, width 512, vocab 8192: 23M parameters.
    "small": {"vocab_size": 8192, "hidden_size": 512, "intermediate_size": 1536,
              "num_hidden_layers": 6, "num_attention_heads": 8, "num_key_value_heads": 4},
    # A smoke test of the script itself: numbers mean nothing at this size.
    "tiny": {"vocab_size": 512, "hidden_size": 64, "intermediate_size": 128,
             "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2},
}  # fmt: skip

# The shipped LoRA configs' targets (e.g. llama3_2/1B_lora_single_device.yaml).
LORA_TARGETS = {"lora_attn_modules": ["q_proj", "v_proj", "output_proj"], "apply_lora_to_mlp": True}
# The shipped configs' learning rates; they only matter for the optimizer's work, not speed.
LEARNING_RATES = {"full": 2e-5, "lora": 3e-4, "qlora": 3e-4}
CLIP_GRAD_NORM = 1.0
RESULT_PREFIX = "TUNESMITH_BENCH_RESULT "


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=(
            "FLOPs per trained token = 6*N_trainable + 4*N_frozen + 12*L*s*d, where N counts the\n"
            "weights used in matmuls (the embedding table only when it is also the tied output\n"
            "head), L layers, s = --seq-len, d the width (training.estimate_train_flops_per_token\n"
            "minus the weight gradients frozen weights skip). Activation recomputation is not\n"
            "counted. tokens/s counts every input position: batch size x seq len per step.\n"
            "\n"
            "examples:\n"
            "  python benchmarks/finetune.py\n"
            "  python benchmarks/finetune.py --size small --steps 4\n"
            "  python benchmarks/finetune.py --method lora --batch-size 8 --seq-len 512 "
            "--device cuda\n"
            "  python benchmarks/finetune.py --checkpoint /models/Llama-3.2-1B-Instruct "
            "--dtype bf16 --json\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--method",
        choices=(*METHODS, "all"),
        default="all",
        help="what to train (default all: one subprocess each)",
    )
    parser.add_argument(
        "--steps", type=int, default=8, help="timed optimizer steps, median reported (default 8)"
    )
    parser.add_argument(
        "--warmup-steps",
        type=int,
        default=2,
        help="untimed steps first (allocator, optimizer state; default 2)",
    )
    parser.add_argument("--batch-size", type=int, default=1, help="rows per step (default 1)")
    parser.add_argument("--seq-len", type=int, default=256, help="tokens per row (default 256)")
    parser.add_argument(
        "--checkpoint",
        type=Path,
        help="HF checkpoint directory (default: a random model of --size)",
    )
    parser.add_argument(
        "--size",
        choices=SIZES,
        default="100m",
        help="random model: 100m (default), small (23M), tiny (smoke)",
    )
    parser.add_argument("--hidden", type=int, help="override the preset's width")
    parser.add_argument("--layers", type=int, help="override the preset's layer count")
    parser.add_argument("--heads", type=int, help="override the preset's attention heads")
    parser.add_argument("--kv-heads", type=int, help="override the preset's key/value heads")
    parser.add_argument("--intermediate", type=int, help="override the preset's MLP width")
    parser.add_argument("--vocab", type=int, help="override the preset's vocabulary size")
    parser.add_argument("--lora-rank", type=int, default=8, help="LoRA rank (default 8)")
    parser.add_argument(
        "--activation-checkpointing",
        action="store_true",
        help="recompute layer activations in backward (the recipe's flag)",
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    parser.add_argument(
        "--dtype", default="auto", help="auto (bf16 where native, else fp32) | fp32 | bf16"
    )
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument(
        "--matmul-sizes",
        default="2048,4096",
        help="square matmul sizes for the peak (default 2048,4096)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and data (default 0)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("steps", "batch_size", "seq_len", "lora_rank"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup_steps < 0:
        parser.error("--warmup-steps must be 0 or more")
    try:
        args.matmul_sizes = tuple(int(n) for n in args.matmul_sizes.split(","))
    except ValueError:
        parser.error(f"--matmul-sizes takes comma-separated integers, got {args.matmul_sizes!r}")
    return args


def _model_config(args: argparse.Namespace) -> dict:
    config = dict(SIZES[args.size])
    overrides = {
        "hidden_size": args.hidden, "num_hidden_layers": args.layers,
        "num_attention_heads": args.heads, "num_key_value_heads": args.kv_heads,
        "intermediate_size": args.intermediate, "vocab_size": args.vocab,
    }  # fmt: skip
    config.update({k: v for k, v in overrides.items() if v is not None})
    config["head_dim"] = config["hidden_size"] // config["num_attention_heads"]
    config["max_position_embeddings"] = max(2048, args.seq_len)
    return config


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _matmul_peak(device, dtype, sizes=(2048, 4096), repeats: int = 3) -> tuple[float, int]:
    """Best FLOP/s of square ``n x n`` matmuls in ``dtype``: this machine's practical peak."""
    import torch

    # One CPU matmul of 2048 already takes ~0.1 s; a GPU one needs many to outlast launch overhead.
    per_timing = 20 if device.type == "cuda" else 1
    best, best_n = 0.0, sizes[0]
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        out = torch.mm(a, b)  # warm-up: kernel selection, thread pool
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            for _ in range(per_timing):
                torch.mm(a, b, out=out)
            _sync(device)
            flops = 2 * n**3 * per_timing / (time.perf_counter() - start)
            if flops > best:
                best, best_n = flops, n
        del a, b, out
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return best, best_n


def _flops_per_token(model, seq_len: int) -> tuple[int, int, int]:
    """Training FLOPs per token (see ``--help``) and the matmul weights behind it.

    Returns:
        ``(flops, n_matmul, n_frozen)``.
    """
    from tunesmith import training
    from tunesmith.modules import TiedLinear

    embedding = model.tok_embeddings.weight
    tied = isinstance(getattr(model, "output", None), TiedLinear)
    n_matmul = n_frozen = 0
    for param in model.parameters():
        # The embedding lookup is free; the same table used as the output head is a matmul.
        uses = int(tied) if param is embedding else 1
        n_matmul += uses * param.numel()
        if not param.requires_grad:
            n_frozen += uses * param.numel()
    layers, width = len(model.layers), embedding.shape[1]
    full = training.estimate_train_flops_per_token(n_matmul, layers, seq_len, width)
    return full - 2 * n_frozen, n_matmul, n_frozen


def _worker(args: argparse.Namespace) -> dict:
    """Train one method in this process and return its measurements."""
    from types import SimpleNamespace

    import torch
    from omegaconf import OmegaConf

    from tunesmith import training
    from tunesmith.checkpoint import Checkpointer
    from tunesmith.recipes import finetune
    from tunesmith.recipes._strategy import get_strategy
    from tunesmith.registry import get_registry

    method = args.worker
    if args.threads:
        torch.set_num_threads(args.threads)
    device = training.resolve_device(args.device)
    strategy = get_strategy(device)
    device = strategy.device
    dtype = training.resolve_dtype(args.dtype, device)
    training.set_seed(args.seed)
    cfg = OmegaConf.create({
        "model": None, "clip_grad_norm": CLIP_GRAD_NORM, "enable_activation_offloading": False,
    })  # fmt: skip

    # The recipe's setup order: model, PEFT transform, activation checkpointing, strategy.
    checkpointer = Checkpointer(args.checkpoint)
    model = finetune._build_model(cfg, checkpointer, device, dtype)
    base_params = training.count_parameters(model)[1]
    if method != "full":
        builder = get_registry().get("peft_methods", method).builder
        builder(**LORA_TARGETS, lora_rank=args.lora_rank, lora_alpha=2.0 * args.lora_rank).apply(
            model
        )
    layers = list(model.layers)
    if args.activation_checkpointing:
        training.apply_activation_checkpointing(model, layer_types=(type(layers[0]),))
    model = strategy.prepare(model, layers)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LEARNING_RATES[method], weight_decay=0.01)
    run = SimpleNamespace(
        cfg=cfg, strategy=strategy, model=model, optimizer=optimizer, scheduler=None,
        loss_fn=training.ChunkedCrossEntropyLoss(), position=SimpleNamespace(global_step=0),
    )  # fmt: skip

    vocab = model.tok_embeddings.num_embeddings
    if args.seq_len > model.max_seq_len:
        raise SystemExit(
            f"--seq-len {args.seq_len} exceeds the model's max_seq_len {model.max_seq_len}"
        )
    generator = torch.Generator().manual_seed(args.seed)
    batches = []
    for _ in range(args.warmup_steps + args.steps):
        # Batches stay on the CPU: the recipe's step moves them, as it does a DataLoader's.
        tokens = torch.randint(0, vocab, (args.batch_size, args.seq_len), generator=generator)
        batches.append({"tokens": tokens, "labels": tokens.clone()})

    trainable, total = training.count_parameters(model)
    flops_per_token, n_matmul, n_frozen = _flops_per_token(model, args.seq_len)
    model.train()
    gc.collect()
    # From here on: weights, adapters, optimizer state, activations; not the checkpoint loading.
    training.reset_peak_memory_stats(device)
    if device.type == "cuda":
        setup_memory = torch.cuda.memory_allocated(device) / 2**30
    else:
        setup_memory = training.memory_stats(device).get("memory_rss")
    for batch in batches[: args.warmup_steps]:
        finetune._train_step(run, [batch])
    _sync(device)
    step_times, loss = [], float("nan")
    for batch in batches[args.warmup_steps :]:
        start = time.perf_counter()
        loss, _ = finetune._train_step(run, [batch])  # its .item() waits for the device
        step_times.append(time.perf_counter() - start)
    # The median shrugs off a step slowed by another process on a shared machine.
    seconds = statistics.median(step_times)
    stats = training.memory_stats(device)
    peak = stats["peak_memory_alloc"] if device.type == "cuda" else stats["peak_memory_rss"]
    # Measured here, under the same load as the steps; the report takes the best over methods.
    matmul_peak, matmul_size = _matmul_peak(device, dtype, args.matmul_sizes)

    tokens_per_s = args.batch_size * args.seq_len / seconds
    return {
        "method": method,
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "base_params": base_params,
        "trainable_params": trainable,
        "total_params": total,
        "matmul_params": n_matmul,
        "frozen_matmul_params": n_frozen,
        "layers": len(layers),
        "width": model.tok_embeddings.weight.shape[1],
        "vocab": vocab,
        "tokens_per_s": tokens_per_s,
        "step_seconds": seconds,
        "step_seconds_all": step_times,
        "peak_memory_gib": peak,
        "setup_memory_gib": setup_memory,
        "flops_per_token": flops_per_token,
        "achieved_flops": tokens_per_s * flops_per_token,
        "final_loss": loss,
        "matmul_peak_flops": matmul_peak,
        "matmul_peak_size": matmul_size,
    }


def _worker_argv(args: argparse.Namespace, method: str, checkpoint: Path) -> list[str]:
    argv = [
        "--worker", method, "--checkpoint", str(checkpoint), "--steps", str(args.steps),
        "--warmup-steps", str(args.warmup_steps), "--batch-size", str(args.batch_size),
        "--seq-len", str(args.seq_len), "--lora-rank", str(args.lora_rank),
        "--device", args.device, "--dtype", args.dtype, "--seed", str(args.seed),
        "--matmul-sizes", ",".join(map(str, args.matmul_sizes)),
    ]  # fmt: skip
    if args.threads:
        argv += ["--threads", str(args.threads)]
    if args.activation_checkpointing:
        argv.append("--activation-checkpointing")
    return argv


def _run_method(args: argparse.Namespace, method: str, checkpoint: Path) -> dict:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        *_worker_argv(args, method, checkpoint),
    ]
    proc = subprocess.run(command, capture_output=True, text=True)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
    return {"method": method, "error": f"exit status {proc.returncode}\n{tail}"}


def _count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"


def _print_table(summary: dict) -> None:
    peak = summary["matmul_peak_flops"]
    # A CPU reaches a fraction of a TFLOP/s: GFLOP/s keeps its column readable.
    scale, unit = (1e12, "TFLOP/s") if peak >= 1e12 else (1e9, "GFLOP/s")
    rows = [r for r in summary["results"] if "error" not in r]
    if rows:
        first = rows[0]
        print(
            f"{_count(first['base_params'])}-parameter Llama ({first['layers']} layers, "
            f"width {first['width']}, vocab {first['vocab']}) on {summary['device']} "
            f"({summary['dtype']}, {summary['threads']} threads)"
        )
    print(
        f"batch {summary['batch_size']} x {summary['seq_len']} tokens; median of "
        f"{summary['steps']} timed steps after {summary['warmup_steps']} warm-up; "
        f"AdamW, clip {CLIP_GRAD_NORM}; "
        f"LoRA r={summary['lora_rank']} on q/v/output_proj + MLP"
    )
    print(
        f"matmul peak: {peak / scale:.4g} {unit} ({summary['dtype']} "
        f"{summary['matmul_peak_size']}x{summary['matmul_peak_size']} matmul, "
        "best over the methods' processes)"
    )
    if summary.get("load_average") is not None:
        print(
            f"note: load average {summary['load_average']:.1f} on {os.cpu_count()} CPUs before "
            "the run: other processes compete for the cores, so speeds read low"
        )
    header = (
        f"{'method':<7} {'trainable / total params':<25} {'tokens/s':>9} {'step s':>8} "
        f"{'peak GiB':>9} {unit:>8} {'% peak':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in summary["results"]:
        if "error" in r:
            print(f"{r['method']:<7} FAILED: {r['error']}")
            continue
        share = 100 * r["trainable_params"] / r["total_params"]
        params = f"{_count(r['trainable_params'])} / {_count(r['total_params'])} ({share:.3g}%)"
        print(
            f"{r['method']:<7} {params:<25} {r['tokens_per_s']:9.1f} {r['step_seconds']:8.3f} "
            f"{r['peak_memory_gib']:9.2f} {r['achieved_flops'] / scale:8.4g} "
            f"{100 * r['achieved_flops'] / peak:6.1f}%"
        )
    memory = "CUDA max allocated" if summary["device"].startswith("cuda") else "peak RSS"
    print(
        f"peak GiB: {memory} of a fresh process per method, from the end of setup to the last "
        "step.\nFLOPs/token = 6*N_trainable + 4*N_frozen + 12*L*s*d (see --help)."
    )
    by_method = {r["method"]: r for r in rows}
    for method in ("lora", "qlora"):
        if "full" in by_method and method in by_method:
            ratio = by_method[method]["peak_memory_gib"] / by_method["full"]["peak_memory_gib"]
            print(f"{method} peak memory is {100 * ratio:.0f}% of full fine-tuning's.")


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.worker:
        print(RESULT_PREFIX + json.dumps(_worker(args)), flush=True)
        return 0

    import torch

    from tunesmith import training

    if args.threads:
        torch.set_num_threads(args.threads)
    device = training.resolve_device(args.device)
    dtype = training.resolve_dtype(args.dtype, device)
    busy = None
    if device.type == "cpu" and hasattr(os, "getloadavg"):
        # A quarter of the cores already busy makes CPU timings visibly pessimistic.
        load = os.getloadavg()[0]
        busy = load if load > 0.25 * (os.cpu_count() or 1) else None
    methods = METHODS if args.method == "all" else (args.method,)

    with tempfile.TemporaryDirectory(prefix="tunesmith-bench-") as tmp:
        directory = args.checkpoint
        if directory is None:
            from tunesmith.testing import write_hf_tokenizer
            from tunesmith_llama import write_tiny_llama_checkpoint

            config = _model_config(args)
            directory = write_tiny_llama_checkpoint(
                Path(tmp) / "model", variant="llama3_2", seed=args.seed, **config
            )
            # A complete checkpoint directory, as `tunesmith run` would read; the rows
            # themselves are random ids, so the tokenizer's vocabulary can stay small.
            write_hf_tokenizer(directory)
        results = [_run_method(args, method, directory) for method in methods]
    measured = [
        (r["matmul_peak_flops"], r["matmul_peak_size"]) for r in results if "error" not in r
    ]
    peak, peak_size = max(measured, default=(float("nan"), 0))

    summary = {
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "load_average": busy,
        "matmul_peak_flops": peak,
        "matmul_peak_size": peak_size,
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "steps": args.steps,
        "warmup_steps": args.warmup_steps,
        "lora_rank": args.lora_rank,
        "results": results,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_table(summary)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
