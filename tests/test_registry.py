"""Plugin discovery with real distributions: entry points, versions, failures, conflicts, env vars.

Each third-party plugin here is a real (uninstalled) distribution: a package plus a
``*.dist-info`` folder with ``METADATA`` and ``entry_points.txt`` in a temporary
directory put on ``sys.path``, which is all ``importlib.metadata`` needs to find it.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pluggy
import pytest

import tunesmith
from tunesmith import Model, NotFoundError, Origin, PluginError, hookimpl
from tunesmith.registry import (
    DEFAULT_PLUGINS,
    HOOKS,
    KINDS,
    get_registry,
    load_registry,
    reset_registry,
)

ACME_PLUGIN = """
from pathlib import Path

from tunesmith import Config, Model, Recipe, hookimpl

TUNESMITH_PLUGIN_API = 1


def acme_1b(*, dim: int = 16):
    return {"dim": dim}


def run_acme(cfg):
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)


@hookimpl
def register_models(register):
    register(Model(name="acme_1b", builder=acme_1b, family="acme", hf_repo="acme/acme-1b"))


@hookimpl
def register_recipes(register):
    register(Recipe(name="acme_train", run=run_acme, keys=frozenset({"output_dir", "model"})))
    register(Config(name="acme/1B_full", recipe="acme_train",
                    path=Path(__file__).parent / "configs" / "1B_full.yaml"))
"""

ACME_CONFIG = """\
# tunesmith run acme_train --config acme/1B_full
output_dir: /tmp/acme
model:
  _component_: acme_1b
  dim: 32
"""


def make_distribution(
    site: Path,
    dist: str,
    version: str,
    package: str,
    plugin_source: str,
    *,
    entry_point: str | None = None,
    files: dict[str, str] | None = None,
) -> None:
    """Write package ``package`` and the dist-info of ``dist`` with a ``tunesmith`` entry point."""
    pkg = site / package
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "plugin.py").write_text(textwrap.dedent(plugin_source))
    for rel, text in (files or {}).items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    name = entry_point or package.removeprefix("tunesmith_")
    (info / "entry_points.txt").write_text(f"[tunesmith]\n{name} = {package}.plugin\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    """An empty folder on sys.path for throwaway distributions; their modules are forgotten after."""
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    yield path
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(path)):
            del sys.modules[name]


@pytest.fixture
def acme(site):
    make_distribution(
        site, "tunesmith-acme", "1.2.3", "tunesmith_acme", ACME_PLUGIN,
        files={"configs/1B_full.yaml": ACME_CONFIG},
    )
    return site


def only(monkeypatch, *names: str) -> None:
    monkeypatch.setenv("TUNESMITH_LOAD_PLUGINS", ",".join(names))


# ----------------------------------------------------------- discovery ---


def test_third_party_distribution_is_discovered_with_its_version(acme, monkeypatch):
    only(monkeypatch, "acme")
    registry = get_registry()

    info = registry.plugins["acme"]
    assert (info.distribution, info.version, info.builtin, info.error) == (
        "tunesmith-acme", "1.2.3", False, None
    )
    assert info.hooks == ["register_models", "register_recipes"]
    assert info.components == {
        "models": ["acme_1b"], "recipes": ["acme_train"], "configs": ["acme/1B_full"]
    }
    model = registry.get("models", "acme_1b")
    assert model.origin == Origin("acme", "tunesmith-acme", "1.2.3")
    assert model.builder(dim=4) == {"dim": 4}
    config = registry.get("configs", "acme/1B_full")
    assert config.recipe == "acme_train" and config.path.read_text() == ACME_CONFIG
    assert registry.get("recipes", "acme_train").origin.version == "1.2.3"


def test_shipped_config_of_a_plugin_loads_by_name(acme, monkeypatch):
    from tunesmith.config import instantiate, load_config

    only(monkeypatch, "acme")
    cfg = load_config("acme/1B_full", ["model.dim=8"])
    assert instantiate(cfg.model, key="model") == {"dim": 8}


def test_registry_is_loaded_once_and_reset_reloads(acme, monkeypatch):
    only(monkeypatch, "acme")
    first = get_registry()
    assert get_registry() is first
    reset_registry()
    second = get_registry()
    assert second is not first
    assert second.names("models") == first.names("models") == ["acme_1b", "auto"]


def test_importing_tunesmith_loads_no_plugin_and_no_torch(acme):
    code = (
        "import sys, tunesmith, tunesmith.registry; "
        "print(sorted(m for m in sys.modules if m.startswith(('tunesmith_', 'torch'))))"
    )
    env = {**os.environ, "PYTHONPATH": str(acme), "TUNESMITH_LOAD_PLUGINS": "acme"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------ failures ---

BROKEN_PLUGIN = """
raise RuntimeError("boom: the acme SDK is not installed")
"""

FUTURE_PLUGIN = """
from tunesmith import Model, hookimpl

