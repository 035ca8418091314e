"""The plugin contract: one test per hook, and meta-tests that keep hooks, docs and tests in step."""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pluggy
import pytest

import tunesmith
from tunesmith import (
    CheckpointAdapter,
    Config,
    Dataset,
    Evaluator,
    Model,
    Origin,
    PeftMethod,
    PluginError,
    Quantizer,
    Recipe,
    Tokenizer,
    hookimpl,
    hookspecs,
)
from tunesmith.registry import HOOKS, KINDS, load_registry

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"

# Every hookspec, found the way pluggy finds them (not from a hand-kept list).
_PM = pluggy.PluginManager(hookspecs.PROJECT)
SPECS: dict[str, Callable[..., Any]] = {
    name: getattr(hookspecs, name)
    for name in dir(hookspecs)
    if _PM.parse_hookspec_opts(hookspecs, name) is not None
}


def _builder(*args: Any, **kwargs: Any) -> tuple:
    return args, kwargs


def make_plugin(hook: str, *components: Any) -> object:
    """A throwaway plugin object whose ``hook`` registers ``components``."""

    def impl(self, register):
        for component in components:
            register(component)

    impl.__name__ = hook
    return type("ThrowawayPlugin", (), {hook: hookimpl(impl)})()


def load_one(hook: str, *components: Any):
    """A registry holding only a plugin named ``thirdparty`` that registers ``components``."""
    plugin = make_plugin(hook, *components)
    return load_registry(builtins=False, entry_points=False, extra={"thirdparty": plugin})


