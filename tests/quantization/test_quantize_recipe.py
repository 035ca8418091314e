"""The ``quantize`` recipe end to end through the CLI: the files it writes (atomically),
the sizes it prints, reloading them, generating with them, and its errors."""

from __future__ import annotations

import copy
import json
import re

import pytest
import torch
from click.testing import CliRunner

import tunesmith
from tunesmith.cli import cli
from tunesmith.errors import CheckpointError, NotFoundError
from tunesmith.quantization import load_quantized, model_size_bytes

from .conftest import QUANTIZERS, quantize_args

SIZE = re.compile(r"^Model size: ([\d.]+ \w+) -> ([\d.]+ \w+) \(([\d.]+)x smaller\)", re.MULTILINE)
FILES = {
    "model.safetensors",
    "quantization_config.json",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
}


def _human(nbytes: int) -> str:
    from tunesmith.recipes.quantize import _human

    return _human(nbytes)


def _in_memory(base_dir, name):
    """The source quantized in this process, as the recipe does it."""
    model, _ = tunesmith.load_pretrained(base_dir, dtype="fp32", device="cpu")
    builder = tunesmith.get_registry().get("quantizers", name).builder
    return model, builder(**QUANTIZERS[name]).quantize(copy.deepcopy(model), "cpu")


def test_shipped_config_opens_with_its_command():
    from tunesmith.config import find_config

    path, recipe = find_config("quantization")
    assert recipe == "quantize"
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# ")
    assert lines[1].startswith(
        "#   tunesmith run quantize --config quantization checkpointer.checkpoint_dir="
    )
    result = CliRunner().invoke(cli, ["validate", "quantization"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
def test_writes_weights_config_and_support_files_and_prints_sizes(name, base_dir, quantized):
    output, result = quantized(name)
    assert {p.name for p in output.iterdir()} == FILES
    assert not [p for p in output.parent.iterdir() if p.name.startswith(".")]  # no temp dirs
    config, source = (json.loads((d / "config.json").read_text()) for d in (output, base_dir))
    quantization = config.pop("quantization_config")
    assert config == {**source, "dtype": "float32"}  # the source's, in the dtype it runs in
    assert quantization["quant_method"] == "torchao"
    assert quantization["modules_to_not_convert"] == []  # every nn.Linear is quantized
    record = json.loads((output / "quantization_config.json").read_text())
    assert record["format"] == "tunesmith-torchao"
    assert (record["layout"], record["weights"]) == ("huggingface", "model.safetensors")
    assert record["quantizer"] == name
    assert record["args"] == QUANTIZERS[name]
    assert (record["dtype"], record["device"], record["portable"]) == ("float32", "cpu", True)
    assert record["model_type"] == "llama" and record["torchao_version"]
    assert "transformers' from_pretrained and tunesmith.load_pretrained load" in (
        record["note"]
    )

    fp32, in_memory = _in_memory(base_dir, name)
    before, after = model_size_bytes(fp32), model_size_bytes(in_memory)
    assert record["size_bytes"] == {"before": before, "after": after}
    [(shown_before, shown_after, ratio)] = SIZE.findall(result.stdout)
    assert (shown_before, shown_after) == (_human(before), _human(after))
    assert float(ratio) == pytest.approx(before / after, abs=0.05) and float(ratio) > 2.5
    assert "Quantized 14 linear weights" in result.stdout
    assert f"Saved to {output}: model.safetensors (" in result.stdout
    assert "transformers and tunesmith load it" in result.stdout
    # The file holds the packed tensors, not fp32 copies.
    assert (output / "model.safetensors").stat().st_size < 1.1 * after


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
def test_reloads_to_the_same_logits(name, base_dir, quantized, tokens):
    from torchao.utils import TorchAOBaseTensor

    output, _ = quantized(name)
    _, in_memory = _in_memory(base_dir, name)
    model, tokenizer = load_quantized(output, device="cpu")
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    assert isinstance(model.layers[0].attn.q_proj.weight, TorchAOBaseTensor)
    assert model.output.weight is model.tok_embeddings.weight  # still tied
    assert tokenizer.encode("hello world") == tunesmith.load_pretrained(base_dir)[1].encode(
        "hello world"
    )
    via_load_pretrained, _ = tunesmith.load_pretrained(output, device="cpu")
    with torch.no_grad():
        want = in_memory(tokens)
        assert torch.equal(model(tokens), want)
        assert torch.equal(via_load_pretrained(tokens), want)


def test_generate_runs_on_the_quantized_directory(quantized):
    output, _ = quantized("int8_weight_only")
    settings = {"max_new_tokens": 12, "temperature": 1.0, "top_k": 50, "seed": 3}
    result = CliRunner().invoke(
        cli,
        ["run", "generate", "--config", "generation", f"checkpointer.checkpoint_dir={output}",
         "prompt.user=Tell me a joke.", "device=cpu", *(f"{k}={v}" for k, v in settings.items())],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    model, tokenizer = load_quantized(output, device="cpu")
    want = tunesmith.generate(model, tokenizer, "Tell me a joke.", **settings)
    assert want.strip()
    assert result.stdout == want + "\n"
    assert re.search(r"^\d+ tokens in ", result.stderr, re.MULTILINE)


def test_a_failed_run_leaves_nothing_and_a_rerun_replaces_its_output(
    base_dir, tmp_path, monkeypatch
):
    from tunesmith.quantization import _io

    output = tmp_path / "out"

    def broken(model, directory, **kwargs):
        (directory / "model.pt").write_bytes(b"half a file")
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(_io, "save_quantized", broken)
        result = CliRunner().invoke(cli, quantize_args(base_dir, output, "int8_weight_only"))
    assert result.exit_code != 0
    assert list(tmp_path.iterdir()) == []  # neither output_dir nor a temporary sibling

    for name, args in (("int8_weight_only", {}), ("int4_weight_only", {"groupsize": 128})):
        result = CliRunner().invoke(cli, quantize_args(base_dir, output, name, **args))
        assert result.exit_code == 0, result.output
        assert json.loads((output / "quantization_config.json").read_text())["quantizer"] == name
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_refuses_to_replace_a_directory_it_did_not_write(base_dir, tmp_path):
    output = tmp_path / "mine"
    output.mkdir()
    (output / "notes.txt").write_text("keep me")
    result = CliRunner().invoke(cli, quantize_args(base_dir, output, "int8_weight_only"))
    assert result.exit_code == 1
    assert f"output_dir {output} already exists and is not a quantized model" in result.output
    assert "Traceback" not in result.output
    assert [p.name for p in output.iterdir()] == ["notes.txt"]


def test_refuses_an_output_dir_that_holds_the_source(quantized, base_dir, tmp_path):
    """An earlier quantize output holding the model to quantize would be replaced, and
    the model with it."""
    import shutil

    earlier, _ = quantized("int8_weight_only")
    output = tmp_path / "earlier"
    shutil.copytree(earlier, output)
    shutil.copytree(base_dir, output / "base")
    result = CliRunner().invoke(cli, quantize_args(output / "base", output, "int8_weight_only"))
    assert result.exit_code == 1
    assert f"output_dir {output} holds the source checkpoint" in result.output
    assert (output / "base" / "config.json").is_file()


def test_refuses_an_already_quantized_source(quantized, tmp_path):
    output, _ = quantized("int8_weight_only")
    result = CliRunner().invoke(cli, quantize_args(output, tmp_path / "again", "int8_weight_only"))
    assert result.exit_code == 1
    assert "is already quantized" in result.output
    with pytest.raises(CheckpointError, match="is quantized and takes no adapter"):
        tunesmith.load_pretrained(output, adapter=tmp_path)


def test_unknown_quantizer_suggests_the_closest_name(base_dir, tmp_path):
    from tunesmith.config import instantiate

    with pytest.raises(NotFoundError, match=r"did you mean 'int8_weight_only'"):
        instantiate({"_component_": "int8_weight_onyl"}, key="quantizer")
    result = CliRunner().invoke(cli, quantize_args(base_dir, tmp_path / "o", "int8_weight_onyl"))
    assert result.exit_code != 0
    assert "unknown quantizer 'int8_weight_onyl' — did you mean 'int8_weight_only'" in result.output
    assert not (tmp_path / "o").exists()


def test_validate_checks_the_quantizer_arguments():
    base = ["validate", "quantization", "quantizer._component_=int4_weight_only"]
    wrong_name = CliRunner().invoke(cli, [*base, "+quantizer.group_size=64"])
    assert wrong_name.exit_code == 1
    assert "has no argument 'group_size' — did you mean 'groupsize'?" in wrong_name.output
    wrong_type = CliRunner().invoke(cli, [*base, "+quantizer.groupsize=sixty"])
    assert "'quantizer.groupsize' must be int, not 'sixty'" in wrong_type.output
    typo_key = CliRunner().invoke(cli, ["validate", "quantization", "+quantiser={}"])
    assert "unknown key 'quantiser' for recipe quantize — did you mean 'quantizer'?" in (
        typo_key.output
    )
    ok = CliRunner().invoke(cli, [*base, "+quantizer.groupsize=32"])
    assert ok.exit_code == 0, ok.output


def test_weights_packed_for_cuda_are_refused_elsewhere(quantized, tmp_path):
    import shutil

    output, _ = quantized("int4_weight_only")
    copy_dir = shutil.copytree(output, tmp_path / "cuda_int4")
    record = json.loads((copy_dir / "quantization_config.json").read_text())
    record.update(device="cuda", portable=False)
    (copy_dir / "quantization_config.json").write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match=r"packed for cuda, which do not run on cpu: load it "
                       r"with device=cuda"):  # fmt: skip
        load_quantized(copy_dir, device="cpu")


def test_another_dtype_is_warned_about_and_the_saved_one_kept(quantized):
    output, _ = quantized("int8_weight_only")
    with pytest.warns(UserWarning, match="was quantized in float32 and runs in it, not bfloat16"):
        model, _ = tunesmith.load_pretrained(output, dtype="bf16", device="cpu")
    assert model.tok_embeddings.weight.dtype == torch.float32


def test_an_adapter_is_merged_before_quantizing(base_dir, tmp_path, tokens):
    pytest.importorskip("tunesmith_lora")
    registry = tunesmith.get_registry()
    model, _ = tunesmith.load_pretrained(base_dir, dtype="fp32", device="cpu")
    transform = registry.get("peft_methods", "lora").builder(
        lora_attn_modules=["q_proj", "v_proj"], apply_lora_to_mlp=True, lora_rank=4
    )
    transform.apply(model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_b" in name.lower():
                param.copy_(0.05 * torch.randn(param.shape, generator=generator))
    adapter = tmp_path / "adapter"
    transform.save_adapter(
        model,
        adapter,
        adapter=registry.get("checkpoint_adapters", "llama"),
        base_model_name_or_path=str(base_dir),
    )
    merged_dir = tunesmith.merge_adapter(base_dir, adapter, tmp_path / "merged")

    runs = {
        "adapted": [*quantize_args(base_dir, tmp_path / "q_adapted", "int8_weight_only"),
                    f"adapter={adapter}"],
        "merged": quantize_args(merged_dir, tmp_path / "q_merged", "int8_weight_only"),
        "base": quantize_args(base_dir, tmp_path / "q_base", "int8_weight_only"),
    }  # fmt: skip
    logits = {}
    for label, args in runs.items():
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        quantized_model, _ = load_quantized(tmp_path / f"q_{label}", device="cpu")
        with torch.no_grad():
            logits[label] = quantized_model(tokens)
    torch.testing.assert_close(logits["adapted"], logits["merged"], rtol=0, atol=1e-4)
    assert (logits["adapted"] - logits["base"]).abs().max() > 1e-2
