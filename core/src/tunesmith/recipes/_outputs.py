"""What a fine-tune writes besides the weights, so each ``epoch_N/`` is ready for the Hub.

- the prompt format the dataset used (:mod:`tunesmith.tokenizers._prompt`);
- ``config.json`` with RoPE settings in both transformers-4 (``rope_theta``,
  ``rope_scaling``) and transformers-5 (``rope_parameters``) layouts: vLLM on
  transformers 4 reads only the first and silently uses theta 10000 without it;
- ``README.md``: a model card (base model, data, recipe and key settings, final
  losses as logged, the loss curve, how to load it) in place of the base model's;
- ``loss_curve.png`` (also in ``output_dir/logs/``): train loss per step, validation
  loss and learning rate;
- no ``tunesmith_source.json``: that records where the *base* was downloaded from.

:class:`History` keeps every logged metric in memory, so the card and the picture show
exactly what the metric logger received.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunesmith.hub import SOURCE_FILE  # tunesmith download's record of a base model

__all__ = [
    "SOURCE_FILE",
    "History",
    "base_model_name",
    "both_rope_layouts",
    "dataset_name",
    "plot_metrics",
    "read_metrics",
    "vllm_problems",
    "write_model_card",
]

PLOT_NAME = "loss_curve.png"


class History:
    """A metric logger that remembers what it logs and passes it on to ``logger``."""

    def __init__(self, logger: Any) -> None:
        self.logger = logger
        self.records: list[dict[str, float | int]] = []
        self.plotted_at: float | None = None  # time.monotonic() of the last picture

    def log_dict(self, metrics: Mapping[str, Any], step: int) -> None:
        values = {k: v.item() if hasattr(v, "item") else v for k, v in metrics.items()}
        self.records.append({"step": step, **values})
        self.logger.log_dict(metrics, step=step)

    def log(self, name: str, value: Any, step: int) -> None:
        self.log_dict({name: value}, step)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.logger, name)

    def last(self, name: str) -> tuple[int, float] | None:
        """``(step, value)`` of the last record holding ``name``."""
        for record in reversed(self.records):
            if name in record:
                return int(record["step"]), float(record[name])
        return None


# ---------------------------------------------------------------- naming ---


def read_source(directory: str | os.PathLike) -> dict[str, Any]:
    """What ``tunesmith download`` recorded about ``directory`` (empty if nothing)."""
    path = Path(directory) / SOURCE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def base_model_name(checkpoint_dir: str | os.PathLike) -> str:
    """The Hub repo a checkpoint directory was downloaded from (``tunesmith download``
    records it), else the directory's path (an adapter's ``base_model_name_or_path``)."""
    repo = read_source(checkpoint_dir).get("repo_id")
    return str(repo) if repo else str(checkpoint_dir)


def _is_local(source: str) -> bool:
    return source.startswith(("/", ".", "~")) or os.sep in source and Path(source).exists()


def dataset_name(block: Mapping[str, Any] | None) -> str:
    """How a model card names a dataset: its Hub name, or a local file's name only."""
    if not block:
        return "unknown"
    source = str(block.get("source") or "")
    files = block.get("data_files")
    if files and not isinstance(files, (str, os.PathLike)):
        files = next(iter(files.values() if isinstance(files, Mapping) else files), None)
    if files:
        return f"{Path(str(files)).name} (a local {source or 'data'} file)"
    if _is_local(source):
        return f"{Path(source).name} (a local file)"
    return source or str(block.get("_component_"))


# ------------------------------------------------------------ config.json ---