def check_hook(hook: str, good: list[Any], wrong: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``good`` land in their tables stamped with the plugin; ``wrong`` is refused by name."""
    registry = load_one(hook, *good)
    info = registry.plugins["thirdparty"]
    assert info.error is None
    assert info.hooks == [hook]
    origin = Origin("thirdparty", "thirdparty", "0")
    for component in good:
        kind = next(k for k, record in KINDS.items() if isinstance(component, record))
        found = registry.get(kind, component.name)
        assert found.origin == origin
        # Only the origin is stamped: everything the plugin gave is kept as given.
        assert found == dataclasses.replace(component, origin=origin)
        assert component.name in info.components[kind]

    expected = " or ".join(t.__name__ for t in HOOKS[hook])
    registry = load_one(hook, wrong)
    error = registry.plugins["thirdparty"].error
    assert error is not None
    assert f"passed {type(wrong).__name__} to {hook}'s register: expected {expected}" in error
    assert not any(registry.tables.values()), "a refused component must not be registered"

    monkeypatch.setenv("TUNESMITH_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=f"passed {type(wrong).__name__} to {hook}"):
        load_one(hook, wrong)


# ----------------------------------------------------------- one per hook ---


def test_hook_register_models(monkeypatch):
    check_hook(
        "register_models",
        [Model(name="acme_1b", builder=_builder, family="acme", hf_repo="acme/acme-1b")],
        Dataset(name="acme_qa", builder=_builder),
        monkeypatch,
    )


def test_hook_register_tokenizers(monkeypatch):
    check_hook(
        "register_tokenizers",
        [Tokenizer(name="acme_tok", builder=_builder, files=("tokenizer.model",), family="acme")],
        Model(name="acme_1b", builder=_builder, family="acme"),
        monkeypatch,
    )


def test_hook_register_checkpoint_adapters(monkeypatch):
    adapter = CheckpointAdapter(
        family="acme",
        model_types=("acme",),
        hf_to_native={"model.layers.{}.self_attn.q_proj.weight": "layers.{}.attn.q_proj.weight"},
        build_from_hf_config=_builder,
    )
    check_hook(
        "register_checkpoint_adapters",
        [adapter],
        Model(name="acme", builder=_builder, family="acme"),
        monkeypatch,
    )
    registered = load_one("register_checkpoint_adapters", adapter).get("checkpoint_adapters", "acme")
    assert registered.native_to_hf == {
        "layers.{}.attn.q_proj.weight": "model.layers.{}.self_attn.q_proj.weight"
    }


def test_hook_register_peft_methods(monkeypatch):
    check_hook(
        "register_peft_methods",
        [PeftMethod(name="acme_adapter", builder=_builder)],
        Quantizer(name="acme_adapter", builder=_builder),
        monkeypatch,
    )


def test_hook_register_quantizers(monkeypatch):
    check_hook(
        "register_quantizers",
        [Quantizer(name="acme_int8", builder=_builder)],
        PeftMethod(name="acme_int8", builder=_builder),
        monkeypatch,
    )


def test_hook_register_recipes(monkeypatch, tmp_path):
    config = Config(name="acme/1B_full", recipe="acme_train", path=tmp_path / "1B_full.yaml")
    check_hook(
        "register_recipes",
        [Recipe(name="acme_train", run=_builder, keys=frozenset({"output_dir"})), config],
        Evaluator(name="acme_train", builder=_builder),
        monkeypatch,
    )


def test_hook_register_evaluators(monkeypatch):
    check_hook(
        "register_evaluators",
        [Evaluator(name="acme_eval", builder=_builder)],
        Recipe(name="acme_eval", run=_builder),
        monkeypatch,
    )


def test_hook_register_datasets(monkeypatch):
    check_hook(
        "register_datasets",
        [Dataset(name="acme_qa", builder=_builder), Dataset(name="acme_chat", builder=_builder)],
        Tokenizer(name="acme_qa", builder=_builder),
        monkeypatch,
    )


# ------------------------------------------------------------ meta-tests ---


def test_hookspecs_are_found():
    assert len(SPECS) >= 8
    assert all(name.startswith("register_") for name in SPECS)


def test_every_hookspec_has_its_register_table():
    """The registry knows which records each hook's ``register`` accepts, for every hook."""
    assert set(HOOKS) == set(SPECS)
    assert {record for records in HOOKS.values() for record in records} == set(KINDS.values())


def test_every_hookspec_has_a_test():
    missing = [name for name in SPECS if not callable(globals().get(f"test_hook_{name}"))]
    assert not missing, f"add a test_hook_<name> to {__file__} for: {missing}"
    extra = [
        name.removeprefix("test_hook_")
        for name in globals()
        if name.startswith("test_hook_") and name.removeprefix("test_hook_") not in SPECS
    ]
    assert not extra, f"tests for hooks that do not exist: {extra}"


def _signature_heading(name: str) -> str:
    params = inspect.signature(SPECS[name]).parameters
    return f"### {name}({', '.join(params)})"


def test_every_hookspec_is_documented():
    headings = set(re.findall(r"^### .*$", DOCS.read_text(), flags=re.MULTILINE))
    missing = [_signature_heading(n) for n in SPECS if _signature_heading(n) not in headings]
    assert not missing, f"document these hooks in {DOCS} under exactly these headings: {missing}"
    documented = {m.group(1) for h in headings if (m := re.match(r"### (register_\w+)\(", h))}
    assert documented <= set(SPECS), f"docs describe hooks that do not exist: {documented - set(SPECS)}"


def test_docs_name_the_plugin_surface():
    text = DOCS.read_text()
    for needed in (
        "[project.entry-points.tunesmith]",
        "from tunesmith import",
        "hookimpl",
        "TUNESMITH_PLUGIN_API",
        "TUNESMITH_LOAD_PLUGINS",
        "TUNESMITH_STRICT_PLUGINS",
        "TUNESMITH_TRACE_PLUGINS",
        "tunesmith plugins",
        *(record.__name__ for record in KINDS.values()),
    ):
        assert needed in text, f"docs/plugins.md should mention {needed}"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hookspec_is_typed_and_documented(name):
    spec = SPECS[name]
    doc = inspect.getdoc(spec)
    assert doc and len(doc.splitlines()[0]) > 10, f"{name} needs a docstring"
    assert "Args:" in doc and "register" in doc
    hints = typing.get_type_hints(spec)
    params = list(inspect.signature(spec).parameters)
    assert params == ["register"], "hooks receive one register callback"
    assert hints["return"] is type(None)
    # register: Callable[[<record>], None], and the record is what the registry accepts.
    register = hints["register"]
    assert typing.get_origin(register) is Callable
    (accepted,), returned = typing.get_args(register)
    assert returned in (None, type(None))
    records = set(typing.get_args(accepted)) or {accepted}
    assert records == set(HOOKS[name])
    for record in records:
        assert f":class:`tunesmith.{record.__name__}`" in doc


def test_hookimpl_is_exported_from_the_package_root():
    assert tunesmith.hookimpl is hookspecs.hookimpl
    assert tunesmith.hookimpl.project_name == "tunesmith"
    assert tunesmith.PLUGIN_API_VERSION == hookspecs.PLUGIN_API_VERSION == 2
    assert hookspecs.SUPPORTED_PLUGIN_APIS == (1, 2)
