"""Commands that write where the user points them never replace a file they did not
create unless --force says so: download (whose client would overwrite), cp, convert."""

from __future__ import annotations

import os

import pytest

from .helpers import assert_unchanged, invoke, one_line, snapshot

REPO = "org/tiny-llama"


@pytest.fixture
def hub(base_dir):
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    from tunesmith.testing import FakeHub

    bars_were_off = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        with FakeHub({REPO: base_dir}) as fake:
            yield fake
    finally:
        if not bars_were_off:
            enable_progress_bars()


def test_download_keeps_the_users_files_unless_forced(hub, tmp_path, base_dir):
    target = tmp_path / "model"
    target.mkdir()
    (target / "config.json").write_text('{"my": "edits"}')
    (target / "notes.txt").write_text("mine\n")
    before = snapshot(target)

    line = one_line(invoke("download", REPO, "--output-dir", target))
    assert f"{target} already holds config.json, which this download would replace" in line
    assert "pass --force to replace them" in line
    assert_unchanged(before, snapshot(target))

    result = invoke("download", REPO, "--output-dir", target, "--force")
    assert result.exit_code == 0, result.output
    assert (target / "config.json").read_bytes() == (base_dir / "config.json").read_bytes()
    assert (target / "notes.txt").read_text() == "mine\n"  # not the repo's: left alone


def test_download_again_needs_no_force_but_an_edit_since_is_kept(hub, tmp_path):
    target = tmp_path / "model"
    assert invoke("download", REPO, "--output-dir", target).exit_code == 0
    assert invoke("download", REPO, "--output-dir", target).exit_code == 0  # its own files

    config = target / "config.json"
    config.write_text('{"edited": "after the download"}')
    os.utime(config, (config.stat().st_atime, config.stat().st_mtime + 5))
    line = one_line(invoke("download", REPO, "--output-dir", target))
    assert "already holds config.json" in line
    assert config.read_text() == '{"edited": "after the download"}'


def test_cp_replaces_a_file_only_with_force(tmp_path):
    target = tmp_path / "my.yaml"
    target.write_text("# my edits\n")
    assert "already exists" in one_line(invoke("cp", "generation", target))
    assert target.read_text() == "# my edits\n"
    assert invoke("cp", "generation", target, "--force").exit_code == 0
    assert "checkpoint_dir" in target.read_text()


def test_convert_replaces_a_folder_only_with_force(tmp_path, base_dir):
    target = tmp_path / "converted"
    target.mkdir()
    (target / "notes.txt").write_text("mine\n")
    assert "already exists and is not empty" in one_line(invoke("convert", base_dir, target))
    assert (target / "notes.txt").read_text() == "mine\n"
    result = invoke("convert", base_dir, target, "--force")
    assert result.exit_code == 0, result.output
    assert (target / "config.json").is_file() and not (target / "notes.txt").exists()
