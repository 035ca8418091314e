"""Full fine-tuning end to end through ``tunesmith run``: the loss falls, ``epoch_N/``
is a Hugging Face checkpoint transformers loads with our logits, validation,
``keep_last_n_epochs``, packing and activation checkpointing."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors import safe_open

from tunesmith.recipes._outputs import both_rope_layouts

from .helpers import (
    hf_logits,
    leftovers,
    losses,
    our_logits,
    read_log,
    read_weights,
    run_ok,
    sample_tokens,
)

SUPPORT_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json")


def _weight_files(directory):
    """The weight files an HF directory lists: one ``model.safetensors`` or the shards
    its index names (each of which must exist)."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        assert all((directory / s).is_file() for s in shards), shards
        return shards
    assert (directory / "model.safetensors").is_file(), sorted(p.name for p in directory.iterdir())
    return ["model.safetensors"]


def test_demo_config_trains_and_writes_a_transformers_checkpoint(tmp_path, base_dir, data_file):
    out = tmp_path / "out"
    result = run_ok(
        "full_finetune_single_device",
        "demo/tiny_full_single_device",
        f"checkpointer.checkpoint_dir={base_dir}",
        f"output_dir={out}",
        f"dataset.source={data_file}",
        "epochs=1",
        "batch_size=4",
        "lr_scheduler.num_warmup_steps=1",
        "log_every_n_steps=1",
        "tokenizer.max_seq_len=64",
        "+dataset.train_on_input=true",  # the prompt alone fills 64 tokens
        "device=cpu",
    )
    base = read_weights(base_dir)
    total = sum(t.numel() for t in base.values())
    assert (
        f"Training {total:,} of {total:,} parameters (100.00%) on cpu in float32" in result.stdout
    )
    assert f"Saved epoch 0 to {out / 'epoch_0'}" in result.stdout

    # 32 rows / batch 4 = 8 optimizer steps, each logged.
    curve = losses(out)
    assert sorted(curve) == list(range(1, 9))
    # lr 2e-3 (the demo's): measured 5.71 -> 4.87 over these 8 steps.
    assert curve[8] < curve[1] - 0.6, curve
    assert curve[8] < min(curve[k] for k in range(1, 8)), curve
    assert sum(curve[s] for s in (7, 8)) < sum(curve[s] for s in (1, 2)), curve

    epoch = out / "epoch_0"
    assert sorted(p.name for p in out.iterdir()) == ["epoch_0", "logs", "recipe_state"]
    assert leftovers(out) == []
    files = _weight_files(epoch)
    for name in SUPPORT_FILES:
        ours, theirs = (epoch / name).read_bytes(), (base_dir / name).read_bytes()
        if name == "config.json":  # plus transformers 4's RoPE keys (rope_theta, rope_scaling)
            assert json.loads(ours) == both_rope_layouts(json.loads(theirs)), name
        elif name == "tokenizer_config.json":  # its chat template puts turns in Alpaca's format
            ours, theirs = json.loads(ours), json.loads(theirs)
            assert ours.pop("chat_template").endswith(theirs.pop("chat_template"))
            assert ours == theirs, name
        else:
            assert ours == theirs, name
    trained = read_weights(epoch)
    assert sorted(trained) == sorted(base)  # tied head: no lm_head.weight, as in the source
    for key, value in trained.items():
        assert value.dtype == torch.float32 and value.shape == base[key].shape, key
    changed = [k for k in base if not torch.equal(trained[k], base[k])]
    assert len(changed) == len(base), sorted(set(base) - set(changed))
    with safe_open(str(epoch / files[0]), "pt") as f:
        assert f.metadata() == {"format": "pt"}

    vocab = json.loads((base_dir / "config.json").read_text())["vocab_size"]
    tokens = sample_tokens(vocab)
    ours = our_logits(epoch, tokens)
    torch.testing.assert_close(hf_logits(epoch, tokens), ours, atol=1e-5, rtol=0)
    assert (ours - our_logits(base_dir, tokens)).abs().max() > 0.1  # it is the trained model


def _val_loss_by_hand(checkpoint, data_file, split) -> float:
    """Mean next-token cross-entropy of ``checkpoint`` over every answer token of
    ``split``, one sample at a time (no batching, padding or chunking)."""
    import tunesmith
    from tunesmith.data import CROSS_ENTROPY_IGNORE_IDX, alpaca

    model, tokenizer = tunesmith.load_pretrained(
        checkpoint, dtype="fp32", device="cpu", max_seq_len=64
    )
    dataset = alpaca(tokenizer, source=str(data_file), split=split, train_on_input=True)
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(len(dataset)):
            tokens = torch.tensor(dataset[i]["tokens"])
            labels = torch.tensor(dataset[i]["labels"])
            logits = model(tokens[None])[0, :-1].double()
            target = labels[1:]
            total += torch.nn.functional.cross_entropy(
                logits, target, ignore_index=CROSS_ENTROPY_IGNORE_IDX, reduction="sum"
            ).item()
            count += int((target != CROSS_ENTROPY_IGNORE_IDX).sum())
    return total / count


