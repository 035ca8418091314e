"""The built-in quantizers on a tiny Llama on the CPU: accuracy against fp32, what gets
quantized, the device-dependent int4 config, argument checks and a missing torchao."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch
from torch import nn

import tunesmith
from tunesmith.errors import ConfigError, TunesmithError
from tunesmith.quantization import (
    Int4WeightOnly,
    Int8WeightOnly,
    model_size_bytes,
    tensor_bytes,
)

from .conftest import QUANTIZERS, write_checkpoint

# Relative error of the logits, ||q - fp32|| / ||fp32||, on a 2-layer model with
# N(0, 0.02) weights (14 quantized linears), and the share of positions whose top-1
# token is unchanged. Measured on this fixture: 0.0091, 0.0132, 0.155 (seeds 1-2 of the
# tokens: up to 0.0125, 0.0156, 0.189); the bounds leave that margin.
BOUNDS = {
    "int8_weight_only": (0.02, 0.95),
    "int8_dynamic_activation_int8_weight": (0.025, 0.95),
    "int4_weight_only": (0.25, 0.9),
}


@pytest.fixture(scope="module")
def fp32(base_dir):
    model, _ = tunesmith.load_pretrained(base_dir, dtype="fp32", device="cpu")
    return model


def _quantize(model: nn.Module, name: str) -> nn.Module:
    builder = tunesmith.get_registry().get("quantizers", name).builder
    return builder(**QUANTIZERS[name]).quantize(copy.deepcopy(model), "cpu")


def _relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out - ref).norm() / ref.norm()).item()


def test_built_in_quantizers_are_registered_like_plugins():
    registry = tunesmith.get_registry()
    for name in QUANTIZERS:
        record = registry.get("quantizers", name)
        assert record.origin.plugin == "tunesmith.builtins.quantizers"
        assert record.origin.distribution == "tunesmith"
        assert record.builder.name == name


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
def test_logits_stay_close_to_fp32(name, fp32, tokens):
    from torchao.utils import TorchAOBaseTensor

    quantized = _quantize(fp32, name)
    with torch.no_grad():
        ref, out = fp32(tokens), quantized(tokens)
    error = _relative_error(out, ref)
    agree = (out.argmax(-1) == ref.argmax(-1)).float().mean().item()
    bound, min_agree = BOUNDS[name]
    assert 0 < error < bound, f"{name}: relative error {error:.4f}"
    assert agree >= min_agree, f"{name}: top-1 agreement {agree:.3f}"

    linears = {n: m for n, m in quantized.named_modules() if isinstance(m, nn.Linear)}
    assert len(linears) == 14  # 2 layers x (q, k, v, output_proj, w1, w2, w3)
    assert all(isinstance(m.weight, TorchAOBaseTensor) for m in linears.values())
    assert all(not m.weight.requires_grad for m in linears.values())
    # Embeddings and norms keep their dtype; the tied head still reads the embedding.
    embedding = quantized.tok_embeddings.weight
    assert type(embedding) is nn.Parameter and embedding.dtype == torch.float32
    assert quantized.output.weight is embedding
    assert type(quantized.norm.weight) is nn.Parameter


def test_int8_stores_a_byte_per_weight_and_int4_on_cpu_too(fp32):
    linear_bytes = tensor_bytes([m.weight for m in fp32.modules() if isinstance(m, nn.Linear)])
    for name in QUANTIZERS:
        quantized = _quantize(fp32, name)
        after = tensor_bytes([m.weight for m in quantized.modules() if isinstance(m, nn.Linear)])
        # int8 data (1/4 of fp32) plus scales; on CPU the int4 values sit in int8 bytes
        # (torchao's IntxUnpackedToInt8Tensor), with one scale per 64 weights.
        assert 0.25 < after / linear_bytes < 0.27, (name, after / linear_bytes)
        rest = model_size_bytes(fp32) - linear_bytes
        assert model_size_bytes(quantized) == after + rest


def test_model_size_counts_a_tied_weight_once(fp32):
    params = {id(p): p for p in fp32.parameters()}.values()
    assert model_size_bytes(fp32) == sum(p.numel() * 4 for p in params)
    assert tensor_bytes([fp32.tok_embeddings.weight, fp32.output.weight]) == (
        fp32.tok_embeddings.weight.numel() * 4
    )


def test_an_untied_output_head_is_left_unquantized(tmp_path, tokens):
    from torchao.utils import TorchAOBaseTensor

    directory = write_checkpoint(tmp_path / "llama3_1", variant="llama3_1")
    model, _ = tunesmith.load_pretrained(directory, dtype="fp32", device="cpu")
    head = model.output.weight.detach().clone()
    with torch.no_grad():
        ref = model(tokens)
        Int8WeightOnly().quantize(model, "cpu")
        out = model(tokens)
    assert isinstance(model.layers[0].attn.q_proj.weight, TorchAOBaseTensor)
    assert not isinstance(model.output.weight, TorchAOBaseTensor)
    assert torch.equal(model.output.weight, head)
    assert _relative_error(out, ref) < BOUNDS["int8_weight_only"][0]


def test_int4_picks_its_torchao_config_by_device(monkeypatch):
    from torchao.quantization import Int4WeightOnlyConfig, IntxWeightOnlyConfig, PerGroup

    quantizer = Int4WeightOnly(groupsize=64)
    cpu = quantizer.torchao_config(torch.device("cpu"), torch.float32)
    assert isinstance(cpu, IntxWeightOnlyConfig)
    assert cpu.weight_dtype == torch.int4 and cpu.granularity == PerGroup(64)
    assert quantizer.portable(torch.device("cpu"))

    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    config = quantizer.torchao_config(cuda, torch.bfloat16)
    assert isinstance(config, Int4WeightOnlyConfig)
    assert config.group_size == 64 and config.int4_packing_format == "tile_packed_to_4d"
    assert not quantizer.portable(cuda)
    with pytest.raises(
        ConfigError, match=r"takes bfloat16, and the model is float32: set dtype=bf16"
    ):
        quantizer.torchao_config(cuda, torch.float32)
    with pytest.raises(ConfigError, match=r"takes groupsize 32, 64, 128, 256, not 48"):
        Int4WeightOnly(groupsize=48).torchao_config(cuda, torch.bfloat16)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    with pytest.raises(ConfigError, match=r"Tesla T4 has 7.5: use int8_weight_only"):
        quantizer.torchao_config(cuda, torch.bfloat16)


def test_int4_groupsize_is_checked(fp32):
    with pytest.raises(ConfigError, match=r"groupsize 96 does not divide the input size of "
                       r"layers\.0\.attn\.q_proj \(128\), .* and 11 more: choose a groupsize "
                       r"that divides \[128, 256\]"):  # fmt: skip
        Int4WeightOnly(groupsize=96).quantize(copy.deepcopy(fp32), "cpu")
    for bad in (0, -64, "64", True, 64.0):
        with pytest.raises(ConfigError, match="groupsize must be a positive integer"):
            Int4WeightOnly(groupsize=bad)


def test_quantize_without_torchao_says_what_to_install(monkeypatch, fp32):
    monkeypatch.setitem(sys.modules, "torchao", None)  # `import torchao` now fails
    with pytest.raises(TunesmithError, match=r"pip install 'tunesmith\[quantize\]'"):
        Int8WeightOnly().quantize(copy.deepcopy(fp32), "cpu")


def test_the_core_registers_quantizers_without_importing_torch_or_torchao():
    code = (
        "import sys\n"
        "import tunesmith.quantization, tunesmith.builtins.quantizers\n"
        "from tunesmith.quantization import Int4WeightOnly, is_quantized_dir\n"
        "Int4WeightOnly(groupsize=32); is_quantized_dir('.')\n"
        "assert 'torch' not in sys.modules and 'torchao' not in sys.modules, 'imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
