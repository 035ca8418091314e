"""Fixtures for the checkpoint tests: a registry holding only the fake family."""

from __future__ import annotations

import pytest

from tunesmith.registry import load_registry, reset_registry

from .ckpt_fakes import FakePlugin


@pytest.fixture
def fake_registry():
    registry = load_registry(builtins=False, entry_points=False, extra={"fake": FakePlugin()})
    reset_registry(registry)
    yield registry
    reset_registry(None)
