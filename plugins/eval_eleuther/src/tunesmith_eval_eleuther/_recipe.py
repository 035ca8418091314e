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

from tunesmith.config import Key, RecipeSchema, at_least
from tunesmith.errors import ConfigError

__all__ = ["EVAL_KEYS", "EVAL_SCHEMA", "RESULTS_FILE", "run"]


def _auto_model(value: dict[str, Any]) -> str | None:
    component = value.get("_component_", "auto")
    if component == "auto":
        return None
    return (
        "is not used: eleuther_eval builds the model from checkpointer.checkpoint_dir's "
        f"config.json: remove 'model' or set model._component_=auto (not {component!r})"
    )


#: The evaluator's settings, written at the top level as in torchtune's configs. They
#: have no defaults here: what is left out takes EleutherEvaluator's own default.
_EVALUATOR = (
    Key("tasks", (list, str), help="lm_eval task, group or tag names; globs work"),
    Key("limit", (int, float, None), help="Documents per task (a fraction in (0, 1] too)"),
    Key("num_fewshot", (int, None), check=at_least(0), help="null: each task's default"),
    Key("batch_size", int, check=at_least(1), help="Requests per forward pass (default 8)"),
    Key("max_seq_len", (int, None), check=at_least(1), help="null: the model's own"),
    Key("max_seq_length", (int, None), check=at_least(1), help="torchtune's max_seq_len"),
    Key("apply_chat_template", bool, help="Prompts in the chat format (default false)"),
    Key("fewshot_as_multiturn", (bool, None), help="Chat: few-shot examples as earlier turns"),
    Key("system_instruction", (str, None), help="A system prompt before every prompt"),
    Key("chat_template_args", (dict, None), help="More chat template variables"),
    Key("enable_thinking", (bool, None), help="Chat template's enable_thinking (Qwen 3)"),
    Key("think_end_token", (str, int, None), help="Ends the reasoning: answers follow it"),
    Key("include_path", (str, list, None), help="Extra task YAML directories"),
    Key("include_defaults", bool, help="false skips lm_eval's own tasks (default true)"),
    Key("seed", (int, None), help="lm_eval's seeds (default null)"),
    Key("enable_kv_cache", bool, help="Cache keys and values while generating (default true)"),
)
_EVALUATOR_KEYS = frozenset(key.name for key in _EVALUATOR)

#: Every top-level key the ``eleuther_eval`` recipe reads.
EVAL_SCHEMA = RecipeSchema(
    (
        Key("checkpointer", dict, required=True, help="{checkpoint_dir}: the model to evaluate"),
        Key("model", (dict, None), None, check=_auto_model, help="null or {_component_: auto}"),
        Key("tokenizer", (dict, None), None, help="null or {_component_: auto}: the checkpoint's"),
        Key("adapter", (str, None), None, help="A PEFT adapter directory applied on top, or null"),
        Key("quantizer", (dict, None), None, help="A quantizer applied before evaluating, or null"),
        Key("evaluator", (dict, None), None, help="{_component_: eleuther, tasks, ...} instead"),
        *_EVALUATOR,
        Key("device", str, "auto", help="auto (CUDA when present, else CPU), cpu, cuda, mps"),
        Key("dtype", str, "auto", help="auto (bf16 on CUDA, else fp32), bf16, fp32"),
        Key("output_dir", (str, None), None, help="Where eleuther_eval_results.json goes"),
    )
)
EVAL_KEYS = EVAL_SCHEMA.names

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
    from tunesmith.recipes import load_for_inference

    model, tokenizer, device = load_for_inference(cfg)
    if cfg.quantizer is not None:
        quantizer = instantiate(cfg.quantizer, key="quantizer")
        model = quantizer.quantize(model, device)
    return model, tokenizer


def _model_args(cfg: DictConfig, model: Any) -> dict[str, Any]:
    """What was evaluated, for the results' ``config.model_args`` (lm_eval leaves it
    empty for a model object)."""
    param = next(model.parameters(), None)
    quantizer = cfg.quantizer
    return {
        "checkpoint_dir": str(cfg.checkpointer.checkpoint_dir),
        "adapter": None if cfg.adapter is None else str(cfg.adapter),
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
    ``max_seq_length`` too), ``apply_chat_template``, ``fewshot_as_multiturn``,
    ``system_instruction``, ``chat_template_args``, ``enable_thinking``,
    ``think_end_token``, ``include_path``, ``include_defaults``, ``seed``,
    ``enable_kv_cache`` — or an ``evaluator:`` block with
    ``_component_`` and those keys; ``device``, ``dtype``; ``output_dir`` (where
    ``eleuther_eval_results.json`` is written).

    Raises:
        ConfigError: no checkpoint directory or tasks, or invalid settings.
        NotFoundError: an unknown task name.
    """
    cfg = EVAL_SCHEMA.with_defaults(cfg)  # (tunesmith run has filled them in already)
    evaluator = _evaluator(cfg)
    if hasattr(evaluator, "resolve_tasks"):
        evaluator.resolve_tasks()  # a misspelled task fails before the model loads
    model, tokenizer = _load(cfg)
    results = evaluator.evaluate(model, tokenizer)
    if isinstance(results.get("config"), dict):
        results["config"]["model_args"] = _model_args(cfg, model)
    print(_table(results), flush=True)
    if cfg.output_dir:
        path = _write(results, cfg.output_dir)
        print(f"Wrote {path}", file=sys.stderr, flush=True)