def both_rope_layouts(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` readable by transformers 4 and 5 (a copy): a flat transformers-5
    ``rope_parameters`` also gets the -4 keys (``rope_theta``, ``rope_scaling``).

    A -4 layout is left as it is: transformers 5 (and vLLM on it) converts it itself,
    per model type (Gemma 3's per-layer-type form from ``rope_local_base_freq``, ...),
    which a flat guess here would get wrong. Per-layer-type ``rope_parameters`` are left
    as they are too.
    """
    config = dict(config)
    params = config.get("rope_parameters")
    if isinstance(params, Mapping) and "rope_theta" in params:
        config.setdefault("rope_theta", params["rope_theta"])
        kind = params.get("rope_type", "default")
        if kind != "default" and not config.get("rope_scaling"):
            config["rope_scaling"] = {k: v for k, v in params.items() if k != "rope_theta"}
    return config


def _fix_config(directory: Path) -> None:
    path = directory / "config.json"
    if not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    fixed = both_rope_layouts(config)
    if fixed != config:
        path.write_text(json.dumps(fixed, indent=2) + "\n", encoding="utf-8")


# --------------------------------------------------------------- adapters ---


def vllm_problems(adapter_dir: Path) -> list[str]:
    """Why vLLM cannot load the PEFT adapter in ``adapter_dir`` (empty: it can)."""
    path = adapter_dir / "adapter_config.json"
    if not path.is_file():
        return []
    config = json.loads(path.read_text(encoding="utf-8"))
    problems = []
    if config.get("use_dora"):
        problems.append("it is a DoRA adapter (use_dora), which vLLM does not load")
    if config.get("modules_to_save"):
        problems.append(
            f"it trains whole modules ({', '.join(config['modules_to_save'])}: "
            "modules_to_save), which vLLM does not load"
        )
    return problems


# ----------------------------------------------------------------- metrics ---


def read_metrics(log_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every record of the DiskLogger files (``*.jsonl``) in ``log_dir``, oldest first.

    Raises:
        TunesmithError: the directory holds no metrics.
    """
    from tunesmith.errors import TunesmithError

    directory = Path(log_dir)
    files = sorted(directory.glob("*.jsonl")) if directory.is_dir() else []
    records: list[dict[str, Any]] = []
    for file in files:
        for line in file.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line a killed run left half-written
            if isinstance(record, dict) and "step" in record:
                records.append(record)
    if not records:
        raise TunesmithError(
            f"no metrics in {directory}: point it at a run's log directory (output_dir/logs, "
            "written by metric_logger tunesmith.training.DiskLogger)"
        )
    return records


def _matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


PLOT_HINT = "the loss curve needs matplotlib: pip install 'tunesmith[plot]'"


def plot_metrics(
    records: list[Mapping[str, Any]], path: str | os.PathLike, *, title: str = ""
) -> Path | None:
    """Draw train loss per step, validation loss and learning rate to a PNG.

    Returns:
        ``path``, or ``None`` when matplotlib is not installed (see :data:`PLOT_HINT`).
    """
    plt = _matplotlib()
    if plt is None:
        return None
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    lr = [(r["step"], r["lr"]) for r in records if "lr" in r]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", color="tab:blue", linewidth=1.2)
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation loss", color="tab:orange")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if lr:
        ax2 = ax.twinx()
        ax2.plot(
            *zip(*lr, strict=True), label="learning rate", color="tab:green", alpha=0.6, linewidth=1
        )
        ax2.set_ylabel("learning rate")
        ax2.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        more = ax2.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    if handles:
        ax.legend(handles, labels, loc="upper right")
    ax.set_title(title or "training")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


# -------------------------------------------------------------- model card ---


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items() if k != "_component_")
    return str(value)


def _datasets(cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The run's dataset blocks: one, or torchtune's list of them."""
    node = cfg.get("dataset") or {}
    return [dict(d) for d in node] if isinstance(node, (list, tuple)) else [dict(node)]


def _settings(cfg: Mapping[str, Any], recipe: str) -> list[tuple[str, str]]:
    optimizer = dict(cfg.get("optimizer") or {})
    scheduler = dict(cfg.get("lr_scheduler") or {})
    peft = dict(cfg.get("peft") or {})
    datasets = _datasets(cfg)
    tokenizer = dict(cfg.get("tokenizer") or {})
    rows = [
        ("recipe", recipe),
        ("method", f"{peft.get('_component_')} ({_fmt(peft)})" if peft else "full fine-tuning"),
        ("dataset", " + ".join(f"{dataset_name(d)} via {d.get('_component_')}" for d in datasets)),
        ("train_on_input", " / ".join(_fmt(d.get("train_on_input", False)) for d in datasets)),
        ("packed", _fmt(datasets[0].get("packed", False) if datasets else False)),
        ("max_seq_len", _fmt(tokenizer.get("max_seq_len"))),
        ("epochs", _fmt(cfg.get("epochs"))),
        ("batch size", f"{cfg.get('batch_size')} x {cfg.get('gradient_accumulation_steps')} accumulation"),
        ("optimizer", f"{str(optimizer.get('_component_')).rsplit('.', 1)[-1]} ({_fmt(optimizer)})"),
        ("lr scheduler", f"{str(scheduler.get('_component_')).rsplit('.', 1)[-1]} ({_fmt(scheduler)})" if scheduler else "constant"),
        ("dtype", _fmt(cfg.get("dtype"))),
        ("seed", _fmt(cfg.get("seed"))),
    ]  # fmt: skip
    return rows


def write_model_card(
    directory: Path,
    *,
    cfg: Mapping[str, Any],
    recipe: str,
    base: str,
    epoch: int,
    history: History,
    picture: str | None,
    adapter: bool,
    adapter_only: bool,
    prompt: Any = None,
    vllm: list[str] = (),
) -> Path:
    """Write ``directory/README.md``: the Hub model card of one epoch's checkpoint."""
    from tunesmith import __version__

    hub_base = base if not _is_local(base) else None
    name = directory.name if not directory.name.startswith(".") else f"epoch_{epoch}"
    front = ["---", f"library_name: {'peft' if adapter_only else 'transformers'}"]
    if hub_base:
        front.append(f"base_model: {hub_base}")
    hub = [str(d.get("source") or "") for d in _datasets(cfg)]
    hub = [s for s in hub if s and not _is_local(s) and "/" in s]
    if hub:
        front.append("datasets:\n" + "\n".join(f"- {s}" for s in hub))
    tags = ["tunesmith", "fine-tuned"] + (["lora", "peft"] if adapter else [])
    front += ["tags:"] + [f"- {t}" for t in tags] + ["---", ""]
    base_text = (
        f"[{hub_base}](https://huggingface.co/{hub_base})"
        if hub_base
        else f"`{Path(base).name}` (a local checkpoint)"
    )
    lines = [
        f"# {name}",
        "",
        f"Fine-tuned from {base_text} with [tunesmith](https://pypi.org/project/tunesmith/) "
        f"{__version__}: epoch {epoch + 1} of {cfg.get('epochs')}.",
        "",
        "## Training",
        "",
        "| setting | value |",
        "| --- | --- |",
        *(f"| {k} | {v} |" for k, v in _settings(cfg, recipe)),
        "",
        "## Results",
        "",
    ]
    train, val = history.last("loss"), history.last("val_loss")
    lines += ["| metric | value | step |", "| --- | --- | --- |"]
    if train:
        lines.append(f"| final train loss | {train[1]:.4f} | {train[0]} |")
    if val:
        lines.append(f"| final validation loss | {val[1]:.4f} | {val[0]} |")
    lines.append("")
    if picture:
        lines += [f"![Train loss, validation loss and learning rate]({picture})", ""]
    if prompt is not None:
        prefix, suffix = prompt.roles.get("user", ("", ""))
        lines += [
            "## Prompt format",
            "",
            f"It was trained on prompts in the {prompt.name or 'custom'} format; the chat "
            "template in `tokenizer_config.json` applies it, so `apply_chat_template` (and "
            "vLLM's `llm.chat`) prompt it as trained. A user turn becomes:",
            "",
            "```text",
            f"{prefix}<your question>{suffix}",
            "```",
            "",
        ]
    repo = "<this repo>"
    lines += ["## Use it", ""]
    if not adapter_only:
        lines += [
            "With transformers:",
            "",
            "```python",
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            f'model = AutoModelForCausalLM.from_pretrained("{repo}")',
            f'tokenizer = AutoTokenizer.from_pretrained("{repo}")',
            'ids = tokenizer.apply_chat_template([{"role": "user", "content": "Hello"}], '
            'add_generation_prompt=True, return_tensors="pt")',
            "print(tokenizer.decode(model.generate(ids, max_new_tokens=64)[0]))",
            "```",
            "",
            "With vLLM:",
            "",
            "```python",
            "from vllm import LLM",
            f'print(LLM("{repo}").chat([{{"role": "user", "content": "Hello"}}]))',
            "```",
            "",
        ]
    if adapter:
        where = "" if adapter_only else ', subfolder="adapter"'
        base_ref = hub_base or "<the base model>"
        lines += [
            "The LoRA adapter alone, on its base model, with PEFT"
            + ("" if adapter_only else " (it is in `adapter/`)")
            + ":",
            "",
            "```python",
            "from peft import PeftModel",
            "from transformers import AutoModelForCausalLM",
            f'base = AutoModelForCausalLM.from_pretrained("{base_ref}")',
            f'model = PeftModel.from_pretrained(base, "{repo}"{where})',
            "```",
            "",
        ]
        if vllm:
            lines += [
                f"vLLM cannot serve the adapter: {'; '.join(vllm)}. Serve the merged weights instead.",
                "",
            ]
        else:
            lines += [
                "vLLM serves the adapter too: `vllm serve " + base_ref + " --enable-lora "
                "--lora-modules mine=<adapter directory>`.",
                "",
            ]
    lines += [
        "With tunesmith:",
        "",
        "```bash",
        f"tunesmith run generate --config generation checkpointer.checkpoint_dir={repo} --chat",
        "```",
        "",
    ]
    path = directory / "README.md"
    path.write_text("\n".join(front + lines), encoding="utf-8")
    return path


