"""Adapters PEFT writes for each family's transformers model (target_modules
"all-linear", rank-stabilised) load into the native model with PEFT's logits."""

from __future__ import annotations

import pytest
import torch

peft = pytest.importorskip("peft")
pytest.importorskip("transformers")

from tunesmith.checkpoint import Checkpointer  # noqa: E402
from tunesmith.peft import transform_for_adapter  # noqa: E402
from tunesmith.testing import reference_checkpoint  # noqa: E402

# PEFT 0.21 calls a transformers 5 method that is deprecated; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")

# (plugin module, tiny config function, its argument); Gemma 3's multimodal checkpoint
# adapts only its language model, as tunesmith trains it.
FAMILIES = {
    "mistral": ("tunesmith_mistral", "tiny_mistral_config", ("v0_3",)),
    "qwen2": ("tunesmith_qwen", "tiny_qwen2_config", ("transformers4",)),
    "qwen3": ("tunesmith_qwen", "tiny_qwen3_config", ("tied",)),
    "gemma2": ("tunesmith_gemma", "tiny_gemma2_config", ()),
    "gemma3": ("tunesmith_gemma", "tiny_gemma3_config", ()),
}
_LANGUAGE_MODEL_ONLY = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|down_proj)"


@pytest.mark.parametrize("family", list(FAMILIES))
def test_peft_all_linear_rslora_adapter_loads_with_peft_logits(tmp_path, monkeypatch, family):
    from tunesmith.registry import reset_registry

    module, tiny, args = FAMILIES[family]
    config = getattr(pytest.importorskip(module), tiny)(*args)
    monkeypatch.setenv("TUNESMITH_LOAD_PLUGINS", f"lora,{module.removeprefix('tunesmith_')}")
    reset_registry()
    reference = reference_checkpoint(tmp_path / "base", config)
    torch.manual_seed(0)
    settings = peft.LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=_LANGUAGE_MODEL_ONLY if family == "gemma3" else "all-linear",
        use_rslora=True,
        task_type="CAUSAL_LM",
    )
    peft_model = peft.get_peft_model(reference, settings)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05, generator=torch.Generator().manual_seed(len(name)))
    peft_model.save_pretrained(tmp_path / "adapter")
    vocab = (config.get("text_config") or config)["vocab_size"]
    tokens = torch.randint(0, vocab, (2, 12), generator=torch.Generator().manual_seed(1))

    checkpointer = Checkpointer(tmp_path / "base")
    model = checkpointer.load_model().eval()
    with torch.no_grad():
        base = model(tokens)
        directory, transform = transform_for_adapter(tmp_path / "adapter")
        transform.load_adapter(model, directory, adapter=checkpointer.adapter)
        ours = model.eval()(tokens)
        expected = peft_model.eval()(tokens).logits
    assert (ours - base).abs().max() > 1e-2  # the adapter is applied
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)
    adapted = [m for m in model.modules() if type(m).__name__ == "LoRALinear"]
    assert adapted and all(m.use_rslora and m.rank == 4 for m in adapted)


@pytest.mark.parametrize("use_dora", [False, True], ids=["lora", "dora"])
def test_adapter_over_a_bf16_base_computes_as_peft_keeps_it_in_float32(
    tmp_path, monkeypatch, use_dora
):
    """PEFT's from_pretrained keeps an adapter in float32 over a bf16 base
    (autocast_adapter_dtype): tunesmith loads it so, and gives PEFT's bf16 logits; its
    merge rounds W + BA to bf16 once, as merge_and_unload."""
    import tunesmith
    from tunesmith.registry import reset_registry
    from tunesmith_qwen import tiny_qwen2_config, write_tiny_qwen_tokenizer

    monkeypatch.setenv("TUNESMITH_LOAD_PLUGINS", "lora,qwen")
    reset_registry()
    config = tiny_qwen2_config("transformers4")  # q/k/v biases: added as PEFT adds them
    reference = reference_checkpoint(tmp_path / "base", config)
    write_tiny_qwen_tokenizer(tmp_path / "base")  # load_pretrained loads one too
    settings = peft.LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                               use_dora=use_dora, task_type="CAUSAL_LM")  # fmt: skip
    torch.manual_seed(0)
    trained = peft.get_peft_model(reference, settings)
    with torch.no_grad():
        for name, param in trained.named_parameters():
            if "lora_B" in name or "magnitude" in name:
                param.add_(torch.randn_like(param) * 0.05)
    trained.save_pretrained(tmp_path / "adapter")
    tokens = torch.randint(0, config["vocab_size"], (2, 12), generator=torch.Generator().manual_seed(1))

    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tmp_path / "base", dtype=torch.bfloat16)
    base.save_pretrained(tmp_path / "bf16")  # a bf16 checkpoint, as released ones are
    write_tiny_qwen_tokenizer(tmp_path / "bf16")
    theirs = peft.PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    model, _ = tunesmith.load_pretrained(
        tmp_path / "bf16", adapter=tmp_path / "adapter", dtype="bf16", device="cpu"
    )
    adapted = [m for m in model.modules() if type(m).__name__ == "LoRALinear"]
    assert adapted and {m.lora_a.weight.dtype for m in adapted} == {torch.float32}
    assert {m.weight.dtype for m in adapted} == {torch.bfloat16}
    with torch.no_grad():
        ours, expected = model(tokens), theirs(tokens).logits
    torch.testing.assert_close(ours, expected, atol=1e-3, rtol=0)

    merged = tmp_path / "merged"
    tunesmith.merge_adapter(tmp_path / "bf16", tmp_path / "adapter", merged)
    want = theirs.merge_and_unload().state_dict()
    from safetensors.torch import load_file

    got = load_file(next(merged.glob("*.safetensors")))
    for key in ("model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"):
        assert got[key].dtype == torch.bfloat16
        assert torch.equal(got[key], want[key]), key
