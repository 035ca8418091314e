"""The ``tunesmith`` command.

Every subcommand is short: it parses arguments, calls the library and prints.
User errors (:class:`tunesmith.TunesmithError`) print one line and exit non-zero;
``--debug`` or ``TUNESMITH_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import threading
from pathlib import Path

import click

from tunesmith import __version__
from tunesmith.errors import TunesmithError, describe_error
from tunesmith.registry import KINDS, get_registry
from tunesmith.scaffold import PLUGIN_KINDS

# torchrun's options that `tunesmith run` passes through (name -> takes a value).
TORCHRUN_OPTIONS = {
    "nnodes": True,
    "nproc-per-node": True,
    "node-rank": True,
    "master-addr": True,
    "master-port": True,
    "rdzv-backend": True,
    "rdzv-endpoint": True,
    "rdzv-id": True,
    "rdzv-conf": True,
    "max-restarts": True,
    "standalone": False,
}


def _debug() -> bool:
    return os.environ.get("TUNESMITH_DEBUG", "") not in ("", "0")


class _Group(click.Group):
    """Turns every error into one line naming the cause and the fix (and an exit code)
    instead of a traceback; ``--debug`` shows the traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except BrokenPipeError:
            raise  # stdout's reader left (`| head`): click exits quietly on EPIPE
        except Exception as exc:
            if _debug():
                raise
            message, code = describe_error(exc)
            if not _report_to_launcher(message):
                for line in getattr(exc, "messages", [message]):
                    click.echo(f"error: {line}", err=True)
            ctx.exit(code)
        except KeyboardInterrupt as exc:
            if _debug():
                raise
            click.echo(
                "\nerror: interrupted: what was being written was removed (earlier saves, "
                "such as a run's finished epochs, are kept)",
                err=True,
            )
            ctx.exit(143 if isinstance(exc, Terminated) else 130)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so that it unwinds as Ctrl-C does."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


def terminate_as_interrupt() -> None:
    """Make SIGTERM (``kill``, a scheduler ending the job) unwind like Ctrl-C, so an
    output being written is removed instead of left half-done beside its destination.
    torchrun's workers (``RANK`` set) keep the handling torchrun expects."""
    if os.environ.get("RANK") is None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


def _report_to_launcher(message: str) -> bool:
    """Under ``tunesmith run --nproc-per-node``, hand the error to the launching process
    (which prints it once for all ranks) instead of printing it here."""
    directory, rank = os.environ.get("TUNESMITH_ERROR_DIR"), os.environ.get("RANK")
    if not directory or rank is None or not Path(directory).is_dir():
        return False
    (Path(directory) / f"rank{rank}.txt").write_text(message, encoding="utf-8")
    return True


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tunesmith")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def cli(debug: bool) -> None:
    """Fine-tune, evaluate, quantize and run LLMs.

    \b
    Examples:
      tunesmith download meta-llama/Llama-3.2-1B-Instruct
      tunesmith ls
      tunesmith run full_finetune_single_device --config llama3_2/1B_full_single_device \\
          checkpointer.checkpoint_dir=/models/Llama-3.2-1B-Instruct
      tunesmith demo
    """
    if debug:
        os.environ["TUNESMITH_DEBUG"] = "1"
    if not sys.stderr.isatty():
        # Progress bars redraw with carriage returns, which pile up in a log file; the
        # recipes print plain progress lines there instead (training.LineProgress).
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        if "datasets" in sys.modules:
            sys.modules["datasets"].disable_progress_bars()


