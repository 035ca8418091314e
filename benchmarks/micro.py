"""The pieces behind tunesmith's training speed, each timed against what it replaced.

- ``attention``: forward + backward of attention over packed documents (batch 4, 8
  query / 4 KV heads, 512 positions, head dim 64, the documents of four best-fit packs
  of instruction-like rows): one causal attention over the whole pack (what unpacked
  training would cost on a full row), the dense block-causal mask (the previous
  packing path), and causal attention per document (``DocumentMask``).
- ``head``: the output projection + cross-entropy, forward + backward, for a 56M Llama's
  head (width 512, vocab 32,000) on 4 x 512 positions, 30% of them unlabelled: full
  logits then chunked cross-entropy (the previous path) against the loss applying
  the head to labelled rows only, chunk by chunk.
- ``decode_linear``: a decoding step's matrix products for 1 and 8 rows (batch 1 and
  8): every weight matrix of ``generation.py``'s 23M Llama (6 layers, width 512, MLP
  1536, vocab 8192; 92 MB in fp32, more than a 32 MB L3 holds), ``F.linear`` against
  ``weight_major_linear`` (the two ``generate_tokens`` chooses between on the CPU, by
  timing them on the model's weights).
- ``new_shapes``: the three products of a head chunk (scores, and the gradients of the
  hidden states and of the weight; width 512, vocab 32,000) for four row counts no
  earlier call had (150 and up), as batches of varying length give every step, against
  the same row counts rounded up to a multiple of 64 (``gemm_row_multiple``), which
  repeat: in bf16 on the CPU, oneDNN compiles a kernel for every new shape.
- ``attention_lengths``: forward + backward of causal attention (8 heads, head dim 64)
  on 8 documents of lengths no earlier call had (93 and up), as padding-free batches
  give every step, against the same documents rounded up to a multiple of 16 with
  positions after them (``document_length_multiple``): in bf16 on the CPU, SDPA
  compiles oneDNN products for every new length.
- ``adamw``: one AdamW step over a 58M-parameter model's tensors: per-tensor loop
  (torch's CPU default), for-each, and fused.

Each case runs in fp32 and bf16, ``--rounds`` times interleaved; the median is printed.

Examples::

    python benchmarks/micro.py
    python benchmarks/micro.py --only attention,head --rounds 5 --json
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time

PACK_DOCS = [[230, 180, 102], [300, 150, 62], [512], [120, 110, 100, 90, 92]]


def _parse(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__[__doc__.index("Examples::") :].replace("Examples::", "examples:"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--only", default="attention,head,decode_linear,new_shapes,attention_lengths,adamw",
        help="comma-separated cases",
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--repeats", type=int, default=3, help="timings per round (default 3)")
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


def _time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def attention_cases(dtype):
    import torch
    import torch.nn.functional as F

    from tunesmith.modules import DocumentMask

    b, h, h_kv, s, d = 4, 8, 4, 512, 64
    q = torch.randn(b, h, s, d, dtype=dtype, requires_grad=True)
    k = torch.randn(b, h_kv, s, d, dtype=dtype, requires_grad=True)
    v = torch.randn(b, h_kv, s, d, dtype=dtype, requires_grad=True)
    documents = DocumentMask(tuple(map(tuple, PACK_DOCS)))
    dense = documents.to_dense()[:, None]

    def grouped():
        return k.repeat_interleave(h // h_kv, 1), v.repeat_interleave(h // h_kv, 1)

    def causal():
        kk, vv = grouped()
        F.scaled_dot_product_attention(q, kk, vv, is_causal=True).sum().backward()

    def block_mask():
        kk, vv = grouped()
        F.scaled_dot_product_attention(q, kk, vv, attn_mask=dense).sum().backward()

    def per_document():
        kk, vv = grouped()
        rows = []
        for row in range(b):
            parts = [
                F.scaled_dot_product_attention(
                    q[row : row + 1, :, a:e], kk[row : row + 1, :, a:e], vv[row : row + 1, :, a:e],
                    is_causal=True,
                )
                for a, e in documents.spans(row)
            ]  # fmt: skip
            rows.append(torch.cat(parts, dim=2))
        torch.cat(rows).sum().backward()

    return {"causal over the pack": causal, "dense block mask": block_mask,
            "per document": per_document}  # fmt: skip


def head_cases(dtype):
    import torch

    from tunesmith.training import ChunkedCrossEntropyLoss

    torch.manual_seed(0)
    head = torch.nn.Linear(512, 32000, bias=False).to(dtype)
    hidden = torch.randn(4, 512, 512, dtype=dtype)
    labels = torch.randint(0, 32000, (4, 512))
    labels[:, :154] = -100
    loss = ChunkedCrossEntropyLoss()

    def full_logits():
        x = hidden.clone().requires_grad_()
        loss(head(x), labels)[0].backward()
        head.weight.grad = None

    def chunked_head():
        x = hidden.clone().requires_grad_()
        loss(x, labels, head=head)[0].backward()
        head.weight.grad = None

    return {"full logits + chunked CE": full_logits, "chunked head (labelled rows)": chunked_head}


def decode_linear_cases(dtype):
    import torch
    import torch.nn.functional as F

    from tunesmith.generation._matmul import weight_major_linear

    torch.manual_seed(0)
    layer = [(512, 512), (256, 512), (256, 512), (512, 512), (1536, 512), (1536, 512),
             (512, 1536)]  # q, k, v, o, gate, up, down  # fmt: skip
    weights = [torch.randn(s, dtype=dtype) for s in layer * 6 + [(8192, 512)]]
    cases = {}
    for rows in (1, 8):
        x = torch.randn(rows, 512, dtype=dtype)
        inputs = [x if w.shape[1] == 512 else torch.randn(rows, 1536, dtype=dtype) for w in weights]

        def plain(inputs=inputs):
            for w, a in zip(weights, inputs, strict=True):
                F.linear(a, w)

        def weight_major(inputs=inputs):
            for w, a in zip(weights, inputs, strict=True):
                weight_major_linear(a, w)

        cases[f"{rows} row(s), F.linear (x @ W^T)"] = plain
        cases[f"{rows} row(s), weight_major_linear"] = weight_major
    return cases


_FRESH_ROWS = itertools.count(150)  # row counts no call has used before (a head chunk's size)


def new_shapes_cases(dtype):
    import torch

    torch.manual_seed(0)
    weight = torch.randn(32000, 512, dtype=dtype)
    fresh, multiple = _FRESH_ROWS, 64

    def products(round_rows: bool):
        def run():
            for _ in range(4):
                rows = next(fresh)
                rows = -(-rows // multiple) * multiple if round_rows else rows
                h = torch.randn(rows, 512, dtype=dtype)
                z = torch.mm(h, weight.T)  # the head's three products of a chunk
                torch.mm(z, weight)
                torch.mm(z.T, h)

        return run

    return {"new row counts": products(False), "row counts rounded up to 64": products(True)}


_FRESH_LENGTHS = itertools.count(93)  # document lengths no call has used before


def attention_lengths_cases(dtype):
    import torch
    import torch.nn.functional as F

    def documents(multiple: int):
        def run():
            for _ in range(8):
                n = next(_FRESH_LENGTHS)
                q, k, v = (torch.randn(1, 8, n, 64, dtype=dtype, requires_grad=True)
                           for _ in range(3))  # fmt: skip
                extra = -n % multiple  # as MultiHeadAttention._attend_document rounds
                padded = (F.pad(t, (0, 0, 0, extra)) for t in (q, k, v))
                out = F.scaled_dot_product_attention(*padded, is_causal=True)
                out[:, :, :n].sum().backward()

        return run

    return {"new lengths": documents(1), "lengths rounded up to 16": documents(16)}


def adamw_cases(dtype):
    import torch

    shapes = [(512, 512)] * 32 + [(1408, 512)] * 24 + [(32000, 512)] * 2
    params = [torch.nn.Parameter(torch.randn(s, dtype=dtype)) for s in shapes]
    for p in params:
        p.grad = torch.randn_like(p)
    optimizers = {
        "per-tensor loop": torch.optim.AdamW(params, lr=1e-4, foreach=False),
        "for-each": torch.optim.AdamW(params, lr=1e-4, foreach=True),
        "fused": torch.optim.AdamW(params, lr=1e-4, fused=True),
    }
    return {name: opt.step for name, opt in optimizers.items()}


CASES = {
    "attention": attention_cases,
    "head": head_cases,
    "decode_linear": decode_linear_cases,
    "new_shapes": new_shapes_cases,
    "attention_lengths": attention_lengths_cases,
    "adamw": adamw_cases,
}


def main(argv=None) -> int:
    args = _parse(argv)
    import torch

    chosen = [c.strip() for c in args.only.split(",") if c.strip()]
    results: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for case in chosen:
            for dtype in (torch.float32, torch.bfloat16):
                for name, fn in CASES[case](dtype).items():
                    key = f"{case} | {str(dtype).removeprefix('torch.')} | {name}"
                    results.setdefault(key, []).append(_time(fn, args.repeats))
    summary = {k: {"median_ms": statistics.median(v), "rounds_ms": v} for k, v in results.items()}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{torch.get_num_threads()} threads; median over {args.rounds} interleaved rounds")
    for key, r in summary.items():
        rounds = " ".join(f"{x:7.1f}" for x in r["rounds_ms"])
        print(f"{key:<58} {r['median_ms']:8.1f} ms   ({rounds})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
