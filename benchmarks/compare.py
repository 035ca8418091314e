"""Side by side: tunesmith, torchtune 0.6.1 and transformers + PEFT on the same work.

The script sets up everything itself, offline except for the package index:

- two virtual environments in ``--work-dir`` (kept between runs): torchtune 0.6.1 with
  torchao 0.15 (0.16 and later removed names torchtune imports) and torchdata, and
  transformers + PEFT (+ matplotlib for the chart); the CPU torch wheel of this
  interpreter's version is installed first in each, so nothing pulls a CUDA torch.
  tunesmith runs in this interpreter.
- one random Llama-architecture checkpoint in Hugging Face format (56M parameters:
  width 512, 8 layers, 8 heads, 4 KV heads, MLP 1408, vocab 32,000, untied), one
  32,000-piece sentencepiece BPE trained on synthetic English-like text, and 2,000
  alpaca-style rows tokenized once (93-512 tokens, mean ~197; prompt tokens are not
  trained on), so every framework trains on the same token ids.

Each configuration (framework x LoRA/full x fp32/bf16 x eager/compiled, plus packed
data for the two frameworks that pack) runs in a fresh process through the
framework's own entry point: ``tunesmith run finetune``, ``tune run
lora_finetune_single_device`` / ``full_finetune_single_device``, and for transformers
the loop its users write (``model(**batch).loss``, backward, AdamW). All use batch 4,
no shuffling (the same batches in the same order), fused AdamW, no gradient clipping,
LoRA r=8 alpha=16 on q/v. Configurations are interleaved: round r runs every
configuration once, in an order rotated by r, so a neighbour's load spreads evenly.

Per run: non-padding tokens/s over the steps after ``--warmup-steps`` (the batches'
real tokens over the time between their step logs), the median step time, the peak
RSS of the process (``wait4``), the loss after the last step, the compile warm-up
(the first steps' time beyond steady steps) and the achieved share of a matmul peak
measured here between rounds (best square matmul in the run's dtype). FLOPs per token
= 6 N_trainable + 4 N_frozen + 6 L d s (N: weights in matmuls, the head included; s:
the mean row length, attention being causal within a row). The "useful" share counts
the head only on positions with a label (the work the loss needs): the hardware's
utilisation for a head that skips the rest, as tunesmith's does, and a lower bound
for one that projects every position.

Examples::

    python benchmarks/compare.py --quick                  # a few minutes after setup
    python benchmarks/compare.py                          # everything, 3 rounds (long)
    python benchmarks/compare.py --methods lora --dtypes bf16 --modes eager,compiled
    python benchmarks/compare.py --frameworks tunesmith,torchtune --rounds 5 --steps 30
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
FRAMEWORKS = ("tunesmith", "torchtune", "transformers")
METHODS = ("lora", "full")
DTYPES = ("fp32", "bf16")
MODES = ("eager", "compiled")

MODEL = {
    "vocab_size": 32000, "hidden_size": 512, "intermediate_size": 1408,
    "num_hidden_layers": 8, "num_attention_heads": 8, "num_key_value_heads": 4,
    "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    "tie_word_embeddings": False,
}  # fmt: skip
# --tiny (the script's own test): a model and data small enough to train in seconds.
TINY = {"vocab_size": 600, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2}  # fmt: skip
LORA = {"rank": 8, "alpha": 16}
LEARNING_RATES = {"lora": 3e-4, "full": 2e-5}
BATCH_SIZE = 4
MAX_SEQ_LEN = 512
ROWS = 2000


def _same_as_here(name: str) -> str:
    """``name==<the version installed here>`` (so both sides run the same release), or
    ``name`` where it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{name}=={version(name)}"
    except PackageNotFoundError:
        return name


# Environment recipes: (directory, packages installed after torch).
ENVS = {
    "torchtune": ("torchtune", lambda: ["torchtune==0.6.1", "torchao==0.15.0", "torchdata"]),
    "transformers": (
        "transformers",
        lambda: [_same_as_here("transformers"), _same_as_here("peft"), "safetensors", "matplotlib"],
    ),
}


@dataclass(frozen=True)
class Variant:
    framework: str
    method: str
    dtype: str
    mode: str
    packed: bool = False
    options: tuple[tuple[str, object], ...] = ()  # extra tunesmith config keys (--ablation)

    @property
    def config(self) -> str:
        label = f"{self.method} {self.dtype} {self.mode}" + (" packed" if self.packed else "")
        return label + "".join(f" {k.split('.')[-1]}={v}" for k, v in self.options)

    @property
    def name(self) -> str:
        return f"{self.framework}-{self.config.replace(' ', '-')}"


# ---- arguments ------------------------------------------------------------------------


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__[__doc__.index("Examples::") :].replace("Examples::", "examples:"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true",
                        help="1 round, 8 steps, fp32 and bf16 eager LoRA, fp32 eager full, "
                             "packed LoRA: a few minutes once the environments exist")  # fmt: skip
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS), help="comma-separated")
    parser.add_argument("--methods", default=",".join(METHODS), help="lora,full")
    parser.add_argument("--dtypes", default=",".join(DTYPES), help="fp32,bf16")
    parser.add_argument("--modes", default=",".join(MODES), help="eager,compiled")
    parser.add_argument("--no-packed", dest="packed", action="store_false",
                        help="skip the packed-data runs (tunesmith, torchtune)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per run")
    parser.add_argument("--warmup-steps", type=int, default=4,
                        help="first steps left out of the timing (default 4)")  # fmt: skip
    parser.add_argument("--work-dir", type=Path,
                        default=Path.home() / ".cache" / "tunesmith-compare",
                        help="environments, model and data (kept between runs)")  # fmt: skip
    parser.add_argument("--output", type=Path, default=Path("compare-results.json"),
                        help="results JSON; the chart is written beside it as .png")  # fmt: skip
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per run")
    parser.add_argument("--wait-idle", type=float, default=120.0,
                        help="before each run, wait up to this many seconds for other "
                             "processes to leave the CPUs (default 120; 0: never wait)")  # fmt: skip
    parser.add_argument("--python", default=None,
                        help="interpreter for the new environments (default: this one's base)")  # fmt: skip
    parser.add_argument("--setup-only", action="store_true", help="build envs and assets, stop")
    parser.add_argument("--ablation", action="store_true",
                        help="tunesmith alone, each option on and off: packing, compile, "
                             "activation checkpointing/offloading, optimizer in backward, "
                             "fused AdamW (fp32 and bf16 LoRA, fp32 full; "
                             "--methods, --dtypes and --modes pick among them)")  # fmt: skip
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.steps, args.warmup_steps = 1, 8, 3
    args.frameworks = _choices(parser, "frameworks", args.frameworks, FRAMEWORKS)
    args.methods = _choices(parser, "methods", args.methods, METHODS)
    args.dtypes = _choices(parser, "dtypes", args.dtypes, DTYPES)
    args.modes = _choices(parser, "modes", args.modes, MODES)
    if args.steps <= args.warmup_steps + 1:
        parser.error("--steps must exceed --warmup-steps by at least 2")
    return args


def _choices(parser, name: str, value: str, allowed: tuple[str, ...]) -> list[str]:
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in chosen if v not in allowed]
    if bad or not chosen:
        parser.error(f"--{name} takes {', '.join(allowed)}; got {value!r}")
    return chosen


# (method, dtype, packed, mode, options) of --ablation; the first of each method is its base.
ABLATION = [
    ("lora", "fp32", False, "eager", ()),
    ("lora", "fp32", False, "eager", (("padding_free", False),)),
    ("lora", "fp32", True, "eager", ()),
    ("lora", "bf16", False, "eager", ()),
    ("lora", "bf16", False, "eager", (("padding_free", False),)),
    ("lora", "bf16", True, "eager", ()),
    ("lora", "fp32", True, "compiled", ()),
    ("lora", "fp32", True, "eager", (("enable_activation_checkpointing", True),)),
    ("lora", "fp32", True, "eager", (("enable_activation_offloading", True),)),
    ("full", "fp32", False, "eager", ()),
    ("full", "fp32", False, "eager", (("padding_free", False),)),
    ("full", "fp32", True, "eager", ()),
    ("full", "fp32", True, "eager", (("optimizer_in_bwd", True),)),
    ("full", "fp32", True, "eager", (("optimizer.fused", False),)),
]


