"""The whole workflow on one tiny checkpoint, through the same commands a user runs.

:func:`check_workflow` fine-tunes (full, LoRA, DoRA, QLoRA, optionally FSDP2 on two
processes), generates (prompt and chat, with and without the KV cache), evaluates with
an installed evaluator recipe, quantizes, merges an adapter and converts, on any
checkpoint of an installed family, and checks what each step leaves behind. A family
plugin calls it once from its tests::

    check_workflow(tiny_checkpoint_with_tokenizer, work_dir=tmp_path)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from tunesmith.testing._kit import _expect_close, _Report, _Skip

__all__ = ["WORKFLOW_STEPS", "check_workflow"]

WORKFLOW_STEPS = (
    "full", "lora", "dora", "qlora", "distributed", "generate", "evaluate", "quantize",
    "merge", "convert",
)  # fmt: skip


def _training_config(checkpoint_dir: Path, output_dir: Path) -> dict[str, Any]:
    """Two steps on the bundled alpaca sample, fp32 on the CPU."""
    return {
        "output_dir": str(output_dir),
        "model": {"_component_": "auto"},
        # Room for the alpaca prompt and its answer under a tiny tokenizer's long ids
        # (at 64 tokens the masked prompt filled every sample: nothing was trained).
        "tokenizer": {"_component_": "auto", "max_seq_len": 256},
        "checkpointer": {"checkpoint_dir": str(checkpoint_dir), "output_dir": "${output_dir}"},
        "dataset": {
            "_component_": "alpaca", "source": "tunesmith:alpaca_sample", "split": "train[:8]",
        },  # fmt: skip
        "seed": 0,
        "shuffle": False,  # so that two processes see what one device sees
        "batch_size": 2,
        "epochs": 1,
        "max_steps_per_epoch": 2,
        "optimizer": {"_component_": "torch.optim.AdamW", "lr": 1e-2},
        "device": "cpu",
        "dtype": "fp32",
        "metric_logger": {"_component_": "tunesmith.training.DiskLogger", "log_dir": "${output_dir}/logs"},
    }  # fmt: skip


def _cli(*args: str, input: str | None = None) -> str:
    """``tunesmith ARGS`` in this process; returns its output or raises with it."""
    from click.testing import CliRunner

    from tunesmith.cli import cli

    result = CliRunner().invoke(cli, list(args), input=input)
    if result.exit_code != 0:
        detail = result.output.strip().splitlines()[-3:]
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            detail.append(f"{type(result.exception).__name__}: {result.exception}")
        raise AssertionError(f"`tunesmith {' '.join(args[:2])} ...` failed: {' | '.join(detail)}")
    return result.output


def _logits(directory: Path, tokens: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    import tunesmith

    model, _ = tunesmith.load_pretrained(directory, dtype="fp32", device="cpu", **kwargs)
    with torch.no_grad():
        return model(tokens)


def _epoch(output_dir: Path) -> Path:
    directory = output_dir / "epoch_0"
    if not (directory / "config.json").is_file():
        raise AssertionError(f"no epoch_0 checkpoint written in {output_dir}")
    return directory


def _train(root: Path, name: str, recipe: str, checkpoint_dir: Path, **blocks: Any) -> Path:
    import yaml

    output = root / name
    config = root / f"{name}.yaml"
    config.write_text(yaml.safe_dump({**_training_config(checkpoint_dir, output), **blocks}))
    _cli("run", recipe, "--config", str(config))
    epoch = _epoch(output)
    from tunesmith.checkpoint import load_hf_state_dict

    before, after = load_hf_state_dict(checkpoint_dir), load_hf_state_dict(epoch)
    if all(torch.equal(before[k], after[k]) for k in before if k in after):
        raise AssertionError(f"the {name} run left every weight as it was: it trained nothing")
    return epoch


def _peft(root: Path, name: str, recipe: str, checkpoint_dir: Path, **settings: Any) -> Path:
    peft = {"lora_attn_modules": ["q_proj", "v_proj"], "apply_lora_to_mlp": True, **settings}
    epoch = _train(root, name, recipe, checkpoint_dir, peft=peft)
    config = json.loads((epoch / "adapter" / "adapter_config.json").read_text())
    if config.get("peft_type") != "LORA" or not config.get("target_modules"):
        raise AssertionError(f"{epoch / 'adapter'} holds no PEFT LoRA adapter_config.json")
    return epoch


def _distributed(root: Path, checkpoint_dir: Path, reference: Path, timeout: float) -> None:
    import yaml

    output = root / "fsdp"
    config = root / "fsdp.yaml"
    config.write_text(yaml.safe_dump(_training_config(checkpoint_dir, output)))
    command = [
        sys.executable, "-m", "tunesmith", "run", "full_finetune_distributed",
        "--nproc-per-node", "2", "--standalone", "--config", str(config), "batch_size=1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the 2-process FSDP2 run took over {timeout:.0f} s") from None
    if done.returncode != 0:
        raise AssertionError(f"the 2-process FSDP2 run failed: {done.stderr.strip()[-500:]}")
    tokens = torch.randint(0, 8, (1, 6))
    _expect_close(
        "logits after FSDP2 (2 processes) and one device", _logits(_epoch(output), tokens),
        _logits(reference, tokens), 1e-4,
    )  # fmt: skip


def _generate(epoch: Path) -> None:
    common = ["run", "generate", "--config", "generation", f"checkpointer.checkpoint_dir={epoch}",
              "max_new_tokens=4", "temperature=0", "device=cpu", "dtype=fp32"]  # fmt: skip
    with_cache = _cli(*common, "prompt.user=Name a colour.")
    without = _cli(*common, "prompt.user=Name a colour.", "enable_kv_cache=false")
    if with_cache.splitlines()[:1] != without.splitlines()[:1]:
        raise AssertionError("greedy answers differ with and without the KV cache")
    _cli(*common, "--chat", input="Hello\nexit\n")


def _evaluate(root: Path, epoch: Path) -> None:
    from tunesmith.registry import get_registry

    if "eleuther_eval" not in get_registry().tables["recipes"]:
        raise _Skip("no evaluation recipe installed (tunesmith-eval-eleuther)")
    import yaml

    tasks = root / "tasks"
    tasks.mkdir(exist_ok=True)
    rows = [
        {"question": f"Is {n} even?", "choices": ["yes", "no"], "answer": n % 2} for n in range(4)
    ]
    (tasks / "tiny_mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = {
        "task": "tiny_mc", "dataset_path": "json", "test_split": "test",
        "dataset_kwargs": {"data_files": {"test": str(tasks / "tiny_mc.jsonl")},
                           "cache_dir": str(root / "datasets-cache")},
        "output_type": "multiple_choice", "doc_to_text": "{{question}}",
        "doc_to_choice": "{{choices}}", "doc_to_target": "{{answer}}",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
    }  # fmt: skip
    (tasks / "tiny_mc.yaml").write_text(yaml.safe_dump(task))
    output = root / "eval"
    _cli("run", "eleuther_eval", "--config", "eleuther_evaluation",
         f"checkpointer.checkpoint_dir={epoch}", "tasks=[tiny_mc]", f"include_path={tasks}",
         "include_defaults=false", f"output_dir={output}", "device=cpu", "dtype=fp32")  # fmt: skip
    results = json.loads((output / "eleuther_eval_results.json").read_text())
    accuracy = results["results"]["tiny_mc"]["acc,none"]
    if not 0.0 <= accuracy <= 1.0:
        raise AssertionError(f"tiny_mc accuracy {accuracy} is not a fraction")


def _quantize(root: Path, epoch: Path) -> None:
    output = root / "int8"
    _cli("run", "quantize", "--config", "quantization", f"checkpointer.checkpoint_dir={epoch}",
         f"output_dir={output}", "device=cpu", "dtype=fp32")  # fmt: skip
    record = output / "quantization_config.json"
    if not record.is_file():
        raise AssertionError(f"quantize wrote no quantization_config.json in {output}")
    tokens = torch.randint(0, 8, (1, 6))
    quantized, full = _logits(output, tokens), _logits(epoch, tokens)
    error = (quantized - full).abs().max().item() / full.abs().max().item()
    if not error < 0.1:
        raise AssertionError(f"int8 weights moved the logits by {error:.1%}")
    if json.loads(record.read_text()).get("layout") == "huggingface":
        _quantized_in_transformers(output, tokens, quantized)


def _quantized_in_transformers(output: Path, tokens: torch.Tensor, ours: torch.Tensor) -> None:
    """transformers loads the Hugging Face layout unchanged, to the same logits."""
    try:
        import transformers
    except ImportError:
        return  # the rest of the step stands; transformers is the reference, not a need
    model = transformers.AutoModelForCausalLM.from_pretrained(output).eval()
    with torch.no_grad():
        theirs = model(tokens).logits
    _expect_close("the quantized model's logits in transformers and ours", theirs, ours, 1e-4)


def check_workflow(
    checkpoint_dir: str | Path,
    *,
    work_dir: str | Path,
    steps: Sequence[str] = WORKFLOW_STEPS,
    distributed_timeout: float = 180.0,
) -> list[str]:
    """Run the user's workflow on a tiny checkpoint (with its tokenizer files).

    Steps: ``full`` (full_finetune_single_device), ``lora``, ``dora``, ``qlora`` (their
    adapters are PEFT LoRA adapters), ``distributed`` (full_finetune_distributed on 2
    processes through torchrun with gloo, equal to one device), ``generate`` (a
    prompt with and without the KV cache gives the same greedy answer; ``--chat``),
    ``evaluate`` (eleuther_eval on a local task, if installed), ``quantize``
    (int8 logits within 10%), ``merge`` (``merge-adapter`` of the LoRA run equals its
    merged epoch), ``convert`` (an HF -> HF conversion keeps the logits).

    Args:
        checkpoint_dir: A tiny HF checkpoint whose tokenizer files lie beside it (the
            model's embeddings must cover the tokenizer's vocabulary).
        work_dir: Where runs write.
        steps: Which steps to run.
        distributed_timeout: Seconds the 2-process run may take.

    Returns:
        The names of the steps that ran (skipped ones say why).

    Raises:
        tunesmith.testing.ConformanceError: listing every failed step.
    """
    unknown = sorted(set(steps) - set(WORKFLOW_STEPS))
    if unknown:
        raise ValueError(f"unknown workflow steps {unknown}: choose from {WORKFLOW_STEPS}")
    source, root = Path(checkpoint_dir), Path(work_dir)
    root.mkdir(parents=True, exist_ok=True)
    report = _Report(f"workflow on {source.name}")
    done: dict[str, Path] = {}

    def step(name: str, run: Any, *needs: str) -> None:
        if name not in steps:
            return
        with report.check(name):
            missing = [n for n in needs if n not in done]
            if missing:
                raise _Skip(f"needs the {', '.join(missing)} step")
            result = run()
            if isinstance(result, Path):
                done[name] = result

    step("full", lambda: _train(root, "full", "full_finetune_single_device", source))
    step("lora", lambda: _peft(root, "lora", "lora_finetune_single_device", source))
    step("dora", lambda: _peft(root, "dora", "lora_finetune_single_device", source,
                               use_dora=True))  # fmt: skip
    step("qlora", lambda: _peft(root, "qlora", "qlora_finetune_single_device", source))
    step("distributed", lambda: _distributed(root, source, done["full"], distributed_timeout),
         "full")  # fmt: skip
    step("generate", lambda: _generate(done["lora"]), "lora")
    step("evaluate", lambda: _evaluate(root, done["full"]), "full")
    step("quantize", lambda: _quantize(root, done["lora"]), "lora")
    step("merge", lambda: _merge(root, source, done["lora"]), "lora")
    step("convert", lambda: _convert(root, done["full"]), "full")
    return report.finish()


def _merge(root: Path, source: Path, epoch: Path) -> None:
    merged = root / "merged"
    _cli("merge-adapter", str(source), str(epoch / "adapter"), str(merged))
    tokens = torch.randint(0, 8, (1, 6))
    _expect_close("logits of merge-adapter's output and the run's merged epoch",
                  _logits(merged, tokens), _logits(epoch, tokens), 1e-4)  # fmt: skip
    _expect_close("logits of base + adapter and the run's merged epoch",
                  _logits(source, tokens, adapter=epoch), _logits(epoch, tokens), 1e-4)  # fmt: skip


def _convert(root: Path, epoch: Path) -> None:
    converted = root / "converted"
    _cli("convert", str(epoch), str(converted))
    tokens = torch.randint(0, 8, (1, 6))
    _expect_close("logits after tunesmith convert", _logits(converted, tokens),
                  _logits(epoch, tokens), 1e-5)  # fmt: skip
