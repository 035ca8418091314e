"""tunesmith-eval-eleuther: evaluate tunesmith models with EleutherAI's lm-evaluation-harness.

Registers the ``eleuther`` evaluator and the ``eleuther_eval`` recipe (config
``eleuther_evaluation``). From Python::

    import tunesmith
    from tunesmith_eval_eleuther import EleutherEvaluator

    model, tokenizer = tunesmith.load_pretrained("output/epoch_0")
    results = EleutherEvaluator(tasks=["hellaswag"], limit=200).evaluate(model, tokenizer)

:class:`TunesmithLM` is the lm_eval model itself, for ``lm_eval.simple_evaluate``.
Importing this package is cheap; lm_eval and torch load on first use of
:class:`TunesmithLM` or :meth:`EleutherEvaluator.evaluate`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunesmith_eval_eleuther._evaluator import EleutherEvaluator
from tunesmith_eval_eleuther._recipe import EVAL_KEYS, RESULTS_FILE

if TYPE_CHECKING:
    from tunesmith_eval_eleuther._lm import TunesmithLM

__all__ = ["EVAL_KEYS", "RESULTS_FILE", "EleutherEvaluator", "TunesmithLM", "evaluate"]


def evaluate(model: Any, tokenizer: Any, tasks: list[str] | str, **settings: Any) -> dict:
    """Run lm_eval ``tasks`` on a native model: ``EleutherEvaluator(tasks=tasks,
    **settings).evaluate(model, tokenizer)``; see :class:`EleutherEvaluator`."""
    return EleutherEvaluator(tasks=tasks, **settings).evaluate(model, tokenizer)


def __getattr__(name: str) -> Any:
    if name == "TunesmithLM":  # imports lm_eval and torch
        from tunesmith_eval_eleuther._lm import TunesmithLM

        return TunesmithLM
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
