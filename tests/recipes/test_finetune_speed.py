"""The finetune recipe's speed options change the speed, not the training: the loss
applying the head chunk by chunk, the optimizer step in backward, torch.compile."""

from __future__ import annotations

import pytest
import torch

from .helpers import losses, read_weights, run_cli, run_ok

FULL = "full_finetune_single_device"


def _same_training(a, b, *, rel=1e-5, atol=1e-5):
    curve_a, curve_b = losses(a), losses(b)
    assert sorted(curve_a) == sorted(curve_b) == [1, 2, 3, 4]
    assert curve_b == pytest.approx(curve_a, rel=rel, abs=0)
    weights_a, weights_b = read_weights(a / "epoch_0"), read_weights(b / "epoch_0")
    assert weights_a.keys() == weights_b.keys()
    for key in weights_a:
        torch.testing.assert_close(weights_b[key], weights_a[key], atol=atol, rtol=0)


def test_the_chunked_head_trains_like_full_logits(make_config, monkeypatch):
    from tunesmith.training import ChunkedCrossEntropyLoss

    chunked_config, chunked = make_config("chunked", shuffle=False)
    result = run_ok(FULL, chunked_config)
    assert "(dtype auto" not in result.stdout  # named dtype: no reason printed
    monkeypatch.setattr(ChunkedCrossEntropyLoss, "supports_hidden_states", False)
    logits_config, logits = make_config("logits", shuffle=False)
    run_ok(FULL, logits_config)
    _same_training(logits, chunked)


def test_padding_free_batches_train_as_padded_ones(make_config):
    free_config, free = make_config("free", shuffle=False)  # padding_free: the default
    padded_config, padded = make_config("padded", shuffle=False, padding_free=False)
    assert ", padding-free batches" in run_ok(FULL, free_config).stdout
    assert "padding-free" not in run_ok(FULL, padded_config).stdout
    _same_training(padded, free)


def test_unpacked_batches_are_rounded_where_products_compile_per_shape():
    from omegaconf import OmegaConf
    from torch.utils.data import DataLoader

    from tunesmith.recipes.finetune import _Collate, _shape_batches

    llama = pytest.importorskip("tunesmith_llama").llama

    samples = [{"tokens": list(range(1, n + 1)), "labels": list(range(1, n + 1))} for n in (5, 9, 2)]
    loader = DataLoader(samples, batch_size=3, collate_fn=_Collate(pad_id=0))
    model = llama(
        vocab_size=16, num_layers=1, num_heads=2, num_kv_heads=1, embed_dim=8,
        intermediate_dim=16, max_seq_len=64, norm_eps=1e-5, rope_base=10000.0,
    )  # fmt: skip
    cfg = OmegaConf.create({"padding_free": True})
    assert _shape_batches(cfg, model, (loader, None), torch.device("cpu"), torch.bfloat16)
    assert next(iter(loader))["tokens"].shape == (1, 64)  # 16 positions, rounded to 64
    cfg.padding_free = False
    assert not _shape_batches(cfg, model, (loader,), torch.device("cpu"), torch.bfloat16)
    assert next(iter(loader))["tokens"].shape == (3, 22)  # 3 rows x 22 = 66 positions
    model.max_seq_len = 20  # no row wider than the model's positions
    _shape_batches(cfg, model, (loader,), torch.device("cpu"), torch.bfloat16)
    assert next(iter(loader))["tokens"].shape == (3, 9)
    model.max_seq_len = 64
    _shape_batches(cfg, model, (loader,), torch.device("cpu"), torch.float32)
    assert next(iter(loader))["tokens"].shape == (3, 9)  # fp32: the longest sample's 9


def test_optimizer_in_backward_equals_the_normal_step(make_config):
    normal_config, normal = make_config("normal", clip_grad_norm=None, shuffle=False)
    in_bwd_config, in_bwd = make_config(
        "in_bwd", clip_grad_norm=None, shuffle=False, optimizer_in_bwd=True
    )
    run_ok(FULL, normal_config)
    run_ok(FULL, in_bwd_config)
    _same_training(normal, in_bwd)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"clip_grad_norm": 1.0}, "clip_grad_norm=1.0"),
        ({"clip_grad_norm": None, "gradient_accumulation_steps": 2}, "gradient_accumulation_steps=2"),
    ],
)
def test_optimizer_in_backward_refuses_what_needs_every_gradient(make_config, changes, named):
    config, out = make_config(optimizer_in_bwd=True, **changes)
    result = run_cli(FULL, config)
    assert result.exit_code != 0
    message = result.output.strip().splitlines()[-1]
    assert message.startswith("error: optimizer_in_bwd=true steps each parameter")
    assert named in message and "optimizer_in_bwd=false" in message
    assert not (out / "epoch_0").exists()


def test_dtype_auto_prints_its_choice_and_reason(make_config, monkeypatch):
    from tunesmith.training import _precision

    monkeypatch.setattr(_precision, "cpu_bf16_support", lambda: (False, "no bf16 here"))
    config, _ = make_config(dtype="auto", max_steps_per_epoch=1)
    result = run_ok(FULL, config)
    assert "on cpu in float32 (dtype auto: no bf16 here)" in result.stdout


@pytest.mark.slow
def test_compiled_training_equals_eager(make_config, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    eager_config, eager = make_config("eager", shuffle=False, dataset={"packed": True})
    compiled_config, compiled = make_config(
        "compiled", shuffle=False, dataset={"packed": True}, compile=True
    )
    run_ok(FULL, eager_config)
    result = run_ok(FULL, compiled_config)
    assert "compile warm-up:" in result.output
    curve_eager, curve_compiled = losses(eager), losses(compiled)
    assert sorted(curve_compiled) == sorted(curve_eager)
    assert curve_compiled == pytest.approx(curve_eager, rel=1e-4, abs=0)
