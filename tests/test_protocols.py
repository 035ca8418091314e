"""The contract is code: docs/plugins.md quotes the Protocols exactly, and every component
the repository's plugins register builds an object that passes its Protocol and the kit."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest
import torch

from tunesmith import protocols
from tunesmith.registry import load_registry, reset_registry

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
PROTOCOLS = [
    protocols.NativeModel,
    protocols.PeftTransform,
    protocols.ModelTokenizer,
    protocols.ModelEvaluator,
    protocols.ModelQuantizer,
    protocols.TrainingDataset,
]
#: Protocols that extend one of PROTOCOLS (optional members a component may add).
EXTENSIONS = [protocols.TorchaoConfiguredQuantizer]
_DUNDERS = ("__call__", "__len__", "__getitem__")


def render(protocol: type) -> list[str]:
    """The Protocol's members as the docs write them, one line each."""
    lines = [f"{name}: {ann}" for name, ann in vars(protocol).get("__annotations__", {}).items()]
    for name, member in vars(protocol).items():
        if isinstance(member, property):
            lines.append(f"{name}: {inspect.signature(member.fget).return_annotation}  # property")
        elif callable(member) and (not name.startswith("_") or name in _DUNDERS):
            signature = inspect.signature(member)
            parts, star = [], False
            for p in list(signature.parameters.values())[1:]:  # without self
                if p.kind is p.KEYWORD_ONLY and not star:
                    parts.append("*")
                    star = True
                text = p.name + (f": {p.annotation}" if p.annotation is not p.empty else "")
                parts.append(text + (f" = {p.default!r}" if p.default is not p.empty else ""))
            lines.append(f"def {name}({', '.join(parts)}) -> {signature.return_annotation}")
    return lines


def documented(name: str) -> list[str]:
    """The lines of the first code block under ``### name`` in docs/plugins.md."""
    text = DOCS.read_text()
    section = re.search(rf"^### {name}\n(.*?)(?=^##)", text, flags=re.M | re.S)
    assert section, f"docs/plugins.md has no '### {name}' section"
    block = re.search(r"```python\n(.*?)```", section.group(1), flags=re.S)
    assert block, f"the '### {name}' section of docs/plugins.md quotes no members"
    return [line for line in block.group(1).splitlines() if line.strip()]


@pytest.mark.parametrize("protocol", PROTOCOLS + EXTENSIONS, ids=lambda p: p.__name__)
def test_docs_quote_each_protocol_exactly(protocol):
    assert documented(protocol.__name__) == render(protocol)


def test_every_protocol_is_runtime_checkable_and_documented():
    assert set(protocols.PROTOCOLS.values()) == set(PROTOCOLS)
    for protocol in PROTOCOLS:
        assert getattr(protocol, "_is_runtime_protocol", False), protocol.__name__
        assert f"`{protocol.__name__}`" in DOCS.read_text()


def test_a_changed_signature_is_caught():
    class Drifted(protocols.ModelQuantizer, protocols.Protocol):
        def quantize(self, model, device, *, extra: int = 0): ...

    assert render(Drifted) != documented("ModelQuantizer")


# ---- every registered component, built -----------------------------------------------


@pytest.fixture(scope="module")
def repo_registry():
    import os

    saved = os.environ.get("TUNESMITH_LOAD_PLUGINS")
    registry = load_registry()  # the suite's TUNESMITH_LOAD_PLUGINS: this repository's plugins
    reset_registry(registry)
    yield registry
    reset_registry()
    assert os.environ.get("TUNESMITH_LOAD_PLUGINS") == saved


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Tokenizer files by checkpoint-relative name, and a tiny checkpoint beside them."""
    from tunesmith.testing import (
        write_hf_tokenizer,
        write_sentencepiece_model,
        write_tiktoken_ranks,
        write_tiny_checkpoint,
    )

    root = tmp_path_factory.mktemp("tokenizer-files")
    write_hf_tokenizer(root / "hf", vocab_size=300)
    write_sentencepiece_model(root / "sp")
    # what a checkpoint ships beside its tokenizer.model
    special = {"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True}
    (root / "sp" / "tokenizer_config.json").write_text(json.dumps(special))
    write_tiktoken_ranks(root / "tt" / "original" / "tokenizer.model")
    added = json.loads((root / "hf" / "tokenizer.json").read_text())["added_tokens"]
    return {
        "tokenizer.json": root / "hf" / "tokenizer.json",
        "tokenizer.model": root / "sp" / "tokenizer.model",
        "original/tokenizer.model": root / "tt" / "original" / "tokenizer.model",
        "checkpoint": root / "hf",
        "vocab": max(t["id"] for t in added) + 1,
        "write": write_tiny_checkpoint,
    }


def _checkpoint(registry, files):
    """The first family with a tiny config, written beside the HF tokenizer."""
    from tunesmith.checkpoint import Checkpointer

    directory = files["checkpoint"]
    if not (directory / "config.json").is_file():
        adapter = next(a for a in registry.values("checkpoint_adapters") if a.tiny_config)
        files["write"](directory, {**adapter.tiny_config(), "vocab_size": files["vocab"]})
    return Checkpointer(directory)


def test_every_model_builder_gives_a_native_model(repo_registry, files):
    from tunesmith.testing._kit_components import _conforms

    checkpointer = _checkpoint(repo_registry, files)
    for model in repo_registry.values("models"):
        with torch.device("meta"):
            built = (
                model.builder(checkpointer=checkpointer)
                if model.family is None
                else model.builder()
            )
        _conforms(built, protocols.NativeModel)
        assert len(built.layers) > 0 and built.max_seq_len > 0, model.name


def test_every_tokenizer_passes_the_kit(repo_registry, files):
    from tunesmith.testing import check_tokenizer

    checkpointer = _checkpoint(repo_registry, files)
    built = 0
    for record in repo_registry.values("tokenizers"):
        if not record.files:  # reads the checkpoint: auto
            tokenizer = record.builder(checkpointer=checkpointer)
        else:
            known = [f for f in record.files if f in files]
            assert known, f"no test file for tokenizer {record.name} ({record.files}): add one"
            tokenizer = record.builder(files[known[0]])
        assert "protocol" in check_tokenizer(tokenizer), record.name
        built += 1
    assert built >= 4


def test_every_peft_method_passes_the_kit(repo_registry, tmp_path):
    from tunesmith.testing import check_peft_method

    for name in repo_registry.names("peft_methods"):
        ran = check_peft_method(name, work_dir=tmp_path / name, registry=repo_registry)
        assert "save_adapter / load_adapter" in ran


def test_every_quantizer_passes_the_kit(repo_registry, tmp_path):
    pytest.importorskip("torchao")
    from tunesmith.testing import check_quantizer

    # the tiny model's layers are 64 wide
    blocks = {
        "int4_weight_only": {"groupsize": 32},
        "int8_dynamic_activation_int4_weight": {"groupsize": 32},
    }
    for name in repo_registry.names("quantizers"):
        block = blocks.get(name)
        assert check_quantizer(name, quantizer_block=block, work_dir=tmp_path / name,
                               registry=repo_registry)  # fmt: skip


def test_every_dataset_passes_the_kit(repo_registry, files, tmp_path):
    from tunesmith.testing import check_dataset
    from tunesmith.tokenizers import hf_tokenizer

    tokenizer = hf_tokenizer(files["checkpoint"], max_seq_len=512)
    rows = [
        {"input": "What is 2 + 2?", "output": "4"},
        {"input": "Name a colour.", "output": "Red."},
    ]
    (tmp_path / "pairs.json").write_text(json.dumps(rows))
    chats = [{"messages": [{"role": "user", "content": r["input"]},
                           {"role": "assistant", "content": r["output"]}]} for r in rows]  # fmt: skip
    (tmp_path / "chats.json").write_text(json.dumps(chats))
    (tmp_path / "corpus.json").write_text(json.dumps([{"text": "A short document."}] * 2))
    blocks = {
        "alpaca": {"source": "tunesmith:alpaca_sample", "split": "train[:4]"},
        "instruct": {"source": "json", "data_files": str(tmp_path / "pairs.json")},
        "chat": {"source": "json", "data_files": str(tmp_path / "chats.json")},
        "text_completion": {"source": "json", "data_files": str(tmp_path / "corpus.json")},
    }
    for name in repo_registry.names("datasets"):
        assert name in blocks, f"add a dataset block for {name} to this test"
        assert "samples" in check_dataset(name, tokenizer, registry=repo_registry, **blocks[name])


def test_every_evaluator_builds_a_model_evaluator(repo_registry):
    from tunesmith.testing._kit_components import _conforms

    for record in repo_registry.values("evaluators"):
        _conforms(record.builder(tasks=["tiny"]), protocols.ModelEvaluator)


def test_every_plugins_configs_validate(repo_registry):
    from tunesmith.testing import check_configs

    for name, info in repo_registry.plugins.items():
        if info.components.get("configs"):
            assert check_configs(name, registry=repo_registry), name
