"""The generic transform on a hand-made model with native leaf names."""

from __future__ import annotations

import json

import pytest
import torch
from _lora_toy import LAYERS, make_toy, randomize_adapters
from safetensors.torch import load_file
from torch import nn

from tunesmith.errors import CheckpointError, ConfigError, TunesmithError
from tunesmith_lora import (
    LoRALinear,
    LoRATransform,
    build_dora,
    build_lora,
    build_qlora,
    disable_adapters,
    is_nf4,
    load_adapter,
    lora_modules,
    read_peft_adapter,
)


def test_apply_wraps_selected_leaves_and_keeps_native_keys(tokens) -> None:
    model = make_toy()
    before = set(model.state_dict())
    expected = model(tokens)
    LoRATransform(lora_attn_modules=["q_proj", "v_proj"], apply_lora_to_mlp=True).apply(model)
    wrapped = lora_modules(model)
    assert sorted(wrapped) == sorted(
        f"layers.{i}.{leaf}"
        for i in range(LAYERS)
        for leaf in ("attn.q_proj", "attn.v_proj", "mlp.w1", "mlp.w2", "mlp.w3")
    )
    after = set(model.state_dict())
    assert before <= after  # every base key is still there, unchanged
    added = after - before
    assert added == {f"{p}.lora_{ab}.weight" for p in wrapped for ab in "ab"}
    # B = 0: same function as before
    torch.testing.assert_close(model(tokens), expected, rtol=0, atol=0)


def test_only_adapter_params_are_trainable() -> None:
    model = make_toy()
    transform = LoRATransform(
        lora_attn_modules=["q_proj"], apply_lora_to_output=True, use_dora=True
    )
    transform.apply(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(transform.trainable_params(model))
    assert trainable == {
        *(
            f"layers.{i}.attn.q_proj.{n}"
            for i in range(LAYERS)
            for n in ("lora_a.weight", "lora_b.weight", "magnitude")
        ),
        "output.lora_a.weight",
        "output.lora_b.weight",
        "output.magnitude",
    }
    state = transform.adapter_state_dict(model)
    assert set(state) == trainable
    assert all(not t.requires_grad for t in state.values())
    assert transform.trainable_state_dict(model).keys() == state.keys()


def test_training_steps_reduce_loss(tokens) -> None:
    model = make_toy()
    transform = LoRATransform(lora_attn_modules=["q_proj", "k_proj", "v_proj", "output_proj"])
    transform.apply(model)
    frozen = {k: v.clone() for k, v in model.state_dict().items() if "lora" not in k}
    optimizer = torch.optim.AdamW(transform.trainable_params(model).values(), lr=1e-2)
    losses = []
    for _ in range(8):
        logits = model(tokens[:, :-1])
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    for k, v in model.state_dict().items():
        if k in frozen:
            torch.testing.assert_close(v, frozen[k], rtol=0, atol=0)


def test_invalid_attn_module_names_one_error_with_valid_and_actual_names() -> None:
    model = make_toy()
    transform = LoRATransform(lora_attn_modules=["q_prj", "w1", "o_proj"])
    with pytest.raises(ConfigError) as info:
        transform.apply(model)
    message = str(info.value)
    assert isinstance(info.value, TunesmithError)
    assert "'q_prj' is not an attention projection — did you mean 'q_proj'?" in message
    assert (
        "'w1' is not an attention projection — MLP layers are selected with peft.apply_lora_to_mlp: true"
        in message
    )
    assert (
        "'o_proj' is not an attention projection — Hugging Face's o_proj is 'output_proj' here"
        in message
    )
    assert "Valid peft.lora_attn_modules: q_proj, k_proj, v_proj, output_proj" in message
    assert (
        "This model's linear layers are named: k_proj, output, output_proj, q_proj, v_proj, w1, w2, w3"
        in message
    )
    assert not lora_modules(model)  # nothing half-applied


def test_valid_name_matching_no_layer() -> None:
    model = make_toy()
    for layer in model.layers:
        layer.attn.k_proj = nn.Identity()
    with pytest.raises(ConfigError, match="'k_proj' matches no nn.Linear layer of this model"):
        LoRATransform(lora_attn_modules=["q_proj", "k_proj"]).apply(model)


def test_tied_output_cannot_take_lora() -> None:
    model = make_toy(tied=True)
    with pytest.raises(
        ConfigError,
        match=r"tied to its token embeddings \(TiedLinear\).*apply_lora_to_output: false",
    ):
        LoRATransform(lora_attn_modules=["q_proj"], apply_lora_to_output=True).apply(model)


def test_applying_twice_is_an_error() -> None:
    model = make_toy()
    LoRATransform(lora_attn_modules=["q_proj"]).apply(model)
    with pytest.raises(ConfigError, match="already has LoRA adapters"):
        LoRATransform(lora_attn_modules=["q_proj"]).apply(model)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lora_attn_modules": ["q_proj"], "lora_rank": 0}, "lora_rank must be a positive integer"),
        (
            {"lora_attn_modules": ["q_proj"], "lora_dropout": 1.5},
            r"lora_dropout must be in \[0, 1\)",
        ),
    ],
)
def test_invalid_values(kwargs, message) -> None:
    with pytest.raises(ConfigError, match=message):
        LoRATransform(**kwargs)


