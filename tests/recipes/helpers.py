"""Helpers for the ``finetune`` recipe's end-to-end tests: the tiny checkpoint and
config they train, the CLI runner, and readers for what a run leaves behind."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch


def write_base_checkpoint(directory: Path, **overrides: Any) -> Path:
    """A tiny random Llama 3.2 (tied embeddings, GQA) whose vocabulary, bos and eos
    match a byte-level BPE tokenizer written beside it."""
    from tunesmith.testing import write_hf_tokenizer
    from tunesmith_llama import write_tiny_llama_checkpoint

    write_hf_tokenizer(directory, vocab_size=300)
    added = json.loads((directory / "tokenizer.json").read_text())["added_tokens"]
    ids = {t["content"]: t["id"] for t in added}
    write_tiny_llama_checkpoint(
        directory,
        variant="llama3_2",
        vocab_size=max(ids.values()) + 1,
        bos_token_id=ids["<|begin_of_text|>"],
        eos_token_id=ids["<|eot_id|>"],
        **overrides,
    )
    return directory


def base_config(base_dir: Path, data_file: Path, output_dir: Path) -> dict[str, Any]:
    """A complete config in the shipped configs' schema: fp32 on the CPU, 4 steps an epoch."""
    return {
        "output_dir": str(output_dir),
        "model": {"_component_": "auto"},
        "tokenizer": {"_component_": "auto", "max_seq_len": 64},
        "checkpointer": {"checkpoint_dir": str(base_dir), "output_dir": "${output_dir}"},
        # The alpaca prompt fills max_seq_len 64 here, so answers would be cut away (and the
        # run refused): the prompt is trained on, keeping these tiny runs short and learnable.
        "dataset": {
            "_component_": "alpaca",
            "source": str(data_file),
            "split": "train[:16]",
            "train_on_input": True,
        },
        "seed": 7,
        "shuffle": True,
        "batch_size": 4,
        "epochs": 1,
        "max_steps_per_epoch": None,
        "gradient_accumulation_steps": 1,
        "clip_grad_norm": 1.0,
        "optimizer": {"_component_": "torch.optim.AdamW", "lr": 3.0e-3, "weight_decay": 0.0},
        "lr_scheduler": {
            "_component_": "tunesmith.training.cosine_with_warmup",
            "num_warmup_steps": 1,
        },
        "loss": {"_component_": "tunesmith.training.ChunkedCrossEntropyLoss"},
        "device": "cpu",
        "dtype": "fp32",
        "enable_activation_checkpointing": False,
        "metric_logger": {
            "_component_": "tunesmith.training.DiskLogger",
            "log_dir": "${output_dir}/logs",
        },
        "log_every_n_steps": 1,
        "save_every_n_steps": None,
        "keep_last_n_epochs": None,
        "resume_from_checkpoint": False,
    }


def merge_config(into: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge_config(into[key], value)
        else:
            into[key] = value
    return into


def run_cli(recipe: str, config: str | Path, *overrides: str):
    """``tunesmith run RECIPE --config CONFIG OVERRIDES...`` through click's runner."""
    from click.testing import CliRunner

    from tunesmith.cli import cli

    return CliRunner().invoke(cli, ["run", recipe, "--config", str(config), *overrides])


def run_ok(recipe: str, config: str | Path, *overrides: str):
    result = run_cli(recipe, config, *overrides)
    if result.exit_code != 0:
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        raise AssertionError(f"exit code {result.exit_code}:\n{result.output}")
    return result


def read_log(output_dir: Path) -> list[dict[str, Any]]:
    """Every record the DiskLogger wrote under ``output_dir/logs``, oldest file first."""
    records = []
    for path in sorted((output_dir / "logs").glob("*.jsonl")):
        records += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return records


def losses(output_dir: Path) -> dict[int, float]:
    """Training loss by step; a step logged twice is an error (a resume that redid it)."""
    out: dict[int, float] = {}
    for record in read_log(output_dir):
        if "loss" in record:
            assert record["step"] not in out, f"step {record['step']} logged twice"
            out[record["step"]] = record["loss"]
    return out


def leftovers(output_dir: Path) -> list[str]:
    """Hidden temporary files or folders (half-written output) anywhere under the run."""
    return sorted(str(p.relative_to(output_dir)) for p in output_dir.rglob(".*"))


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    """All ``model*.safetensors`` tensors of an HF directory, by HF name."""
    from safetensors.torch import load_file

    files = sorted(directory.glob("model*.safetensors"))
    assert files, f"no model*.safetensors in {directory}"
    weights: dict[str, torch.Tensor] = {}
    for path in files:
        weights.update(load_file(str(path)))
    return weights


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"weights differ: {different[:5]}"


def sample_tokens(vocab_size: int) -> torch.Tensor:
    return torch.randint(0, vocab_size, (2, 12), generator=torch.Generator().manual_seed(3))


@torch.no_grad()
def hf_logits(directory: Path, tokens: torch.Tensor, *, adapter: Path | None = None):
    """Logits of ``directory`` loaded by transformers (plus a PEFT adapter through peft)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel

        with warnings.catch_warnings():
            # peft asks transformers a deprecated question; nothing for us to act on
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
            model = PeftModel.from_pretrained(model, str(adapter))
    return model.eval()(tokens).logits


@torch.no_grad()
def our_logits(directory: Path, tokens: torch.Tensor, *, adapter: Path | None = None):
    """Logits of ``directory`` loaded by ``tunesmith.load_pretrained``."""
    import tunesmith

    model, _ = tunesmith.load_pretrained(directory, dtype="fp32", device="cpu", adapter=adapter)
    return model(tokens)
