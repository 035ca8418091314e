"""Fixtures for the quantization tests: a tiny Llama whose linear layers suit torchao
(input sizes 128 and 256, multiples of every group size used), with a trained tokenizer,
and the quantize recipe's output for each built-in quantizer, written once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("tunesmith_llama")


def _have_torchao() -> bool:
    from tunesmith.errors import TunesmithError
    from tunesmith.quantization import import_torchao

    try:
        import_torchao()  # quietly: no CUDA-kernel or pytree warnings
    except TunesmithError:
        return False
    return True


if not _have_torchao():
    pytest.skip("needs torchao: pip install 'tunesmith[quantize]'", allow_module_level=True)

#: Built-in quantizer -> the arguments the tests use.
QUANTIZERS = {
    "int8_weight_only": {},
    "int8_dynamic_activation_int8_weight": {},
    "int4_weight_only": {"groupsize": 64},
}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from intra-op threads; on a busy 2-core machine they
    only make each matmul slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_checkpoint(directory: Path, *, variant: str = "llama3_2") -> Path:
    """A tiny Llama (hidden 128, MLP 256) whose vocabulary matches a trained tokenizer."""
    from tunesmith.testing import write_hf_tokenizer
    from tunesmith_llama import write_tiny_llama_checkpoint

    write_hf_tokenizer(directory, vocab_size=300)
    added = json.loads((directory / "tokenizer.json").read_text())["added_tokens"]
    ids = {t["content"]: t["id"] for t in added}
    write_tiny_llama_checkpoint(
        directory,
        variant=variant,
        hidden_size=128,
        intermediate_size=256,
        head_dim=32,
        vocab_size=max(ids.values()) + 1,
        bos_token_id=ids["<|begin_of_text|>"],
        eos_token_id=ids["<|eot_id|>"],
    )
    return directory


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory) -> Path:
    """Llama 3.2 layout: tied embeddings (the head is not an nn.Linear)."""
    return write_checkpoint(tmp_path_factory.mktemp("quant_base") / "base")


@pytest.fixture(scope="session")
def tokens() -> torch.Tensor:
    return torch.randint(0, 300, (2, 32), generator=torch.Generator().manual_seed(0))


def quantize_args(directory: Path, output: Path, name: str, **args) -> list[str]:
    """``tunesmith run quantize`` arguments quantizing ``directory`` into ``output``."""
    extra = [f"+quantizer.{k}={v}" for k, v in args.items()]
    return [
        "run", "quantize", "--config", "quantization",
        f"checkpointer.checkpoint_dir={directory}", f"output_dir={output}",
        f"quantizer._component_={name}", "device=cpu", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="session")
def quantized(base_dir, tmp_path_factory):
    """``quantized(name) -> (output_dir, click Result)``: the recipe's output for a
    built-in quantizer with :data:`QUANTIZERS`' arguments, written once per session."""
    from tunesmith.cli import cli

    root = tmp_path_factory.mktemp("quant_out")
    cache: dict[str, tuple[Path, object]] = {}

    def get(name: str):
        if name not in cache:
            output = root / name
            result = CliRunner().invoke(
                cli, quantize_args(base_dir, output, name, **QUANTIZERS[name])
            )
            assert result.exit_code == 0, result.output
            cache[name] = (output, result)
        return cache[name]

    return get