def finish_epoch_dir(
    directory: Path,
    *,
    cfg: Mapping[str, Any],
    recipe: str,
    checkpoint_dir: Path,
    epoch: int,
    history: History,
    log_dir: Path,
    tokenizer: Any,
    prompt: Any,
    adapter: bool,
    adapter_only: bool,
) -> dict[str, Any]:
    """Everything besides the weights (see the module docstring); returns what the run
    summary reports: ``{"plot": path or None, "vllm": [reasons]}``."""
    (directory / SOURCE_FILE).unlink(missing_ok=True)
    _fix_config(directory)
    if prompt is not None:
        from tunesmith.tokenizers import write_prompt_format

        add_bos = bool(
            getattr(tokenizer, "add_bos", getattr(tokenizer, "bos_id", None) is not None)
        )
        write_prompt_format(directory, prompt, add_bos=add_bos)
    title = f"{Path(str(cfg.get('output_dir'))).name}: epoch {epoch + 1}"
    # Drawing takes ~0.2 s: runs of many short epochs redraw at most every 10 s (and
    # always after the last epoch), copying the latest picture meanwhile.
    last = epoch + 1 >= int(cfg.get("epochs") or 1)
    plot: Path | None = log_dir / PLOT_NAME
    if last or history.plotted_at is None or time.monotonic() - history.plotted_at >= 10:
        plot = plot_metrics(history.records, log_dir / PLOT_NAME, title=title)
        history.plotted_at = time.monotonic()
    elif not plot.is_file():
        plot = None
    picture = None
    if plot is not None:
        shutil.copyfile(plot, directory / PLOT_NAME)
        picture = PLOT_NAME
    vllm = vllm_problems(directory / "adapter") if adapter else []
    write_model_card(
        directory, cfg=cfg, recipe=recipe, base=base_model_name(checkpoint_dir), epoch=epoch,
        history=history, picture=picture, adapter=adapter, adapter_only=adapter_only,
        prompt=prompt, vllm=vllm,
    )  # fmt: skip
    return {"plot": plot, "vllm": vllm, "last": last}


