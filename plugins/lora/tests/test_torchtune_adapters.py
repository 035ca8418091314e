"""The LoRA and DoRA adapters torchtune 0.6.1 writes into ``output_dir/epoch_N`` load with
the logits of the merged weights torchtune wrote beside them.

The adapters, their configs and those logits were recorded from real torchtune runs by
``tests/fixtures/make_torchtune_outputs.py`` (torchtune is not needed here); the tiny
bases are written again by the same function and must have the same digest.

PEFT reads three of the four differently (``tunesmith_lora._torchtune_format`` says
why): torchtune's config has no ``use_dora``, so PEFT drops DoRA's magnitudes, and
torchtune stores the rows of Llama's q/k magnitudes and Qwen 2's q/k ``lora_B`` out of
Hugging Face order. The tests check that PEFT still differs there, so that a
recording from a torchtune that fixed this shows at once.
"""

from __future__ import annotations

import functools
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")
pytest.importorskip("tunesmith_qwen")

import tunesmith  # noqa: E402
from tunesmith.errors import CheckpointError  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
from make_torchtune_outputs import MANIFEST, OUTPUTS, recorded_base  # noqa: E402

# PEFT 0.21 calls a transformers 5 method that is deprecated; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")

RECORDED = json.loads(MANIFEST.read_text())
TOKENS = torch.tensor([RECORDED["tokens"]])
COLUMNS = RECORDED["logits_columns"]
#: torchtune's logits are stored to 4 decimals.
RECORDED_ATOL = 2e-4
ADAPTERS = [name for name, run in RECORDED["runs"].items() if run["logits"] and "_full" not in name]
#: Where PEFT's reading of torchtune's own files is not what torchtune trained.
PEFT_MISREADS = {"llama3_2_dora", "qwen2_5_lora", "qwen2_5_dora"}


@pytest.fixture(autouse=True)
def _registry(monkeypatch):
    from tunesmith.registry import reset_registry

    monkeypatch.setenv("TUNESMITH_LOAD_PLUGINS", "llama,qwen,lora")
    reset_registry()
    yield
    reset_registry()


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """``bases(family)``: torchtune's tiny base of ``family``, written once per module."""
    return functools.cache(lambda family: recorded_base(tmp_path_factory.mktemp(family), family))


def _epoch_dir(name: str, tmp_path: Path) -> Path:
    """The adapter files of the run's ``epoch_0``, as torchtune wrote them."""
    epoch = tmp_path / name / RECORDED["epoch"]
    epoch.mkdir(parents=True)
    for f in ("adapter_config.json", "adapter_model.safetensors", "adapter_model.pt"):
        if (OUTPUTS / name / f).is_file():
            shutil.copy(OUTPUTS / name / f, epoch / f)
    return epoch


def _torchtune_logits(name: str) -> torch.Tensor:
    return torch.tensor(RECORDED["runs"][name]["logits"])


@torch.no_grad()
def _ours(base: Path, **kwargs) -> torch.Tensor:
    model, _ = tunesmith.load_pretrained(base, device="cpu", dtype="fp32", **kwargs)
    return model(TOKENS)[0].float()


@torch.no_grad()
def _peft(base: Path, adapter_dir: Path) -> torch.Tensor:
    hf = transformers.AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    return peft.PeftModel.from_pretrained(hf, adapter_dir).eval()(TOKENS).logits[0]


def test_the_recording_is_of_torchtune_0_6_1():
    assert RECORDED["torchtune"].startswith("0.6.1")
    config = json.loads((OUTPUTS / "llama3_2_dora" / "adapter_config.json").read_text())
    assert sorted(config) == ["lora_alpha", "peft_type", "r", "target_modules"]


