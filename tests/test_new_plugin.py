"""``tunesmith new-plugin``: every kind writes a package whose own tests pass as generated
(run in one subprocess with the packages' ``src`` on ``PYTHONPATH``, never installed),
whose ``tunesmith plugins check`` passes and which ruff accepts; bad names and existing
folders are refused without writing anything."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from click.testing import CliRunner

from tunesmith.cli import cli
from tunesmith.scaffold import PLUGIN_KINDS, render_plugin

pytestmark = pytest.mark.slow

#: Plugin name per kind (distinct, so all packages share one test run).
NAMES = {kind: f"acme{kind[:3]}" for kind in PLUGIN_KINDS}
#: Installed plugins each kind's `plugins check` needs: the LoRA recipes a family's
#: configs run, a tiny family for the PEFT and quantizer checks.
ENTRY_POINTS = {"family": ["lora"], "peft": ["llama"], "quantizer": ["llama"]}

_PLUGINS_CHECK = '''\
"""`tunesmith plugins check NAME`, the README's next command, on each generated plugin."""
import importlib

import pytest
from click.testing import CliRunner
from tunesmith.cli import cli
from tunesmith.testing import plugin_registry

CASES = {cases!r}


@pytest.mark.parametrize("name", sorted(CASES))
def test_plugins_check(name, tmp_path):
    plugin = importlib.import_module(f"tunesmith_{{name}}.plugin")
    with plugin_registry({{name: plugin}}, entry_points=CASES[name]):
        result = CliRunner().invoke(
            cli, ["plugins", "check", name, "--work-dir", str(tmp_path)]
        )
    assert result.exit_code == 0, result.output
    assert f"PASS {{name}}" in result.output
