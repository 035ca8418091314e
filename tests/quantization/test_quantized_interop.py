"""Quantized checkpoints across libraries: transformers loads what ``tunesmith run
quantize`` writes (tied and untied heads, one file or shards), tunesmith loads what
transformers' ``TorchAoConfig`` writes, and the torch layout (``model.pt``, what a
quantizer without a torchao config gets, and what tunesmith wrote before) still loads."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from click.testing import CliRunner

import tunesmith
from tunesmith.cli import cli
from tunesmith.quantization import load_quantized

from .conftest import QUANTIZERS, quantize_args, write_checkpoint

transformers = pytest.importorskip("transformers")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def _theirs(directory, tokens):
    model = transformers.AutoModelForCausalLM.from_pretrained(directory).eval()
    with torch.no_grad():
        return model, model(tokens).logits


def _ours(directory, tokens):
    model, _ = load_quantized(directory, device="cpu")
    with torch.no_grad():
        return model, model(tokens)


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
def test_transformers_loads_the_recipes_output_to_our_logits(name, quantized, tokens):
    from torchao.utils import TorchAOBaseTensor

    output, _ = quantized(name)
    model, theirs = _theirs(output, tokens)
    assert isinstance(model.model.layers[0].self_attn.q_proj.weight, TorchAOBaseTensor)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied, unquantized
    _, ours = _ours(output, tokens)
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def untied(tmp_path_factory):
    """An untied Llama 3.1 layout, so the output head is an nn.Linear of its own."""
    root = tmp_path_factory.mktemp("untied")
    base = write_checkpoint(root / "base", variant="llama3_1")
    output = root / "int8"
    result = CliRunner().invoke(cli, quantize_args(base, output, "int8_weight_only"))
    assert result.exit_code == 0, result.output
    return base, output


def test_an_untied_head_is_left_as_transformers_own_quantization_leaves_it(untied, tokens):
    """transformers' TorchAoConfig quantizes every linear but lm_head (and vLLM's torchao
    layers no head): the recipe's output is the checkpoint transformers itself makes,
    to its logits, and loads so in both."""
    from torchao.quantization import Int8WeightOnlyConfig
    from torchao.utils import TorchAOBaseTensor

    base, output = untied
    model, theirs = _theirs(output, tokens)
    assert isinstance(model.model.layers[0].mlp.down_proj.weight, TorchAOBaseTensor)
    assert not isinstance(model.lm_head.weight, TorchAOBaseTensor)
    config = json.loads((output / "config.json").read_text())["quantization_config"]
    assert config["modules_to_not_convert"] == ["lm_head"]
    ours_model, ours = _ours(output, tokens)
    assert not isinstance(ours_model.output.weight, TorchAOBaseTensor)
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
    own = transformers.AutoModelForCausalLM.from_pretrained(
        base, quantization_config=transformers.TorchAoConfig(quant_type=Int8WeightOnlyConfig()),
        dtype=torch.float32,
    )  # fmt: skip
    with torch.no_grad():
        torch.testing.assert_close(own.eval()(tokens).logits, ours, atol=1e-5, rtol=0)
    _, full = _theirs(base, tokens)
    assert 0 < (ours - full).abs().max() < 0.05 * full.abs().max()


def test_shards_carry_the_layout_and_load_in_both(untied, tmp_path, tokens):
    from tunesmith.checkpoint import Checkpointer, copy_support_files
    from tunesmith.quantization import Int8WeightOnly, save_quantized

    base, single = untied
    model, _ = tunesmith.load_pretrained(base, dtype="fp32", device="cpu")
    quantizer = Int8WeightOnly()
    quantizer.quantize(model, "cpu")
    copy_support_files(base, tmp_path)
    files = save_quantized(
        model, tmp_path, checkpointer=Checkpointer(base), quantizer=quantizer.describe("cpu"),
        dtype=torch.float32, device="cpu",
        torchao_config=quantizer.torchao_config(torch.device("cpu"), torch.float32),
        max_shard_size="100KB",
    )  # fmt: skip
    assert len(files) > 2 and (tmp_path / "model.safetensors.index.json").is_file()
    record = json.loads((tmp_path / "quantization_config.json").read_text())
    assert record["weights"] == "model.safetensors.index.json"
    _, theirs = _theirs(tmp_path, tokens)
    _, ours = _ours(tmp_path, tokens)
    _, unsharded = _ours(single, tokens)
    assert torch.equal(ours, unsharded)
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def from_transformers(base_dir, tmp_path_factory):
    """``base_dir`` quantized by transformers (TorchAoConfig) and saved with
    ``save_pretrained``, with the tokenizer files beside it."""
    from torchao.quantization import Int8WeightOnlyConfig

    output = tmp_path_factory.mktemp("hf_torchao") / "int8"
    config = transformers.TorchAoConfig(quant_type=Int8WeightOnlyConfig())
    model = transformers.AutoModelForCausalLM.from_pretrained(
        base_dir, quantization_config=config, dtype=torch.float32
    )
    model.save_pretrained(output)
    for name in TOKENIZER_FILES:
        shutil.copy(base_dir / name, output / name)
    return output


def test_a_checkpoint_transformers_quantized_loads_to_its_logits(from_transformers, tokens):
    from torchao.utils import TorchAOBaseTensor

    assert not (from_transformers / "quantization_config.json").exists()
    _, theirs = _theirs(from_transformers, tokens)
    model, tokenizer = tunesmith.load_pretrained(from_transformers, device="cpu")
    assert isinstance(model.layers[0].attn.q_proj.weight, TorchAOBaseTensor)
    assert not any(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), theirs, atol=1e-5, rtol=0)
    assert tokenizer.encode("hello world")


def test_generate_runs_on_it_and_quantize_refuses_it_as_a_source(
    from_transformers, tmp_path
):
    result = CliRunner().invoke(
        cli,
        ["run", "generate", "--config", "generation",
         f"checkpointer.checkpoint_dir={from_transformers}", "prompt.user=Hi", "device=cpu",
         "max_new_tokens=5"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    again = CliRunner().invoke(
        cli, quantize_args(from_transformers, tmp_path / "twice", "int8_weight_only")
    )
    assert again.exit_code != 0
    assert f"{from_transformers} is already quantized (torchao weights)" in again.output
    assert not (tmp_path / "twice").exists()


def test_the_recipe_never_replaces_a_checkpoint_transformers_quantized(
    base_dir, from_transformers, tmp_path
):
    target = shutil.copytree(from_transformers, tmp_path / "theirs")
    before = sorted(p.name for p in target.iterdir())
    result = CliRunner().invoke(cli, quantize_args(base_dir, target, "int8_weight_only"))
    assert result.exit_code != 0
    assert "already exists and is not a quantized model" in result.output
    assert sorted(p.name for p in target.iterdir()) == before


def _torch_layout(base_dir, directory):
    """What a quantizer without a torchao config gets: model.pt under native names."""
    from tunesmith.checkpoint import Checkpointer, copy_support_files
    from tunesmith.quantization import Int8WeightOnly, save_quantized

    model, _ = tunesmith.load_pretrained(base_dir, dtype="fp32", device="cpu")
    quantizer = Int8WeightOnly()
    quantizer.quantize(model, "cpu")
    copy_support_files(base_dir, directory)
    files = save_quantized(
        model, directory, checkpointer=Checkpointer(base_dir),
        quantizer=quantizer.describe("cpu"), dtype=torch.float32, device="cpu",
    )  # fmt: skip
    return model, files


def test_without_a_torchao_config_the_torch_layout_is_written_and_loads(
    base_dir, tmp_path, tokens
):
    model, files = _torch_layout(base_dir, tmp_path)
    assert [f.name for f in files] == ["model.pt"]
    assert not (tmp_path / "model.safetensors").exists()
    config = json.loads((tmp_path / "config.json").read_text())
    assert "quantization_config" not in config  # transformers would not read model.pt
    record = json.loads((tmp_path / "quantization_config.json").read_text())
    assert record["layout"] == "torch"
    loaded, ours = _ours(tmp_path, tokens)
    with torch.no_grad():
        assert torch.equal(ours, model(tokens))


def test_a_directory_tunesmith_wrote_before_the_hf_layout_still_loads(
    base_dir, tmp_path, tokens
):
    model, _ = _torch_layout(base_dir, tmp_path)
    path = tmp_path / "quantization_config.json"
    record = json.loads(path.read_text())
    for key in ("layout", "format_version"):
        del record[key]  # format 1 had neither
    path.write_text(json.dumps(record))
    _, ours = _ours(tmp_path, tokens)
    with torch.no_grad():
        assert torch.equal(ours, model(tokens))


def test_why_a_family_gets_the_torch_layout():
    from tunesmith.quantization import hf_layout_blocker

    registry = tunesmith.get_registry()
    llama = registry.get("checkpoint_adapters", "llama")
    assert hf_layout_blocker(llama, object()) is None
    assert hf_layout_blocker(llama, None) == (
        "the quantizer names no torchao config for config.json"
    )
    fused = next(
        (a for a in registry.tables["checkpoint_adapters"].values() if a.fused), None
    )
    if fused is None:
        pytest.skip("no installed family fuses weights in Hugging Face format")
    assert "quantized tensors cannot be concatenated" in hf_layout_blocker(fused, object())


def test_training_and_converting_a_quantized_checkpoint_are_refused_in_one_line(
    from_transformers, tmp_path
):
    expected = (
        f"error: {from_transformers} holds torchao-quantized weights (config.json's "
        "quantization_config), which tunesmith does not train, merge or convert: start from "
        "the full-precision model it came from; generate and evaluate load it as it is "
        "(tunesmith.load_pretrained)\n"
    )
    converted = CliRunner().invoke(cli, ["convert", str(from_transformers), str(tmp_path / "c")])
    assert (converted.exit_code, converted.output) == (1, expected)
    from tunesmith.checkpoint import Checkpointer
    from tunesmith.errors import CheckpointError

    with pytest.raises(CheckpointError) as refused:  # what a fine-tuning recipe loads through
        Checkpointer(from_transformers, tmp_path / "run").load_model()
    assert f"error: {refused.value}\n" == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == []
