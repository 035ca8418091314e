"""copy_support_files, atomic_directory, atomic_write."""

from __future__ import annotations

import os

import pytest

from tunesmith.checkpoint import atomic_directory, atomic_write, copy_support_files


def _tree(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_copy_support_files(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    files = {
        "config.json": "{}",
        "generation_config.json": "{}",
        "tokenizer.json": "{}",
        "tokenizer_config.json": "{}",
        "special_tokens_map.json": "{}",
        "tokenizer.model": "spm",
        "chat_template.jinja": "{{ messages }}",
        "README.md": "# model",
        "LICENSE": "text",
        "original/tokenizer.model": "tiktoken",
        "original/params.json": "{}",
        # skipped:
        "model-00001-of-00002.safetensors": "",
        "model.safetensors.index.json": "{}",
        "pytorch_model.bin": "",
        "pytorch_model.bin.index.json": "{}",
        "original/consolidated.00.pth": "",
        "training.pt": "",
        "adapter_config.json": "{}",  # a LoRA run's epoch dir used as the source
        ".gitattributes": "",
        ".cache/huggingface/download/x.lock": "",
    }
    for name, text in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text)
    # HF cache snapshots are symlinks into the blob store.
    (src / "tokenizer.link.json").symlink_to(src / "tokenizer.json")
    copied = copy_support_files(src, dst)
    expected = [
        "LICENSE",
        "README.md",
        "chat_template.jinja",
        "config.json",
        "generation_config.json",
        "original/params.json",
        "original/tokenizer.model",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer.link.json",
        "tokenizer.model",
        "tokenizer_config.json",
    ]
    assert _tree(dst) == expected
    assert sorted(p.as_posix() for p in copied) == expected
    assert (dst / "original/tokenizer.model").read_text() == "tiktoken"
    assert not (dst / "tokenizer.link.json").is_symlink()


def test_copy_support_files_skips_an_output_dir_inside_the_source(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "out" / "epoch_0").mkdir(parents=True)
    (tmp_path / "out" / "epoch_0" / "config.json").write_text("{}")
    dst = tmp_path / "out" / "epoch_1"
    copy_support_files(tmp_path, dst, exclude=[tmp_path / "out"], skip=["nothing"])
    assert _tree(dst) == ["config.json"]


def test_atomic_directory_creates(tmp_path):
    target = tmp_path / "runs" / "epoch_0"
    with atomic_directory(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".epoch_0.tmp-")
        (tmp / "a.txt").write_text("new")
        assert not target.exists()
    assert _tree(target) == ["a.txt"]
    assert os.listdir(target.parent) == ["epoch_0"]


def test_atomic_directory_replaces(tmp_path):
    target = tmp_path / "epoch_0"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_directory(target) as tmp:
        (tmp / "new.txt").write_text("new")
        assert (target / "old.txt").exists()  # the old output stays until the new is done
    assert _tree(target) == ["new.txt"]
    assert os.listdir(tmp_path) == ["epoch_0"]


def test_atomic_directory_on_error_leaves_nothing(tmp_path):
    target = tmp_path / "epoch_0"
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_directory(target) as tmp:
            (tmp / "half.safetensors").write_text("half")
            raise RuntimeError("crash")
    assert os.listdir(tmp_path) == []


def test_atomic_directory_on_error_keeps_the_old_output(tmp_path):
    target = tmp_path / "epoch_0"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(target) as tmp:
            (tmp / "new.txt").write_text("new")
            raise KeyboardInterrupt
    assert _tree(target) == ["old.txt"]
    assert os.listdir(tmp_path) == ["epoch_0"]


def test_atomic_write(tmp_path):
    target = tmp_path / "state.pt"
    atomic_write(target, lambda p: p.write_text("one"))
    atomic_write(target, lambda p: p.write_text("two"))
    assert target.read_text() == "two"

    def broken(p):
        p.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, broken)
    assert target.read_text() == "two"
    assert os.listdir(tmp_path) == ["state.pt"]
