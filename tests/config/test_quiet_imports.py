"""Naming a torchao component (torchtune's 8-bit AdamW translates to torchao's) loads
torchao without its import-time log noise; other packages' logs are untouched."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from tunesmith._quiet import quiet_import


def test_a_torchao_component_imports_without_kernel_load_noise():
    pytest.importorskip("torchao")
    code = (
        "from tunesmith.config._instantiate import _import_dotted; "
        "assert _import_dotted('torchao.optim.AdamW8bit') is not None"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "Failed to load" not in done.stderr
    assert "register_constant" not in done.stderr


def test_only_the_noisy_packages_loggers_are_raised_and_restored():
    torchao, other = logging.getLogger("torchao"), logging.getLogger("datasets")
    before = (torchao.level, other.level)
    with quiet_import("torchao.optim"):
        assert torchao.level == logging.ERROR
        assert other.level == before[1]
    assert (torchao.level, other.level) == before
