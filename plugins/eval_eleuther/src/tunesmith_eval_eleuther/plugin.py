"""The tunesmith-eval-eleuther plugin: the ``eleuther`` evaluator and the ``eleuther_eval``
recipe with its ``eleuther_evaluation`` config.

Registering imports neither lm_eval nor torch: the evaluator's builder and the recipe
load them when an evaluation runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tunesmith import Config, Evaluator, Recipe, hookimpl
from tunesmith.recipes import lazy_recipe
from tunesmith_eval_eleuther._evaluator import eleuther
from tunesmith_eval_eleuther._recipe import EVAL_SCHEMA

TUNESMITH_PLUGIN_API = 2

_CONFIGS = Path(__file__).resolve().parent / "configs"


@hookimpl
def register_evaluators(register: Callable[[Evaluator], None]) -> None:
    register(
        Evaluator(
            name="eleuther",
            builder=eleuther,
            description="EleutherAI lm-evaluation-harness tasks on a native model",
        )
    )


@hookimpl
def register_recipes(register: Callable[[Recipe | Config], None]) -> None:
    register(
        Recipe(
            name="eleuther_eval",
            run=lazy_recipe("tunesmith_eval_eleuther._recipe"),
            schema=EVAL_SCHEMA,
            description="Evaluate a checkpoint on EleutherAI lm-eval tasks",
        )
    )
    register(
        Config(
            name="eleuther_evaluation",
            recipe="eleuther_eval",
            path=_CONFIGS / "eleuther_evaluation.yaml",
            description="lm-eval tasks (hellaswag by default) on any checkpoint",
        )
    )