# ------------------------------------------------------------------ plugins ---


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--all", "show_builtins", is_flag=True, help="Include the core's built-in plugins.")
@click.pass_context
def plugins(ctx: click.Context, as_json: bool, show_builtins: bool) -> None:
    """List installed plugins, what each registered, and load errors.

    The JSON form is documented in docs/plugins.md ("Inspecting plugins").

    \b
    Examples:
      tunesmith plugins
      tunesmith plugins --all --json
      TUNESMITH_LOAD_PLUGINS=llama tunesmith plugins
      tunesmith plugins check llama
    """
    if ctx.invoked_subcommand is not None:
        return
    registry = get_registry()
    shown = [p for p in registry.plugins.values() if show_builtins or not p.builtin]
    missing = registry.missing_requirements()
    if as_json:
        payload = {
            "plugins": [p.to_dict() for p in shown],
            "conflicts": [c.message() for c in registry.conflicts.values()],
            "missing": missing,
        }
        click.echo(json.dumps(payload, indent=2))
        return
    if not shown:
        click.echo("No plugins installed. Try: pip install tunesmith-llama tunesmith-lora")
    for info in shown:
        click.echo(f"{info.name} ({info.distribution} {info.version})")
        if info.error:
            click.echo(f"  ERROR: {info.error}")
            continue
        click.echo(f"  hooks: {', '.join(info.hooks) or '-'}")
        for kind in KINDS:
            names = info.components.get(kind)
            if names:
                click.echo(f"  {kind}: {', '.join(sorted(names))}")
    for conflict in registry.conflicts.values():
        click.echo(f"CONFLICT: {conflict.message()}")
    for distribution, configs in missing.items():
        click.echo(
            f"MISSING: {len(configs)} config(s) need {distribution} "
            f"(e.g. {configs[0]}): pip install {distribution}"
        )


@plugins.command(name="check")
@click.argument("name")
@click.option("--work-dir", type=click.Path(path_type=Path), help="Keep the checkpoints here.")
def plugins_check(name: str, work_dir: Path | None) -> None:
    """Run the conformance kit on everything plugin NAME registered.

    Families get the HF round trip, KV-cache, logits and greedy-generation parity with
    transformers and a LoRA step checked in PEFT; PEFT methods, quantizers and shipped
    configs get their own checks. Needs the test dependencies (transformers, peft).

    \b
    Examples:
      tunesmith plugins check llama
      tunesmith plugins check lora --work-dir /tmp/kit
    """
    from tunesmith.testing import ConformanceError, check_plugin

    try:
        results = check_plugin(name, work_dir=work_dir)
    except ConformanceError as exc:
        click.echo(f"FAIL {name}", err=True)
        click.echo(str(exc), err=True)
        raise SystemExit(1) from None
    for component, ran in results.items():
        shown = ", ".join(ran) if len(ran) <= 8 else f"{len(ran)} checks"
        click.echo(f"ok {component}: {shown}")
    click.echo(f"PASS {name}: {sum(len(r) for r in results.values())} checks")


# -------------------------------------------------------------- ls, cp, val ---


_BUILTIN_PATHS = {
    "metric_logger": [
        f"tunesmith.training.{n}"
        for n in ("DiskLogger", "StdoutLogger", "TensorBoardLogger", "WandBLogger")
    ],
    "lr_scheduler": [
        f"tunesmith.training.{n}"
        for n in ("cosine_with_warmup", "linear_with_warmup", "constant_with_warmup")
    ],
    "loss": ["tunesmith.training.ChunkedCrossEntropyLoss"],
    "optimizer": ["torch.optim.AdamW", "torch.optim.SGD", "... any torch.optim optimizer"],
}


@cli.command(name="ls")
@click.option("--all", "show_all", is_flag=True, help="Also list every other registered component.")
def ls_(show_all: bool) -> None:
    """List recipes and the configs shipped for each.

    \b
    Examples:
      tunesmith ls
      tunesmith ls --all
    """
    registry = get_registry()
    by_recipe: dict[str, list[str]] = {}
    for config in registry.values("configs"):
        by_recipe.setdefault(config.recipe, []).append(config.name)
    width = max([len(n) for n in registry.names("recipes")] + [6])
    click.echo(f"{'RECIPE':<{width}}  CONFIG")
    for recipe in registry.values("recipes"):
        configs = by_recipe.get(recipe.name) or ["-"]
        for i, name in enumerate(configs):
            click.echo(f"{recipe.name if i == 0 else '':<{width}}  {name}")
    for distribution, names in registry.missing_requirements().items():
        click.echo(f"\n({len(names)} more configs need {distribution}: pip install {distribution})")
    if show_all:
        for kind in KINDS:
            if kind in ("recipes", "configs"):
                continue
            click.echo(f"\n{kind}: {', '.join(registry.names(kind)) or '-'}")
        # Named by dotted path in configs (any torch.optim optimizer works too).
        for key, names in _BUILTIN_PATHS.items():
            click.echo(f"\n{key} (dotted paths): {', '.join(names)}")


