"""An ``output_dir/epoch_N`` that torchtune 0.6.1 wrote loads as a model, and its
``recipe_state.pt`` is refused in one line.

What torchtune writes was recorded from real runs by
``tests/fixtures/make_torchtune_outputs.py`` (torchtune is not needed here): the list of
files, the weights' index, the adapters, and the logits of its merged weights. Each
epoch directory is laid out again from that record — torchtune's shard name and index,
the base's other files copied as torchtune's ``copy_files`` copies them, the adapter
files beside ``config.json`` — and must list exactly the files torchtune wrote. The
full fine-tune's trained weights are not kept (hundreds of KB): its directory holds the
base's weights in torchtune's layout; a LoRA epoch's merged weights are rebuilt from the
base and torchtune's adapter, and must give torchtune's logits.
"""

from __future__ import annotations

import functools
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("tunesmith_llama")
pytest.importorskip("tunesmith_qwen")
pytest.importorskip("tunesmith_lora")

import tunesmith  # noqa: E402
from tunesmith.checkpoint import Checkpointer  # noqa: E402
from tunesmith.errors import CheckpointError  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
sys.path.insert(0, str(FIXTURES))
from make_torchtune_outputs import MANIFEST, OUTPUTS, recorded_base  # noqa: E402

RECORDED = json.loads(MANIFEST.read_text())
EPOCH = RECORDED["epoch"]
TOKENS = torch.tensor([RECORDED["tokens"]])
COLUMNS = RECORDED["logits_columns"]
RECORDED_ATOL = 2e-4  # torchtune's logits are stored to 4 decimals
SHARD = "model-00001-of-00001.safetensors"
#: torchtune 0.6.1's ``SUFFIXES_TO_NOT_COPY``: what ``copy_files`` leaves out of epoch_N.
NOT_COPIED = (
    ".pt", ".pth", ".bin", ".safetensors", "model.safetensors.index.json",
    "pytorch_model.bin.index.json", "adapter_config", "adapter_model",
)  # fmt: skip


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """``bases(family)``: torchtune's tiny base of ``family``, written once per module."""
    return functools.cache(lambda family: recorded_base(tmp_path_factory.mktemp(family), family))