def test_a_transform_without_layers_cannot_apply() -> None:
    with pytest.raises(ConfigError, match="LoRA selects no layers"):
        LoRATransform(lora_attn_modules=[]).apply(make_toy())


def test_builders_validate_peft_block() -> None:
    t = build_lora(_component_="lora", lora_attn_modules=["q_proj"], lora_rank=4)
    assert (t.lora_rank, t.use_dora, t.quantize_base) == (4, False, False)
    assert build_dora(lora_attn_modules=["q_proj"]).use_dora
    assert build_qlora(lora_attn_modules=["q_proj"]).quantize_base
    assert not build_qlora(lora_attn_modules=["q_proj"], quantize_base=False).quantize_base
    with pytest.raises(
        ConfigError, match="unknown peft key 'lora_rnak' — did you mean 'lora_rank'?"
    ):
        build_lora(lora_attn_modules=["q_proj"], lora_rnak=4)
    with pytest.raises(ConfigError, match="peft.lora_attn_modules is required"):
        build_lora(lora_rank=4)
    assert build_lora(apply_lora_to_mlp=True).lora_attn_modules == ()


@pytest.mark.parametrize("use_dora", [False, True])
def test_merged_state_dict_loads_into_plain_model_and_matches(tokens, use_dora) -> None:
    model = make_toy()
    transform = LoRATransform(
        lora_attn_modules=["q_proj", "v_proj", "output_proj"],
        apply_lora_to_mlp=True,
        apply_lora_to_output=True,
        use_dora=use_dora,
    )
    transform.apply(model)
    randomize_adapters(model)
    expected = model(tokens)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    merged = transform.merged_state_dict(model)
    for k, v in model.state_dict().items():  # not mutated
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    plain = make_toy(seed=99)
    assert set(merged) == set(plain.state_dict())
    plain.load_state_dict(merged)
    torch.testing.assert_close(plain(tokens), expected, rtol=1e-5, atol=1e-5)


def test_merge_replaces_wrappers_with_plain_linears(tokens) -> None:
    model = make_toy()
    transform = LoRATransform(
        lora_attn_modules=["q_proj", "k_proj"], apply_lora_to_mlp=True, use_dora=True
    )
    transform.apply(model)
    randomize_adapters(model)
    expected = model(tokens)
    transform.merge(model)
    assert not lora_modules(model)
    assert type(model.layers[0].attn.q_proj) is nn.Linear
    assert set(model.state_dict()) == set(make_toy().state_dict())
    torch.testing.assert_close(model(tokens), expected, rtol=1e-5, atol=1e-5)


