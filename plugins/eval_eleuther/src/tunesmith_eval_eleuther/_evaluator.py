"""The ``eleuther`` evaluator: lm_eval tasks run on a native model.

Importing this module is cheap; lm_eval (and torch) load when ``evaluate`` runs, so
the registry and ``tunesmith --help`` stay fast.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Any

from tunesmith.errors import ConfigError, DataError, NotFoundError, did_you_mean

__all__ = ["EleutherEvaluator", "eleuther"]


def _task_list(tasks: Any) -> list[str]:
    if isinstance(tasks, str):
        tasks = [t.strip() for t in tasks.split(",")]
    if not isinstance(tasks, (list, tuple)) or not all(isinstance(t, str) for t in tasks):
        raise ConfigError(
            f"tasks must be a list of lm_eval task names, not {tasks!r}: e.g. tasks=[hellaswag]"
        )
    names = [t for t in tasks if t.strip()]
    if not names:
        raise ConfigError("no tasks to run: name at least one lm_eval task, e.g. tasks=[hellaswag]")
    return names


def _paths(include_path: Any) -> list[Path]:
    if include_path is None:
        return []
    raw = [include_path] if isinstance(include_path, (str, Path)) else include_path
    if not isinstance(raw, (list, tuple)) or not all(isinstance(p, (str, Path)) for p in raw):
        raise ConfigError(
            f"include_path must be a directory of task YAML files (or a list of them), "
            f"not {include_path!r}"
        )
    paths = [Path(p).expanduser() for p in raw]
    for path in paths:
        if not path.exists():
            raise ConfigError(
                f"include_path {path} does not exist: point it at a directory of lm_eval task "
                "YAML files"
            )
    return paths


def _dataset_error(exc: Exception) -> DataError:
    """One line for a task dataset that cannot be had, naming the likely fix."""
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    offline = [
        v for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE") if os.environ.get(v, "0") != "0"
    ]
    if isinstance(exc, ConnectionError) and offline:
        fix = f"unset {' and '.join(offline)} so that it can be downloaded once (it is cached)"
    elif isinstance(exc, ConnectionError):
        fix = (
            "check the connection to the Hugging Face Hub (datasets are cached after the first run)"
        )
    else:
        fix = (
            "check the task's dataset_path and dataset_kwargs (data_files), or that the "
            "dataset exists and your token can read it (hf auth login)"
        )
    return DataError(f"lm_eval could not load a task's dataset: {reason}: {fix}")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer of at least {minimum} or null, not {value!r}")


class EleutherEvaluator:
    """Runs EleutherAI lm-evaluation-harness tasks on a tunesmith model.

    Args:
        tasks: lm_eval task, group or tag names (glob patterns such as ``mmlu_*`` work),
            or paths to task YAML files; a comma-separated string is split.
        limit: Evaluate only this many documents per task (a float below 1: that
            fraction); ``None``: all. For quick checks, not for reported numbers.
        num_fewshot: Few-shot examples per prompt; ``None``: each task's default.
        batch_size: Requests per forward pass.
        include_path: A directory (or list) of extra task YAML files.
        include_defaults: Also index lm_eval's own tasks (~10 s); ``False`` with
            ``include_path`` evaluates local tasks only.
        max_seq_len: Longest sequence scored or generated; default the model's.
        apply_chat_template: Format prompts in the model family's chat format.
        fewshot_as_multiturn: With the chat format, give few-shot examples as earlier
            turns of the conversation; ``None`` keeps lm_eval's default.
        system_instruction: A system prompt put before every prompt.
        chat_template_args: More variables for the chat template (lm_eval's
            ``chat_template_args`` model argument).
        enable_thinking: The chat template's ``enable_thinking`` (Qwen 3); true needs
            ``think_end_token`` and generative tasks, as in lm_eval.
        think_end_token: The text or token id that ends a reasoning trace: answers are
            what follows it.
        seed: Seeds lm_eval's Python, NumPy, torch and few-shot sampling; ``None``
            keeps lm_eval's defaults.
        enable_kv_cache: Generate with the model's KV cache.

    Raises:
        ConfigError: an argument of the wrong type or range, or an ``include_path``
            that does not exist.

    Example:
        >>> evaluator = EleutherEvaluator(tasks=["hellaswag"], limit=100)
        >>> results = evaluator.evaluate(model, tokenizer)
        >>> results["results"]["hellaswag"]["acc_norm,none"]
    """

    def __init__(
        self,
        *,
        tasks: list[str] | str,
        limit: int | float | None = None,
        num_fewshot: int | None = None,
        batch_size: int = 8,
        include_path: str | list[str] | None = None,
        include_defaults: bool = True,
        max_seq_len: int | None = None,
        apply_chat_template: bool = False,
        fewshot_as_multiturn: bool | None = None,
        system_instruction: str | None = None,
        chat_template_args: dict[str, Any] | None = None,
        enable_thinking: bool | None = None,
        think_end_token: str | int | None = None,
        seed: int | None = None,
        enable_kv_cache: bool = True,
    ) -> None:
        self.tasks = _task_list(tasks)
        if limit is not None and (
            isinstance(limit, bool)
            or not isinstance(limit, (int, float))
            or limit <= 0
            or (isinstance(limit, float) and limit > 1)
        ):
            raise ConfigError(
                f"limit must be a number of documents (an integer >= 1), a fraction in (0, 1], "
                f"or null, not {limit!r}"
            )
        _check_int("num_fewshot", num_fewshot, 0)
        _check_int("batch_size", batch_size, 1)
        _check_int("max_seq_len", max_seq_len, 2)
        _check_int("seed", seed, 0)
        self.limit = limit
        self.num_fewshot = num_fewshot
        self.batch_size = batch_size
        self.include_paths = _paths(include_path)
        self.include_defaults = bool(include_defaults)
        self.max_seq_len = max_seq_len
        self.apply_chat_template = bool(apply_chat_template)
        self.fewshot_as_multiturn = fewshot_as_multiturn
        self.system_instruction = system_instruction
        self.chat_template_args = chat_template_args
        self.enable_thinking = enable_thinking
        self.think_end_token = think_end_token
        self.seed = seed
        self.enable_kv_cache = bool(enable_kv_cache)
        self._manager: Any = None
        if not self.include_defaults and not self.include_paths:
            raise ConfigError(
                "include_defaults is false and there is no include_path, so no task exists: "
                "set include_path=<directory of task YAML files> or include_defaults=true"
            )

    def task_manager(self) -> Any:
        """lm_eval's ``TaskManager`` over ``include_path`` (and lm_eval's own tasks), built
        once: indexing lm_eval's ~15k tasks takes seconds."""
        if self._manager is None:
            from lm_eval.tasks import TaskManager

            include = [str(p) for p in self.include_paths] or None
            self._manager = TaskManager(
                include_path=include, include_defaults=self.include_defaults
            )
        return self._manager

    def resolve_tasks(self) -> list[str]:
        """The task names to run, with glob patterns expanded. Cheap to call before
        loading a model, so that a misspelled task fails fast.

        Raises:
            NotFoundError: a name no task, group, tag or YAML file answers to; the
                message suggests close names and how to list them.
        """
        known = self.task_manager().all_tasks
        resolved: list[str] = []
        problems: list[str] = []
        for name in self.tasks:
            if name in known:
                matches = [name]
            elif name.endswith((".yaml", ".yml")) and Path(name).expanduser().is_file():
                matches = [str(Path(name).expanduser().resolve())]
            elif any(c in name for c in "*?["):
                matches = fnmatch.filter(known, name)
            else:
                matches = []
            if not matches:
                problems.append(f"'{name}'{did_you_mean(name, known)}")
            resolved.extend(m for m in matches if m not in resolved)
        if problems:
            where = []
            if self.include_defaults:
                where.append("lm_eval's tasks")
            where += [f"include_path {p}" for p in self.include_paths]
            listing = "lm-eval ls tasks" + "".join(
                f" --include_path {p}" for p in self.include_paths
            )
            raise NotFoundError(
                f"unknown lm_eval task{'s' if len(problems) > 1 else ''} "
                f"{', '.join(problems)} (searched {' and '.join(where)}): list the available "
                f"tasks with `{listing}` (older lm_eval: `lm_eval --tasks list`)"
            )
        return resolved

    def evaluate(self, model: Any, tokenizer: Any) -> dict[str, Any]:
        """Run the tasks on ``model`` and return lm_eval's results.

        Args:
            model: A native tunesmith model (e.g. from :func:`tunesmith.load_pretrained`).
            tokenizer: Its :class:`tunesmith.data.ModelTokenizer`.

        Returns:
            ``lm_eval.simple_evaluate``'s dict: ``results`` (per task,
            ``{"acc,none": ..., "acc_stderr,none": ...}``), ``groups``, ``configs``,
            ``versions``, ``n-shot``, ``higher_is_better``, ``n-samples``, ``config``.
            ``lm_eval.utils.make_table(results)`` prints it.

        Raises:
            NotFoundError: an unknown task name.
            ConfigError: ``max_seq_len`` larger than the model's.
            DataError: a task's dataset cannot be downloaded or read.
        """
        from lm_eval import simple_evaluate

        from tunesmith_eval_eleuther._lm import TunesmithLM

        tasks = self.resolve_tasks()
        lm = TunesmithLM(
            model,
            tokenizer,
            batch_size=self.batch_size,
            max_seq_len=self.max_seq_len,
            enable_kv_cache=self.enable_kv_cache,
            chat_template_args=self.chat_template_args,
            enable_thinking=self.enable_thinking,
            think_end_token=self.think_end_token,
        )
        options: dict[str, Any] = {"system_instruction": self.system_instruction}
        if self.fewshot_as_multiturn is not None:
            options["fewshot_as_multiturn"] = self.fewshot_as_multiturn
        seeds: dict[str, int] = {}
        if self.seed is not None:
            seeds = {
                "random_seed": self.seed,
                "numpy_random_seed": self.seed,
                "torch_random_seed": self.seed,
                "fewshot_random_seed": self.seed,
            }
        _quiet_git_hash()
        try:
            results = simple_evaluate(
                model=lm,
                tasks=tasks,
                task_manager=self.task_manager(),
                num_fewshot=self.num_fewshot,
                limit=self.limit,
                batch_size=self.batch_size,
                apply_chat_template=self.apply_chat_template,
                log_samples=False,
                **options,
                **seeds,
            )
        except (ConnectionError, FileNotFoundError) as exc:
            # What datasets raises for a Hub dataset it cannot reach (or may not read)
            # and for a missing local data file.
            raise _dataset_error(exc) from exc
        return dict(results or {})


def _quiet_git_hash() -> None:
    """lm_eval records the git commit of the working directory by running ``git
    describe`` with the terminal as its stderr, so every evaluation run outside a git
    checkout printed "fatal: not a git repository": ask git the same, quietly."""
    import subprocess

    import lm_eval.evaluator

    def get_git_commit_hash() -> str | None:
        try:
            out = subprocess.run(
                ["git", "describe", "--always"], capture_output=True, text=True, check=False
            )
        except OSError:  # no git installed
            return None
        return out.stdout.strip() or None if out.returncode == 0 else None

    lm_eval.evaluator.get_git_commit_hash = get_git_commit_hash


#: The ``eleuther`` evaluator's builder (``evaluator: {_component_: eleuther, ...}``):
#: the class itself, so ``validate`` checks a config block against its signature.
eleuther = EleutherEvaluator