@cli.command()
@click.argument("source")
@click.argument("destination", type=click.Path())
@click.option("--force", is_flag=True, help="Overwrite an existing destination file.")
# torchtune's `tune cp` flags, so its habits work: folders are always made, and an
# existing file is never overwritten without --force.
@click.option("--make-parents", is_flag=True, hidden=True)
@click.option("--no-clobber", "-n", is_flag=True, hidden=True)
def cp(source: str, destination: str, force: bool, make_parents: bool, no_clobber: bool) -> None:
    """Copy a shipped config (or a recipe's file) to DESTINATION to edit it.

    Missing folders of DESTINATION are made (torchtune's --make-parents); an existing
    file is kept unless --force (torchtune's -n/--no-clobber is the default here).

    \b
    Examples:
      tunesmith cp llama3_2/1B_lora_single_device ./my_lora.yaml
      tunesmith cp llama3_2/1B_full_single_device configs/
    """
    from tunesmith.config import config_source

    registry = get_registry()
    if source in registry.tables["recipes"] and source not in registry.tables["configs"]:
        import importlib.util
        import inspect

        run = registry.get("recipes", source).run
        module = getattr(run, "recipe_module", None)
        path = Path(importlib.util.find_spec(module).origin if module else inspect.getfile(run))
        text = path.read_text(encoding="utf-8")
    else:
        text, _, _ = config_source(source)
        path = Path(f"{Path(source).name.removesuffix('.yaml')}.yaml")
    # A trailing slash names a folder even before it exists (Path() would drop it).
    target = Path(destination)
    if target.is_dir() or destination.endswith(("/", os.sep)):
        target = target / path.name
    if target.suffix == "" and path.suffix:
        target = target.with_suffix(path.suffix)
    if target.exists() and (no_clobber or not force):
        raise TunesmithError(f"{target} already exists: choose another name or pass --force")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    click.echo(f"Copied {source} to {target}")


def _recipe(name: str):
    """The recipe ``name`` names: a registered one, or a recipe file (``./my_recipe.py``,
    e.g. one `tunesmith cp` copied) whose ``run(cfg)`` runs it, or the one doing a
    torchtune recipe's job (``dev/generate_v2``: ``generate``); torchtune recipes
    tunesmith has no equivalent of are refused, naming what they do."""
    from tunesmith.config._torchtune import TORCHTUNE_EQUIVALENTS, refuse_torchtune_recipe

    registry = get_registry()
    if name.endswith(".py") and name not in registry.tables["recipes"]:
        return _recipe_file(Path(name))
    if name not in registry.tables["recipes"]:
        refuse_torchtune_recipe(name)
        name = TORCHTUNE_EQUIVALENTS.get(name, name)
    return registry.get("recipes", name)


def _recipe_file(path: Path):
    """A :class:`tunesmith.Recipe` from a Python file: its ``run(cfg)``, and its schema
    (``SCHEMA``, else the one ``RecipeSchema`` it holds, else any key is accepted)."""
    import importlib.util

    from tunesmith import Recipe
    from tunesmith.config import RecipeSchema

    if not path.is_file():
        raise TunesmithError(
            f"recipe file {path} does not exist: check the path, or name a recipe from "
            "`tunesmith ls`"
        )
    module_name = "tunesmith_recipe_file_" + re.sub(r"\W", "_", path.stem)
    spec = importlib.util.spec_from_file_location(module_name, path.resolve())
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look their module up
    spec.loader.exec_module(module)
    run = getattr(module, "run", None)
    if not callable(run):
        raise TunesmithError(
            f"{path} has no run(cfg) function: a recipe file defines run(cfg) (see "
            "`tunesmith cp full_finetune_single_device my_recipe.py`)"
        )
    schemas = [v for v in vars(module).values() if isinstance(v, RecipeSchema)]
    schema = getattr(module, "SCHEMA", None) or (schemas[0] if len(schemas) == 1 else None)
    return Recipe(
        name=str(path),
        run=run,
        schema=schema if schema is not None else RecipeSchema(open=True),
        distributed=True,
        description=f"the recipe in {path}",
    )


def _load(recipe_name: str | None, config: str, overrides: tuple[str, ...]):
    """The recipe and its config: schema defaults filled in, overrides applied, validated."""
    from tunesmith.config import config_source, find_config, load_recipe_config
    from tunesmith.config._torchtune import recipe_from_comments

    _, shipped_for = find_config(config)
    name = recipe_name or shipped_for or recipe_from_comments(config_source(config)[0])
    if name is None:
        raise TunesmithError(
            f"{config} is a file, so name its recipe: tunesmith validate {config} --recipe <name>"
        )
    recipe = _recipe(name)
    return recipe, load_recipe_config(config, recipe, overrides)


