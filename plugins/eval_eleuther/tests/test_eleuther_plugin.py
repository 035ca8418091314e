"""What the plugin registers, and that registering it stays cheap."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys

from click.testing import CliRunner

import tunesmith_eval_eleuther
from tunesmith import get_registry
from tunesmith.cli import cli


def test_registers_evaluator_recipe_and_config():
    registry = get_registry()
    evaluator = registry.get("evaluators", "eleuther")
    recipe = registry.get("recipes", "eleuther_eval")
    config = registry.get("configs", "eleuther_evaluation")
    for component in (evaluator, recipe, config):
        assert component.origin.distribution == "tunesmith-eval-eleuther"
        assert component.origin.plugin == "eval_eleuther"
    assert config.recipe == "eleuther_eval" and config.path.is_file()
    assert recipe.required == frozenset({"checkpointer"})
    assert {
        "tasks",
        "limit",
        "batch_size",
        "max_seq_len",
        "output_dir",
        "device",
        "dtype",
    } <= recipe.keys


def test_evaluator_builder_takes_keyword_settings():
    builder = get_registry().get("evaluators", "eleuther").builder
    params = inspect.signature(builder).parameters
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
    assert list(params)[:8] == [
        "tasks", "limit", "num_fewshot", "batch_size", "include_path", "include_defaults",
        "max_seq_len", "apply_chat_template",
    ]  # fmt: skip
    assert params["batch_size"].default == 8
    assert params["include_defaults"].default is True


def test_loading_the_registry_imports_neither_lm_eval_nor_torch():
    code = (
        "import sys, json\n"
        "from tunesmith import get_registry\n"
        "r = get_registry()\n"
        "r.get('evaluators', 'eleuther'); r.get('recipes', 'eleuther_eval')\n"
        "import tunesmith_eval_eleuther\n"
        "print(json.dumps([m in sys.modules for m in ('lm_eval', 'torch', 'datasets')]))\n"
    )
    env = {**os.environ, "TUNESMITH_LOAD_PLUGINS": "eval_eleuther"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [False, False, False]


def test_public_names():
    assert set(tunesmith_eval_eleuther.__all__) == {
        "EVAL_KEYS", "RESULTS_FILE", "EleutherEvaluator", "TunesmithLM", "evaluate",
    }  # fmt: skip
    from lm_eval.api.model import TemplateLM

    assert issubclass(tunesmith_eval_eleuther.TunesmithLM, TemplateLM)


def test_validate_checks_an_evaluator_block(tmp_path):
    config = tmp_path / "eval.yaml"
    config.write_text(
        "checkpointer: {checkpoint_dir: /models/x}\n"
        "evaluator: {_component_: eleuther, taks: [hellaswag], batch_size: many}\n"
    )
    result = CliRunner().invoke(cli, ["validate", str(config), "--recipe", "eleuther_eval"])
    assert result.exit_code != 0
    assert "taks" in result.stderr and "tasks" in result.stderr
