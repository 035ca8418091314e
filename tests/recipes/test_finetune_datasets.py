"""Several datasets in one run (torchtune's ``dataset: [{...}, {...}]``): every sample of
each is trained, packed or not, and a mix of the two is refused in one line."""

from __future__ import annotations

import json

from .helpers import losses, run_cli, run_ok


def _two(data_file, **second):
    alpaca = {"_component_": "alpaca", "source": str(data_file), "split": "train[:8]",
              "train_on_input": True}  # fmt: skip
    text = {"_component_": "text_completion", "source": str(data_file), "split": "train[8:20]",
            "column_map": {"text": "output"}, **second}  # fmt: skip
    return [alpaca, text]


def test_two_datasets_train_every_sample_of_both(make_config, data_file):
    config, out = make_config(dataset=_two(data_file), batch_size=4, shuffle=False)
    result = run_ok("full_finetune_single_device", config)
    # 8 + 12 samples in batches of 4: five steps, not the two of the first dataset alone
    assert sorted(losses(out)) == [1, 2, 3, 4, 5], result.output
    card = (out / "epoch_0" / "README.md").read_text()
    assert (
        "| dataset | train.jsonl (a local file) via alpaca + train.jsonl (a local file) via "
        "text_completion |" in card
    )
    assert "| train_on_input | True / False |" in card
    # their prompt formats differ (Alpaca's, none): no single one is saved to ask in
    assert not (out / "epoch_0" / "prompt_template.json").exists()


def test_two_packed_alpaca_datasets_train_as_one_and_keep_their_format(make_config, data_file):
    first = {"_component_": "alpaca", "source": str(data_file), "split": "train[:8]",
             "train_on_input": True, "packed": True}  # fmt: skip
    second = dict(first, split="train[8:24]")
    alone, alone_out = make_config(name="alone", dataset=first, batch_size=1, shuffle=False)
    run_ok("full_finetune_single_device", alone)
    both, out = make_config(name="both", dataset=[first, second], batch_size=1, shuffle=False)
    run_ok("full_finetune_single_device", both)
    steps_alone, steps_both = len(losses(alone_out)), len(losses(out))
    assert 0 < steps_alone < steps_both, (steps_alone, steps_both)
    saved = json.loads((out / "epoch_0" / "prompt_template.json").read_text())
    assert "Below is an instruction" in json.dumps(saved)


def test_packed_and_unpacked_together_are_refused_in_one_line(make_config, data_file):
    config, _ = make_config(dataset=_two(data_file, packed=True))
    result = run_cli("full_finetune_single_device", config)
    assert result.exit_code != 0
    assert (
        "'dataset' mixes packed and unpacked datasets: set packed the same on each "
        "(dataset.0.packed=False, dataset.1.packed=True)" in result.output
    )


def test_each_item_is_validated_and_named_by_its_place(make_config, data_file):
    datasets = _two(data_file)
    datasets[1]["_component_"] = "text_completon"
    config, _ = make_config(dataset=[*datasets, "alpaca"])
    result = run_cli("full_finetune_single_device", config)
    assert result.exit_code != 0
    assert (
        "dataset.1: unknown dataset 'text_completon' — did you mean 'text_completion'?"
        in result.output
    )
    assert "'dataset.2' must be a dataset" in result.output
    config, _ = make_config(name="empty", dataset=[])
    result = run_cli("full_finetune_single_device", config)
    assert "'dataset' is an empty list: name at least one dataset" in result.output
