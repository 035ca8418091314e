"""Parity with PEFT and transformers on a tiny Llama: adapters we save load into PEFT
with the same logits, merged weights load into transformers, and adapters PEFT
writes load into our model."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("tunesmith_llama")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from tunesmith import merge_adapter  # noqa: E402
from tunesmith.checkpoint import Checkpointer, load_model_weights  # noqa: E402
from tunesmith_llama import write_tiny_llama_checkpoint  # noqa: E402
from tunesmith_lora import (  # noqa: E402
    LoRATransform,
    load_adapter,
    lora_modules,
)

ATOL = 1e-5
VOCAB = 512
# PEFT 0.21 calls a transformers 5 method that is deprecated; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")


@pytest.fixture(scope="module")
def base_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_llama")
    return {
        variant: write_tiny_llama_checkpoint(root / variant, variant=variant, seed=4)
        for variant in ("llama3_1", "llama3_2")
    }


def _native(directory):
    ckpt = Checkpointer(directory)
    model = ckpt.build_model()
    load_model_weights(model, ckpt.load_state_dict())
    return model.eval(), ckpt.adapter


def _hf(directory):
    return transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()


def _tokens(seed=1):
    return torch.randint(0, VOCAB, (2, 16), generator=torch.Generator().manual_seed(seed))


def _randomize(model, seed=3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in lora_modules(model).values():
            module.lora_b.weight.copy_(0.05 * torch.randn(module.lora_b.weight.shape, generator=g))
            if module.use_dora:
                module.magnitude.mul_(1 + 0.3 * torch.rand(module.magnitude.shape, generator=g))


def _logits(model, tokens):
    with torch.no_grad():
        out = model(tokens)
    return out if isinstance(out, torch.Tensor) else out.logits


@pytest.mark.parametrize(
    ("use_dora", "use_rslora"), [(False, False), (True, False), (True, True)],
    ids=["lora", "dora", "rslora-dora"],
)  # fmt: skip
def test_saved_adapter_and_merged_weights_match_peft_and_transformers(
    tmp_path, base_dirs, use_dora, use_rslora
):
    base_dir = base_dirs["llama3_1"]
    model, adapter = _native(base_dir)
    transform = LoRATransform(
        lora_attn_modules=["q_proj", "k_proj", "v_proj", "output_proj"],
        apply_lora_to_mlp=True,
        apply_lora_to_output=True,
        lora_rank=4,
        lora_alpha=8,
        use_dora=use_dora,
        use_rslora=use_rslora,
    )
    transform.apply(model)
    _randomize(model)
    tokens = _tokens()
    ours = _logits(model.eval(), tokens)
    base_logits = _logits(_hf(base_dir), tokens)
    assert (ours - base_logits).abs().max() > 1e-3  # the adapter does change the model

    adapter_dir = transform.save_adapter(
        model, tmp_path / "adapter", adapter=adapter, base_model_name_or_path=str(base_dir)
    )
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert config["target_modules"] == [
        "down_proj", "gate_proj", "k_proj", "lm_head", "o_proj", "q_proj", "up_proj", "v_proj"
    ]  # fmt: skip
    assert (config["use_rslora"], config["use_dora"]) == (use_rslora, use_dora)
    peft_model = peft.PeftModel.from_pretrained(_hf(base_dir), adapter_dir).eval()
    torch.testing.assert_close(_logits(peft_model, tokens), ours, atol=ATOL, rtol=0)

    # merged weights through the checkpointer -> plain transformers model
    ckpt = Checkpointer(base_dir, tmp_path / "run")
    epoch = ckpt.save_epoch(0, transform.merged_state_dict(model))
    torch.testing.assert_close(_logits(_hf(epoch), tokens), ours, atol=ATOL, rtol=0)

    # merge_adapter: base dir + adapter dir -> merged HF directory
    merged_dir = merge_adapter(base_dir, adapter_dir, tmp_path / "merged")
    assert (merged_dir / "config.json").is_file()
    torch.testing.assert_close(_logits(_hf(merged_dir), tokens), ours, atol=ATOL, rtol=0)

    # and PEFT's own merge agrees
    torch.testing.assert_close(
        _logits(peft_model.merge_and_unload(), tokens), ours, atol=ATOL, rtol=0
    )


@pytest.mark.parametrize(
    ("variant", "use_dora", "layers", "use_rslora"),
    [
        ("llama3_1", False, None, False),
        ("llama3_1", True, None, False),
        ("llama3_2", False, [1], False),
        ("llama3_1", False, None, True),
    ],
    ids=["lora", "dora", "tied-one-layer", "rslora-rank-pattern"],
)
def test_adapter_written_by_peft_loads_with_peft_logits(
    tmp_path, base_dirs, variant, use_dora, layers, use_rslora
):
    base_dir = base_dirs[variant]
    torch.manual_seed(0)
    config = peft.LoraConfig(
        r=4,
        lora_alpha=16,
        target_modules=["q_proj", "v_proj", "o_proj", "gate_proj", "down_proj"],
        alpha_pattern={"down_proj": 4},
        rank_pattern={"gate_proj": 2} if use_rslora else {},
        layers_to_transform=layers,
        use_dora=use_dora,
        use_rslora=use_rslora,
        task_type="CAUSAL_LM",
    )
    peft_model = peft.get_peft_model(_hf(base_dir), config)
    g = torch.Generator().manual_seed(9)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(0.05 * torch.randn(param.shape, generator=g))
            elif "lora_magnitude_vector" in name:
                param.mul_(1 + 0.3 * torch.rand(param.shape, generator=g))
    peft_model.save_pretrained(tmp_path / "peft")
    tokens = _tokens(seed=5)
    expected = _logits(peft_model.eval(), tokens)

    model, adapter = _native(base_dir)
    load_adapter(model, tmp_path / "peft", adapter=adapter)
    wrapped = lora_modules(model)
    n_layers = 1 if layers else 2
    assert len(wrapped) == 5 * n_layers
    assert wrapped["layers.1.mlp.w2"].alpha == 4 and wrapped["layers.1.attn.q_proj"].alpha == 16
    assert all(m.use_dora is use_dora and m.use_rslora is use_rslora for m in wrapped.values())
    assert wrapped["layers.1.mlp.w1"].rank == (2 if use_rslora else 4)
    assert wrapped["layers.1.attn.q_proj"].rank == 4
    torch.testing.assert_close(_logits(model.eval(), tokens), expected, atol=ATOL, rtol=0)

    # saving it back gives a directory PEFT reads to the same logits
    LoRATransform(lora_attn_modules=["q_proj"]).save_adapter(
        model, tmp_path / "again", adapter=adapter, base_model_name_or_path=str(base_dir)
    )
    reloaded = peft.PeftModel.from_pretrained(_hf(base_dir), tmp_path / "again").eval()
    torch.testing.assert_close(_logits(reloaded, tokens), expected, atol=ATOL, rtol=0)


def test_tied_llama_rejects_output_lora(base_dirs):
    from tunesmith.errors import ConfigError

    model, _ = _native(base_dirs["llama3_2"])
    with pytest.raises(
        ConfigError,
        match=r"tied to its token embeddings \(TiedLinear\).*apply_lora_to_output: false",
    ):
        LoRATransform(lora_attn_modules=["q_proj"], apply_lora_to_output=True).apply(model)


def test_qlora_on_tiny_llama_trains_and_merges(tmp_path, base_dirs):
    from torchao.quantization import NF4Tensor

    model, adapter = _native(base_dirs["llama3_1"])
    tokens = _tokens(seed=2)
    reference = _logits(model, tokens)
    transform = LoRATransform(
        lora_attn_modules=["q_proj", "v_proj"], apply_lora_to_mlp=True, quantize_base=True
    )
    transform.apply(model)
    assert isinstance(model.layers[0].attn.q_proj.weight, NF4Tensor)
    quantized = _logits(model, tokens)
    assert ((quantized - reference).norm() / reference.norm()) < 0.1
    model.train()
    optimizer = torch.optim.AdamW(transform.trainable_params(model).values(), lr=5e-3)
    losses = []
    for _ in range(5):
        logits = model(tokens[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    model.eval()
    ours = _logits(model, tokens)
    epoch = Checkpointer(base_dirs["llama3_1"], tmp_path / "run").save_epoch(
        0, transform.merged_state_dict(model)
    )
    # the merged checkpoint holds dequantized NF4 + adapter: transformers reproduces our logits
    torch.testing.assert_close(_logits(_hf(epoch), tokens), ours, atol=ATOL, rtol=0)


def test_peft_bias_setting_loads_when_the_model_has_no_biases(tmp_path, base_dirs):
    """bias='all' on a bias-free Llama saves only LoRA tensors: the adapter is plain
    LoRA. Where the model has biases PEFT saves them too, and those are refused in one
    line."""
    from tunesmith import CheckpointError

    def peft_adapter(base_dir, name, **settings):
        config = peft.LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM", **settings)
        peft_model = peft.get_peft_model(_hf(base_dir), config)
        with torch.no_grad():
            for key, param in peft_model.named_parameters():
                if "lora_B" in key:
                    param.fill_(0.05)
        peft_model.save_pretrained(tmp_path / name)
        return peft_model.eval(), tmp_path / name

    tokens = _tokens(seed=2)
    peft_model, directory = peft_adapter(base_dirs["llama3_1"], "all", bias="all")
    model, adapter = _native(base_dirs["llama3_1"])
    load_adapter(model, directory, adapter=adapter)
    torch.testing.assert_close(
        _logits(model.eval(), tokens), _logits(peft_model, tokens), atol=ATOL, rtol=0
    )

    biased = write_tiny_llama_checkpoint(tmp_path / "biased", variant="llama2", attention_bias=True)
    _, directory = peft_adapter(biased, "biased", bias="lora_only")
    model, adapter = _native(biased)
    with pytest.raises(CheckpointError, match=r"also trains biases \(.*q_proj.*bias.*merge_and"):
        load_adapter(model, directory, adapter=adapter)
    assert not lora_modules(model)


def test_modules_to_save_replace_the_models_and_save_back(tmp_path, base_dirs):
    """PEFT's modules_to_save (a retrained lm_head, as after adding tokens) load, save
    back, and merge, each with PEFT's logits; a tied embedding is refused in one line."""
    from tunesmith import CheckpointError

    base_dir = base_dirs["llama3_1"]
    config = peft.LoraConfig(
        r=2, target_modules=["q_proj"], modules_to_save=["lm_head"], task_type="CAUSAL_LM"
    )
    peft_model = peft.get_peft_model(_hf(base_dir), config)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for key, param in peft_model.named_parameters():
            if "lora_B" in key or "modules_to_save" in key:
                param.add_(0.05 * torch.randn(param.shape, generator=g))
    peft_model.save_pretrained(tmp_path / "peft")
    tokens = _tokens(seed=6)
    expected = _logits(peft_model.eval(), tokens)

    model, adapter = _native(base_dir)
    load_adapter(model, tmp_path / "peft", adapter=adapter)
    torch.testing.assert_close(_logits(model.eval(), tokens), expected, atol=ATOL, rtol=0)
    LoRATransform(lora_attn_modules=["q_proj"]).save_adapter(
        model, tmp_path / "again", adapter=adapter, base_model_name_or_path=str(base_dir)
    )
    again = json.loads((tmp_path / "again" / "adapter_config.json").read_text())
    assert again["modules_to_save"] == ["lm_head"]
    reloaded = peft.PeftModel.from_pretrained(_hf(base_dir), tmp_path / "again").eval()
    torch.testing.assert_close(_logits(reloaded, tokens), expected, atol=ATOL, rtol=0)
    merged = merge_adapter(base_dir, tmp_path / "peft", tmp_path / "merged")
    torch.testing.assert_close(_logits(_hf(merged), tokens), expected, atol=ATOL, rtol=0)

    tied_dir = base_dirs["llama3_2"]
    config = peft.LoraConfig(
        r=2, target_modules=["q_proj"], modules_to_save=["embed_tokens"], task_type="CAUSAL_LM"
    )
    peft.get_peft_model(_hf(tied_dir), config).save_pretrained(tmp_path / "tied")
    model, adapter = _native(tied_dir)
    with pytest.raises(CheckpointError, match=r"saves whole modules \(model.embed_tokens.*tied"):
        load_adapter(model, tmp_path / "tied", adapter=adapter)
    assert not lora_modules(model)
