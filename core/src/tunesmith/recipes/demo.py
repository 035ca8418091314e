"""``tunesmith demo``: the whole workflow on an embedded default, offline, on a CPU.

1. Writes a tiny random checkpoint of an installed model family (the first, by
   name, whose checkpoint adapter offers a ``tiny_config``) and a byte-level BPE
   tokenizer trained on the bundled alpaca-style sample (Hugging Face format).
2. Fine-tunes it with the ``full_finetune_single_device`` recipe and the shipped
   ``demo/tiny_full_single_device`` config.
3. Asks the base model and then the result (loaded with
   :func:`tunesmith.load_pretrained`) questions from the sample — the result as typed,
   since the checkpoint carries the Alpaca format it learned — and prints both answers
   next to what it was taught, and how many it reproduces.
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


def _tiny_config(family: str | None = None) -> dict:
    """The tiny config of ``family``'s checkpoint adapter, or of the first installed
    family (by name) that offers one."""
    import tunesmith

    registry = tunesmith.get_registry()
    if family is not None:
        adapter = registry.get("checkpoint_adapters", family)
        if adapter.tiny_config is None:
            raise TunesmithError(
                f"model family '{family}' offers no tiny config for the demo: choose another "
                "with --family (see `tunesmith plugins`)"
            )
        return dict(adapter.tiny_config())
    adapters = [a for a in registry.values("checkpoint_adapters") if a.tiny_config]
    if not adapters:
        raise TunesmithError(
            "tunesmith demo needs a model family plugin and none is installed: "
            "pip install tunesmith-llama"
        )
    return dict(adapters[0].tiny_config())


def _write_base(directory: Path, family: str | None = None) -> str:
    """Write the base checkpoint; returns its ``model_type``."""
    from tokenizers import Tokenizer

    from tunesmith.testing import write_hf_tokenizer, write_tiny_checkpoint

    config = _tiny_config(family)
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
    output_dir: str | Path = "output/demo",
    *,
    epochs: int | None = None,
    questions: int = 4,
    family: str | None = None,
) -> Path:
    """Run the demo; returns the fine-tuned checkpoint directory.

    Args:
        output_dir: Where the base model, the fine-tuned model and logs go.
        epochs: Override the config's number of epochs (tests use fewer).
        questions: How many sample questions to ask the fine-tuned model.
        family: The model family to build (a checkpoint adapter's name); default: the
            first installed one, by name, that offers a tiny config.
    """
    import tunesmith
    from tunesmith.config import load_config, validate
    from tunesmith.recipes import finetune

    output_dir = Path(output_dir).resolve()
    base = output_dir / "base"
    finetuned = output_dir / "finetuned"
    print(f"[1/4] Writing a tiny model and tokenizer to {base}")
    model_type = _write_base(base, family)
    print(f"      architecture: {model_type}")
    rows = [row for row in _sample_rows() if not row.get("input", "").strip()][:questions]
    print("[2/4] Asking the base model (before fine-tuning), in the Alpaca format")
    before = _answers(base, rows, prompt_template="alpaca")

    print(f"[3/4] Fine-tuning it on the bundled sample (config {CONFIG})")
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

    # The checkpoint carries the Alpaca format it learned: plain questions are prompted
    # in it (tunesmith, transformers' apply_chat_template and vLLM alike).
    print(f"[4/4] Asking the fine-tuned model ({checkpoint}) the same questions, as typed")
    after = _answers(checkpoint, rows)
    right = 0
    for row, old, new in zip(rows, before, after, strict=True):
        ok = new == row["output"].strip()
        right += ok
        print(f"\n  Q: {row['instruction']}")
        print(f"  before: {old or '(nothing)'}")
        print(f"  after:  {new}  [{'as taught' if ok else 'taught: ' + row['output']}]")
    print(f"\n{right} of {len(rows)} taught answers reproduced.")
    question = rows[0]["instruction"] if rows else "Hello"
    print(
        f"\nDone. Fine-tuned Hugging Face checkpoint: {checkpoint}\n"
        f"Training metrics and loss curve: {finetuned / 'logs'}\n"
        "Next:\n"
        f"  tunesmith run generate --config generation checkpointer.checkpoint_dir={checkpoint} "
        f'temperature=0 prompt.user="{question}"\n'
        f"  tunesmith run generate --config generation checkpointer.checkpoint_dir={checkpoint} "
        "temperature=0 --chat\n"
        f'  python -c "from transformers import AutoModelForCausalLM; '
        f"AutoModelForCausalLM.from_pretrained('{checkpoint}')\""
    )
    return checkpoint


def _answers(directory: Path, rows: list[dict[str, str]], **settings: str) -> list[str]:
    """Greedy answers of the checkpoint in ``directory`` to each row's instruction."""
    import tunesmith
    from tunesmith.data import Message, prompt_template
    from tunesmith.tokenizers import PromptTemplatedTokenizer

    model, tokenizer = tunesmith.load_pretrained(directory)
    if settings.get("prompt_template"):
        template = prompt_template(settings["prompt_template"])
        tokenizer = PromptTemplatedTokenizer(tokenizer, template)
    return [
        tunesmith.generate(
            model, tokenizer, [Message("user", row["instruction"])], max_new_tokens=48,
            temperature=0.0,
        ).strip()
        for row in rows
    ]  # fmt: skip
