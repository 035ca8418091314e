"""check_workflow runs the user's whole workflow on a tiny checkpoint and reports what broke."""

from __future__ import annotations

import shutil

import pytest

from tunesmith.testing import WORKFLOW_STEPS, ConformanceError, check_workflow

pytest.importorskip("tunesmith_llama")
pytest.importorskip("tunesmith_lora")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning"),
]


@pytest.fixture
def base(tmp_path):
    from recipes.helpers import write_base_checkpoint

    return write_base_checkpoint(tmp_path / "base")


def test_every_step_runs_on_a_tiny_llama(base, tmp_path):
    assert check_workflow(base, work_dir=tmp_path / "work") == list(WORKFLOW_STEPS)
    assert (tmp_path / "work" / "eval" / "eleuther_eval_results.json").is_file()
    assert (tmp_path / "work" / "lora" / "epoch_0" / "adapter" / "adapter_config.json").is_file()


def test_a_broken_checkpoint_fails_naming_each_step(base, tmp_path):
    (base / "tokenizer.json").unlink()  # no tokenizer: nothing can train
    shutil.rmtree(tmp_path / "work", ignore_errors=True)
    with pytest.raises(ConformanceError) as err:
        check_workflow(base, work_dir=tmp_path / "work", steps=["full", "convert"])
    message = str(err.value)
    assert (
        "workflow on base: full: `tunesmith run full_finetune_single_device ...` failed" in message
    )
    assert "no tokenizer found" in message
    with pytest.raises(ValueError, match="unknown workflow steps"):
        check_workflow(base, work_dir=tmp_path, steps=["fulll"])