def variants(args: argparse.Namespace) -> list[Variant]:
    if args.ablation:
        return [Variant("tunesmith", m, d, mode, packed, options)
                for m, d, packed, mode, options in ABLATION
                if m in args.methods and d in args.dtypes and mode in args.modes]  # fmt: skip
    if args.quick:
        chosen = [
            Variant(f, m, d, "eager")
            for f in args.frameworks
            for m, d in (("lora", "fp32"), ("full", "fp32"), ("lora", "bf16"))
        ]
    else:
        chosen = [
            Variant(f, m, d, mode)
            for f, m, d, mode in itertools.product(
                args.frameworks, args.methods, args.dtypes, args.modes
            )
        ]
    if args.packed:
        for f in ("tunesmith", "torchtune"):
            if f in args.frameworks:
                for d in args.dtypes if not args.quick else ["fp32"]:
                    for m in args.methods if not args.quick else ["lora"]:
                        chosen.append(Variant(f, m, d, "eager", packed=True))
    return chosen


# ---- environments ---------------------------------------------------------------------


def _run(command: list[str], **kwargs) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True, **kwargs)


def setup_envs(args: argparse.Namespace) -> dict[str, Path]:
    """Create (once) the virtual environments the other frameworks run in."""
    import torch

    torch_version = torch.__version__.split("+")[0]
    base = args.python or os.path.join(sys.base_prefix, "bin", "python3")
    pythons = {"tunesmith": Path(sys.executable)}
    for framework in args.frameworks:
        if framework == "tunesmith":
            continue
        directory, packages = ENVS[framework]
        packages = packages()
        env = args.work_dir / directory
        python = env / "bin" / "python"
        marker = env / ".compare-ready"
        wanted = json.dumps({"torch": torch_version, "packages": packages})
        if not (marker.is_file() and marker.read_text() == wanted):
            _run([base, "-m", "venv", "--clear", str(env)])
            pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            # The CPU wheel first, so no later requirement pulls a CUDA torch.
            try:
                _run([*pip, f"torch=={torch_version}", "--timeout", "20", "--retries", "1",
                      "--index-url", "https://download.pytorch.org/whl/cpu"])  # fmt: skip
            except subprocess.CalledProcessError:
                _run([*pip, f"torch=={torch_version}"])  # an index or wheel pip already knows
            _run([*pip, *packages])
            marker.write_text(wanted)
        pythons[framework] = python
    return pythons


# ---- model, tokenizer, data -----------------------------------------------------------