def test_disable_adapters(tokens) -> None:
    model = make_toy()
    base_out = model(tokens)
    transform = LoRATransform(lora_attn_modules=["q_proj", "v_proj"])
    transform.apply(model)
    randomize_adapters(model)
    with disable_adapters(model):
        torch.testing.assert_close(model(tokens), base_out, rtol=0, atol=0)
    assert not torch.allclose(model(tokens), base_out)


def test_qlora_on_model(tokens) -> None:
    from torchao.quantization import NF4Tensor

    model = make_toy()
    reference = model(tokens)
    transform = build_qlora(lora_attn_modules=["q_proj", "v_proj"], apply_lora_to_mlp=True)
    transform.apply(model)
    assert isinstance(model.layers[0].attn.q_proj.weight, NF4Tensor)
    assert not isinstance(model.layers[0].attn.k_proj.weight, NF4Tensor)  # not adapted: left alone
    out = model(tokens)
    rel = ((out - reference).norm() / reference.norm()).item()
    assert rel < 0.1
    merged = transform.merged_state_dict(model)
    assert all(type(v) is torch.Tensor for v in merged.values())
    optimizer = torch.optim.AdamW(transform.trainable_params(model).values(), lr=1e-2)
    losses = []
    for _ in range(6):
        logits = model(tokens[:, :-1])
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


# ---- PEFT-format files (toy family) ------------------------------------------


@pytest.mark.parametrize("use_dora", [False, True])
def test_save_adapter_writes_peft_files(tmp_path, adapter, use_dora) -> None:
    model = make_toy()
    transform = LoRATransform(
        lora_attn_modules=["q_proj", "output_proj"],
        apply_lora_to_mlp=True,
        lora_rank=4,
        lora_alpha=8,
        lora_dropout=0.05,
        use_dora=use_dora,
    )
    transform.apply(model)
    randomize_adapters(model)
    transform.save_adapter(
        model, tmp_path / "out", adapter=adapter, base_model_name_or_path="org/base"
    )
    config = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["task_type"] == "CAUSAL_LM"
    assert (config["r"], config["lora_alpha"], config["lora_dropout"]) == (4, 8.0, 0.05)
    assert config["target_modules"] == ["down_proj", "gate_proj", "o_proj", "q_proj", "up_proj"]
    assert config["use_dora"] is use_dora
    assert config["base_model_name_or_path"] == "org/base"
    assert (config["bias"], config["fan_in_fan_out"]) == ("none", False)
    tensors = load_file(tmp_path / "out" / "adapter_model.safetensors")
    q = "base_model.model.model.layers.1.self_attn.q_proj"
    a = model.layers[1].attn.q_proj
    torch.testing.assert_close(tensors[f"{q}.lora_A.weight"], a.lora_a.weight.detach())
    torch.testing.assert_close(tensors[f"{q}.lora_B.weight"], a.lora_b.weight.detach())
    assert tensors[f"{q}.lora_A.weight"].shape == (4, 64)
    assert (f"{q}.lora_magnitude_vector" in tensors) is use_dora
    assert len(tensors) == LAYERS * 5 * (3 if use_dora else 2)
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left


@pytest.mark.parametrize("use_dora", [False, True])
def test_save_then_load_adapter_round_trip(tmp_path, adapter, tokens, use_dora) -> None:
    model = make_toy()
    transform = LoRATransform(
        lora_attn_modules=["v_proj"],
        apply_lora_to_output=True,
        lora_rank=2,
        lora_alpha=5,
        use_dora=use_dora,
    )
    transform.apply(model)
    randomize_adapters(model)
    expected = model(tokens)
    transform.save_adapter(model, tmp_path, adapter=adapter, base_model_name_or_path="x")
    fresh = make_toy()
    load_adapter(fresh, tmp_path, adapter=adapter)
    got = lora_modules(fresh)
    assert set(got) == set(lora_modules(model))
    assert all(m.rank == 2 and m.alpha == 5 and m.use_dora is use_dora for m in got.values())
    torch.testing.assert_close(fresh(tokens), expected, rtol=1e-6, atol=1e-6)
    assert {n for n, p in fresh.named_parameters() if p.requires_grad} == set(
        transform.trainable_params(fresh)
    )
    # loading again onto the now-adapted model just copies the tensors
    load_adapter(fresh, tmp_path, adapter=adapter)
    torch.testing.assert_close(fresh(tokens), expected, rtol=1e-6, atol=1e-6)


