import pytest
import torch

from tunesmith.errors import ConfigError
from tunesmith.training import resolve_device, resolve_dtype, set_default_dtype


@pytest.fixture
def fake_cuda(monkeypatch):
    """Pretend to have two CUDA devices (bf16-capable unless a test says otherwise)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Old GPU")
    monkeypatch.delenv("LOCAL_RANK", raising=False)


def test_auto_device_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device() == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")


def test_cuda_unavailable_message(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError) as e:
        resolve_device("cuda")
    assert str(e.value) == (
        "device 'cuda' requested but CUDA is not available on this machine: "
        "set device=cpu (or device=auto)"
    )


def test_auto_device_uses_local_rank(fake_cuda, monkeypatch):
    assert resolve_device("auto") == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("auto") == torch.device("cuda", 1)
    assert resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)  # explicit index wins
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(ConfigError, match=r"cuda:2 requested but this machine has 2 CUDA device"):
        resolve_device("auto")


def test_unknown_device_suggests():
    with pytest.raises(ConfigError) as e:
        resolve_device("cdua")
    assert "unknown device 'cdua'" in str(e.value)
    assert "did you mean 'cuda'" in str(e.value)
    assert "set device to auto, cpu, cuda" in str(e.value)


@pytest.fixture
def cpu_without_bf16(monkeypatch):
    """A CPU whose /proc/cpuinfo lists AVX2 but no native bf16."""
    from tunesmith.training import _precision

    _precision.cpu_bf16_support.cache_clear()
    monkeypatch.setattr(_precision, "_cpu_flags", lambda: {"sse2", "avx2", "fma"})
    yield
    _precision.cpu_bf16_support.cache_clear()


@pytest.fixture
def cpu_with_bf16(monkeypatch):
    from tunesmith.training import _precision

    _precision.cpu_bf16_support.cache_clear()
    monkeypatch.setattr(_precision, "_cpu_flags", lambda: {"sse2", "avx512f", "avx512_bf16"})
    monkeypatch.setattr(_precision, "_onednn_bf16", lambda: True)
    yield
    _precision.cpu_bf16_support.cache_clear()


def test_dtype_names_and_auto_on_cpu(cpu_without_bf16):
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype(device="cpu") == torch.float32
    for name in ("bf16", "bfloat16", "BF16", "torch.bfloat16", torch.bfloat16):
        assert resolve_dtype(name, "cpu") == torch.bfloat16
    for name in ("fp32", "float32", "float", torch.float32):
        assert resolve_dtype(name, "cpu") == torch.float32


def test_auto_dtype_on_cuda(fake_cuda, monkeypatch):
    assert resolve_dtype("auto", "cuda") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_dtype("auto", "cuda") == torch.float32
    with pytest.raises(ConfigError) as e:
        resolve_dtype("bf16", "cuda")
    assert str(e.value) == "dtype bf16 requested but Old GPU does not support bf16: set dtype=fp32"


def test_fp16_refused_for_training_only():
    with pytest.raises(ConfigError) as e:
        resolve_dtype("fp16", "cpu")
    assert "fp16 is not supported for training" in str(e.value)
    assert "set dtype=bf16" in str(e.value) and "dtype=fp32" in str(e.value)
    with pytest.raises(ConfigError, match="fp16 is not supported for training"):
        resolve_dtype(torch.float16, "cpu")
    assert resolve_dtype("half", "cpu", training=False) == torch.float16


def test_unknown_dtype_suggests():
    with pytest.raises(ConfigError) as e:
        resolve_dtype("bf61", "cpu")
    assert "unknown dtype 'bf61' — did you mean 'bf16'" in str(e.value)
    with pytest.raises(ConfigError, match="dtype torch.float64 is not supported"):
        resolve_dtype(torch.float64, "cpu")


def test_set_default_dtype_restores_even_on_error():
    before = torch.get_default_dtype()
    with set_default_dtype(torch.bfloat16):
        assert torch.nn.Linear(2, 2).weight.dtype == torch.bfloat16
    assert torch.get_default_dtype() == before
    with pytest.raises(RuntimeError):
        with set_default_dtype(torch.float64):
            raise RuntimeError("boom")
    assert torch.get_default_dtype() == before


def test_auto_dtype_on_cpu_follows_native_bf16(cpu_with_bf16):
    from tunesmith.training import auto_dtype

    assert resolve_dtype("auto", "cpu") == torch.bfloat16
    dtype, reason = auto_dtype("cpu")
    assert dtype == torch.bfloat16 and reason == "the CPU has native bf16 (avx512_bf16)"
    # Named dtypes are never overridden; inference keeps fp32 on the CPU.
    assert resolve_dtype("fp32", "cpu") == torch.float32
    assert resolve_dtype("auto", "cpu", training=False) == torch.float32


def test_auto_dtype_on_cpu_without_bf16(cpu_without_bf16):
    from tunesmith.training import auto_dtype

    dtype, reason = auto_dtype("cpu")
    assert dtype == torch.float32
    assert "no native bf16" in reason
    assert resolve_dtype("bf16", "cpu") == torch.bfloat16  # asked for: given, even if slow


@pytest.mark.parametrize(("speeds", "expected"), [((150.0, 300.0), True), ((180.0, 1.0), False)])
def test_matmul_probe_decides_where_flags_are_unreadable(monkeypatch, speeds, expected):
    from tunesmith.training import _precision

    _precision.cpu_bf16_support.cache_clear()
    monkeypatch.setattr(_precision, "_cpu_flags", lambda: None)  # macOS, Arm, Windows
    monkeypatch.setattr(_precision, "_matmul_probe", lambda: speeds)
    try:
        native, reason = _precision.cpu_bf16_support()
        assert native is expected
        assert "matmul probe" in reason
        expected_dtype = torch.bfloat16 if expected else torch.float32
        assert resolve_dtype("auto", "cpu") == expected_dtype
    finally:
        _precision.cpu_bf16_support.cache_clear()


def test_matmul_probe_measures_both_dtypes():
    from tunesmith.training import _precision

    fp32, bf16 = _precision._matmul_probe(n=64, rounds=1)
    assert fp32 > 0 and bf16 > 0


def test_cpu_flags_read_from_proc_cpuinfo():
    from tunesmith.training import _precision

    flags = _precision._cpu_flags()
    assert flags is None or isinstance(flags, set)


@pytest.mark.parametrize(
    ("device", "dtype", "multiple"),
    [
        ("cpu", torch.bfloat16, 64),  # oneDNN compiles a kernel per product shape
        ("cpu", torch.float16, 64),
        ("cpu", torch.float32, 1),  # MKL does not
        ("cuda", torch.bfloat16, 1),  # nor does cuBLAS
    ],
)
def test_gemm_row_multiple(device, dtype, multiple):
    from tunesmith.training import gemm_row_multiple

    assert gemm_row_multiple(device, dtype) == multiple

