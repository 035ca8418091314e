import pytest
import torch
from torch import nn

from tunesmith.training import (
    ThroughputMeter,
    count_parameters,
    estimate_train_flops_per_token,
    format_metrics,
)


def test_throughput_meter_with_fake_clock():
    now = [100.0]
    meter = ThroughputMeter(clock=lambda: now[0])
    assert meter.tokens_per_second == 0.0
    meter.update(300)
    meter.update(torch.tensor(100))
    now[0] = 102.0
    assert meter.tokens == 400
    assert meter.elapsed == 2.0
    assert meter.tokens_per_second == 200.0
    meter.reset()
    now[0] = 103.0
    meter.update(50)
    assert meter.tokens_per_second == 50.0


def test_format_metrics():
    text = format_metrics(
        {"loss": torch.tensor(1.234567), "lr": 2e-5, "tokens_per_second": 12345.6}
    )
    assert text == "loss=1.2346 lr=2.00e-05 tok/s=12,346"
    assert format_metrics({"step": 3}) == "step=3"


def test_count_parameters_with_frozen_and_tied_weights():
    emb = nn.Embedding(10, 4)
    head = nn.Linear(4, 10, bias=False)
    head.weight = emb.weight  # tied: counted once
    mid = nn.Linear(4, 4)
    mid.weight.requires_grad_(False)
    model = nn.Sequential(emb, mid, head)
    assert count_parameters(model) == (40 + 4, 40 + 16 + 4)


def test_flops_formula():
    # 6N + 12 L s d
    assert estimate_train_flops_per_token(1_000_000, 2, 128, 64) == 6_000_000 + 12 * 2 * 128 * 64
    assert estimate_train_flops_per_token(
        num_params_non_embedding=0, num_layers=1, seq_len=1, embed_dim=1
    ) == pytest.approx(12)