def recipe_name() -> str:
    """The recipe this process runs (from ``tunesmith run RECIPE``), or ``finetune``."""
    from tunesmith.recipes import _run_dir

    argv = _run_dir._INVOCATION or ["tunesmith", *sys.argv[1:]]
    if len(argv) > 2 and argv[1] == "run":
        return Path(argv[2]).name if argv[2].endswith(".py") else argv[2]
    return "finetune"


def log_dir_of(run: Any) -> Path:
    """Where the run's metrics go: its DiskLogger's directory, else ``output_dir/logs``."""
    logger = getattr(run.logger, "logger", run.logger)
    directory = getattr(logger, "log_dir", None)
    return Path(directory) if directory is not None else Path(str(run.cfg.output_dir)) / "logs"


def describe_logs(run: Any) -> str:
    """One line saying where the run's metrics go, for the start of a run."""
    logger = getattr(run.logger, "logger", run.logger)
    path = getattr(logger, "path", None) or getattr(logger, "log_dir", None)
    where = str(path) if path is not None else "stdout"
    return f"Metrics: {where} ({type(logger).__name__}); loss curve: {log_dir_of(run) / PLOT_NAME}"


def epoch_writer(run: Any, epoch: int, write_adapter: Any) -> Any:
    """The ``extra`` callback of ``Checkpointer.save_epoch`` for a fine-tuning run: the
    adapter (if any), then :func:`finish_epoch_dir`. What it found is kept in
    ``run.epoch_report`` for the run's summary."""
    from omegaconf import OmegaConf

    def write(directory: Path) -> None:
        if write_adapter is not None:
            write_adapter(directory)
        cfg = OmegaConf.to_container(run.cfg, resolve=True)
        dataset = getattr(run.loader, "dataset", None)
        run.epoch_report = finish_epoch_dir(
            directory, cfg=cfg, recipe=recipe_name(), checkpoint_dir=run.checkpointer.checkpoint_dir,
            epoch=epoch, history=run.logger, log_dir=log_dir_of(run), tokenizer=run.tokenizer,
            prompt=getattr(dataset, "prompt_template", None), adapter=run.peft is not None,
            adapter_only=run.peft is not None and bool(run.cfg.get("save_adapter_weights_only")),
        )  # fmt: skip

    return write


def summary(run: Any) -> list[str]:
    """Lines the run prints after its last epoch: the loss curve, and what vLLM cannot load."""
    report = getattr(run, "epoch_report", None) or {}
    if not report.get("last"):
        return []  # said once, after the last epoch
    lines = []
    if report.get("plot") is not None:
        lines.append(f"Loss curve: {report['plot']}")
    elif report:
        lines.append(f"No loss curve: {PLOT_HINT}")
    for reason in report.get("vllm", []):
        lines.append(f"Note: vLLM cannot serve this adapter: {reason}; serve the merged weights")
    return lines