_ONSETS = "b c d f g h j k l m n p r s t v w y z br cr dr fr gr pr tr bl cl fl gl pl sl st sp sh ch th".split()  # noqa: E501
_VOWELS = "a e i o u ai ea ee oo ou ie io".split()
_CODAS = ["", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ng", "ck", "rt", "ll", "ss"]
_PROMPT = (
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)


class _Text:
    """Synthetic English-like text: Zipf-distributed made-up words in sentences."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        rng = self.rng
        words = (
            "".join(
                rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
                for _ in range(rng.choice([1, 1, 2, 2, 2, 3, 3, 4]))
            )
            for _ in range(120_000)
        )
        common = "the of and to a in is that for it as with was on be by this are or".split()
        self.lexicon = common + [w for w in dict.fromkeys(words) if w not in common]
        self.cumulative = list(
            itertools.accumulate(1.0 / (i + 10) for i in range(len(self.lexicon)))
        )

    def words(self, n: int) -> str:
        total, rng = self.cumulative[-1], self.rng
        return " ".join(
            self.lexicon[bisect.bisect(self.cumulative, rng.random() * total)] for _ in range(n)
        )

    def sentences(self, n_words: int) -> str:
        out, left = [], n_words
        while left > 0:
            k = min(left, self.rng.randint(6, 20))
            out.append(self.words(k).capitalize() + self.rng.choice([".", ".", ".", "?", "!"]))
            left -= k
        return " ".join(out)


def build_assets(args: argparse.Namespace) -> dict:
    """The checkpoint, tokenizer and tokenized rows (built once into the work dir)."""
    assets = args.work_dir / ("assets-tiny" if args.tiny else "assets")
    meta = assets / "assets.json"
    if meta.is_file():
        info = json.loads(meta.read_text())
        if "label_share" not in info:  # assets built before it was recorded
            info["label_share"] = label_share(json.loads(Path(info["rows"]).read_text()))
        return info
    import sentencepiece as spm
    import torch
    import transformers

    model_dir = assets / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    text = _Text(seed=0)
    corpus = [
        text.sentences(text.rng.randint(8, 40)) for _ in range(2_000 if args.tiny else 60_000)
    ]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_prefix=str(model_dir / "tokenizer"),
        vocab_size=MODEL["vocab_size"], model_type="bpe", character_coverage=1.0,
        pad_id=0, unk_id=1, bos_id=2, eos_id=3, num_threads=os.cpu_count() or 1,
        minloglevel=2,
    )  # fmt: skip
    sp = spm.SentencePieceProcessor(model_file=str(model_dir / "tokenizer.model"))

    # Row lengths like instruction data: log-normal around ~190 tokens, 93 to 512.
    rng, rows, lengths = random.Random(1), [], []
    while len(rows) < ROWS:
        target = int(min(512, max(93, rng.lognormvariate(5.18, 0.4))))
        instruction = text.sentences(rng.randint(3, 16))
        context = text.sentences(rng.randint(2, 12)) if rng.random() < 0.4 else ""
        prompt = [2, *sp.encode(_PROMPT.format(instruction=instruction, input=context))]
        room = target - len(prompt) - 1
        if room < 8:
            continue
        answer = sp.encode(text.sentences(room))[:room] + [3]
        tokens = (prompt + answer)[:MAX_SEQ_LEN]
        labels = ([-100] * len(prompt) + answer)[:MAX_SEQ_LEN]
        rows.append({"tokens": tokens, "labels": labels})
        lengths.append(len(tokens))
    (assets / "rows.json").write_text(json.dumps(rows))

    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        **MODEL, bos_token_id=2, eos_token_id=3, pad_token_id=0, hidden_act="silu"
    )
    model = transformers.LlamaForCausalLM(config)
    model.save_pretrained(str(model_dir))  # model.safetensors + config.json
    params = {n: p.numel() for n, p in model.named_parameters()}
    info = {
        "model_dir": str(model_dir),
        "rows": str(assets / "rows.json"),
        "parameters": sum(params.values()),
        "embedding_parameters": params["model.embed_tokens.weight"],
        "row_tokens_mean": statistics.fmean(lengths),
        "row_tokens_min": min(lengths),
        "row_tokens_max": max(lengths),
        "padding_share": _padding_share(lengths),
        "label_share": label_share(rows),
    }
    meta.write_text(json.dumps(info, indent=2))
    return info


def _padding_share(lengths: list[int]) -> float:
    padded = sum(
        BATCH_SIZE * max(lengths[i : i + BATCH_SIZE]) for i in range(0, len(lengths), BATCH_SIZE)
    )
    return 1 - sum(lengths) / padded


def flops_per_token(
    method: str, mean_len: float, head_share: float = 1.0
) -> tuple[float, int, int]:
    """6 N_trainable + 4 N_frozen + 6 L d s, the head's weights counted on ``head_share``
    of the tokens (1: the standard formula; the share of labelled positions: the work
    the loss needs); returns (flops, N_trainable, N_frozen)."""
    d, layers = MODEL["hidden_size"], MODEL["num_hidden_layers"]
    kv = d // MODEL["num_attention_heads"] * MODEL["num_key_value_heads"]
    inter, vocab = MODEL["intermediate_size"], MODEL["vocab_size"]
    body = layers * (d * d + d * kv + d * kv + d * d + 3 * d * inter)
    head = vocab * d  # the embedding lookup is free
    attention = 6 * layers * d * mean_len
    if method == "full":
        trainable, frozen = body + head, 0
        return 6 * (body + head_share * head) + attention, trainable, frozen
    r = LORA["rank"]
    trainable, frozen = layers * r * ((d + d) + (d + kv)), body + head
    return 6 * trainable + 4 * (body + head_share * head) + attention, trainable, frozen


def label_share(rows: list[dict]) -> float:
    """The share of positions whose next token has a label: those the loss projects."""
    labelled = sum(sum(label != -100 for label in row["labels"][1:]) for row in rows)
    return labelled / sum(len(row["tokens"]) for row in rows)


# ---- one run ----------------------------------------------------------------------------


def _config(v: Variant, assets: dict, out: Path, args: argparse.Namespace) -> tuple[list, Path]:
    """The command and config of one run."""
    model_dir = assets["model_dir"]
    lr = LEARNING_RATES[v.method]
    common = {
        "output_dir": str(out / "output"), "seed": 0, "shuffle": False,
        "batch_size": BATCH_SIZE, "epochs": 1, "max_steps_per_epoch": args.steps,
        "gradient_accumulation_steps": 1, "clip_grad_norm": None, "device": "cpu",
        "dtype": v.dtype, "compile": v.mode == "compiled",
        "enable_activation_checkpointing": False, "enable_activation_offloading": False,
        "log_every_n_steps": 1, "resume_from_checkpoint": False,
    }  # fmt: skip
    optimizer = {"_component_": "torch.optim.AdamW", "lr": lr, "weight_decay": 0.01, "fused": True}
    if v.framework == "transformers":
        config = {
            "model_dir": model_dir, "data": assets["rows"], "method": v.method,
            "dtype": v.dtype, "compile": v.mode == "compiled", "lr": lr, "seed": 0,
            "steps": args.steps, "batch_size": BATCH_SIZE, "warmup_lr_steps": 2,
            "lora_rank": LORA["rank"], "lora_alpha": LORA["alpha"],
            "output_dir": str(out / "output"),
        }  # fmt: skip
        path = out / "config.json"
        path.write_text(json.dumps(config))
        return ["{python}", str(HERE / "_compare_support.py"), "hf", str(path)], path
    import yaml

    if v.framework == "tunesmith":
        config = {
            **common,
            "checkpointer": {"checkpoint_dir": model_dir, "output_dir": "${output_dir}"},
            "tokenizer": {"_component_": "auto", "max_seq_len": MAX_SEQ_LEN},
            "dataset": {
                "_component_": "_compare_support.tunesmith_dataset",
                "path": assets["rows"],
                "packed": v.packed,
                "max_seq_len": MAX_SEQ_LEN,
            },
            "optimizer": optimizer,
            "lr_scheduler": {
                "_component_": "tunesmith.training.cosine_with_warmup",
                "num_warmup_steps": 2,
            },
            "metric_logger": {"_component_": "_compare_support.RecordingLogger"},
            **{k: val for k, val in v.options if "." not in k},
            "peft": None
            if v.method == "full"
            else {
                "_component_": "lora",
                "lora_attn_modules": ["q_proj", "v_proj"],
                "lora_rank": LORA["rank"],
                "lora_alpha": LORA["alpha"],
                "lora_dropout": 0.0,
            },
        }
        for key, value in v.options:
            if "." in key:
                block, name = key.split(".")
                config[block][name] = value
        command = ["{python}", "-m", "tunesmith", "run", "finetune", "--config"]
    else:
        model = {
            "vocab_size": MODEL["vocab_size"], "num_layers": MODEL["num_hidden_layers"],
            "num_heads": MODEL["num_attention_heads"], "num_kv_heads": MODEL["num_key_value_heads"],
            "embed_dim": MODEL["hidden_size"], "intermediate_dim": MODEL["intermediate_size"],
            "max_seq_len": MAX_SEQ_LEN, "norm_eps": MODEL["rms_norm_eps"],
        }  # fmt: skip
        if v.method == "lora":
            model = {"_component_": "torchtune.models.llama2.lora_llama2", **model,
                     "lora_attn_modules": ["q_proj", "v_proj"], "apply_lora_to_mlp": False,
                     "apply_lora_to_output": False, "lora_rank": LORA["rank"],
                     "lora_alpha": LORA["alpha"], "lora_dropout": 0.0}  # fmt: skip
        else:
            model = {"_component_": "torchtune.models.llama2.llama2", **model}
        config = {
            **common,
            "model": model,
            "tokenizer": {
                "_component_": "torchtune.models.llama2.llama2_tokenizer",
                "path": str(Path(model_dir) / "tokenizer.model"),
                "max_seq_len": MAX_SEQ_LEN,
            },
            "checkpointer": {
                "_component_": "torchtune.training.FullModelHFCheckpointer",
                "checkpoint_dir": model_dir,
                "checkpoint_files": ["model.safetensors"],
                "recipe_checkpoint": None,
                "output_dir": "${output_dir}",
                "model_type": "LLAMA2",
            },
            "dataset": {
                "_component_": "_compare_support.torchtune_dataset",
                "path": assets["rows"],
                "packed": v.packed,
                "max_seq_len": MAX_SEQ_LEN,
            },
            "optimizer": optimizer,
            "lr_scheduler": {
                "_component_": "torchtune.training.lr_schedulers.get_cosine_schedule_with_warmup",
                "num_warmup_steps": 2,
            },
            "loss": {"_component_": "torchtune.modules.loss.CEWithChunkedOutputLoss"},
            "metric_logger": {"_component_": "_compare_support.RecordingLogger"},
            "log_peak_memory_stats": False,
            "save_adapter_weights_only": False,
            "optimizer_in_bwd": False,
        }
        recipe = f"{v.method}_finetune_single_device"
        command = ["{tune}", "run", recipe, "--config"]
    path = out / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return [*command, str(path)], path


def run_variant(
    v: Variant, assets: dict, pythons: dict, args: argparse.Namespace, tag: str
) -> dict:
    out = args.work_dir / "runs" / f"{tag}-{v.name}"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    out.mkdir(parents=True)
    command, _ = _config(v, assets, out, args)
    python = pythons[v.framework]
    command = [
        c.replace("{python}", str(python)).replace("{tune}", str(python.parent / "tune"))
        for c in command
    ]
    env = dict(os.environ)
    env.update({
        "PYTHONPATH": os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "TUNESMITH_TRUSTED_MODULES": "_compare_support", "COMPARE_RESULT": str(out / "result.json"),
        "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
        "TORCHAO_FORCE_SKIP_LOADING_SO_FILES": "1",
        "TORCHINDUCTOR_CACHE_DIR": str(args.work_dir / "inductor" / v.framework),
        "HF_HOME": str(args.work_dir / "hf-home"),
    })  # fmt: skip
    waited = _wait_idle(args.wait_idle)
    cpu_before = _cpu_busy()
    started = time.perf_counter()
    with open(out / "log.txt", "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=out)
        try:
            _, status, usage = _wait4(proc, args.timeout)
        except TimeoutError:
            proc.kill()
            proc.wait()
            return {**asdict(v), "config": v.config, "error": f"timed out after {args.timeout} s"}
    wall = time.perf_counter() - started
    # CPU time the machine spent on other processes during the run, in cores.
    others = max(0.0, _cpu_busy() - cpu_before - usage.ru_utime - usage.ru_stime) / wall
    code = os.waitstatus_to_exitcode(status)
    result_file = out / "result.json"
    if code != 0 or not result_file.is_file():
        tail = "\n".join((out / "log.txt").read_text(errors="replace").splitlines()[-12:])
        return {**asdict(v), "config": v.config, "error": f"exit {code}:\n{tail}"}
    raw = json.loads(result_file.read_text())
    return {**asdict(v), "config": v.config, "wall_seconds": wall, "waited_seconds": waited,
            "other_load_cores": others,
            "peak_rss_gib": usage.ru_maxrss / 2**20, **_measure(raw, args)}  # fmt: skip


def _cpu_busy() -> float:
    """Seconds of CPU time the whole machine has spent busy since boot (/proc/stat)."""
    try:
        fields = [int(x) for x in open("/proc/stat").readline().split()[1:8]]
    except OSError:
        return 0.0
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def _wait_idle(limit: float) -> float:
    """Wait (at most ``limit`` s) until other processes use under a quarter of a core for
    3 s in a row; returns the seconds waited."""
    started = time.perf_counter()
    quiet = 0
    while limit > 0 and time.perf_counter() - started < limit and quiet < 3:
        before = _cpu_busy()
        time.sleep(1.0)
        quiet = quiet + 1 if _cpu_busy() - before < 0.25 else 0
    return time.perf_counter() - started


def _wait4(proc: subprocess.Popen, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return pid, status, usage
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.2)


def _measure(raw: dict, args: argparse.Namespace) -> dict:
    records = sorted(raw["records"], key=lambda r: r["step"])
    items = raw["items"]
    times = [r["t"] for r in records]
    # Step i (1-based) trains items [(i-1)*B, i*B): no shuffling, full batches only.
    tokens = [sum(items[(i - 1) * BATCH_SIZE : i * BATCH_SIZE]) for i in range(1, len(times) + 1)]
    w = args.warmup_steps
    timed = times[-1] - times[w - 1]
    step_seconds = [b - a for a, b in zip(times[w - 1 :], times[w:], strict=False)]
    steady = statistics.median(step_seconds)
    return {
        "steps": len(records),
        "tokens_per_s": sum(tokens[w:]) / timed,
        "step_seconds": steady,
        "tokens_per_step": statistics.fmean(tokens[w:]),
        "final_loss": records[-1]["loss"],
        "warmup_seconds": max(0.0, times[w - 1] - w * steady) if w else 0.0,
        "first_step_seconds": times[0],
    }


# ---- matmul peak ---------------------------------------------------------------------------


def matmul_peak(dtype_name: str, n: int = 2048, repeats: int = 3) -> float:
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


# ---- report ----------------------------------------------------------------------------------


def summarize(results: list[dict], peaks: dict[str, float], assets: dict) -> list[dict]:
    rows = []
    keys = sorted({(r["framework"], r["config"]) for r in results}, key=lambda k: (k[1], k[0]))
    for framework, config in keys:
        runs = [r for r in results if (r["framework"], r["config"]) == (framework, config)]
        good = [r for r in runs if "error" not in r]
        row = {"framework": framework, "config": config, "runs": len(runs), "ok": len(good)}
        if not good:
            row["error"] = runs[-1]["error"]
            rows.append(row)
            continue
        for key in (
            "tokens_per_s",
            "step_seconds",
            "peak_rss_gib",
            "final_loss",
            "warmup_seconds",
            "other_load_cores",
        ):
            row[key] = statistics.median(r[key] for r in good)
        row["tokens_per_s_all"] = [round(r["tokens_per_s"], 1) for r in good]
        method, mean_len = good[0]["method"], assets["row_tokens_mean"]
        peak = peaks[good[0]["dtype"]]
        row["achieved_flops"] = row["tokens_per_s"] * flops_per_token(method, mean_len)[0]
        row["matmul_peak_share"] = row["achieved_flops"] / peak
        # The work the loss needs (the head on labelled positions only): what the
        # hardware did for a head that skips the rest, a lower bound for one that does not.
        useful = flops_per_token(method, mean_len, assets["label_share"])[0]
        row["useful_peak_share"] = row["tokens_per_s"] * useful / peak
        rows.append(row)
    return rows


def print_table(rows: list[dict], peaks: dict[str, float], info: dict) -> None:
    print(
        f"\n{info['parameters'] / 1e6:.1f}M-parameter Llama, {ROWS} rows of "
        f"{info['row_tokens_min']}-{info['row_tokens_max']} tokens (mean "
        f"{info['row_tokens_mean']:.0f}, {100 * info['padding_share']:.0f}% of padded batches is "
        f"padding), batch {BATCH_SIZE}; matmul peak fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, "
        f"bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s"
    )
    header = f"{'config':<44} {'framework':<13} {'tok/s':>7} {'step s':>7} {'RSS GiB':>8} {'loss':>7} {'% peak':>7} {'useful':>7} {'warm-up s':>9} {'others':>6}"  # noqa: E501
    print(header)
    print("-" * len(header))
    for r in rows:
        if "error" in r:
            print(f"{r['config']:<44} {r['framework']:<13} FAILED: {r['error'].splitlines()[0]}")
            continue
        print(
            f"{r['config']:<44} {r['framework']:<13} {r['tokens_per_s']:7.0f} "
            f"{r['step_seconds']:7.2f} {r['peak_rss_gib']:8.2f} {r['final_loss']:7.3f} "
            f"{100 * r['matmul_peak_share']:6.1f}% {100 * r['useful_peak_share']:6.1f}% "
            f"{r['warmup_seconds']:9.1f} "
            f"{r['other_load_cores']:6.2f}"
        )
    by = {(r["framework"], r["config"]): r for r in rows if "error" not in r}
    for config in sorted({c for _, c in by}):
        ours = by.get(("tunesmith", config))
        peers = [by[(f, config)] for f in FRAMEWORKS[1:] if (f, config) in by]
        if ours and peers:
            best = max(peers, key=lambda r: r["tokens_per_s"])
            print(f"  {config}: tunesmith {ours['tokens_per_s'] / best['tokens_per_s']:.2f}x "
                  f"the best peer ({best['framework']})")  # fmt: skip
    for line in best_setups(rows):
        print("  " + line)


def best_setups(rows: list[dict]) -> list[str]:
    """Per method, dtype and mode: each framework's fastest way through the same rows
    (packed or not; transformers has no packing), tunesmith's against the best peer's."""
    best: dict[tuple[str, str], dict] = {}
    for r in rows:
        if "error" in r:
            continue
        work = r["config"].replace(" packed", "")
        key = (work, r["framework"])
        if key not in best or r["tokens_per_s"] > best[key]["tokens_per_s"]:
            best[key] = r
    lines = []
    for work in sorted({w for w, _ in best}):
        ours = best.get((work, "tunesmith"))
        peers = [best[(work, f)] for f in FRAMEWORKS[1:] if (work, f) in best]
        if ours and peers:
            peer = max(peers, key=lambda r: r["tokens_per_s"])
            lines.append(
                f"{work}, each framework's fastest setup: tunesmith ({ours['config']}) "
                f"{ours['tokens_per_s'] / peer['tokens_per_s']:.2f}x {peer['framework']} "
                f"({peer['config']})"
            )
    return lines


def _cpu_kind() -> str:
    try:
        flags = next(
            line for line in open("/proc/cpuinfo", encoding="utf-8") if line.startswith("flags")
        ).split()
    except (OSError, StopIteration):
        return "unknown"
    found = [f for f in ("avx512_bf16", "amx_bf16", "avx512f", "avx2") if f in flags]
    return ", ".join(found) or "no AVX"


def main(argv: list[str] | None = None) -> int:
    global ROWS
    args = _parse(argv)
    if args.tiny:
        MODEL.update(TINY)
        ROWS = 48
    args.work_dir.mkdir(parents=True, exist_ok=True)
    pythons = setup_envs(args)
    assets = build_assets(args)
    if args.setup_only:
        print(
            json.dumps(
                {"environments": {k: str(v) for k, v in pythons.items()}, **assets}, indent=2
            )
        )
        return 0
    chosen = variants(args)
    peaks = {d: 0.0 for d in DTYPES}
    results = []
    started = time.perf_counter()
    for round_index in range(args.rounds):
        for d in DTYPES:  # measured between runs, under the same neighbours
            peaks[d] = max(peaks[d], matmul_peak(d))
        shift = round_index % len(chosen)
        for v in chosen[shift:] + chosen[:shift]:
            result = run_variant(v, assets, pythons, args, tag=f"r{round_index}")
            result["round"] = round_index
            results.append(result)
            if "error" in result:
                print(f"[round {round_index + 1}] {v.name}: FAILED\n{result['error']}", flush=True)
            else:
                print(f"[round {round_index + 1}] {v.name}: {result['tokens_per_s']:.0f} tok/s, "
                      f"step {result['step_seconds']:.2f} s, RSS {result['peak_rss_gib']:.2f} GiB, "
                      f"loss {result['final_loss']:.3f}, others {result['other_load_cores']:.2f} cores",
                      flush=True)  # fmt: skip
    rows = summarize(results, peaks, assets)
    summary = {
        "title": f"{assets['parameters'] / 1e6:.0f}M Llama, batch {BATCH_SIZE}, "
        f"{args.rounds} interleaved round(s), {os.cpu_count()} CPUs ({_cpu_kind()})",
        "frameworks": list(FRAMEWORKS),
        "cpu": _cpu_kind(), "cpus": os.cpu_count(), "rounds": args.rounds,
        "steps": args.steps, "warmup_steps": args.warmup_steps, "quick": args.quick,
        "matmul_peak_flops": peaks, "assets": assets, "summary": rows,
        "best_setups": best_setups(rows), "runs": results,
        "seconds": time.perf_counter() - started,
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
    }  # fmt: skip
    print_table(rows, peaks, assets)
    args.output.write_text(json.dumps(summary, indent=2))
    chart = args.output.with_suffix(".png")
    if "transformers" in pythons:
        draw = [str(pythons["transformers"]), str(HERE / "_compare_support.py"), "chart",
                str(args.output), str(chart)]  # fmt: skip
        if subprocess.run(draw).returncode == 0:
            print(f"wrote {args.output} and {chart}")
    else:
        print(f"wrote {args.output} (the chart needs the transformers environment)")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