def _listing(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


def torchtune_epoch(name: str, base: Path, weights_from: Path, output_dir: Path) -> Path:
    """``output_dir/epoch_0`` as torchtune wrote it for run ``name``, holding the weights
    of the HF directory ``weights_from``."""
    from safetensors.torch import load_file, save_file

    epoch = output_dir / EPOCH
    epoch.mkdir(parents=True)
    recorded = OUTPUTS / name
    if (recorded / "model.safetensors.index.json").is_file():
        weights = {}
        for f in sorted(weights_from.glob("model*.safetensors")):
            weights.update(load_file(str(f)))
        index = json.loads((recorded / "model.safetensors.index.json").read_text())
        assert sorted(index["weight_map"]) == sorted(weights)
        save_file(weights, str(epoch / SHARD), metadata={"format": "pt"})
        shutil.copy(recorded / "model.safetensors.index.json", epoch)
    for f in ("adapter_config.json", "adapter_model.safetensors", "adapter_model.pt"):
        if (recorded / f).is_file():
            shutil.copy(recorded / f, epoch)
    for f in base.rglob("*"):  # torchtune's copy_files
        if f.is_file() and not f.name.startswith(".") and not f.name.endswith(NOT_COPIED):
            (epoch / f.relative_to(base)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, epoch / f.relative_to(base))
    written = [f.removeprefix(f"{EPOCH}/") for f in RECORDED["runs"][name]["written"]]
    expected = [f for f in written if not f.startswith(("epoch_", "recipe_state/", "torchtune_"))]
    if "adapter_model.pt" in expected and not (epoch / "adapter_model.pt").is_file():
        expected.remove("adapter_model.pt")  # kept in the fixtures for one run only
    assert _listing(epoch) == expected, "not the layout torchtune wrote"
    return epoch


@torch.no_grad()
def _ours(directory: Path, **kwargs) -> torch.Tensor:
    model, _ = tunesmith.load_pretrained(directory, device="cpu", dtype="fp32", **kwargs)
    return model(TOKENS)[0].float()


@torch.no_grad()
def _transformers(directory: Path) -> torch.Tensor:
    model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    return model.eval()(TOKENS).logits[0]


def test_full_finetune_epoch_loads_as_transformers_loads_it(bases, tmp_path):
    base = bases("llama3_2")
    epoch = torchtune_epoch("llama3_2_full", base, base, tmp_path / "run")
    assert (epoch / "original" / "params.json").is_file()  # Meta's beside HF's config.json
    torch.testing.assert_close(_ours(epoch), _transformers(epoch), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["llama3_2_lora", "llama3_2_dora", "qwen2_5_lora"])
def test_peft_epoch_loads_the_merged_weights_beside_the_adapter(name, bases, tmp_path):
    base = bases(RECORDED["runs"][name]["family"])
    merged = tunesmith.merge_adapter(base, OUTPUTS / name, tmp_path / "merged")
    epoch = torchtune_epoch(name, base, merged, tmp_path / "run")
    ours = _ours(epoch)
    expected = torch.tensor(RECORDED["runs"][name]["logits"])
    torch.testing.assert_close(ours[:, :COLUMNS], expected, atol=RECORDED_ATOL, rtol=0)
    torch.testing.assert_close(ours, _transformers(merged), atol=1e-5, rtol=0)
    # transformers (with peft installed) applies the adapter_config.json it finds beside
    # config.json on top of torchtune's merged weights: the adapter twice.
    assert (_transformers(epoch)[:, :COLUMNS] - expected).abs().max() > 1e-2


def test_torchtunes_recipe_state_is_refused_in_one_line(bases, tmp_path):
    output_dir = tmp_path / "run"
    for epoch in ("epoch_0", "epoch_1", "epoch_10"):
        (output_dir / epoch).mkdir(parents=True)
    (output_dir / "recipe_state").mkdir()
    shutil.copy(OUTPUTS / "llama3_2_lora" / "recipe_state.pt", output_dir / "recipe_state")
    checkpointer = Checkpointer(bases("llama3_2"), output_dir=output_dir)
    with pytest.raises(CheckpointError) as info:
        checkpointer.load_training_state()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(
        f"{output_dir / 'recipe_state' / 'recipe_state.pt'} is torchtune's recipe state"
    )
    assert "tunesmith cannot resume from" in message
    assert (
        f"checkpointer.checkpoint_dir={output_dir / 'epoch_10'} and another output_dir" in message
    )


def test_generate_runs_on_torchtunes_epoch_and_on_base_plus_its_adapter(bases, tmp_path):
    from click.testing import CliRunner

    from tunesmith.cli import cli

    name = "llama3_2_dora"
    base = bases("llama3_2")
    merged = tunesmith.merge_adapter(base, OUTPUTS / name, tmp_path / "merged")
    epoch = torchtune_epoch(name, base, merged, tmp_path / "run")
    args = ["run", "generate", "--config", "generation", "prompt.user=Hello there", "temperature=0"]
    args += ["max_new_tokens=8", "device=cpu", "dtype=fp32"]
    merged_run = CliRunner().invoke(cli, [*args, f"checkpointer.checkpoint_dir={epoch}"])
    adapter_run = CliRunner().invoke(
        cli, [*args, f"checkpointer.checkpoint_dir={base}", f"adapter={epoch}"]
    )
    assert merged_run.exit_code == adapter_run.exit_code == 0, (
        merged_run.output + adapter_run.output
    )
    model, tokenizer = tunesmith.load_pretrained(epoch, device="cpu", dtype="fp32")
    want = tunesmith.generate(model, tokenizer, "Hello there", max_new_tokens=8)
    assert merged_run.stdout == adapter_run.stdout == want + "\n"
    base_run = CliRunner().invoke(cli, [*args, f"checkpointer.checkpoint_dir={base}"])
    assert base_run.exit_code == 0 and base_run.stdout != want + "\n"  # the adapter matters