def test_validation_loss_is_logged_and_covers_every_row(make_config, data_file):
    # 6 validation rows with batch_size 4: the last, partial batch must count too.
    config, out = make_config(
        validation_dataset={
            "_component_": "alpaca",
            "source": str(data_file),
            "split": "train[16:22]",
            "train_on_input": True,
        },
        run_val_every_n_steps=2,
    )
    run_ok("full_finetune_single_device", config)
    val = {r["step"]: r["val_loss"] for r in read_log(out) if "val_loss" in r}
    assert sorted(val) == [2, 4]
    assert all(0.5 < v < 10 for v in val.values()), val
    assert val[4] < val[2]
    # The last validation ran after the last step, on the weights written to epoch_0.
    want = _val_loss_by_hand(out / "epoch_0", data_file, "train[16:22]")
    assert val[4] == pytest.approx(want, rel=1e-5)


def test_validation_runs_once_per_epoch_by_default(make_config, data_file):
    config, out = make_config(
        epochs=2,
        validation_dataset={
            "_component_": "alpaca",
            "source": str(data_file),
            "split": "train[16:20]",
            "train_on_input": True,
        },
    )
    run_ok("full_finetune_single_device", config)
    val = [(r["step"], r["val_loss"]) for r in read_log(out) if "val_loss" in r]
    assert [step for step, _ in val] == [4, 8]
    assert val[1][1] < val[0][1]


@pytest.mark.parametrize(("keep", "left"), [(1, ["epoch_2"]), (2, ["epoch_1", "epoch_2"]),
                                            (None, ["epoch_0", "epoch_1", "epoch_2"])])  # fmt: skip
def test_keep_last_n_epochs(make_config, keep, left):
    config, out = make_config(epochs=3, max_steps_per_epoch=1, keep_last_n_epochs=keep)
    run_ok("full_finetune_single_device", config)
    assert sorted(p.name for p in out.glob("epoch_*")) == left
    assert leftovers(out) == []
    assert sorted(losses(out)) == [1, 2, 3]


def test_packed_dataset_trains(make_config):
    config, out = make_config(
        dataset={"packed": True, "split": "train[:32]"}, batch_size=2, epochs=2
    )
    result = run_ok("full_finetune_single_device", config)
    curve = losses(out)
    steps = sorted(curve)
    assert len(steps) >= 4, curve
    assert curve[steps[-1]] < curve[steps[0]] - 0.5, curve
    assert sorted(p.name for p in out.glob("epoch_*")) == ["epoch_0", "epoch_1"]
    assert read_weights(out / "epoch_1").keys() == read_weights(out / "epoch_0").keys()
    assert "Saved epoch 1" in result.stdout


def test_activation_checkpointing_changes_nothing_but_memory(make_config):
    plain_config, plain = make_config("plain")
    ac_config, ac = make_config("ac", enable_activation_checkpointing=True)
    run_ok("full_finetune_single_device", plain_config)
    run_ok("full_finetune_single_device", ac_config)
    plain_curve, ac_curve = losses(plain), losses(ac)
    assert sorted(ac_curve) == [1, 2, 3, 4]
    assert ac_curve[4] < ac_curve[1] - 0.3, ac_curve
    assert ac_curve == pytest.approx(plain_curve, rel=1e-6, abs=0)
    plain_w, ac_w = read_weights(plain / "epoch_0"), read_weights(ac / "epoch_0")
    assert plain_w.keys() == ac_w.keys()
    for key in plain_w:
        torch.testing.assert_close(ac_w[key], plain_w[key], atol=1e-6, rtol=0)


def test_gradient_accumulation_equals_one_large_batch(make_config):
    # The loss is normalised by the target tokens of the whole step, not per micro-batch
    # (whose token counts differ), so 2 x 2 rows is exactly a batch of 4.
    large_config, large = make_config("large", batch_size=4, shuffle=False)
    accum_config, accum = make_config(
        "accum", batch_size=2, gradient_accumulation_steps=2, shuffle=False
    )
    run_ok("full_finetune_single_device", large_config)
    run_ok("full_finetune_single_device", accum_config)
    assert sorted(losses(accum)) == [1, 2, 3, 4]
    assert losses(accum) == pytest.approx(losses(large), rel=1e-5)
    want, got = read_weights(large / "epoch_0"), read_weights(accum / "epoch_0")
    for key in want:
        torch.testing.assert_close(got[key], want[key], atol=1e-5, rtol=0)


def test_grad_norm_is_logged_before_clipping_where_clip_grad_norm_is_set(make_config):
    # As torchtune: the total norm before clipping, each logged step; none without clipping.
    logs = {}
    for name, clip in (("loose", 1e9), ("tight", 0.05), ("none", None)):
        config, out = make_config(name, clip_grad_norm=clip, max_steps_per_epoch=2, shuffle=False)
        run_ok("full_finetune_single_device", config)
        logs[name] = {r["step"]: r for r in read_log(out) if "loss" in r}
    loose, tight = logs["loose"], logs["tight"]
    assert loose[1]["grad_norm"] == pytest.approx(tight[1]["grad_norm"], rel=1e-6)
    assert loose[1]["grad_norm"] > 0.05 and math.isfinite(loose[1]["grad_norm"])
    assert all("grad_norm" not in r for r in logs["none"].values())