TUNESMITH_PLUGIN_API = 99


@hookimpl
def register_models(register):
    register(Model(name="future_1b", builder=dict, family="future"))
"""

MISSPELLED_PLUGIN = """
from tunesmith import Model, hookimpl


@hookimpl
def register_model(register):
    register(Model(name="typo_1b", builder=dict, family="typo"))
"""

WRONG_ARGUMENT_PLUGIN = """
from tunesmith import Model, hookimpl


@hookimpl
def register_models(reg):
    reg(Model(name="wrongarg_1b", builder=dict, family="x"))
"""

RAISING_HOOK_PLUGIN = """
from tunesmith import Dataset, Model, hookimpl


@hookimpl
def register_datasets(register):
    register(Dataset(name="raising_data", builder=dict))


@hookimpl
def register_models(register):
    register(Model(name="raising_1b", builder=dict, family="x"))
    raise ValueError("no weights table for size 7b")
"""


def test_plugin_that_fails_to_import_is_reported_and_others_still_load(acme, monkeypatch):
    make_distribution(acme, "tunesmith-broken", "0.1.0", "tunesmith_broken", BROKEN_PLUGIN)
    only(monkeypatch, "acme", "broken")
    with pytest.warns(UserWarning, match="tunesmith plugin 'broken' was skipped: failed to import"):
        registry = get_registry()

    broken = registry.plugins["broken"]
    assert broken.distribution == "tunesmith-broken"
    assert "failed to import" in broken.error
    assert "RuntimeError: boom: the acme SDK is not installed" in broken.error
    assert "tunesmith_broken" in broken.error  # where it failed
    assert registry.plugins["acme"].error is None
    assert registry.get("models", "acme_1b").origin.distribution == "tunesmith-acme"
    assert registry.load_errors() == {"broken": broken.error}


def test_plugin_built_for_another_api_version_is_skipped(acme, monkeypatch):
    make_distribution(acme, "tunesmith-future", "9.0.0", "tunesmith_future", FUTURE_PLUGIN)
    only(monkeypatch, "acme", "future")
    registry = load_registry(builtins=False)

    error = registry.plugins["future"].error
    assert "built for plugin API 99" in error
    assert "supports plugin API 1 and 2" in error
    assert "install a version of tunesmith-future made for this tunesmith" in error
    assert "future_1b" not in registry.tables["models"]
    assert registry.names("models") == ["acme_1b"]


def test_misspelled_hookimpl_is_reported(acme, monkeypatch):
    make_distribution(acme, "tunesmith-typo", "0.1.0", "tunesmith_typo", MISSPELLED_PLUGIN)
    only(monkeypatch, "acme", "typo")
    registry = load_registry(builtins=False)

    error = registry.plugins["typo"].error
    assert error.startswith("invalid hooks:")
    assert "unknown hook 'register_model'" in error
    assert registry.names("models") == ["acme_1b"]


def test_hookimpl_with_wrong_argument_is_reported(site, monkeypatch):
    make_distribution(site, "tunesmith-wrongarg", "0.1.0", "tunesmith_wrongarg", WRONG_ARGUMENT_PLUGIN)
    only(monkeypatch, "wrongarg")
    registry = load_registry(builtins=False)

    error = registry.plugins["wrongarg"].error
    assert "register_models" in error and "reg" in error
    assert registry.names("models") == []


def test_hook_that_raises_is_reported(acme, monkeypatch):
    make_distribution(acme, "tunesmith-raising", "0.1.0", "tunesmith_raising", RAISING_HOOK_PLUGIN)
    only(monkeypatch, "acme", "raising")
    registry = load_registry(builtins=False)

    error = registry.plugins["raising"].error
    assert "register_models raised ValueError: no weights table for size 7b" in error
    # Nothing of a failed plugin is registered, not even what it registered first.
    assert registry.names("models") == ["acme_1b"]
    assert "raising_data" not in registry.tables["datasets"]
    assert registry.plugins["raising"].components == {}


def test_strict_mode_raises_on_the_first_plugin_problem(acme, monkeypatch):
    make_distribution(acme, "tunesmith-broken", "0.1.0", "tunesmith_broken", BROKEN_PLUGIN)
    only(monkeypatch, "acme", "broken")
    monkeypatch.setenv("TUNESMITH_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=r"plugin 'broken' \(tunesmith-broken\): failed to import.*boom"):
        load_registry(builtins=False)

    monkeypatch.setenv("TUNESMITH_STRICT_PLUGINS", "0")
    assert load_registry(builtins=False).plugins["broken"].error


def test_strict_mode_raises_for_a_misspelled_hook(site, monkeypatch):
    make_distribution(site, "tunesmith-typo", "0.1.0", "tunesmith_typo", MISSPELLED_PLUGIN)
    only(monkeypatch, "typo")
    monkeypatch.setenv("TUNESMITH_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="unknown hook 'register_model'"):
        load_registry(builtins=False)


# ----------------------------------------------------------- conflicts ---

RIVAL_PLUGIN = """
from tunesmith import Dataset, Model, hookimpl