def test_partial_layers_and_rank_pattern_round_trip(tmp_path, adapter, tokens) -> None:
    from tunesmith_lora._wrapping import freeze_non_adapter_params, wrap_linears

    model = make_toy()
    wrap_linears(model, ["layers.1.attn.q_proj"], rank=3, alpha=6)
    wrap_linears(
        model,
        ["layers.1.mlp.w2", "layers.0.mlp.w2"],
        rank={"layers.1.mlp.w2": 3, "layers.0.mlp.w2": 5},
        alpha=6,
    )
    freeze_non_adapter_params(model)
    randomize_adapters(model)
    expected = model(tokens)
    LoRATransform(lora_attn_modules=["q_proj"]).save_adapter(
        model, tmp_path, adapter=adapter, base_model_name_or_path="x"
    )
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["target_modules"] == ["down_proj", "model.layers.1.self_attn.q_proj"]
    assert config["r"] == 3 and config["rank_pattern"] == {"model.layers.0.mlp.down_proj": 5}
    fresh = make_toy()
    load_adapter(fresh, tmp_path, adapter=adapter)
    assert sorted(lora_modules(fresh)) == [
        "layers.0.mlp.w2",
        "layers.1.attn.q_proj",
        "layers.1.mlp.w2",
    ]
    torch.testing.assert_close(fresh(tokens), expected, rtol=1e-6, atol=1e-6)


def test_load_adapter_state_dict_for_resume(tokens) -> None:
    model = make_toy()
    transform = LoRATransform(lora_attn_modules=["q_proj"], use_dora=True)
    transform.apply(model)
    randomize_adapters(model)
    state = {k: v.clone() for k, v in transform.adapter_state_dict(model).items()}
    fresh = make_toy()
    transform.apply(fresh)
    transform.load_adapter_state_dict(fresh, state)
    torch.testing.assert_close(fresh(tokens), model(tokens), rtol=0, atol=0)
    with pytest.raises(CheckpointError, match="does not match the model"):
        transform.load_adapter_state_dict(fresh, {})


def test_load_adapter_errors(tmp_path, adapter) -> None:
    model = make_toy()
    with pytest.raises(
        CheckpointError,
        match="no adapter directory at .*adapter_config.json and adapter_model.safetensors",
    ):
        load_adapter(model, tmp_path / "missing", adapter=adapter)
    with pytest.raises(CheckpointError, match="no adapter_config.json in"):
        load_adapter(model, tmp_path, adapter=adapter)
    (tmp_path / "adapter_config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="is not valid JSON"):
        load_adapter(model, tmp_path, adapter=adapter)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "IA3"}))
    with pytest.raises(CheckpointError, match="'IA3' adapter; only LoRA and DoRA"):
        load_adapter(model, tmp_path, adapter=adapter)
    (tmp_path / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 4})
    )
    with pytest.raises(CheckpointError, match="no adapter_model.safetensors in"):
        load_adapter(model, tmp_path, adapter=adapter)
    (tmp_path / "adapter_model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read the adapter weights"):
        load_adapter(model, tmp_path, adapter=adapter)
    (tmp_path / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "fan_in_fan_out": True})
    )
    with pytest.raises(CheckpointError, match="fan_in_fan_out"):
        load_adapter(model, tmp_path, adapter=adapter)
    assert not lora_modules(model)


