"""What ``compare.py`` puts inside each framework's process (importable in all three
environments: only the standard library at import time).

- ``tunesmith_dataset`` / ``torchtune_dataset``: dataset components that serve the
  benchmark's pre-tokenized rows (the same token ids for every framework), packed by
  the framework's own packer when asked.
- ``RecordingLogger``: a metric logger for both recipes' ``metric_logger`` key; it
  timestamps every ``log_dict`` (once per optimizer step) and, on ``close``, writes
  the records, the non-padding tokens of every dataset item and the process's peak
  RSS to ``$COMPARE_RESULT``.
- ``python _compare_support.py hf CONFIG.json``: the transformers + PEFT training loop.
- ``python _compare_support.py chart RESULTS.json OUT.png``: the chart (matplotlib).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

IGNORE = -100
_ITEMS: list[int] = []  # non-padding tokens of each item of the dataset the run built


def _rows(path: str) -> list[dict]:
    return json.loads(Path(path).read_text())


class _Rows:
    """A map-style dataset over pre-tokenized rows."""

    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        return {"tokens": list(row["tokens"]), "labels": list(row["labels"])}


def _record(dataset, pad_id: int) -> None:
    _ITEMS.clear()
    for i in range(len(dataset)):
        tokens = dataset[i]["tokens"]
        tokens = tokens.tolist() if hasattr(tokens, "tolist") else tokens
        _ITEMS.append(sum(1 for t in tokens if t != pad_id))


def tunesmith_dataset(tokenizer, path: str, packed: bool = False, max_seq_len: int = 512):
    """The rows for tunesmith's recipe; packed by ``tunesmith.data.PackedDataset``."""
    dataset = _Rows(_rows(path))
    if packed:
        from tunesmith.data import PackedDataset

        dataset = PackedDataset(dataset, max_seq_len, padding_idx=0)
    _record(dataset, 0)
    return dataset


def torchtune_dataset(tokenizer, path: str, packed: bool = False, max_seq_len: int = 512):
    """The rows for torchtune's recipe; packed by ``torchtune.datasets.PackedDataset``."""
    import torch

    class Rows(_Rows, torch.utils.data.Dataset):
        pass

    dataset = Rows(_rows(path))
    if packed:
        from torchtune.datasets import PackedDataset

        dataset = PackedDataset(dataset, max_seq_len=max_seq_len, padding_idx=0)
    _record(dataset, 0)
    return dataset


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _write_result(records: list[dict], extra: dict | None = None) -> None:
    target = os.environ.get("COMPARE_RESULT")
    if not target:
        return
    result = {"records": records, "items": list(_ITEMS), "peak_rss_gib": _peak_rss_gib()}
    result.update(extra or {})
    Path(target).write_text(json.dumps(result))


class RecordingLogger:
    """A metric logger (torchtune's and tunesmith's interface) that timestamps steps."""

    def __init__(self, **kwargs) -> None:
        self.records: list[dict] = []
        self.t0 = time.perf_counter()

    def log(self, name, data, step) -> None:
        self.log_dict({name: data}, step)

    def log_dict(self, payload, step) -> None:
        now = time.perf_counter()
        values = {k: (v.item() if hasattr(v, "item") else v) for k, v in payload.items()}
        if "loss" in values:
            self.records.append({"t": now - self.t0, "step": int(step), "loss": values["loss"]})

    def log_config(self, config) -> None:
        pass

    def close(self) -> None:
        _write_result(self.records)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---- transformers + PEFT ------------------------------------------------------------


def _hf_batches(rows: list[dict], batch_size: int, steps: int, pad_id: int = 0):
    import torch

    for step in range(steps):
        chunk = rows[step * batch_size : (step + 1) * batch_size]
        width = max(len(r["tokens"]) for r in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        labels = torch.full((len(chunk), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, r in enumerate(chunk):
            n = len(r["tokens"])
            ids[i, :n] = torch.tensor(r["tokens"])
            labels[i, :n] = torch.tensor(r["labels"])
            mask[i, :n] = 1
        yield {"input_ids": ids, "attention_mask": mask, "labels": labels}


def run_transformers(config_path: str) -> None:
    """The loop a transformers + PEFT user writes: ``model(**batch).loss``, backward,
    fused AdamW, a cosine schedule; the adapter (or model) saved at the end."""
    import math

    import torch
    import transformers

    cfg = json.loads(Path(config_path).read_text())
    torch.manual_seed(cfg["seed"])
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[cfg["dtype"]]
    model = transformers.AutoModelForCausalLM.from_pretrained(cfg["model_dir"], dtype=dtype)
    if cfg["method"] == "lora":
        import peft

        lora = peft.LoraConfig(
            r=cfg["lora_rank"], lora_alpha=cfg["lora_alpha"], lora_dropout=0.0,
            target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM",
        )  # fmt: skip
        model = peft.get_peft_model(model, lora)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=0.01, fused=True)
    warmup, total = cfg["warmup_lr_steps"], cfg["steps"]

    def schedule(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    forward = torch.compile(model) if cfg["compile"] else model
    rows = _rows(cfg["data"])
    _ITEMS[:] = [len(r["tokens"]) for r in rows]
    records, t0 = [], time.perf_counter()
    for step, batch in enumerate(_hf_batches(rows, cfg["batch_size"], total), start=1):
        loss = forward(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        records.append({"t": time.perf_counter() - t0, "step": step, "loss": loss.item()})
    model.save_pretrained(cfg["output_dir"])
    _write_result(records)


# ---- the chart ------------------------------------------------------------------------


def chart(results_path: str, out_path: str) -> None:
    """Bars per configuration and framework: tokens/s, step time, peak RSS, share of peak."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = json.loads(Path(results_path).read_text())
    rows = summary["summary"]
    configs = sorted(
        {r["config"] for r in rows}, key=lambda c: [r["config"] for r in rows].index(c)
    )
    frameworks = [f for f in summary["frameworks"] if any(r["framework"] == f for r in rows)]
    panels = [
        ("tokens_per_s", "non-padding tokens/s (higher is better)"),
        ("step_seconds", "median step time, s"),
        ("peak_rss_gib", "peak RSS, GiB"),
        ("matmul_peak_share", "share of the measured matmul peak"),
        ("useful_peak_share", "same, head counted on labelled positions only"),
    ]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(max(8, 1.2 * len(configs)), 3.2 * len(panels))
    )
    width = 0.8 / max(1, len(frameworks))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for i, framework in enumerate(frameworks):
            values = []
            for config in configs:
                match = [r for r in rows if r["config"] == config and r["framework"] == framework]
                values.append(match[0].get(key) or 0.0 if match else 0.0)
            xs = [j + (i - (len(frameworks) - 1) / 2) * width for j in range(len(configs))]
            ax.bar(xs, values, width, label=framework)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(len(configs)))
        ax.set_xticklabels(configs, rotation=20, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(summary.get("title", "fine-tuning side by side"), fontsize=11)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    {"hf": run_transformers, "chart": chart}[command](*rest)
