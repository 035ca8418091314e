"""plugin_registry: a test's own set of plugins, seen by every command, then put back."""

from __future__ import annotations

import os

import pytest

import tunesmith
from tunesmith import Model, PluginError, hookimpl
from tunesmith.testing import plugin_registry


class _Acme:
    @hookimpl
    def register_models(self, register):
        register(Model(name="acme_1b", builder=dict, family="acme"))


class _Broken:
    @hookimpl
    def register_models(self, register):
        raise RuntimeError("boom")


def test_it_installs_the_plugins_and_restores_the_previous_registry(monkeypatch):
    monkeypatch.setenv("TUNESMITH_LOAD_PLUGINS", "llama")
    before = tunesmith.get_registry()
    with plugin_registry({"acme": _Acme()}, entry_points=["lora"]) as registry:
        assert tunesmith.get_registry() is registry
        assert registry.get("models", "acme_1b").origin.plugin == "acme"
        assert "lora" in registry.plugins and "llama" not in registry.plugins
        assert "auto" in registry.tables["models"]  # the core's built-ins are there
    assert tunesmith.get_registry() is before
    assert os.environ["TUNESMITH_LOAD_PLUGINS"] == "llama"


def test_it_is_strict_by_default():
    with pytest.raises(PluginError, match="boom"), plugin_registry({"broken": _Broken()}):
        pass
    with plugin_registry({"broken": _Broken()}, strict=False) as registry:
        assert "boom" in registry.plugins["broken"].error