def test_load_adapter_for_another_model(tmp_path, adapter) -> None:
    from safetensors.torch import save_file

    (tmp_path / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 4})
    )
    save_file(
        {
            "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight": torch.zeros(2, 64),
            "base_model.model.transformer.h.0.attn.c_attn.lora_B.weight": torch.zeros(64, 2),
        },
        tmp_path / "adapter_model.safetensors",
    )
    with pytest.raises(
        CheckpointError, match="targets layers the 'toy' model family does not have"
    ):
        load_adapter(make_toy(), tmp_path, adapter=adapter)
    model = make_toy()
    transform = LoRATransform(lora_attn_modules=["q_proj"], lora_rank=2)
    transform.apply(model)
    transform.save_adapter(model, tmp_path, adapter=adapter, base_model_name_or_path="x")
    small = make_toy()
    small.layers[0].attn.q_proj = nn.Linear(64, 32, bias=False)
    with pytest.raises(
        CheckpointError, match=r"has shape \(64, 2\) but the model expects \(32, 2\)"
    ):
        load_adapter(small, tmp_path, adapter=adapter)


def test_read_peft_adapter(tmp_path, adapter) -> None:
    model = make_toy()
    transform = LoRATransform(lora_attn_modules=["q_proj"])
    transform.apply(model)
    transform.save_adapter(model, tmp_path, adapter=adapter, base_model_name_or_path="x")
    config, tensors = read_peft_adapter(tmp_path)
    assert config["r"] == 8 and len(tensors) == 2 * LAYERS
    assert isinstance(model.layers[0].attn.q_proj, LoRALinear)


@pytest.mark.parametrize("quantize_base", [False, True])
def test_merge_and_save_from_a_gathered_state_dict(
    tmp_path, adapter, tokens, quantize_base
) -> None:
    # Under FSDP2 the recipe passes the gathered full state dict; the model's own
    # parameters are shards. Simulate with a detached copy and zeroed live adapters.
    model = make_toy()
    transform = LoRATransform(
        lora_attn_modules=["q_proj"],
        apply_lora_to_mlp=True,
        use_dora=True,
        quantize_base=quantize_base,
    )
    transform.apply(model)
    randomize_adapters(model)
    # (torchao's NF4 clone re-quantizes with default block sizes, too big for toy layers)
    full = {k: v if is_nf4(v) else v.clone() for k, v in model.state_dict().items()}
    expected_merged = transform.merged_state_dict(model)
    expected_logits = model(tokens)
    saved = transform.adapter_state_dict(model)
    saved = {k: v.clone() for k, v in saved.items()}
    with torch.no_grad():
        for p in transform.trainable_params(model).values():
            p.zero_()
    merged = transform.merged_state_dict(model, full)
    assert set(merged) == set(expected_merged)
    for k, v in merged.items():
        torch.testing.assert_close(v, expected_merged[k], rtol=0, atol=0)
    transform.save_adapter(
        model, tmp_path, adapter=adapter, base_model_name_or_path="x", state_dict=full
    )
    tensors = load_file(tmp_path / "adapter_model.safetensors")
    torch.testing.assert_close(
        tensors["base_model.model.model.layers.0.mlp.up_proj.lora_B.weight"],
        saved["layers.0.mlp.w3.lora_b.weight"],
    )
    fresh = make_toy()
    load_adapter(fresh, tmp_path, adapter=adapter, quantize_base=quantize_base)
    torch.testing.assert_close(fresh(tokens), expected_logits, rtol=1e-6, atol=1e-6)


def test_qlora_rejects_unquantizable_layer_before_changing_anything() -> None:
    model = make_toy()
    model.layers[1].attn.v_proj = nn.Linear(50, 3)
    with pytest.raises(
        ConfigError, match=r"cannot quantize layers.1.attn.v_proj to NF4 .*quantize_base: false"
    ):
        build_qlora(lora_attn_modules=["q_proj", "v_proj"]).apply(model)
    assert not lora_modules(model)
