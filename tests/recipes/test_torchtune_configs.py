"""torchtune 0.6's own configs run with `tunesmith run` and give the losses torchtune
0.6.1 gave on the same checkpoint and data (recorded by
``tests/fixtures/make_torchtune_losses.py`` in torchtune's own environment).

Each config is pointed at a tiny checkpoint as a user would point it at theirs, with
the same overrides the recording used (``torchtune_setup.pointing_overrides``). The
recorded inputs' digest proves both sides trained on the same bytes.

Why not to the last digit: torchtune encodes Llama 2's ``[INST]`` turns message by
message, tunesmith as one string, as Meta's reference code does (gaps below 0.008
nats, against a few hundredths when, e.g., the prompt is masked). The Llama 3 rows are
all cut to the tokenizer's 128 tokens before the assistant header (whose four tokens
torchtune trains and tunesmith masks), and there the samples are torchtune's token for
token (``test_cut_samples_are_torchtunes_token_for_token``). What is left is the
models': torchtune's Llama3ScaledRoPE keeps Llama 3's original context of 8192 (its
builders take no other), where the tiny checkpoints declare 64, so torchtune's logits
drift from transformers' (and tunesmith's) with the position, to 0.03 at position 60
for both tiny Llama 3.1 and 3.2 (measured on torchtune 0.6.1's own models). On the
losses: Llama 3.1 below 0.004, Llama 3.2 0.0015 at the first step and below 0.006 by
the third.

Qwen 2.5, Gemma and Mistral train on the rows' responses as plain text
(``torchtune_setup.PLAIN_TEXT`` says why for each), so both sides see the same tokens:
full fine-tuning then agrees to float noise (measured below 1.3e-6), LoRA to within the
spread of LoRA's random initial A (below 0.0026 by the third step at lr 2e-4) and
QLoRA from the first step by NF4's rounding (below 0.0013).

Gemma 2 is not compared: torchtune 0.6.1's differs from transformers' (whose logits
tunesmith's match): its checkpoint conversion swaps the pre- and post-feed-forward
norms, and it soft-caps the final norm's output instead of the logits.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from .helpers import losses, run_ok
from .torchtune_setup import (
    LOSSES_FILE,
    PLAIN_TEXT,
    TORCHTUNE_CONFIGS,
    configs,
    family_of,
    pointing_overrides,
    recipe_of,
    write_data,
    write_tiny,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fixtures"))
from make_torchtune_losses import digest  # noqa: E402

RECORDED = json.loads(LOSSES_FILE.read_text())
TOLERANCE = {
    "llama2": 0.01, "llama3": 0.004, "llama3_1": 0.004, "llama3_2": 0.007,
    # the same tokens (PLAIN_TEXT); LoRA's A is a random draw on each side
    "qwen2_5": 0.004, "gemma": 0.004, "mistral": 0.004,
}  # fmt: skip
#: Full fine-tuning on the same tokens draws nothing at random: float noise only.
FULL_ON_SAME_TOKENS = 1e-4


def _tolerance(name: str) -> float:
    family = family_of(name)
    if family in PLAIN_TEXT and "_full" in name:
        return FULL_ON_SAME_TOKENS
    return TOLERANCE[family]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("torchtune_tiny")
    data = write_data(root / "data.jsonl")
    made: dict[str, Path] = {}

    def get(family: str) -> tuple[Path, Path]:
        if family not in made:
            made[family] = write_tiny(root / family, family)
        return made[family], data

    return get


def test_every_fixture_was_recorded():
    assert sorted(RECORDED["configs"]) == configs()
    assert RECORDED["torchtune"].startswith("0.6.1")


@pytest.mark.parametrize("name", configs())
def test_torchtune_config_gives_torchtune_losses(name, tiny, tmp_path):
    checkpoint, data = tiny(family_of(name))
    recorded = RECORDED["configs"][name]
    assert digest(checkpoint, data) == recorded["inputs"], "not the checkpoint torchtune trained"
    output_dir = tmp_path / "run"
    overrides = pointing_overrides(name, checkpoint, data, output_dir)
    result = run_ok(recipe_of(name), TORCHTUNE_CONFIGS / f"{name}.yaml", *overrides)
    assert "torchtune config: model._component_: torchtune.models." in result.output
    ours = [value for _, value in sorted(losses(output_dir).items())]
    theirs = recorded["losses"]
    assert len(ours) == len(theirs) == RECORDED["steps"]
    gaps = [abs(a - b) for a, b in zip(ours, theirs, strict=True)]
    assert max(gaps) < _tolerance(name), f"ours {ours}, torchtune's {theirs}"
    assert (output_dir / "epoch_0" / "config.json").is_file()


@pytest.mark.slow
def test_distributed_torchtune_config_on_two_processes(tiny, tmp_path):
    name = "llama3_2/1B_lora"
    checkpoint, data = tiny(family_of(name))
    output_dir = tmp_path / "run"
    overrides = pointing_overrides(name, checkpoint, data, output_dir)
    result = run_ok(
        recipe_of(name), TORCHTUNE_CONFIGS / f"{name}.yaml", "--nproc-per-node", "2", *overrides
    )
    assert (output_dir / "epoch_0" / "adapter" / "adapter_config.json").is_file(), result.output
    ours = [value for _, value in sorted(losses(output_dir).items())]
    # Two ranks of batch 2 see twice the samples per step: its first step is the mean of
    # the one-process run's first two steps' data, so only compare that it trained.
    assert len(ours) >= 1 and all(5.0 < v < 7.0 for v in ours)


SAMPLES = json.loads((Path(__file__).resolve().parent.parent / "fixtures" /
                      "torchtune_samples.json").read_text())  # fmt: skip


def test_cut_samples_are_torchtunes_token_for_token(tiny):
    """torchtune's alpaca_cleaned_dataset over the fixture rows, each longer than the
    tokenizer's max_seq_len of 128 (``make_torchtune_samples.py``): tunesmith's samples
    have torchtune's tokens and labels — the cut answer's end is not trained — but for
    the final, untrained token (torchtune writes its eos there, tunesmith keeps the end
    of turn)."""
    from tunesmith.data import alpaca
    from tunesmith_llama import llama3_tokenizer

    recorded = SAMPLES["llama3_2/alpaca_cleaned/128"]
    checkpoint, data = tiny("llama3_2")
    assert digest(checkpoint, data) == recorded["inputs"], "not the rows torchtune cut"
    tokenizer = llama3_tokenizer(str(checkpoint / "original" / "tokenizer.model"), max_seq_len=128)
    ours = alpaca(tokenizer, source="json", data_files=str(data), train_on_input=True)
    assert len(ours) == len(recorded["tokens"]) == 8
    for i, (tokens, labels) in enumerate(zip(recorded["tokens"], recorded["labels"], strict=True)):
        assert len(tokens) == 128 and labels[-1] == -100
        assert ours[i]["labels"] == labels
        assert ours[i]["tokens"][:-1] == tokens[:-1]
        assert ours[i]["tokens"][-1] == tokenizer.eot_id
