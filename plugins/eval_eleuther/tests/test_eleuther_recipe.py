"""The ``eleuther_eval`` recipe through the CLI: lm_eval's table on stdout, the results
JSON in output_dir, and one-line errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tunesmith import Quantizer, hookimpl
from tunesmith.cli import cli
from tunesmith_eval_eleuther import RESULTS_FILE


def _run(checkpoint, reference, *overrides):
    args = [
        "run", "eleuther_eval", "--config", "eleuther_evaluation",
        f"checkpointer.checkpoint_dir={checkpoint}",
        f"include_path={reference.tasks_dir}", "include_defaults=false",
        "device=cpu", "dtype=fp32",
    ]  # fmt: skip
    return CliRunner().invoke(cli, [*args, *overrides])


def _row(table: str, task: str) -> list[str]:
    [line] = [line for line in table.splitlines() if line.startswith(f"|{task}")]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_shipped_config_opens_with_its_command_and_validates():
    from tunesmith.config import find_config

    path, recipe = find_config("eleuther_evaluation")
    assert recipe == "eleuther_eval"
    first = path.read_text().splitlines()[:2]
    assert first[0].startswith("# ")
    assert (
        first[1]
        .strip()
        .startswith(
            "#   tunesmith run eleuther_eval --config eleuther_evaluation checkpointer.checkpoint_dir="
        )
    )
    assert first[1].rstrip().endswith("tasks=[hellaswag]")
    result = CliRunner().invoke(cli, ["validate", "eleuther_evaluation"])
    assert result.exit_code == 0, result.output


def test_prints_the_table_and_writes_the_results(checkpoint, reference, tmp_path):
    out = tmp_path / "eval"
    result = _run(
        checkpoint, reference, "tasks=[tiny_mc,tiny_gen]", f"output_dir={out}", "batch_size=4"
    )
    assert result.exit_code == 0, result.output
    row = _row(result.stdout, "tiny_mc")
    assert row[4] == "acc" and float(row[6]) == pytest.approx(reference.acc, abs=1e-4)
    assert _row(result.stdout, "tiny_gen")[4] == "exact_match"
    assert f"Wrote {out / RESULTS_FILE}" in result.stderr

    saved = json.loads((out / RESULTS_FILE).read_text())
    assert saved["results"]["tiny_mc"]["acc,none"] == pytest.approx(reference.acc)
    assert saved["results"]["tiny_mc"]["acc_norm,none"] == pytest.approx(reference.acc_norm)
    assert set(saved["results"]) == {"tiny_mc", "tiny_gen"}
    assert saved["config"]["model_args"] == {
        "checkpoint_dir": str(checkpoint),
        "adapter": None,
        "quantizer": None,
        "dtype": "float32",
        "device": "cpu",
    }
    assert [p.name for p in out.iterdir()] == [RESULTS_FILE]  # no temporary file left


def test_evaluator_block_and_torchtune_key_names(checkpoint, reference, tmp_path):
    """An ``evaluator:`` block works like the top-level keys; torchtune's max_seq_length
    is read as max_seq_len."""
    config = tmp_path / "eval.yaml"
    config.write_text(
        f"checkpointer: {{checkpoint_dir: {checkpoint}}}\n"
        "evaluator:\n"
        "  _component_: eleuther\n"
        "  tasks: [tiny_ppl]\n"
        f"  include_path: {reference.tasks_dir}\n"
        "  include_defaults: false\n"
        "  max_seq_len: 16\n"
        "device: cpu\n"
    )
    result = CliRunner().invoke(cli, ["run", "eleuther_eval", "--config", str(config)])
    assert result.exit_code == 0, result.output
    [byte_row] = [r for r in result.stdout.splitlines() if "byte_perplexity" in r]
    assert float(byte_row.split("|")[7]) == pytest.approx(reference.byte_perplexity, rel=1e-3)

    result = _run(checkpoint, reference, "tasks=[tiny_ppl]", "+max_seq_length=16", "~output_dir")
    assert result.exit_code == 0, result.output
    [byte_row] = [r for r in result.stdout.splitlines() if "byte_perplexity" in r]
    assert float(byte_row.split("|")[7]) == pytest.approx(reference.byte_perplexity, rel=1e-3)


def test_quantizer_is_applied_before_evaluating(checkpoint, reference, tmp_path):
    from tunesmith.registry import load_registry, reset_registry

    seen = []

    class Recorder:
        def quantize(self, model, device):
            seen.append((type(model).__name__, str(device)))
            return model

    class Plugin:
        @staticmethod
        @hookimpl
        def register_quantizers(register):
            register(Quantizer(name="recorder", builder=lambda **config: Recorder()))

    reset_registry(load_registry(extra={"recorder_plugin": Plugin}))
    result = _run(
        checkpoint, reference, "tasks=[tiny_mc]", "limit=1", "quantizer={_component_: recorder}",
        f"output_dir={tmp_path}",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert seen == [("TransformerDecoder", "cpu")]


def test_unknown_task_fails_before_loading_with_one_line(checkpoint, reference, tmp_path):
    result = _run(tmp_path / "missing", reference, "tasks=[tiny_mcc]")
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: unknown lm_eval task 'tiny_mcc' — did you mean 'tiny_mc'")
    assert "lm-eval ls tasks" in line


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["~tasks"], "no tasks to run: add tasks=[hellaswag]"),
        (
            ["tasks=[tiny_mc]", "max_seq_len=8", "+max_seq_length=16"],
            "max_seq_len=8 and max_seq_length=16 disagree",
        ),
        (
            ["+evaluator={_component_: eleuther, tasks: [tiny_mc]}"],
            "the evaluator is configured twice",
        ),
        (
            ["tasks=[tiny_mc]", "+model={_component_: llama3_2_1b}"],
            "remove 'model' or set model._component_=auto",
        ),
        (
            ["tasks=[tiny_mc]", "~checkpointer.checkpoint_dir"],
            "checkpointer.checkpoint_dir is not set",
        ),
        (
            ["tasks=[tiny_mc]", "+tsks=[x]"],
            "unknown key 'tsks' for recipe eleuther_eval — did you mean 'tasks'?",
        ),
    ],
)
def test_config_errors_are_one_clear_message(checkpoint, reference, overrides, message):
    result = _run(checkpoint, reference, *overrides)
    assert result.exit_code != 0
    assert message in result.stderr, result.output
    assert "Traceback" not in result.output
