"""The ``tunesmith`` command, driven through click's CliRunner against throwaway plugins."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from omegaconf import OmegaConf

from tunesmith import Config, Model, NotFoundError, Recipe, TunesmithError, __version__, hookimpl
from tunesmith import cli as cli_module
from tunesmith.cli import _split_torchrun, cli
from tunesmith.config import Key, RecipeSchema, at_least
from tunesmith.registry import load_registry, reset_registry


def fake_lm(*, dim: int = 4):
    return {"dim": dim}


def fake_run(cfg):
    """The fake recipe: records the config it was given."""
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ran.json").write_text(json.dumps(OmegaConf.to_container(cfg, resolve=True)))


CONFIG = """\
# tunesmith run fake_train --config fake/tiny_train
output_dir: {out}
batch_size: 2
model:
  _component_: fake_lm
  dim: 4
"""


TYPED = RecipeSchema(
    (
        Key("output_dir", str, required=True, help="Where ran.json goes"),
        Key("model", (dict, None), None, help="{_component_: fake_lm}"),
        Key("optimizer", (dict, None), None),
        Key("batch_size", int, 1, check=at_least(1), help="Samples per step"),
        Key("epochs", int, 1, check=at_least(1)),
        Key("max_steps_per_epoch", (int, None), None, check=at_least(1), help="null: all"),
    ),
    refused={"checkpointer": "fake_typed reads no checkpoint: remove it"},
)


class FakePlugin:
    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path

    @hookimpl
    def register_models(self, register):
        register(Model(name="fake_lm", builder=fake_lm, family="fake"))

    @hookimpl
    def register_recipes(self, register):
        keys = frozenset({"output_dir", "batch_size", "epochs", "model", "optimizer"})
        register(
            Recipe(
                name="fake_train",
                run=fake_run,
                keys=keys,
                required=frozenset({"output_dir"}),
                defaults={"epochs": 1},
            )
        )
        register(Recipe(name="fake_distributed", run=fake_run, keys=keys, distributed=True))
        register(Config(name="fake/tiny_train", recipe="fake_train", path=self.config_path))


class TypedPlugin:
    @hookimpl
    def register_recipes(self, register):
        register(Recipe(name="fake_typed", run=fake_run, schema=TYPED, defaults={"epochs": 2}))


class BrokenPlugin:
    @hookimpl
    def register_models(self, register):
        raise RuntimeError("weights table missing")


class FuturePlugin:
    TUNESMITH_PLUGIN_API = 99

    @hookimpl
    def register_models(self, register):
        register(Model(name="future_lm", builder=fake_lm, family="future"))


class RivalPlugin:
    @hookimpl
    def register_models(self, register):
        register(Model(name="fake_lm", builder=fake_lm, family="rival"))


@pytest.fixture
def out_dir(tmp_path) -> Path:
    return tmp_path / "out"


@pytest.fixture
def config_path(tmp_path, out_dir) -> Path:
    path = tmp_path / "configs" / "tiny_train.yaml"
    path.parent.mkdir()
    path.write_text(CONFIG.format(out=out_dir))
    return path


def install(**plugins) -> None:
    """Make ``get_registry()`` (and so every command) see exactly these plugins."""
    reset_registry(load_registry(builtins=False, entry_points=False, extra=plugins))


@pytest.fixture
def fake(config_path):
    install(fake=FakePlugin(config_path))


@pytest.fixture
def typed(config_path):
    install(fake=FakePlugin(config_path), typed=TypedPlugin())


@pytest.fixture
def runner(monkeypatch) -> CliRunner:
    # --debug sets TUNESMITH_DEBUG for the process; make sure each test starts without it
    # and that monkeypatch removes whatever a test leaves behind.
    monkeypatch.setenv("TUNESMITH_DEBUG", "0")
    return CliRunner()


def invoke(runner: CliRunner, *args: str):
    return runner.invoke(cli, list(args), prog_name="tunesmith")


def assert_one_line_error(result, code: int) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


# ---------------------------------------------------------------- plugins ---


def test_plugins_text(runner, config_path):
    install(fake=FakePlugin(config_path), broken=BrokenPlugin(), future=FuturePlugin())
    result = invoke(runner, "plugins")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:6] == [
        "fake (fake 0)",
        "  hooks: register_models, register_recipes",
        "  models: fake_lm",
        "  recipes: fake_distributed, fake_train",
        "  configs: fake/tiny_train",
        "broken (broken 0)",
    ]
    # The error says what raised and where.
    assert re.fullmatch(
        rf"  ERROR: register_models raised RuntimeError: weights table missing \({re.escape(__file__)}:\d+\)",
        lines[6],
    )
    assert lines[7:] == [
        "future (future 0)",
        "  ERROR: built for plugin API 99, but this tunesmith supports plugin API 1 and 2: "
        "install a version of future made for this tunesmith",
    ]


def test_plugins_json(runner, config_path):
    install(fake=FakePlugin(config_path), broken=BrokenPlugin())
    result = invoke(runner, "plugins", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["conflicts"] == []
    assert payload["missing"] == {}
    fake, broken = payload["plugins"]
    assert fake == {
        "name": "fake",
        "distribution": "fake",
        "version": "0",
        "builtin": False,
        "api": 2,
        "hooks": ["register_models", "register_recipes"],
        "components": {
            "models": ["fake_lm"],
            "recipes": ["fake_train", "fake_distributed"],
            "configs": ["fake/tiny_train"],
        },
        "error": None,
    }
    assert broken["name"] == "broken" and "weights table missing" in broken["error"]


def test_plugins_shows_conflicts(runner, config_path):
    with pytest.warns(UserWarning, match="registered by both"):
        install(fake=FakePlugin(config_path), rival=RivalPlugin())
    result = invoke(runner, "plugins")
    assert "CONFLICT: model 'fake_lm' is registered by both fake 0 and rival 0" in result.stdout
    payload = json.loads(invoke(runner, "plugins", "--json").stdout)
    assert payload["conflicts"] == [
        "model 'fake_lm' is registered by both fake 0 and rival 0: uninstall one of them, "
        "or choose plugins with TUNESMITH_LOAD_PLUGINS"
    ]


def test_plugins_hides_builtins_unless_all(runner):
    reset_registry(load_registry(entry_points=False))
    result = invoke(runner, "plugins")
    assert result.exit_code == 0
    assert result.stdout.startswith("No plugins installed.")
    result = invoke(runner, "plugins", "--all", "--json")
    names = [p["name"] for p in json.loads(result.stdout)["plugins"]]
    assert "tunesmith.builtins.recipes" in names
    assert all(p["builtin"] for p in json.loads(result.stdout)["plugins"])


# --------------------------------------------------------------------- ls ---


def test_ls(runner, fake):
    result = invoke(runner, "ls")
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows == [
        ["RECIPE", "CONFIG"],
        ["fake_distributed", "-"],
        ["fake_train", "fake/tiny_train"],
    ]
    result = invoke(runner, "ls", "--all")
    assert "models: fake_lm" in result.stdout
    assert "datasets: -" in result.stdout


# --------------------------------------------------------------------- cp ---


def test_cp_config_name_to_file(runner, fake, config_path, tmp_path):
    dest = tmp_path / "mine.yaml"
    result = invoke(runner, "cp", "fake/tiny_train", str(dest))
    assert result.exit_code == 0, result.output
    assert dest.read_text() == config_path.read_text()
    assert f"Copied fake/tiny_train to {dest}" in result.stdout


def test_cp_into_folder_and_adds_suffix(runner, fake, config_path, tmp_path):
    folder = tmp_path / "existing"
    folder.mkdir()
    assert invoke(runner, "cp", "fake/tiny_train", str(folder)).exit_code == 0
    assert (folder / "tiny_train.yaml").read_text() == config_path.read_text()
    # A trailing slash means a folder even when it does not exist yet.
    assert invoke(runner, "cp", "fake/tiny_train", f"{tmp_path}/new/").exit_code == 0
    assert (tmp_path / "new" / "tiny_train.yaml").is_file()
    # No suffix: the source's is added.
    assert invoke(runner, "cp", "fake/tiny_train", str(tmp_path / "noext")).exit_code == 0
    assert (tmp_path / "noext.yaml").is_file()


def test_cp_refuses_to_overwrite_without_force(runner, fake, config_path, tmp_path):
    dest = tmp_path / "mine.yaml"
    dest.write_text("my edits\n")
    result = invoke(runner, "cp", "fake/tiny_train", str(dest))
    line = assert_one_line_error(result, 1)
    assert line == f"error: {dest} already exists: choose another name or pass --force"
    assert dest.read_text() == "my edits\n"
    assert invoke(runner, "cp", "fake/tiny_train", str(dest), "--force").exit_code == 0
    assert dest.read_text() == config_path.read_text()
    # torchtune's flags: -n keeps the file even with --force; --make-parents is the default.
    dest.write_text("my edits\n")
    assert invoke(runner, "cp", "-n", "--force", "fake/tiny_train", str(dest)).exit_code == 1
    assert dest.read_text() == "my edits\n"
    deep = tmp_path / "a" / "b" / "c.yaml"
    assert invoke(runner, "cp", "--make-parents", "fake/tiny_train", str(deep)).exit_code == 0
    assert deep.read_text() == config_path.read_text()


def test_cp_recipe_copies_its_source(runner, fake, tmp_path):
    result = invoke(runner, "cp", "fake_train", str(tmp_path / "recipe.py"))
    assert result.exit_code == 0, result.output
    assert "def fake_run(cfg):" in (tmp_path / "recipe.py").read_text()


def test_cp_unknown_config(runner, fake, tmp_path):
    line = assert_one_line_error(
        invoke(runner, "cp", "fake/tiny_trian", str(tmp_path / "x.yaml")), 2
    )
    assert "did you mean 'fake/tiny_train'?" in line


# --------------------------------------------------------------- validate ---


def test_validate_valid(runner, fake, config_path):
    result = invoke(runner, "validate", "fake/tiny_train")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "Config is valid for recipe fake_train."
    result = invoke(runner, "validate", str(config_path), "--recipe", "fake_train", "batch_size=8")
    assert result.exit_code == 0, result.output


def test_validate_invalid_lists_every_problem(runner, fake):
    result = invoke(
        runner, "validate", "fake/tiny_train", "batch_size=0", "+optimzer={lr: 1}", "+model.dimm=2"
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.stderr.splitlines() == [
        "error: config has 3 problems:",
        "  - unknown key 'optimzer' for recipe fake_train — did you mean 'optimizer'?",
        "  - 'batch_size' must be at least 1, not 0",
        "  - model: fake_lm has no argument 'dimm' — did you mean 'dim'?",
    ]


def test_validate_file_needs_a_recipe(runner, fake, config_path):
    line = assert_one_line_error(invoke(runner, "validate", str(config_path)), 1)
    assert "is a file, so name its recipe" in line and "--recipe <name>" in line


def test_validate_bad_override(runner, fake):
    result = invoke(runner, "validate", "fake/tiny_train", "batch_sise=3")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.splitlines() == [
        "error: config has 1 problem:",
        "  - cannot override 'batch_sise': no such key — did you mean 'batch_size'? "
        "(to add a new key, write +batch_sise=3)",
    ]


# -------------------------------------------------------------------- run ---


def test_run_runs_the_recipe_with_overrides_and_defaults(runner, fake, out_dir):
    result = invoke(
        runner, "run", "fake_train", "--config", "fake/tiny_train", "batch_size=3", "model.dim=8"
    )
    assert result.exit_code == 0, result.output
    ran = json.loads((out_dir / "ran.json").read_text())
    assert ran == {
        "epochs": 1,  # the recipe's default
        "output_dir": str(out_dir),
        "batch_size": 3,
        "model": {"_component_": "fake_lm", "dim": 8},
    }


def test_run_with_a_config_file(runner, fake, config_path, out_dir):
    result = invoke(runner, "run", "fake_train", "-c", str(config_path), "~batch_size")
    assert result.exit_code == 0, result.output
    assert "batch_size" not in json.loads((out_dir / "ran.json").read_text())


def test_run_invalid_config_does_not_run(runner, fake, out_dir):
    result = invoke(runner, "run", "fake_train", "--config", "fake/tiny_train", "batch_size=0")
    assert result.exit_code == 1
    assert "'batch_size' must be at least 1, not 0" in result.stderr
    assert not out_dir.exists()


def test_run_unknown_recipe(runner, fake):
    line = assert_one_line_error(
        invoke(runner, "run", "fake_trian", "--config", "fake/tiny_train"), 2
    )
    assert line.startswith("error: unknown recipe 'fake_trian' — did you mean 'fake_train'")


def test_run_unknown_config(runner, fake, tmp_path):
    line = assert_one_line_error(invoke(runner, "run", "fake_train", "--config", "fake/tiny"), 2)
    assert line.startswith("error: unknown config 'fake/tiny'")
    assert "did you mean 'fake/tiny_train'?" in line
    missing = tmp_path / "missing.yaml"
    line = assert_one_line_error(invoke(runner, "run", "fake_train", "--config", str(missing)), 2)
    assert f"config file {missing} does not exist" in line


def test_run_without_config_names_a_shipped_one(runner, fake):
    line = assert_one_line_error(invoke(runner, "run", "fake_train"), 1)
    assert line == "error: recipe fake_train needs --config; e.g. --config fake/tiny_train"


def test_debug_raises_instead_of_one_line(runner, fake):
    result = invoke(runner, "--debug", "run", "fake_trian", "--config", "fake/tiny_train")
    assert isinstance(result.exception, NotFoundError)
    assert result.exit_code == 1
    assert os.environ["TUNESMITH_DEBUG"] == "1"  # passed on to torchrun's processes


def test_installed_script_debug_shows_the_traceback(tmp_path):
    script = Path(sys.executable).with_name("tunesmith")
    env = {**os.environ, "TUNESMITH_LOAD_PLUGINS": ""}
    env.pop("TUNESMITH_DEBUG", None)
    args = [str(script), "run", "no_such_recipe", "--config", "x.yaml"]
    plain = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 2
    assert plain.stderr.startswith("error: unknown recipe 'no_such_recipe'")
    assert "Traceback" not in plain.stderr
    debug = subprocess.run(
        [str(script), "--debug", *args[1:]], env=env, capture_output=True, text=True, timeout=120
    )
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert "NotFoundError: unknown recipe 'no_such_recipe'" in debug.stderr


def test_a_closed_stdout_ends_the_command_quietly():
    """`tunesmith ls | head -3`: the reader leaves early, and the command stops without
    an error line (it used to print "error: Broken pipe")."""
    script = Path(sys.executable).with_name("tunesmith")
    read_end, write_end = os.pipe()
    os.close(read_end)  # ls writes well past the pipe's buffer into a reader that left
    try:
        done = subprocess.run(
            [str(script), "ls"], stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120
        )
    finally:
        os.close(write_end)
    assert done.returncode == 1
    assert done.stderr == ""


# ---------------------------------------------------------- recipe schemas ---


def _ran(out_dir: Path) -> dict:
    return json.loads((out_dir / "ran.json").read_text())


def test_run_fills_schema_defaults_and_overrides_a_key_the_file_lacks(runner, typed, out_dir):
    result = invoke(
        runner, "run", "fake_typed", "-c", "fake/tiny_train", "max_steps_per_epoch=1"
    )  # no + although the file has no max_steps_per_epoch
    assert result.exit_code == 0, result.output
    assert _ran(out_dir) == {
        "output_dir": str(out_dir),
        "batch_size": 2,  # the file
        "model": {"_component_": "fake_lm", "dim": 4},
        "epochs": 2,  # the recipe's alias default, over the schema's 1
        "optimizer": None,  # the schema's defaults
        "max_steps_per_epoch": 1,  # the override
    }


def test_api1_recipe_still_validates_and_runs(runner, typed, out_dir):
    """``Recipe(keys=..., required=..., defaults=...)`` (fake_train): no schema defaults."""
    assert invoke(runner, "validate", "fake/tiny_train").exit_code == 0
    assert invoke(runner, "run", "fake_train", "-c", "fake/tiny_train").exit_code == 0
    assert _ran(out_dir) == {
        "epochs": 1,
        "output_dir": str(out_dir),
        "batch_size": 2,
        "model": {"_component_": "fake_lm", "dim": 4},
    }


def test_interpolation_variables_run_through_validate_and_run(runner, typed, tmp_path):
    config = tmp_path / "vars.yaml"
    config.write_text(
        "base_dir: " + str(tmp_path) + "\nrun_name: first\n"
        "output_dir: ${base_dir}/runs/${run_name}\nmodel: {_component_: fake_lm}\n"
    )
    result = invoke(runner, "validate", str(config), "--recipe", "fake_typed")
    assert result.exit_code == 0, result.output
    result = invoke(runner, "run", "fake_typed", "-c", str(config), "run_name=second")
    assert result.exit_code == 0, result.output
    ran = _ran(tmp_path / "runs" / "second")
    assert ran["output_dir"] == str(tmp_path / "runs" / "second")
    assert "base_dir" not in ran and "run_name" not in ran  # variables, not settings


def test_typo_and_unreferenced_keys_are_refused(runner, typed, tmp_path):
    config = tmp_path / "typo.yaml"
    config.write_text("output_dir: /x\nbatch_sise: 2\nbase_dir: /m\ncheckpointer: {}\n")
    result = invoke(runner, "validate", str(config), "--recipe", "fake_typed")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.splitlines() == [
        "error: config has 3 problems:",
        "  - unknown key 'batch_sise' for recipe fake_typed — did you mean 'batch_size'?",
        "  - unknown key 'base_dir' for recipe fake_typed (remove it; `tunesmith run fake_typed "
        "--help` lists the keys it reads)",
        "  - key 'checkpointer' is not read by recipe fake_typed: fake_typed reads no "
        "checkpoint: remove it",
    ]


def test_validate_lists_every_bad_override_and_argument(runner, typed):
    result = invoke(
        runner, "validate", "fake/tiny_train", "--recipe", "fake_typed",
        "+optimizer={_component_: torch.optim.AdamW, lr: 0.1}", "optimizer.lr=abc", "epochs=0",
        "model.dim=four", "bach_size=3", "~nope", "max_steps_per_epoch", "model.dimm.x=1",
    )  # fmt: skip
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.splitlines() == [
        "error: config has 7 problems:",
        "  - cannot override 'bach_size': no such key — did you mean 'batch_size'? "
        "(to add a new key, write +bach_size=3)",
        "  - cannot delete 'nope': no such key in the config",
        "  - override 'max_steps_per_epoch' is not of the form key=value (or ~key to delete, "
        "+key=value to add)",
        "  - cannot override 'model.dimm.x': 'dimm' is not a key of model — did you mean 'dim'?",
        "  - 'epochs' must be at least 1, not 0",
        "  - 'model.dim' must be int, not 'four'",
        # AdamW's lr is annotated float | Tensor: its float default says a number.
        "  - 'optimizer.lr' must be a number, not 'abc' (AdamW's default is 0.001)",
    ]


def test_generate_refuses_a_model_block(runner, tmp_path):
    reset_registry(load_registry(entry_points=False))  # the core's own recipes
    config = tmp_path / "gen.yaml"
    config.write_text(
        "checkpointer: {checkpoint_dir: /models/x}\nmodel: {_component_: auto}\n"
        "prompt: {user: Hi}\n"
    )
    result = invoke(runner, "validate", str(config), "--recipe", "generate")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: config has 1 problem:",
        "  - key 'model' is not read by recipe generate: generate builds the model from "
        "checkpointer.checkpoint_dir's config.json: remove 'model' and point "
        "checkpointer.checkpoint_dir at the model to use",
    ]
    assert invoke(runner, "validate", str(config), "--recipe", "generate", "~model").exit_code == 0


def test_run_recipe_help_lists_its_keys(runner, typed):
    result = invoke(runner, "run", "fake_typed", "--help")
    assert result.exit_code == 0, result.output
    assert "Examples:" in result.stdout
    keys = result.stdout.split("Config keys of fake_typed:", 1)[1]
    rows = [" ".join(line.split()) for line in keys.splitlines()]
    assert "output_dir str, required. Where ran.json goes" in rows
    assert "batch_size int >= 1 = 1. Samples per step" in rows
    assert "max_steps_per_epoch int >= 1 or null = null. null: all" in rows
    assert "epochs 2" in rows  # the alias default
    assert "checkpointer fake_typed reads no checkpoint: remove it" in rows  # refused
    assert invoke(runner, "run").exit_code == 2  # RECIPE is still needed to run


# --------------------------------------------------------------- torchrun ---


@pytest.mark.parametrize(
    "args, torchrun, rest",
    [
        (["batch_size=2"], [], ["batch_size=2"]),
        (["--nproc-per-node", "2", "batch_size=2"], ["--nproc-per-node", "2"], ["batch_size=2"]),
        (["--nproc-per-node=2", "lr=1e-4"], ["--nproc-per-node=2"], ["lr=1e-4"]),
        (["--nproc_per_node", "4"], ["--nproc-per-node", "4"], []),
        (["--standalone", "epochs=1"], ["--standalone"], ["epochs=1"]),
        (
            ["a=1", "--nnodes", "2", "--rdzv-endpoint=host:29400", "~b", "--standalone"],
            ["--nnodes", "2", "--rdzv-endpoint=host:29400", "--standalone"],
            ["a=1", "~b"],
        ),
        (["--not-torchrun", "x=1"], [], ["--not-torchrun", "x=1"]),
    ],
)
def test_split_torchrun(args, torchrun, rest):
    assert _split_torchrun(args) == (torchrun, rest)


def test_split_torchrun_needs_a_value():
    with pytest.raises(TunesmithError, match="--nproc-per-node needs a value"):
        _split_torchrun(["x=1", "--nproc-per-node"])


def test_run_distributed_launches_torchrun(runner, fake, monkeypatch, out_dir):
    calls = []
    monkeypatch.setattr(cli_module, "_torchrun", lambda argv: calls.append(argv))
    result = invoke(
        runner,
        "run",
        "fake_distributed",
        "--nproc-per-node",
        "2",
        "--standalone",
        "--config",
        "fake/tiny_train",
        "batch_size=4",
    )
    assert result.exit_code == 0, result.output
    assert calls == [
        [
            "--nproc-per-node",
            "2",
            "--standalone",
            "-m",
            "tunesmith",
            "run",
            "fake_distributed",
            "--config",
            "fake/tiny_train",
            "batch_size=4",
        ]
    ]
    assert not out_dir.exists(), "the launcher itself runs nothing"
    # torchtune's form: torchrun's flags before the recipe (`tune run --nproc_per_node 2 ...`).
    before = invoke(runner, "run", "--nproc_per_node", "2", "--standalone", "fake_distributed",
                    "--config", "fake/tiny_train", "batch_size=4")  # fmt: skip
    assert before.exit_code == 0, before.output
    assert calls[1] == calls[0]


def test_a_failed_worker_is_reported_once_in_one_line(runner, fake, monkeypatch):
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    def workers_fail(argv):
        # What each rank's CLI does with its error under the launcher: a file, not stderr.
        for rank in ("0", "1"):
            monkeypatch.setenv("RANK", rank)
            assert cli_module._report_to_launcher("batch_size 64 does not fit: lower it")
        monkeypatch.delenv("RANK")
        failure = ProcessFailure(local_rank=0, pid=1, exitcode=1, error_file="")
        raise ChildFailedError("tunesmith", {0: failure})

    monkeypatch.setattr(cli_module, "_torchrun", workers_fail)
    result = invoke(
        runner, "run", "fake_distributed", "--nproc-per-node=2", "-c", "fake/tiny_train"
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == ["error: batch_size 64 does not fit: lower it"]


def test_non_distributed_recipe_refuses_torchrun_flags(runner, fake, monkeypatch):
    monkeypatch.setattr(cli_module, "_torchrun", lambda argv: pytest.fail("launched"))
    result = invoke(
        runner, "run", "fake_train", "--nproc-per-node", "2", "--config", "fake/tiny_train"
    )
    line = assert_one_line_error(result, 1)
    assert line == "error: recipe fake_train runs on one device: drop --nproc-per-node 2"


# ------------------------------------------------------------------- help ---

_ENV = r"(?:[A-Z_]+=\S* )*"


def _examples(help_text: str) -> list[str]:
    """The example commands at the end of a help text (continuation lines joined)."""
    block = help_text.rsplit("Examples:", 1)[1]
    commands: list[str] = []
    for line in block.strip().splitlines():
        line = line.strip()
        if commands and commands[-1].endswith("\\"):
            commands[-1] = commands[-1][:-1].rstrip() + " " + line
        else:
            commands.append(line)
    return commands


def _all_commands() -> list[tuple[str, click.Command]]:
    return [("", cli), *sorted(cli.commands.items())]


@pytest.mark.parametrize(
    "name, command", _all_commands(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_help_ends_with_examples(runner, name, command):
    paragraphs = [p for p in command.help.strip().split("\n\n") if p.strip()]
    last = paragraphs[-1].strip().removeprefix("\b").strip()
    assert last.startswith("Examples:"), f"`tunesmith {name} --help` should end with Examples:"
    examples = _examples(command.help)
    assert examples
    for example in examples:
        if name:
            assert re.match(rf"^{_ENV}tunesmith {re.escape(name)}( |$)", example), example
        else:
            match = re.match(rf"^{_ENV}tunesmith (\S+)", example)
            assert match and match.group(1) in cli.commands, example

    result = invoke(runner, *([name] if name else []), "--help")
    assert result.exit_code == 0
    assert "Examples:" in result.stdout
    # \b keeps example lines as written
    for line in command.help.rsplit("Examples:", 1)[1].strip().splitlines():
        assert line.strip() in result.stdout


def test_version(runner):
    result = invoke(runner, "--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"tunesmith, version {__version__}"


def test_a_full_disk_a_library_reports_is_the_disk_full_line():
    """safetensors reports a full disk as its own error, not an OSError."""
    from tunesmith.errors import describe_error

    class SafetensorError(Exception):
        pass

    message, code = describe_error(SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"))  # fmt: skip
    assert code == 1
    assert message == (
        "no space left on the device while writing a file: free some space or point the "
        "output at another disk"
    )
