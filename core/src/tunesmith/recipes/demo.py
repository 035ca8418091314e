"""``tunesmith demo``: the whole workflow on an embedded default, offline, on a CPU.

1. Writes a tiny random checkpoint of an installed model family (the first, by
   name, whose checkpoint adapter offers a ``tiny_config``) and a byte-level BPE
   tokenizer trained on the bundled alpaca-style sample (Hugging Face format).
2. Fine-tunes it with the ``full_finetune_single_device`` recipe and the shipped
   ``demo/tiny_full_single_device`` config.
3. Loads the result with :func:`tunesmith.load_pretrained` and asks it questions
   from the sample, printing what it answers next to what it was taught.
"""

from __future__ import annotations

import json
from pathlib import Path

from tunesmith.errors import TunesmithError

__all__ = ["run_demo"]

CONFIG = "demo/tiny_full_single_device"

# ~4M parameters: small enough to learn the sample in minutes on 2 CPU cores.
_MODEL = {
    "hidden_size": 256,
    "intermediate_size": 768,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 32,
    "max_position_embeddings": 512,
}


def _sample_rows() -> list[dict[str, str]]:
    from tunesmith.data import SAMPLE_ALPACA

    return [
        json.loads(line) for line in Path(SAMPLE_ALPACA).read_text().splitlines() if line.strip()
    ]


def _tiny_config() -> dict:
    """The tiny config of the first installed family that offers one."""
    import tunesmith

    adapters = [
        a for a in tunesmith.get_registry().values("checkpoint_adapters") if a.tiny_config
    ]
    if not adapters:
        raise TunesmithError(
            "tunesmith demo needs a model family plugin and none is installed: "
            "pip install tunesmith-llama"
        )
    return dict(adapters[0].tiny_config())


def _write_base(directory: Path) -> str:
    """Write the base checkpoint; returns its ``model_type``."""
    from tokenizers import Tokenizer

    from tunesmith.testing import write_hf_tokenizer, write_tiny_checkpoint

    config = _tiny_config()
    rows = _sample_rows()
    corpus = "\n".join(" ".join(row.values()) for row in rows)
    write_hf_tokenizer(directory, vocab_size=700, corpus=corpus)
    vocab_size = Tokenizer.from_file(str(directory / "tokenizer.json")).get_vocab_size()
    special = json.loads((directory / "tokenizer.json").read_text())["added_tokens"]
    ids = {t["content"]: t["id"] for t in special}
    config.update(
        _MODEL,
        vocab_size=vocab_size,
        bos_token_id=ids["<|begin_of_text|>"],
        eos_token_id=ids["<|eot_id|>"],
    )
    write_tiny_checkpoint(directory, config, seed=0)
    return str(config["model_type"])


def run_demo(
    output_dir: str | Path = "output/demo", *, epochs: int | None = None, questions: int = 4
) -> Path:
    """Run the demo; returns the fine-tuned checkpoint directory.

    Args:
        output_dir: Where the base model, the fine-tuned model and logs go.
        epochs: Override the config's number of epochs (tests use fewer).
        questions: How many sample questions to ask the fine-tuned model.
    """
    import tunesmith
    from tunesmith.config import load_config, validate
    from tunesmith.data import Message, alpaca_prompt
    from tunesmith.recipes import finetune

    output_dir = Path(output_dir).resolve()
    base = output_dir / "base"
    finetuned = output_dir / "finetuned"
    print(f"[1/3] Writing a tiny model and tokenizer to {base}")
    model_type = _write_base(base)
    print(f"      architecture: {model_type}")

    print(f"[2/3] Fine-tuning it on the bundled sample (config {CONFIG})")
    overrides = [f"checkpointer.checkpoint_dir={base}", f"output_dir={finetuned}"]
    if epochs is not None:
        overrides.append(f"epochs={epochs}")
    recipe = tunesmith.get_registry().get("recipes", "full_finetune_single_device")
    cfg = load_config(CONFIG, overrides, defaults=recipe.defaults)
    validate(cfg, recipe)
    finetune.run(cfg)
    epoch_dirs = sorted(finetuned.glob("epoch_*"), key=lambda p: int(p.name.split("_")[1]))
    if not epoch_dirs:
        raise TunesmithError(f"the fine-tuning run wrote no epoch directory under {finetuned}")
    checkpoint = epoch_dirs[-1]

    print(f"[3/3] Asking the fine-tuned model ({checkpoint}) questions from the sample")
    model, tokenizer = tunesmith.load_pretrained(checkpoint)
    for row in _sample_rows()[:questions]:
        prompt = alpaca_prompt(row["instruction"], row.get("input", ""))
        answer = tunesmith.generate(
            model, tokenizer, [Message("user", prompt)], max_new_tokens=48, temperature=0.0
        )
        print(f"\n  Q: {row['instruction']} {row.get('input', '')}".rstrip())
        print(f"  A: {answer.strip()}")
        print(f"  (taught: {row['output']})")

    print(
        f"\nDone. Fine-tuned Hugging Face checkpoint: {checkpoint}\n"
        f"Training metrics: {finetuned / 'logs'}\n"
        "Next:\n"
        f"  tunesmith run generate --config generation checkpointer.checkpoint_dir={checkpoint} "
        f'prompt.user="{_sample_rows()[0]["instruction"]}"\n'
        f'  python -c "from transformers import AutoModelForCausalLM; '
        f"AutoModelForCausalLM.from_pretrained('{checkpoint}')\""
    )
    return checkpoint