@cli.command()
@click.argument("config")
@click.option("--sort", is_flag=True, help="Keys in alphabetical order, at every level (no comments).")
def cat(config: str, sort: bool) -> None:
    """Print a shipped config (or a config file) as YAML.

    \b
    Examples:
      tunesmith cat llama3_2/1B_lora_single_device
      tunesmith cat llama3_2/1B_lora_single_device > my_lora.yaml
      tunesmith cat llama3_2/1B_lora_single_device --sort
    """
    from tunesmith.config import config_source

    text, _, _ = config_source(config)
    if sort:
        import yaml

        from tunesmith.config._load import _YamlLoader

        text = yaml.safe_dump(yaml.load(text, Loader=_YamlLoader), sort_keys=True)
    click.echo(text.rstrip("\n"))


@cli.command(name="convert-config")
@click.argument("source")
@click.argument("destination", type=click.Path(path_type=Path))
@click.option("--recipe", help="The recipe it runs with (default: from its `tune run` comment).")
@click.option("--force", is_flag=True, help="Overwrite an existing DESTINATION.")
def convert_config(source: str, destination: Path, recipe: str | None, force: bool) -> None:
    """Translate a torchtune config into tunesmith's form and write it to DESTINATION.

    Each translation is printed; anything without an equivalent is listed in one error.

    Run the result with the recipe it prints (e.g. `tunesmith run
    lora_finetune_distributed --nproc-per-node 2 --config my_lora.yaml`).

    \b
    Examples:
      tunesmith convert-config 8B_lora.yaml my_lora.yaml
      tunesmith convert-config my_torchtune.yaml my.yaml --recipe lora_finetune_single_device
    """
    from tunesmith.config._torchtune import convert_torchtune_file

    if destination.exists() and not force:
        raise TunesmithError(f"{destination} already exists: choose another name or pass --force")
    text, notes, recipe = convert_torchtune_file(source, recipe=recipe)
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_text(text, encoding="utf-8")
    for line in notes:
        click.echo(f"  {line}")
    run_line = f"tunesmith run {recipe or 'RECIPE'} --config {destination}"
    click.echo(f"Wrote {destination} ({len(notes)} translations). Run it with:\n  {run_line}")


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("config")
@click.argument("overrides", nargs=-1, type=click.UNPROCESSED)
@click.option("--recipe", help="Recipe to validate against (default: the config's own).")
def validate(config: str, overrides: tuple[str, ...], recipe: str | None) -> None:
    """Check a config: keys, types, ranges, components and their arguments, overrides.

    Every problem is listed at once. `tunesmith run RECIPE --help` lists the keys a
    recipe reads.

    \b
    Examples:
      tunesmith validate llama3_2/1B_lora_single_device
      tunesmith validate my.yaml --recipe lora_finetune_single_device batch_size=8
    """
    recipe_record, _ = _load(recipe, config, overrides)
    click.echo(f"Config is valid for recipe {recipe_record.name}.")


def _recipe_keys(recipe) -> str:
    """The ``--help`` section listing the keys ``recipe``'s schema reads."""
    from tunesmith.config._schema import yaml_text

    schema = recipe.schema
    formatter = click.HelpFormatter()
    title = f"Config keys of {recipe.name}"
    if schema.open:
        title += " (it also accepts keys not listed)"
    with formatter.section(title):
        rows = []
        for key in schema:
            kind, default = key.describe()
            text = (
                f"{kind}, {default}" if default in ("required", "unset") else f"{kind} = {default}"
            )
            rows.append((key.name, f"{text}. {key.help}" if key.help else text))
        formatter.write_dl(rows or [("-", "none declared")])
    if schema.refused:
        with formatter.section(f"Keys {recipe.name} refuses"):
            formatter.write_dl(list(schema.refused.items()))
    if recipe.defaults:
        with formatter.section(f"Defaults of {recipe.name} (over the schema's)"):
            formatter.write_dl([(k, yaml_text(v)) for k, v in recipe.defaults.items()])
    formatter.write_paragraph()
    formatter.write_text(
        "Each config key may be set as key=value even when the config leaves it out. "
        + (
            ""
            if schema.open
            else "Other top-level keys are refused, unless ${...} "
            "references elsewhere in the config use them as variables (base_dir). "
        )
        + "Keys with no default ('unset') take the recipe's own behaviour when left out."
    )
    return formatter.getvalue()