@pytest.mark.parametrize("name", ADAPTERS)
def test_torchtune_adapter_gives_torchtunes_merged_logits(name, bases, tmp_path):
    base = bases(RECORDED["runs"][name]["family"])
    epoch = _epoch_dir(name, tmp_path)
    ours = _ours(base, adapter=epoch)
    expected = _torchtune_logits(name)
    assert (_ours(base)[:, :COLUMNS] - expected).abs().max() > 0.1  # the adapter matters
    torch.testing.assert_close(ours[:, :COLUMNS], expected, atol=RECORDED_ATOL, rtol=0)
    theirs = _peft(base, epoch)
    if name in PEFT_MISREADS:
        assert (theirs[:, :COLUMNS] - expected).abs().max() > 2e-3
    else:
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["llama3_2_dora", "qwen2_5_lora"])
def test_merge_adapter_writes_torchtunes_merged_weights(name, bases, tmp_path):
    base = bases(RECORDED["runs"][name]["family"])
    merged = tunesmith.merge_adapter(base, _epoch_dir(name, tmp_path), tmp_path / "merged")
    hf = transformers.AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32)
    with torch.no_grad():
        logits = hf.eval()(TOKENS).logits[0]
    torch.testing.assert_close(
        logits[:, :COLUMNS], _torchtune_logits(name), atol=RECORDED_ATOL, rtol=0
    )


def test_adapter_only_epoch_loads_as_adapter_and_not_as_a_model(bases, tmp_path):
    name = "llama3_2_lora_adapter_only"
    base = bases("llama3_2")
    epoch = _epoch_dir(name, tmp_path)
    # torchtune's save_adapter_weights_only epoch: the adapter, the base's support files,
    # no weights.
    shutil.copy(base / "config.json", epoch)
    written = RECORDED["runs"][name]["written"]
    assert not [f for f in written if f.startswith("epoch_0/model")]
    with pytest.raises(CheckpointError, match=r"holds only a PEFT adapter .* adapter="):
        tunesmith.load_pretrained(epoch, device="cpu")
    # The same run as llama3_2_lora, but for save_adapter_weights_only: the same adapter.
    ours = _ours(base, adapter=epoch)
    torch.testing.assert_close(
        ours[:, :COLUMNS], _torchtune_logits("llama3_2_lora"), atol=RECORDED_ATOL, rtol=0
    )


def test_a_file_of_the_epoch_dir_stands_for_it(bases, tmp_path):
    base = bases("llama3_2")
    epoch = _epoch_dir("llama3_2_lora", tmp_path)
    expected = _ours(base, adapter=epoch)
    for name in ("adapter_model.pt", "adapter_model.safetensors"):
        torch.testing.assert_close(_ours(base, adapter=epoch / name), expected, atol=0, rtol=0)


def test_torchtunes_adapter_model_pt_alone_is_refused_in_one_line(bases, tmp_path):
    base = bases("llama3_2")
    alone = tmp_path / "pt_only"
    alone.mkdir()
    shutil.copy(OUTPUTS / "llama3_2_lora" / "adapter_model.pt", alone)
    for adapter in (alone, alone / "adapter_model.pt"):
        with pytest.raises(CheckpointError) as info:
            tunesmith.load_pretrained(base, device="cpu", adapter=adapter)
        message = str(info.value)
        assert "\n" not in message
        assert f"{alone / 'adapter_model.pt'} is torchtune's own adapter file" in message
        assert "no lora_alpha" in message and "point adapter= at the epoch_N directory" in message


def test_a_peft_config_that_says_more_is_not_read_as_torchtunes(bases, tmp_path):
    """Only torchtune's minimal adapter_config.json gets torchtune's reading: a config
    that states use_dora keeps PEFT's meaning (and its mismatch is refused)."""
    base = bases("llama3_2")
    epoch = _epoch_dir("llama3_2_dora", tmp_path)
    config = json.loads((epoch / "adapter_config.json").read_text())
    (epoch / "adapter_config.json").write_text(json.dumps({**config, "use_dora": False}))
    with pytest.raises(CheckpointError, match="says use_dora=False, but layer .* has a DoRA"):
        tunesmith.load_pretrained(base, device="cpu", adapter=epoch)
