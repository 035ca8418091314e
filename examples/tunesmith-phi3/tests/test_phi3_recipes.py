"""The shipped configs: they validate, and LoRA / QLoRA runs through tunesmith-lora's
recipes write adapters of HF's fused ``qkv_proj`` / ``gate_up_proj`` that PEFT loads
with our logits, and merged weights that transformers loads with our logits."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

import tunesmith
from tunesmith.cli import cli
from tunesmith.testing import check_configs

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

RANK, ALPHA = 8, 16  # the shipped configs' lora_rank and lora_alpha
PREFIX = "base_model.model.model.layers.0."


def test_shipped_configs_validate():
    ran = check_configs("phi3")
    # torchtune's kinds under torchtune's names for phi3/mini (the 4k model) and phi4/14B
    torchtunes = ("full_distributed", "full_low_memory", "lora_distributed",
                  "lora_single_device", "qlora_single_device")  # fmt: skip
    phi3 = [f"phi3/mini_{kind}" for kind in torchtunes]
    phi3 += [f"phi3/mini_{size}_{kind}_single_device" for size in ("128k", "4k")
             for kind in ("full", "lora", "qlora")]  # fmt: skip
    phi4 = [f"phi4/14B_{kind}" for kind in torchtunes]
    assert sorted(ran) == sorted(phi3 + phi4)
    registry = tunesmith.get_registry()
    for name in ran:
        config = registry.get("configs", name)
        title = "# Phi-3 mini" if name.startswith("phi3/") else "# Phi-4 14B"
        assert config.read_text().startswith(title)
        assert f"tunesmith run {config.recipe}" in config.read_text()
        assert f" --config {name} \\" in config.read_text()
    phi4_lora = tunesmith.config.load_config("phi4/14B_lora_single_device")
    assert phi4_lora.model._component_ == "phi4_14b"
    assert phi4_lora.enable_activation_checkpointing is True


@pytest.mark.parametrize(
    ("name", "shipped", "model"),
    [
        ("phi3/mini_lora_single_device", "phi3/mini_lora_single_device", "phi3_mini"),
        ("phi3/mini_full", "phi3/mini_full_distributed", "phi3_mini"),
        ("phi3/mini_lora", "phi3/mini_lora_distributed", "phi3_mini"),
        ("phi4/14B_full", "phi4/14B_full_distributed", "phi4_14b"),
        ("phi4/14B_qlora_single_device", "phi4/14B_qlora_single_device", "phi4_14b"),
    ],
)
def test_torchtunes_config_names_name_the_shipped_configs(name, shipped, model):
    """``--config phi3/mini_lora_single_device`` (torchtune's name, as its docs write it)
    runs the shipped config of the same model and method."""
    from tunesmith.config import find_config

    assert find_config(name) == find_config(shipped)
    assert tunesmith.config.load_config(name).model._component_ == model


def _run(kind: str, base, data, out, *extra: str):
    overrides = [
        f"checkpointer.checkpoint_dir={base}",
        f"output_dir={out}",
        "model._component_=auto",  # the shipped phi3_mini_4k is 3.8B; this tiny one is not
        f"dataset.source={data}",
        "tokenizer.max_seq_len=256",  # room for an alpaca prompt and its response
        "batch_size=2",
        "gradient_accumulation_steps=1",
        "max_steps_per_epoch=2",
        "device=cpu",
        "dtype=fp32",
        "optimizer.lr=1e-2",
        "lr_scheduler.num_warmup_steps=1",
        *extra,
    ]
    recipe = f"{kind}_finetune_single_device"
    config = f"phi3/mini_4k_{kind}_single_device"
    result = CliRunner().invoke(cli, ["run", recipe, "--config", config, *overrides])
    if result.exit_code != 0:
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        raise AssertionError(result.output)
    return out / "epoch_0"


@torch.no_grad()
def _hf_logits(directory, tokens, adapter=None):
    model = transformers.AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32)
    if adapter is not None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
            model = peft.PeftModel.from_pretrained(model, str(adapter))
    return model.eval()(tokens).logits


@torch.no_grad()
def _our_logits(directory, tokens, adapter=None):
    model, _ = tunesmith.load_pretrained(directory, dtype="fp32", device="cpu", adapter=adapter)
    return model(tokens)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["lora", "dora", "qlora"])
def test_adapter_of_fused_modules_loads_in_peft(kind, phi3_dir, alpaca_file, tmp_path):
    """QLoRA trains on an NF4 base; DoRA's magnitudes of the fused module concatenate
    the parts' (k's, unadapted, is its weight's row norms)."""
    if kind == "dora":
        epoch = _run("lora", phi3_dir, alpaca_file, tmp_path / "run", "+peft.use_dora=true")
    else:
        epoch = _run(kind, phi3_dir, alpaca_file, tmp_path / "run")
    adapter_dir = epoch / "adapter"
    adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert adapter_config["use_dora"] is (kind == "dora")
    assert adapter_config["target_modules"] == ["down_proj", "gate_up_proj", "o_proj", "qkv_proj"]
    # q and v are adapted, k is not: one LoRA of rank 2r on qkv_proj; gate and up: 2r too.
    # The fused LoRAs keep the parts' scale, alpha / r (PEFT's rank/alpha_pattern).
    for layer in (0, 1):
        for module, rank in (("self_attn.qkv_proj", 2 * RANK), ("mlp.gate_up_proj", 2 * RANK),
                             ("self_attn.o_proj", RANK), ("mlp.down_proj", RANK)):  # fmt: skip
            key = f"model.layers.{layer}.{module}"
            r = adapter_config["rank_pattern"].get(key, adapter_config["r"])
            alpha = adapter_config["alpha_pattern"].get(key, adapter_config["lora_alpha"])
            assert (r, alpha / r) == (rank, ALPHA / RANK), key

    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    q, kv, inter = 64, 32, 96  # the tiny config's q/kv rows and intermediate size
    qkv_a = tensors[f"{PREFIX}self_attn.qkv_proj.lora_A.weight"]
    qkv_b = tensors[f"{PREFIX}self_attn.qkv_proj.lora_B.weight"]
    assert qkv_a.shape == (2 * RANK, 64) and qkv_b.shape == (q + 2 * kv, 2 * RANK)
    # B is block diagonal: q's rows use the first r columns, v's the last, k's none
    assert qkv_b[:q, RANK:].abs().max() == 0 and qkv_b[q + kv :, :RANK].abs().max() == 0
    assert qkv_b[q : q + kv].abs().max() == 0
    assert qkv_b[:q, :RANK].abs().max() > 0 and qkv_b[q + kv :, RANK:].abs().max() > 0
    if kind == "dora":
        magnitude = tensors[f"{PREFIX}self_attn.qkv_proj.lora_magnitude_vector"]
        base = load_file(str(phi3_dir / "model.safetensors"))
        k_rows = base["model.layers.0.self_attn.qkv_proj.weight"][q : q + kv]
        torch.testing.assert_close(magnitude[q : q + kv], k_rows.norm(dim=1))
    gate_up_b = tensors[f"{PREFIX}mlp.gate_up_proj.lora_B.weight"]
    assert gate_up_b.shape == (2 * inter, 2 * RANK)
    assert gate_up_b[:inter, RANK:].abs().max() == 0 and gate_up_b[inter:, :RANK].abs().max() == 0
    assert gate_up_b[:inter, :RANK].abs().max() > 0 and gate_up_b[inter:, RANK:].abs().max() > 0

    tokens = torch.randint(0, 320, (2, 20), generator=torch.Generator().manual_seed(5))
    ours = _our_logits(phi3_dir, tokens, adapter=epoch)
    assert (ours - _our_logits(phi3_dir, tokens)).abs().max() > 1e-3  # the adapter matters
    torch.testing.assert_close(
        _hf_logits(phi3_dir, tokens, adapter=adapter_dir), ours, atol=1e-5, rtol=0
    )
    # The merged weights (QLoRA: NF4 base dequantized, then merged) in transformers.
    torch.testing.assert_close(
        _hf_logits(epoch, tokens), _our_logits(epoch, tokens), atol=1e-5, rtol=0
    )


@pytest.mark.slow
def test_user_workflow(phi3_dir, tmp_path):
    """The CLI workflow on the tiny checkpoint: full fine-tuning, generation (the chat
    uses Phi-3's template), int8 quantization, merge-adapter and convert. (The
    2-process FSDP2 step is left out: ~25 s of torchrun on two cores.)"""
    from tunesmith.testing import check_workflow

    steps = ("full", "lora", "generate", "quantize", "merge", "convert")
    assert check_workflow(phi3_dir, work_dir=tmp_path, steps=steps) == list(steps)


@pytest.mark.parametrize("dora", [False, True], ids=["lora", "dora"])
def test_an_adapter_peft_made_of_the_fused_modules_loads_with_pefts_logits(
    dora, phi3_dir, tmp_path
):
    """PEFT's own LoRA/DoRA of ``qkv_proj`` and ``gate_up_proj`` (one A shared by the
    parts, B unstructured, rsLoRA scaling, a rank_pattern) gives PEFT's logits in
    tunesmith, where each native part gets the shared A and its rows of B and of the
    DoRA magnitude; saved again, PEFT reads the same adapter back."""
    reference = transformers.AutoModelForCausalLM.from_pretrained(
        str(phi3_dir), dtype=torch.float32
    )
    settings = peft.LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["qkv_proj", "gate_up_proj", "o_proj", "down_proj"],
        rank_pattern={"model.layers.1.self_attn.qkv_proj": 6},
        use_rslora=True,
        use_dora=dora,
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
        peft_model = peft.get_peft_model(reference, settings)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name or "magnitude" in name:
                noise = torch.randn(param.shape, generator=torch.Generator().manual_seed(len(name)))
                param.add_(noise * 0.05)
    peft_model.save_pretrained(tmp_path / "adapter")
    tokens = torch.randint(0, 320, (2, 20), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        theirs = peft_model.eval()(tokens).logits
    model, _ = tunesmith.load_pretrained(
        phi3_dir, dtype="fp32", device="cpu", adapter=tmp_path / "adapter"
    )
    with torch.no_grad():
        ours = model(tokens)
    assert (ours - _our_logits(phi3_dir, tokens)).abs().max() > 1e-3  # the adapter matters
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)

    from tunesmith.checkpoint import find_adapter
    from tunesmith_lora import save_adapter

    again = save_adapter(
        model, tmp_path / "again", adapter=find_adapter("phi3"),
        base_model_name_or_path=str(phi3_dir),
    )  # fmt: skip
    torch.testing.assert_close(
        _hf_logits(phi3_dir, tokens, adapter=again), theirs, atol=1e-5, rtol=0
    )