# ---------------------------------------------------------------------- run ---


def _split_torchrun(args: list[str]) -> tuple[list[str], list[str]]:
    """Separate torchrun's flags from the recipe's overrides."""
    torchrun: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, _ = arg.removeprefix("--").partition("=")
        name = name.replace("_", "-")
        if arg.startswith("--") and name in TORCHRUN_OPTIONS:
            torchrun.append(arg if eq else f"--{name}")
            if TORCHRUN_OPTIONS[name] and not eq:
                if i + 1 >= len(args):
                    raise TunesmithError(f"--{name} needs a value, e.g. --{name} 2")
                torchrun.append(args[i + 1])
                i += 1
        else:
            rest.append(arg)
        i += 1
    return torchrun, rest


@cli.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("recipe", required=False)
@click.option("--config", "-c", "config", help="Shipped config name or YAML path.")
@click.option(
    "--chat", is_flag=True, help="Chat interactively (generate: prompt.interactive=true)."
)
@click.option(
    "--help", "-h", "show_help", is_flag=True, help="Show this message (and RECIPE's keys)."
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run(
    ctx: click.Context,
    recipe: str | None,
    config: str | None,
    args: tuple[str, ...],
    chat: bool,
    show_help: bool,
) -> None:
    """Run RECIPE with a config and key=value overrides.

    torchrun's flags (--nproc-per-node, --nnodes, --rdzv-*, --standalone, ...)
    launch the recipe on several processes through torchrun. `tunesmith run RECIPE
    --help` lists the keys RECIPE reads, with their types and defaults; any of them
    can be overridden (key=value) even when the config leaves it out.

    \b
    Examples:
      tunesmith run full_finetune_single_device --config llama3_2/1B_full_single_device \\
          checkpointer.checkpoint_dir=/models/Llama-3.2-1B-Instruct
      tunesmith run lora_finetune_single_device --config my.yaml batch_size=2 ~compile
      tunesmith run full_finetune_distributed --nproc-per-node 2 \\
          --config llama3_2/1B_full_distributed
      tunesmith run generate --config generation checkpointer.checkpoint_dir=out/epoch_0 --chat
      tunesmith run lora_finetune_single_device --help
    """
    registry = get_registry()
    torchrun, overrides = _split_torchrun([recipe, *args] if recipe is not None else list(args))
    # torchrun's flags may come before the recipe, as in torchtune's `tune run`.
    if overrides and not overrides[0].startswith("-"):
        recipe = overrides.pop(0)
    elif torchrun and recipe is not None and recipe.startswith("-"):
        recipe = None  # only torchrun's flags
    if show_help:
        click.echo(ctx.get_help())
        if recipe is not None:
            click.echo("\n" + _recipe_keys(_recipe(recipe)).rstrip())
        return
    if recipe is None:
        raise click.UsageError("Missing argument 'RECIPE'.", ctx)
    from tunesmith.config import load_recipe_config

    if chat:
        overrides.append("prompt.interactive=true")
    record = _recipe(recipe)
    if config is None:
        shipped = [c.name for c in registry.values("configs") if c.recipe == recipe]
        raise TunesmithError(
            f"recipe {recipe} needs --config" + (f"; e.g. --config {shipped[0]}" if shipped else "")
        )
    if torchrun and not record.distributed:
        raise TunesmithError(f"recipe {recipe} runs on one device: drop {' '.join(torchrun)}")
    cfg = load_recipe_config(config, record, overrides)  # also checks it, once per process
    from tunesmith.recipes._run_dir import set_invocation

    invocation = ["tunesmith", "run", recipe, *torchrun, "--config", config, *overrides]
    set_invocation(invocation)
    if torchrun:
        _launch(torchrun, ["run", recipe, "--config", config, *overrides], invocation)
        return
    record.run(cfg)


def _launch(torchrun: list[str], child: list[str], invocation: list[str]) -> None:
    """Run ``tunesmith CHILD...`` on several processes through torchrun, in this process.

    A child's error reaches the user once, as one line: each child writes it to a file
    in ``TUNESMITH_ERROR_DIR`` instead of stderr, and torchrun's own failure report (a
    traceback and a table per rank) is left out unless ``--debug``.
    """
    import logging
    import shlex
    import tempfile

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    saved = {k: os.environ.get(k) for k in ("TUNESMITH_ERROR_DIR", "TUNESMITH_COMMAND")}
    logging.getLogger("torch.distributed").setLevel(logging.DEBUG if _debug() else logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="tunesmith-errors-") as errors:
        os.environ.update(TUNESMITH_ERROR_DIR=errors, TUNESMITH_COMMAND=shlex.join(invocation))
        try:
            _torchrun([*torchrun, "-m", "tunesmith", *child])
        except ChildFailedError as exc:
            if _debug():
                raise
            messages = [p.read_text().strip() for p in sorted(Path(errors).glob("rank*.txt"))]
            if messages:
                raise _ChildError(list(dict.fromkeys(messages))) from None
            rank, failure = next(iter(exc.failures.items()))
            raise TunesmithError(
                f"worker process {rank} of {len(exc.failures)} failed (exit code "
                f"{failure.exitcode}) without a message: see its output above, or run with "
                "--debug for torchrun's report"
            ) from None
        finally:
            for key, value in saved.items():
                os.environ.pop(key, None) if value is None else os.environ.update({key: value})


def _torchrun(argv: list[str]) -> None:
    """``torchrun ARGV...``, in this process (torch.distributed.run's own entry point)."""
    from torch.distributed.run import get_args_parser, run

    run(get_args_parser().parse_args(argv))


class _ChildError(TunesmithError):
    """The errors torchrun's children reported, each once."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = messages


# ------------------------------------------------------------- checkpoints ---


@contextlib.contextmanager
def _checkpoint_dir_given_as(argument: str):
    """The checkpoint code's errors name the config key that holds the directory; a
    command that takes it as ``argument`` names that instead."""
    try:
        yield
    except TunesmithError as exc:
        if exc.args and isinstance(exc.args[0], str):
            exc.args = (exc.args[0].replace("checkpointer.checkpoint_dir", argument),) + exc.args[1:]
        raise


_DTYPE = click.option(
    "--dtype",
    default=None,
    help="Store the weights in bf16, fp16 or fp32 (default: the source's dtype).",
)


@cli.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("destination", type=click.Path(path_type=Path))
@click.option("--max-shard-size", default="5GB", show_default=True, help="Largest weight file.")
@_DTYPE
@click.option("--force", is_flag=True, help="Replace DESTINATION if it already holds files.")
def convert(
    source: Path, destination: Path, max_shard_size: str, dtype: str | None, force: bool
) -> None:
    """Convert a Meta or HF checkpoint to HF safetensors in DESTINATION.

    \b
    Examples:
      tunesmith convert /models/Llama-3.2-1B/original /models/Llama-3.2-1B-hf
      tunesmith convert /models/big-model /models/big-model-2GB --max-shard-size 2GB
      tunesmith convert /models/fp32-model /models/bf16-model --dtype bf16
    """
    from tunesmith._pretrained import convert_checkpoint

    with _checkpoint_dir_given_as("SOURCE"):
        convert_checkpoint(
            source, destination, max_shard_size=max_shard_size, dtype=dtype, overwrite=force
        )
    click.echo(f"Wrote a Hugging Face checkpoint to {destination}")


@cli.command(name="merge-adapter")
@click.argument("base", type=click.Path(path_type=Path))
@click.argument("adapter", type=click.Path(path_type=Path))
@click.argument("destination", type=click.Path(path_type=Path))
@click.option("--max-shard-size", default="5GB", show_default=True, help="Largest weight file.")
@_DTYPE
@click.option("--force", is_flag=True, help="Replace DESTINATION if it already holds files.")
def merge_adapter(
    base: Path,
    adapter: Path,
    destination: Path,
    max_shard_size: str,
    dtype: str | None,
    force: bool,
) -> None:
    """Merge a PEFT adapter into its base model and write an HF checkpoint.

    \b
    Examples:
      tunesmith merge-adapter /models/Llama-3.2-3B-Instruct /tmp/lora-3b/epoch_0 /tmp/merged
    """
    from tunesmith._pretrained import merge_adapter as merge

    with _checkpoint_dir_given_as("BASE"):
        merge(base, adapter, destination, max_shard_size=max_shard_size, dtype=dtype,
              overwrite=force)  # fmt: skip
    click.echo(f"Wrote the merged Hugging Face checkpoint to {destination}")


# --------------------------------------------------------------------- hub ---


def _next_command(directory: Path) -> str:
    """A fine-tuning command for a downloaded model: the shipped config that names
    this directory's name in its checkpoint_dir (LoRA first), else a placeholder."""
    configs = []
    for config in get_registry().values("configs"):
        try:
            text = config.read_text()
        except OSError:
            continue
        if re.search(rf"^\s*checkpoint_dir:\s*\S*/{re.escape(directory.name)}\s*$", text, re.M):
            configs.append(config)
    configs.sort(key=lambda c: (not c.name.endswith("lora_single_device"), c.name))
    if configs:
        recipe, name = configs[0].recipe, configs[0].name
        return f"tunesmith run {recipe} --config {name} checkpointer.checkpoint_dir={directory}"
    # No shipped config names it: chatting with it works for any installed family.
    return (
        f"tunesmith run generate --config generation checkpointer.checkpoint_dir={directory} --chat"
    )


@cli.command()
@click.argument("repo_id")
@click.option("--output-dir", type=click.Path(path_type=Path), help="Default: /tmp/<repo name>.")
@click.option(
    "--hf-token", help="Token for gated/private repos (default: HF_TOKEN or `hf auth login`)."
)
@click.option(
    "--ignore-patterns",
    multiple=True,
    metavar="GLOB",
    help="Skip matching files; repeatable; '' downloads every file.",
)
@click.option("--revision", help="Branch, tag or commit (default: main).")
@click.option(
    "--force", is_flag=True, help="Replace files in --output-dir that no download put there."
)
def download(
    repo_id: str,
    output_dir: Path | None,
    hf_token: str | None,
    ignore_patterns: tuple[str, ...],
    revision: str | None,
    force: bool,
) -> None:
    """Download a model from the Hugging Face Hub, ready to fine-tune.

    When the repo has *.safetensors, its other weight copies (*.bin, *.pth such as
    original/consolidated.00.pth) are skipped; original/tokenizer.model is kept.

    \b
    Examples:
      tunesmith download meta-llama/Llama-3.2-1B-Instruct --hf-token $HF_TOKEN
      tunesmith download Qwen/Qwen2.5-0.5B-Instruct --output-dir /models/qwen2.5-0.5b
      tunesmith download meta-llama/Llama-3.2-1B --ignore-patterns "*.safetensors"
    """
    from tunesmith.hub import download as fetch

    patterns = [p for p in ignore_patterns if p] if ignore_patterns else None
    from tunesmith.hub import SOURCE_FILE, downloaded_files

    path = fetch(
        repo_id,
        output_dir,
        revision=revision,
        token=hf_token,
        ignore_patterns=patterns,
        overwrite=force,
    )
    files = downloaded_files(path)
    click.echo(f"Downloaded {repo_id} to {path} ({len(files)} files; source in {SOURCE_FILE}):")
    for name in files:
        size = (path / name).stat().st_size if (path / name).is_file() else 0
        click.echo(f"  {name} ({size / 1e6:,.1f} MB)" if size >= 1e5 else f"  {name}")
    next_command = _next_command(path)
    what = "Chat with it" if " generate " in next_command else "Fine-tune it"
    click.echo(f"{what} (tunesmith ls lists recipes and configs):\n  {next_command}")


@cli.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.argument("repo_id")
@click.option("--private", is_flag=True, help="Create the repo private.")
@click.option("--hf-token", help="Token with write access (default: HF_TOKEN or `hf auth login`).")
@click.option("--revision", help="Branch to commit to (default: main).")
def upload(
    folder: Path, repo_id: str, private: bool, hf_token: str | None, revision: str | None
) -> None:
    """Upload a model or PEFT adapter folder to a Hugging Face Hub repo.

    Creates the repo if needed; recipe_state/ and logs/ stay behind. An adapter-only
    folder is uploaded as an adapter repo, with a warning saying how it will be used.

    \b
    Examples:
      tunesmith upload /tmp/lora-3b/epoch_0 my-name/llama-3.2-3b-lora --private
      tunesmith upload /tmp/lora-3b/epoch_0/adapter my-name/llama-3.2-3b-lora-adapter
    """
    from tunesmith.hub import upload as push
    from tunesmith.hub import upload_warnings

    for warning in upload_warnings(folder):
        click.echo(f"warning: {warning}", err=True)
    url = push(folder, repo_id, token=hf_token, private=private, revision=revision)
    click.echo(f"Uploaded {folder} to {repo_id}: {url}")


@cli.command()
@click.argument("log_dir", type=click.Path(path_type=Path))
@click.option(
    "--output", "-o", type=click.Path(path_type=Path), help="Default: LOG_DIR/loss_curve.png."
)
def plot(log_dir: Path, output: Path | None) -> None:
    """Draw a run's train loss, validation loss and learning rate to a PNG.

    LOG_DIR is where the run's DiskLogger wrote (output_dir/logs); fine-tuning runs
    also draw it after every epoch.

    \b
    Examples:
      tunesmith plot /tmp/lora-3b/logs
      tunesmith plot output/demo/finetuned/logs -o demo.png
    """
    from tunesmith.recipes._outputs import PLOT_HINT, PLOT_NAME, plot_metrics, read_metrics

    records = read_metrics(log_dir)
    path = plot_metrics(records, output or log_dir / PLOT_NAME, title=str(log_dir))
    if path is None:
        raise TunesmithError(PLOT_HINT)
    steps = [r["step"] for r in records if "loss" in r]
    click.echo(f"Wrote {path} ({len(steps)} logged steps)")


@cli.command()
@click.option(
    "--output-dir", default="output/demo", show_default=True, type=click.Path(path_type=Path)
)
@click.option("--epochs", type=int, help="Override the demo config's number of epochs.")
@click.option("--family", help="Model family to build (default: the first installed, by name).")
def demo(output_dir: Path, epochs: int | None, family: str | None) -> None:
    """Fine-tune a tiny model on the bundled sample, then ask it questions.

    Runs offline on a CPU in a few minutes: writes a tiny random checkpoint of an
    installed model family and a tokenizer, fine-tunes it with
    full_finetune_single_device and the demo/tiny_full_single_device config, and
    generates from the result.

    \b
    Examples:
      tunesmith demo
      tunesmith demo --family llama
      tunesmith demo --output-dir /tmp/demo --epochs 2
    """
    from tunesmith.recipes.demo import run_demo

    run_demo(output_dir, epochs=epochs, family=family)


# -------------------------------------------------------------- new-plugin ---


@cli.command(name="new-plugin")
@click.argument("name")
@click.option("--kind", required=True, type=click.Choice(PLUGIN_KINDS), help="What it adds.")
@click.option(
    "--output-dir",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where tunesmith-NAME/ is created.",
)
def new_plugin(name: str, kind: str, output_dir: Path) -> None:
    """Write a new plugin package, tunesmith-NAME/, whose tests pass as generated.

    NAME (a lowercase Python identifier) names the entry point and the package
    tunesmith_NAME. Each kind is real, minimal code on tunesmith's public API, a
    README saying what to edit next and tests that run the conformance kit: family (a
    decoder on tunesmith.modules, its checkpoint adapter, a builder, configs), peft
    (rsLoRA, PEFT-format adapters), recipe (token counts of a dataset, a config),
    dataset (question/answer rows), tokenizer (a chat format), evaluator
    (perplexity), quantizer (grouped int8 through torchao).

    \b
    Examples:
      tunesmith new-plugin acme --kind family
      tunesmith new-plugin rslora --kind peft --output-dir plugins
      tunesmith new-plugin my_ppl --kind evaluator
    """
    from tunesmith.scaffold import new_plugin as write_plugin

    written = write_plugin(name, kind=kind, output_dir=output_dir)
    root = Path(os.path.commonpath(written))
    click.echo(f"Wrote {root}/, a {kind} plugin ({len(written)} files):")
    for path in written:
        click.echo(f"  {path}")
    click.echo(
        f"Next:\n  pip install -e {root}\n  pytest {root / 'tests'}\n"
        f"  tunesmith plugins check {name}"
    )


def main() -> None:
    """Console-script entry point."""
    terminate_as_interrupt()
    cli(prog_name="tunesmith")


if __name__ == "__main__":
    main()