'''


def _generate(root: Path, kind: str) -> Path:
    name = NAMES[kind]
    result = CliRunner().invoke(
        cli, ["new-plugin", name, "--kind", kind, "--output-dir", str(root)]
    )
    assert result.exit_code == 0, result.output
    package = root / f"tunesmith-{name}"
    for command in (f"pip install -e {package}", f"pytest {package / 'tests'}",
                    f"tunesmith plugins check {name}"):  # fmt: skip
        assert command in result.output
    return package


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("new_plugin")
    return {kind: _generate(root / "plugins", kind) for kind in PLUGIN_KINDS}


@pytest.fixture(scope="module")
def outcomes(generated, tmp_path_factory) -> dict[str, dict[str, str]]:
    """Test file -> test name -> outcome, from one pytest run over every package's tests
    and a `plugins check` of each plugin."""
    work = tmp_path_factory.mktemp("new_plugin_run")
    check = work / "check" / "test_plugins_check.py"
    check.parent.mkdir()
    cases = {NAMES[kind]: ENTRY_POINTS.get(kind, []) for kind in PLUGIN_KINDS}
    check.write_text(_PLUGINS_CHECK.format(cases=cases))
    sources = [str(package / "src") for package in generated.values()]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([*sources, os.environ.get("PYTHONPATH", "")]),
        "HF_HOME": str(work / "hf"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TORCHAO_FORCE_SKIP_LOADING_SO_FILES": "1",
        "OMP_NUM_THREADS": "1",
    }
    report = work / "report.xml"
    tests = [str(package / "tests") for package in generated.values()]
    command = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(work),
        f"--junit-xml={report}", *tests, str(check.parent),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, cwd=work, capture_output=True, text=True, timeout=300)
    assert report.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    results: dict[str, dict[str, str]] = {}
    for case in ElementTree.parse(report).iter("testcase"):
        outcome = next((child.tag for child in case if child.tag != "system-out"), "passed")
        detail = "".join(child.get("message", "") for child in case)
        results.setdefault(case.get("classname", ""), {})[case.get("name", "")] = (
            outcome if outcome == "passed" else f"{outcome}: {detail[:500]}"
        )
    assert results, done.stdout[-3000:]
    return results


@pytest.mark.parametrize("kind", PLUGIN_KINDS)
def test_generated_tests_pass(kind, outcomes):
    module = f"test_{NAMES[kind]}"
    ran = {k: v for k, v in outcomes.items() if k.endswith(module)}
    assert ran, f"no tests of {module} ran: {sorted(outcomes)}"
    for results in ran.values():
        assert results and set(results.values()) == {"passed"}, results


@pytest.mark.parametrize("kind", PLUGIN_KINDS)
def test_plugins_check_passes(kind, outcomes):
    results = next(v for k, v in outcomes.items() if k.endswith("test_plugins_check"))
    assert results[f"test_plugins_check[{NAMES[kind]}]"] == "passed"


def test_package_layout(generated):
    family = generated["family"]
    pyproject = (family / "pyproject.toml").read_text()
    assert 'acmefam = "tunesmith_acmefam.plugin"' in pyproject
    assert '"tunesmith>=0.1,<0.2"' in pyproject and '"tunesmith-lora>=0.1,<0.2"' in pyproject
    assert (family / "src/tunesmith_acmefam/templates/lora_single_device.yaml").is_file()
    for kind, package in generated.items():
        source = package / "src" / f"tunesmith_{NAMES[kind]}"
        assert "TUNESMITH_PLUGIN_API = 2" in (source / "plugin.py").read_text()
        assert "__all__ = [" in (source / "__init__.py").read_text()
        assert "## What to edit next" in (package / "README.md").read_text()
        texts = [p.read_text() for p in package.rglob("*") if p.is_file()]
        assert not any("[[" in t or "[%" in t for t in texts)  # no template syntax left


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff is not installed")
def test_generated_code_passes_ruff(generated):
    for package in generated.values():  # each with the ruff settings of its pyproject.toml
        done = subprocess.run(
            [sys.executable, "-m", "ruff", "check", "--no-cache", "."],
            cwd=package, capture_output=True, text=True,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("Acme", "acme"), ("my-plugin", "my_plugin"), ("2fast", "fast"), ("class", "class_plugin")],
)
def test_refuses_a_name_that_is_not_a_lowercase_identifier(name, suggestion, tmp_path):
    result = CliRunner().invoke(
        cli, ["new-plugin", name, "--kind", "dataset", "--output-dir", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"error: plugin name {name!r} is not a lowercase Python identifier (letters, digits "
        f"and underscores, starting with a letter): try {suggestion!r}"
    ]
    assert list(tmp_path.iterdir()) == []


def test_refuses_the_name_of_an_installed_plugin(tmp_path):
    pytest.importorskip("tunesmith_lora")
    result = CliRunner().invoke(
        cli, ["new-plugin", "lora", "--kind", "peft", "--output-dir", str(tmp_path)]
    )
    assert result.exit_code == 1 and "already installed" in result.output
    assert list(tmp_path.iterdir()) == []


def test_refuses_an_existing_folder_and_writes_nothing(tmp_path):
    existing = tmp_path / "tunesmith-acme"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    result = CliRunner().invoke(
        cli, ["new-plugin", "acme", "--kind", "family", "--output-dir", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"error: {existing} already exists and is not empty: choose another --output-dir or name"
    ]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["notes.txt", "tunesmith-acme"]
    (existing / "notes.txt").unlink()  # an empty folder is filled in
    result = CliRunner().invoke(
        cli, ["new-plugin", "acme", "--kind", "family", "--output-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert (existing / "pyproject.toml").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["tunesmith-acme"]  # no staging left


def test_distribution_name_uses_dashes(tmp_path):
    files = render_plugin("my_eval", "evaluator")
    assert 'name = "tunesmith-my-eval"' in files["pyproject.toml"]
    assert "src/tunesmith_my_eval/plugin.py" in files
    assert 'my_eval = "tunesmith_my_eval.plugin"' in files["pyproject.toml"]


def test_help_ends_with_examples():
    result = CliRunner().invoke(cli, ["new-plugin", "--help"])
    assert result.exit_code == 0
    description = result.output.split("Options:")[0].rstrip()
    assert description.splitlines()[-1].strip() == "tunesmith new-plugin my_ppl --kind evaluator"
    assert "tunesmith new-plugin acme --kind family" in description
    assert "[family|peft|recipe|dataset|tokenizer|evaluator|quantizer]" in result.output
