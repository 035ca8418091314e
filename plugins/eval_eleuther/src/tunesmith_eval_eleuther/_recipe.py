"""The ``eleuther_eval`` recipe: load a checkpoint (optionally plus a PEFT adapter, optionally
quantized), run lm_eval tasks on it, print lm_eval's table and save the results.

::

    tunesmith run eleuther_eval --config eleuther_evaluation \\
        checkpointer.checkpoint_dir=/tmp/Llama-3.2-1B-Instruct tasks=[hellaswag]

The table goes to stdout; progress and the path of the results file to stderr.
Importing this module is cheap: torch and lm_eval load when the recipe runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tunesmith.errors import ConfigError

__all__ = ["EVAL_KEYS", "RESULTS_FILE", "run"]

#: The evaluator's settings, written at the top level as in torchtune's configs.
_EVALUATOR_KEYS = frozenset(
    {
        "tasks", "limit", "num_fewshot", "batch_size", "max_seq_len", "max_seq_length",
        "apply_chat_template", "include_path", "include_defaults", "seed", "enable_kv_cache",
    }
)  # fmt: skip

#: Every top-level key the ``eleuther_eval`` recipe reads.
EVAL_KEYS = _EVALUATOR_KEYS | frozenset(
    {
        "checkpointer", "model", "tokenizer", "adapter", "evaluator", "quantizer", "device",
        "dtype", "output_dir",
    }
)  # fmt: skip

#: The results file written to ``output_dir``.
RESULTS_FILE = "eleuther_eval_results.json"


def _plain(cfg: DictConfig) -> dict[str, Any]:
    data = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(data, dict)
    return data


def _evaluator(cfg: DictConfig) -> Any:
    """The evaluator the config describes: an ``evaluator:`` block, or the top-level keys."""
    from tunesmith.config import instantiate

    data = _plain(cfg)
    flat = {k: data[k] for k in sorted(_EVALUATOR_KEYS & data.keys())}
    if "max_seq_length" in flat:  # torchtune's spelling
        length = flat.pop("max_seq_length")
        if flat.get("max_seq_len") not in (None, length):
            raise ConfigError(
                f"max_seq_len={flat['max_seq_len']} and max_seq_length={length} disagree: "
                "keep one of them (max_seq_length is torchtune's name for max_seq_len)"
            )
        flat["max_seq_len"] = length
    if data.get("evaluator") is not None:
        if flat:
            raise ConfigError(
                f"the evaluator is configured twice, by the 'evaluator' block and by "
                f"{', '.join(sorted(flat))}: move those keys into the evaluator block or "
                "remove the block"
            )
        return instantiate(cfg.evaluator, key="evaluator")
    if "tasks" not in flat:
        raise ConfigError("no tasks to run: add tasks=[hellaswag] (any lm_eval task names)")
    from tunesmith_eval_eleuther._evaluator import EleutherEvaluator

    return EleutherEvaluator(**flat)


def _load(cfg: DictConfig) -> tuple[Any, Any]:
    from tunesmith.config import instantiate
    from tunesmith.recipes import checkpoint_dir_of, load_for_inference

    model_node = cfg.get("model")
    if model_node is not None and model_node.get("_component_", "auto") != "auto":
        raise ConfigError(
            f"eleuther_eval builds the model from {checkpoint_dir_of(cfg)}'s config.json: remove "
            f"'model' or set model._component_=auto (not {model_node.get('_component_')!r})"
        )
    model, tokenizer, device = load_for_inference(cfg)
    if cfg.get("quantizer") is not None:
        quantizer = instantiate(cfg.quantizer, key="quantizer")
        model = quantizer.quantize(model, device)
    return model, tokenizer


def _model_args(cfg: DictConfig, model: Any) -> dict[str, Any]:
    """What was evaluated, for the results' ``config.model_args`` (lm_eval leaves it
    empty for a model object)."""
    param = next(model.parameters(), None)
    quantizer = cfg.get("quantizer")
    return {
        "checkpoint_dir": str(cfg.checkpointer.checkpoint_dir),
        "adapter": None if cfg.get("adapter") is None else str(cfg.adapter),
        "quantizer": None if quantizer is None else quantizer.get("_component_"),
        "dtype": None if param is None else str(param.dtype).removeprefix("torch."),
        "device": None if param is None else str(param.device),
    }


def _write(results: dict[str, Any], output_dir: str) -> Path:
    from lm_eval.utils import handle_non_serializable

    from tunesmith.checkpoint import atomic_write

    directory = Path(output_dir).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, default=handle_non_serializable, ensure_ascii=False)
    return atomic_write(
        directory / RESULTS_FILE, lambda tmp: tmp.write_text(text + "\n", encoding="utf-8")
    )


def _table(results: dict[str, Any]) -> str:
    from lm_eval.utils import make_table

    if "results" not in results:  # another back-end's evaluator: its dict as is
        return json.dumps(results, indent=2, default=str)
    table = make_table(results)
    if results.get("groups"):
        table += "\n" + make_table(results, "groups")
    return table


def run(cfg: DictConfig) -> None:
    """Evaluate ``checkpointer.checkpoint_dir`` on ``tasks``.

    Config keys: ``checkpointer.checkpoint_dir``; ``adapter`` (a PEFT adapter directory
    applied on top); ``quantizer`` (a registered quantizer, applied before evaluating);
    ``tasks``, ``limit``, ``num_fewshot``, ``batch_size``, ``max_seq_len`` (torchtune's
    ``max_seq_length`` too), ``apply_chat_template``, ``include_path``,
    ``include_defaults``, ``seed``, ``enable_kv_cache`` — or an ``evaluator:`` block with
    ``_component_`` and those keys; ``device``, ``dtype``; ``output_dir`` (where
    ``eleuther_eval_results.json`` is written).

    Raises:
        ConfigError: no checkpoint directory or tasks, or invalid settings.
        NotFoundError: an unknown task name.
    """
    evaluator = _evaluator(cfg)
    if hasattr(evaluator, "resolve_tasks"):
        evaluator.resolve_tasks()  # a misspelled task fails before the model loads
    model, tokenizer = _load(cfg)
    results = evaluator.evaluate(model, tokenizer)
    if isinstance(results.get("config"), dict):
        results["config"]["model_args"] = _model_args(cfg, model)
    print(_table(results), flush=True)
    output_dir = cfg.get("output_dir")
    if output_dir:
        path = _write(results, output_dir)
        print(f"Wrote {path}", file=sys.stderr, flush=True)
