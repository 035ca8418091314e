"""torchtune's published GPU figures, reproduced with tunesmith on whatever GPU is here.

Two tables from torchtune's README (as of its 0.6 release) are the reference:

- "Memory and training speed": Llama 3.1 8B full / LoRA / QLoRA on one GPU, batch 2,
  data packed to 2048 tokens, torch.compile on (tokens/s over one epoch; RTX 4090 and
  RTX A6000).
- "Optimization flags": Llama 3.2 3B with full_finetune_single_device on an A100,
  batch 2, sequence 4096, bf16, each technique added on top of the previous one.

Each row runs the same work here through the ``finetune`` recipe's own training step
(``tunesmith.recipes.finetune._train_step``, as ``benchmarks/finetune.py`` does): the
architecture built with random weights on the GPU (or ``--checkpoint``), packs of
random documents (positions restarting, per-document attention), bf16, fused AdamW,
and the row's options. It prints tokens/s and peak memory (``max_memory_allocated``
and ``max_memory_reserved``) beside torchtune's published figures, naming the GPU
they were measured on: a different GPU is expected to differ, so compare rows of the
same GPU kind, or the ratios between rows. Rows needing more memory than the GPU has
are reported as out of memory, not hidden.

Rows needing something absent here are marked: 8-bit AdamW needs ``bitsandbytes``
(AdamW is used otherwise, and said so). Multi-GPU rows (70B, 405B) are not part of
the ladder. torchtune's unpacked 3B baseline trained padded alpaca batches; here it
is two full 4096-token rows without padding, so only the packed rows are like for like.

Examples::

    python benchmarks/gpu_ladder.py --list
    python benchmarks/gpu_ladder.py                         # every row, ~10 steps each
    python benchmarks/gpu_ladder.py --rows 8b-lora,8b-qlora --steps 20
    python benchmarks/gpu_ladder.py --rows 3b --json        # the Llama 3.2 3B ladder
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TORCHAO_FORCE_SKIP_LOADING_SO_FILES", "1")

README = "torchtune README (0.6), https://github.com/pytorch/torchtune#memory-and-training-speed"


@dataclass(frozen=True)
class Row:
    key: str
    model: str  # registered builder name
    title: str
    method: str  # full | lora | qlora
    seq_len: int
    batch_size: int
    published_gpu: str
    published_tokens_per_s: float
    published_memory_gib: float
    packed: bool = True
    compile: bool = True
    activation_checkpointing: bool = False
    activation_offloading: bool = False
    optimizer_in_bwd: bool = False
    adamw_8bit: bool = False
    lora: dict = field(default_factory=dict)


# torchtune's 8B LoRA configs adapt q/v/output_proj and the MLP at rank 8, alpha 16.
_LORA_8B = {"lora_attn_modules": ["q_proj", "v_proj", "output_proj"], "apply_lora_to_mlp": True,
            "lora_rank": 8, "lora_alpha": 16}  # fmt: skip
# torchtune's 3B LoRA configs: q/v/output_proj + MLP, rank 64, alpha 128.
_LORA_3B = {"lora_attn_modules": ["q_proj", "v_proj", "output_proj"], "apply_lora_to_mlp": True,
            "lora_rank": 64, "lora_alpha": 128}  # fmt: skip

ROWS = [
    # "Memory and training speed": batch 2, packed to 2048, compile.
    Row("8b-full-4090", "llama3_1_8b", "Llama 3.1 8B full", "full", 2048, 2, "1x RTX 4090", 1650,
        18.9, activation_checkpointing=True, optimizer_in_bwd=True, adamw_8bit=True),
    Row("8b-full-a6000", "llama3_1_8b", "Llama 3.1 8B full", "full", 2048, 2, "1x RTX A6000",
        2579, 37.4, activation_checkpointing=True, optimizer_in_bwd=True, adamw_8bit=True),
    Row("8b-lora-4090", "llama3_1_8b", "Llama 3.1 8B LoRA", "lora", 2048, 2, "1x RTX 4090", 3083,
        16.2, activation_checkpointing=True, lora=_LORA_8B),
    Row("8b-lora-a6000", "llama3_1_8b", "Llama 3.1 8B LoRA", "lora", 2048, 2, "1x RTX A6000",
        4699, 30.3, lora=_LORA_8B),
    Row("8b-qlora-4090", "llama3_1_8b", "Llama 3.1 8B QLoRA", "qlora", 2048, 2, "1x RTX 4090",
        2413, 7.4, activation_checkpointing=True, lora=_LORA_8B),
    # "Optimization flags": Llama 3.2 3B, A100, batch 2, seq 4096, each on top of the last.
    Row("3b-baseline", "llama3_2_3b", "3B full: baseline", "full", 4096, 2, "1x A100", 2091, 25.5,
        packed=False, compile=False),
    Row("3b-packed", "llama3_2_3b", "3B full: + packed", "full", 4096, 2, "1x A100", 7075, 60.0,
        compile=False),
    Row("3b-compile", "llama3_2_3b", "3B full: + compile", "full", 4096, 2, "1x A100", 8998, 51.0),
    # torchtune's next row adds its chunked cross-entropy: tunesmith's loss always chunks.
    Row("3b-chunked-ce", "llama3_2_3b", "3B full: + chunked CE", "full", 4096, 2, "1x A100", 9174,
        42.9),
    Row("3b-ac", "llama3_2_3b", "3B full: + activation ckpt", "full", 4096, 2, "1x A100", 7210,
        24.9, activation_checkpointing=True),
    Row("3b-opt-bwd", "llama3_2_3b", "3B full: + optimizer in bwd", "full", 4096, 2, "1x A100",
        7309, 23.1, activation_checkpointing=True, optimizer_in_bwd=True),
    Row("3b-offload", "llama3_2_3b", "3B full: + activation offload", "full", 4096, 2, "1x A100",
        7301, 21.8, activation_checkpointing=True, optimizer_in_bwd=True,
        activation_offloading=True),
    Row("3b-adamw8bit", "llama3_2_3b", "3B full: + 8-bit AdamW", "full", 4096, 2, "1x A100", 6960,
        17.6, activation_checkpointing=True, optimizer_in_bwd=True, activation_offloading=True,
        adamw_8bit=True),
    Row("3b-lora", "llama3_2_3b", "3B LoRA", "lora", 4096, 2, "1x A100", 8210, 8.5,
        activation_checkpointing=True, activation_offloading=True, lora=_LORA_3B),
    Row("3b-qlora", "llama3_2_3b", "3B QLoRA", "qlora", 4096, 2, "1x A100", 8035, 4.6,
        activation_checkpointing=True, activation_offloading=True, lora=_LORA_3B),
]  # fmt: skip


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__[__doc__.index("Examples::") :].replace("Examples::", "examples:"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--list", action="store_true", help="print the rows and exit")
    parser.add_argument("--rows", default="all",
                        help="comma-separated row keys or prefixes (8b, 3b, 8b-lora, ...)")  # fmt: skip
    parser.add_argument("--steps", type=int, default=10, help="timed steps per row (default 10)")
    parser.add_argument("--warmup-steps", type=int, default=3,
                        help="untimed steps first, compilation included (default 3)")  # fmt: skip
    parser.add_argument(
        "--checkpoint", help="an HF checkpoint of the row's model (default: random)"
    )
    parser.add_argument("--device", default="cuda", help="default cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    # A smoke test of the script on any device: a tiny model, short packs, no compile.
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup_steps < 0:
        parser.error("--steps must be at least 1 and --warmup-steps 0 or more")
    return args


def select(spec: str) -> list[Row]:
    if spec == "all":
        return list(ROWS)
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    chosen = [r for r in ROWS if any(r.key == w or r.key.startswith(w + "-") or r.key.startswith(w)
                                     for w in wanted)]  # fmt: skip
    if not chosen:
        raise SystemExit(f"no row matches {spec!r}: see --list")
    return chosen


def _documents(seq_len: int, generator) -> list[int]:
    """Document lengths of one pack: instruction-data sizes (~100-1000 tokens)."""
    import torch

    lengths, left = [], seq_len
    while left > 0:
        n = int(torch.empty(()).log_normal_(6.0, 0.6, generator=generator).clamp(64, 2048))
        lengths.append(min(n, left))
        left -= lengths[-1]
    return lengths


def _batches(row: Row, vocab: int, count: int, seed: int) -> list[dict]:
    import torch

    from tunesmith.modules import DocumentMask

    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        tokens = torch.randint(0, vocab, (row.batch_size, row.seq_len), generator=generator)
        batch = {"tokens": tokens, "labels": tokens.clone()}
        if row.packed:
            lens = [_documents(row.seq_len, generator) for _ in range(row.batch_size)]
            batch["mask"] = DocumentMask(tuple(tuple(x) for x in lens))
            batch["input_pos"] = torch.stack(
                [torch.cat([torch.arange(n) for n in x]) for x in lens]
            )
        batches.append(batch)
    return batches


def _optimizer(row: Row, model, device):
    import torch

    from tunesmith import training

    lr = 2e-5 if row.method == "full" else 3e-4
    factory, note = None, ""
    if row.adamw_8bit:
        try:
            import bitsandbytes as bnb

            factory = lambda group: bnb.optim.PagedAdamW8bit(group, lr=lr)  # noqa: E731
        except ImportError:
            note = "8-bit AdamW needs bitsandbytes: fused AdamW used"
    if factory is None:
        factory = lambda group: torch.optim.AdamW(group, lr=lr, fused=device.type == "cuda")  # noqa: E731
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if row.optimizer_in_bwd:
        return training.OptimizerInBackward(named, factory), note
    return factory([p for _, p in named]), note


def _worker(row: Row, args: argparse.Namespace) -> dict:
    from types import SimpleNamespace

    import torch
    from omegaconf import OmegaConf

    from tunesmith import training
    from tunesmith.recipes import finetune
    from tunesmith.registry import get_registry

    device = training.resolve_device(args.device)
    cuda = device.type == "cuda"
    torch.manual_seed(args.seed)
    registry = get_registry()
    if args.tiny:
        from dataclasses import replace

        row = replace(row, seq_len=64, compile=False, lora={**row.lora, "lora_rank": 4})
    with training.set_default_dtype(torch.bfloat16), device:
        if args.tiny:
            from tunesmith_llama import llama

            model = llama(vocab_size=256, num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=64,
                          intermediate_dim=128, max_seq_len=64, norm_eps=1e-5, rope_base=1e4)  # fmt: skip
        elif args.checkpoint:
            from tunesmith.checkpoint import Checkpointer

            model = Checkpointer(args.checkpoint).load_model(dtype=torch.bfloat16).to(device)
        else:
            model = registry.get("models", row.model).builder()
    if row.method != "full":
        builder = registry.get("peft_methods", "lora").builder
        builder(**row.lora, quantize_base=row.method == "qlora").apply(model)
    layers = list(model.layers)
    if row.activation_checkpointing:
        training.apply_activation_checkpointing(model, layer_types=(type(layers[0]),))
    loss_fn = training.ChunkedCrossEntropyLoss()
    if row.compile:
        for layer in layers:
            layer.compile()
        loss_fn.apply_compile_strategy()
    optimizer, note = _optimizer(row, model, device)
    cfg = OmegaConf.create({"clip_grad_norm": None,
                            "enable_activation_offloading": row.activation_offloading})  # fmt: skip
    run = SimpleNamespace(cfg=cfg, strategy=finetune.get_strategy(device), model=model,
                          optimizer=optimizer, scheduler=None, loss_fn=loss_fn,
                          position=SimpleNamespace(global_step=0))  # fmt: skip
    vocab = model.tok_embeddings.num_embeddings
    batches = _batches(row, vocab, args.warmup_steps + args.steps, args.seed)
    model.train()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    for batch in batches[: args.warmup_steps]:
        finetune._train_step(run, [batch])
    warmup = time.perf_counter() - started
    times = []
    for batch in batches[args.warmup_steps :]:
        if cuda:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        finetune._train_step(run, [batch])  # its .item() waits for the GPU
        times.append(time.perf_counter() - start)
    step = statistics.median(times)
    return {
        **{k: v for k, v in asdict(row).items() if k != "lora"},
        "gpu": torch.cuda.get_device_name(device) if cuda else str(device),
        "tokens_per_s": row.batch_size * row.seq_len / step,
        "step_seconds": step,
        "warmup_seconds": warmup,
        "peak_allocated_gib": torch.cuda.max_memory_allocated(device) / 2**30 if cuda else 0.0,
        "peak_reserved_gib": torch.cuda.max_memory_reserved(device) / 2**30 if cuda else 0.0,
        "note": note,
    }


def _run_row(row: Row, args: argparse.Namespace) -> dict:
    """Each row in a fresh process: peak memory and compiled graphs do not carry over."""
    import subprocess

    command = [sys.executable, os.path.abspath(__file__), "--worker", row.key,
               "--steps", str(args.steps), "--warmup-steps", str(args.warmup_steps),
               "--device", args.device, "--seed", str(args.seed)]  # fmt: skip
    if args.checkpoint:
        command += ["--checkpoint", args.checkpoint]
    if args.tiny:
        command.append("--tiny")
    proc = subprocess.run(command, capture_output=True, text=True)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("LADDER_RESULT "):
            return json.loads(line[len("LADDER_RESULT ") :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
    error = "out of memory" if "out of memory" in (proc.stderr or "").lower() else " / ".join(tail)
    return {**{k: v for k, v in asdict(row).items() if k != "lora"}, "error": error}


def _print(results: list[dict]) -> None:
    header = (f"{'row':<32} {'published on':<13} {'tok/s':>7} {'theirs':>7} "
              f"{'alloc GiB':>9} {'rsrv GiB':>8} {'theirs':>7}")  # fmt: skip
    gpu = next((r["gpu"] for r in results if "gpu" in r), "?")
    print(f"tunesmith on {gpu}; 'theirs' = {README}")
    print(header)
    print("-" * len(header))
    for r in results:
        label = f"{r['title']} ({r['seq_len']}x{r['batch_size']})"
        if "error" in r:
            print(f"{label:<32} {r['published_gpu']:<13} FAILED: {r['error'][:80]}")
            continue
        print(f"{label:<32} {r['published_gpu']:<13} {r['tokens_per_s']:7.0f} "
              f"{r['published_tokens_per_s']:7.0f} {r['peak_allocated_gib']:9.1f} "
              f"{r['peak_reserved_gib']:8.1f} {r['published_memory_gib']:7.1f}"
              + (f"  ({r['note']})" if r.get("note") else ""))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.list:
        for r in ROWS:
            print(f"{r.key:<16} {r.title:<32} {r.published_gpu:<13} "
                  f"{r.published_tokens_per_s:>6.0f} tok/s {r.published_memory_gib:>5.1f} GiB")  # fmt: skip
        return 0
    if args.worker:
        row = next(r for r in ROWS if r.key == args.worker)
        print("LADDER_RESULT " + json.dumps(_worker(row, args)), flush=True)
        return 0
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available() and not args.tiny:
        print("gpu_ladder.py needs a CUDA GPU (none found): the CPU figures are "
              "benchmarks/compare.py's", file=sys.stderr)  # fmt: skip
        return 2
    results = []
    for row in select(args.rows):
        results.append(_run_row(row, args))
        gc.collect()
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        _print(results)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