@hookimpl
def register_models(register):
    register(Model(name="acme_1b", builder=dict, family="rival"))
    register(Model(name="rival_7b", builder=dict, family="rival"))


@hookimpl
def register_datasets(register):
    # Same name as acme's model, different table: not a clash.
    register(Dataset(name="acme_train", builder=dict))
"""


def test_same_name_from_two_distributions_is_a_conflict_naming_both(acme, monkeypatch):
    make_distribution(acme, "tunesmith-rival", "0.3.0", "tunesmith_rival", RIVAL_PLUGIN)
    only(monkeypatch, "acme", "rival")
    with pytest.warns(UserWarning, match="registered by both"):
        registry = load_registry(builtins=False)

    (conflict,) = registry.conflicts.values()
    message = conflict.message()
    assert "model 'acme_1b'" in message
    assert "tunesmith-acme 1.2.3" in message and "tunesmith-rival 0.3.0" in message
    assert "TUNESMITH_LOAD_PLUGINS" in message  # the fix

    with pytest.raises(PluginError) as caught:
        registry.get("models", "acme_1b")
    assert "tunesmith-acme 1.2.3" in str(caught.value)
    assert "tunesmith-rival 0.3.0" in str(caught.value)
    assert "acme_1b" not in registry.names("models"), "neither side silently wins"

    # Everything else keeps working, including the same name in another table.
    assert registry.get("models", "rival_7b").origin.distribution == "tunesmith-rival"
    assert registry.get("recipes", "acme_train").origin.distribution == "tunesmith-acme"
    assert registry.get("datasets", "acme_train").origin.distribution == "tunesmith-rival"

    # Choosing one plugin resolves it.
    only(monkeypatch, "rival")
    assert load_registry(builtins=False).get("models", "acme_1b").family == "rival"


def test_two_distributions_with_the_same_entry_point_name(acme, monkeypatch):
    """The first keeps working; the second is reported naming the first."""
    make_distribution(
        acme, "tunesmith-acme-fork", "2.0.0", "tunesmith_acmefork", RIVAL_PLUGIN, entry_point="acme"
    )
    only(monkeypatch, "acme")
    registry = load_registry(builtins=False)

    infos = [p for p in registry.plugins.values() if p.name == "acme"]
    assert sorted(p.distribution for p in infos) == ["tunesmith-acme", "tunesmith-acme-fork"]
    loaded = [p for p in infos if p.error is None]
    failed = [p for p in infos if p.error is not None]
    assert len(loaded) == len(failed) == 1
    first = loaded[0]
    assert f"already taken by {first.distribution} {first.version}" in failed[0].error
    # The loaded one registered everything it implements.
    assert registry.get("models", "acme_1b").origin.distribution == first.distribution


# --------------------------------------------------------- environment ---


def test_load_plugins_filters_entry_points(acme, monkeypatch):
    make_distribution(acme, "tunesmith-rival", "0.3.0", "tunesmith_rival", RIVAL_PLUGIN)

    only(monkeypatch, "rival")
    assert set(load_registry(builtins=False).plugins) == {"rival"}

    monkeypatch.setenv("TUNESMITH_LOAD_PLUGINS", " acme , ")
    assert set(load_registry(builtins=False).plugins) == {"acme"}

    monkeypatch.setenv("TUNESMITH_LOAD_PLUGINS", "")
    registry = load_registry()
    assert not [p for p in registry.plugins.values() if not p.builtin], "empty means none"
    assert {p.name for p in registry.plugins.values()} == set(DEFAULT_PLUGINS)

    # Unset: every installed entry point (the legacy TUNESMITH_PLUGINS still filters).
    monkeypatch.delenv("TUNESMITH_LOAD_PLUGINS")
    monkeypatch.setenv("TUNESMITH_PLUGINS", "acme")
    assert set(load_registry(builtins=False).plugins) == {"acme"}


def test_unset_load_plugins_loads_every_entry_point(acme, monkeypatch):
    make_distribution(acme, "tunesmith-rival", "0.3.0", "tunesmith_rival", RIVAL_PLUGIN)
    monkeypatch.delenv("TUNESMITH_LOAD_PLUGINS")
    monkeypatch.delenv("TUNESMITH_PLUGINS", raising=False)
    # Other installed plugins load too: only look at ours.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        registry = load_registry(builtins=False)
    assert {"acme", "rival"} <= set(registry.plugins)


def test_trace_plugins_prints_hook_calls(acme, monkeypatch, capsys):
    only(monkeypatch, "acme")
    monkeypatch.setenv("TUNESMITH_TRACE_PLUGINS", "1")
    load_registry(builtins=False)
    err = capsys.readouterr().err
    assert "tunesmith: calling register_models on acme" in err
    assert "tunesmith: calling register_recipes on acme" in err

    monkeypatch.setenv("TUNESMITH_TRACE_PLUGINS", "0")
    load_registry(builtins=False)
    assert capsys.readouterr().err == ""


def test_trace_plugins_prints_a_hook_that_raised(site, monkeypatch, capsys):
    make_distribution(site, "tunesmith-raising", "0.1.0", "tunesmith_raising", RAISING_HOOK_PLUGIN)
    only(monkeypatch, "raising")
    monkeypatch.setenv("TUNESMITH_TRACE_PLUGINS", "1")
    load_registry(builtins=False)
    assert "register_models raised ValueError('no weights table for size 7b')" in capsys.readouterr().err


# ------------------------------------------------------------- lookups ---


def test_unknown_name_raises_not_found_with_did_you_mean(acme, monkeypatch):
    only(monkeypatch, "acme")
    registry = get_registry()
    with pytest.raises(NotFoundError, match=r"unknown model 'acme_1bb' — did you mean 'acme_1b'\?"):
        registry.get("models", "acme_1bb")
    with pytest.raises(NotFoundError, match=r"unknown recipe 'zzz'; run `tunesmith ls`"):
        registry.get("recipes", "zzz")
    with pytest.raises(NotFoundError, match=r"unknown checkpoint adapter 'zzz'; run `tunesmith plugins`"):
        registry.get("checkpoint_adapters", "zzz")
    with pytest.raises(KeyError, match="no table 'model'"):
        registry.get("model", "acme_1b")
    assert NotFoundError.exit_code == 2
    assert issubclass(NotFoundError, LookupError)


def test_find_lists_a_name_in_every_table(acme, monkeypatch):
    make_distribution(acme, "tunesmith-rival", "0.3.0", "tunesmith_rival", RIVAL_PLUGIN)
    only(monkeypatch, "acme", "rival")
    with pytest.warns(UserWarning, match="registered by both"):
        registry = load_registry(builtins=False)
    assert sorted(kind for kind, _ in registry.find("acme_train")) == ["datasets", "recipes"]
    assert registry.find("nothing") == []


# ------------------------------------------------------------ built-ins ---


def test_builtins_are_registered_through_the_same_hooks():
    registry = load_registry(entry_points=False)
    pm = pluggy.PluginManager("tunesmith")
    for module_name in DEFAULT_PLUGINS:
        info = registry.plugins[module_name]
        assert (info.builtin, info.distribution, info.version, info.error) == (
            True, "tunesmith", tunesmith.__version__, None
        )
        module = importlib.import_module(module_name)
        implemented = sorted(n for n in dir(module) if pm.parse_hookimpl_opts(module, n) is not None)
        assert info.hooks == implemented
        assert set(implemented) <= set(HOOKS)
        # What the table says came from this module is exactly what the module registered.
        stamped = {
            kind: sorted(n for n, c in registry.tables[kind].items() if c.origin.plugin == module_name)
            for kind in KINDS
        }
        assert {k: v for k, v in stamped.items() if v} == {
            k: sorted(v) for k, v in info.components.items()
        }
        for names in info.components.values():
            assert names, "a builtin registered an empty list"


def test_builtin_components_carry_the_core_distribution():
    registry = load_registry(entry_points=False)
    for kind in KINDS:
        for component in registry.values(kind):
            assert component.origin.distribution == "tunesmith"
            assert component.origin.plugin in DEFAULT_PLUGINS


# ---------------------------------------------------- registry robustness ---


def test_a_subclass_of_a_record_is_accepted():
    class FamilyModel(Model):
        pass

    class Plugin:
        @hookimpl
        def register_models(self, register):
            register(FamilyModel(name="sub_1b", builder=dict, family="sub"))

    registry = load_registry(builtins=False, entry_points=False, extra={"sub": Plugin()})
    assert registry.plugins["sub"].error is None
    assert isinstance(registry.get("models", "sub_1b"), FamilyModel)


def test_an_unhashable_plugin_object_is_reported_not_fatal():
    class Unhashable:
        __hash__ = None

        @hookimpl
        def register_models(self, register):
            register(Model(name="x_1b", builder=dict, family="x"))

    class Fine:
        @hookimpl
        def register_models(self, register):
            register(Model(name="fine_1b", builder=dict, family="x"))

    registry = load_registry(
        builtins=False, entry_points=False, extra={"bad": Unhashable(), "fine": Fine()}
    )
    assert "not hashable" in registry.plugins["bad"].error
    assert registry.names("models") == ["fine_1b"]


def test_loading_is_idempotent():
    class Plugin:
        @hookimpl
        def register_models(self, register):
            register(Model(name="once_1b", builder=dict, family="x"))

    plugin = Plugin()
    for _ in range(2):
        registry = load_registry(builtins=False, entry_points=False, extra={"p": plugin})
        assert registry.names("models") == ["once_1b"] and not registry.conflicts


# ------------------------------------------------------ installed script ---


def _console_script() -> str:
    script = Path(sys.executable).with_name("tunesmith")
    if script.exists():
        return str(script)
    found = shutil.which("tunesmith")
    if found is None:
        pytest.fail("the tunesmith console script is not installed: pip install -e ./core")
    return found


def test_installed_console_script_lists_a_third_party_plugin(acme):
    make_distribution(acme, "tunesmith-broken", "0.1.0", "tunesmith_broken", BROKEN_PLUGIN)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(acme), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "TUNESMITH_LOAD_PLUGINS": "acme,broken",
    }
    env.pop("TUNESMITH_STRICT_PLUGINS", None)
    out = subprocess.run(
        [_console_script(), "plugins", "--json"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    plugins = {p["name"]: p for p in payload["plugins"]}
    assert set(plugins) == {"acme", "broken"}, "built-ins are hidden without --all"
    acme_info = plugins["acme"]
    assert acme_info["distribution"] == "tunesmith-acme"
    assert acme_info["version"] == "1.2.3"
    assert acme_info["hooks"] == ["register_models", "register_recipes"]
    assert acme_info["components"]["models"] == ["acme_1b"]
    assert acme_info["error"] is None
    assert "boom" in plugins["broken"]["error"]
    assert payload["conflicts"] == []


def test_loading_every_plugin_leaves_the_compiler_unimported():
    # torch._dynamo takes ~1.5 s to import: commands that build no model (`tunesmith ls`,
    # `cat`, `download`) load the registry and should not pay for it.
    code = "import sys, tunesmith; tunesmith.get_registry(); print('torch._dynamo' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "False", result.stderr
