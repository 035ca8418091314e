"""The bad-input corpus: every config, checkpoint, dataset, tokenizer and command-line
mistake here fails through the CLI (in-process, click's runner) with a non-zero exit,
one line naming the cause and the fix (validation: one line per problem), no
traceback, and no file written, changed or removed anywhere it could reach."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from .helpers import assert_unchanged, contains_all, error_lines, invoke, snapshot

FULL = "full_finetune_single_device"
LORA = "lora_finetune_single_device"
MARKER = "reliability-pwned"


@dataclass
class Ctx:
    tmp_path: Path
    base_dir: Path
    data_file: Path
    make_config: Callable[..., tuple[Path, Path]]

    def run(self, *overrides: str, recipe: str = FULL, **changes: Any) -> list[str]:
        config, _ = self.make_config(**changes)
        return ["run", recipe, "--config", str(config), *overrides]

    def checkpoint(self, name: str = "model") -> Path:
        """A copy of the tiny checkpoint to damage."""
        return Path(shutil.copytree(self.base_dir, self.tmp_path / name))

    def data(self, name: str, content: bytes | str) -> Path:
        path = self.tmp_path / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def rows(self, count: int = 16) -> list[dict[str, Any]]:
        lines = self.data_file.read_text().splitlines()[:count]
        return [json.loads(line) for line in lines]


class _Planted:
    """Unpickling it would create the marker file: it must never be unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _plant(path: Path, marker: Path, **tensors: torch.Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**tensors, "payload": _Planted(marker)}, path)


CASES: dict[str, tuple[Callable[[Ctx], list[str]], tuple[str, ...]]] = {}


def case(name: str, *expected: str):
    def register(build: Callable[[Ctx], list[str]]):
        assert name not in CASES, name
        CASES[name] = (build, expected)
        return build

    return register


# ------------------------------------------------------------------ config ---

case("typo-top-level-key", "unknown key 'optimzer'", "did you mean 'optimizer'")(
    lambda c: c.run(optimzer={"lr": 1})
)
case("typo-in-an-override", "cannot override 'optimzer.lr'", "did you mean 'optimizer'")(
    lambda c: c.run("optimzer.lr=1")
)
case("typo-checkpointer-key", "'checkpointer' has no key 'chekpoint_dir'", "'checkpoint_dir'")(
    lambda c: c.run("+checkpointer.chekpoint_dir=/x")
)
case("unknown-checkpointer-key", "has no key 'shard_size'", "(it takes checkpoint_dir,")(
    lambda c: c.run("+checkpointer.shard_size=5")
)
case("checkpointer-without-checkpoint_dir", "'checkpointer' needs checkpoint_dir")(
    lambda c: c.run("~checkpointer.checkpoint_dir")
)
case("typo-auto-tokenizer-key", "auto has no argument 'max_seq_length'", "'max_seq_len'")(
    lambda c: c.run("+tokenizer.max_seq_length=64")
)
case("optimizer-negative-lr", "'optimizer.lr' -1 is refused by AdamW", "Invalid learning rate")(
    lambda c: c.run("optimizer.lr=-1")
)
case("optimizer-bad-betas", "'optimizer.betas' [2.0, 0.9] is refused by AdamW")(
    lambda c: c.run("+optimizer.betas=[2.0,0.9]")
)
case("optimizer-negative-eps-and-decay", "'optimizer.weight_decay' -1", "'optimizer.eps' -1")(
    lambda c: c.run("optimizer.weight_decay=-1", "+optimizer.eps=-1")
)
case("optimizer-unknown-argument", "AdamW has no argument 'lrr'", "did you mean 'lr'")(
    lambda c: c.run("+optimizer.lrr=0.1")
)
case("optimizer-lr-not-a-number", "'optimizer.lr' must be a number, not 'fast'")(
    lambda c: c.run("optimizer.lr=fast")
)
case("sgd-nesterov-without-momentum", "'optimizer.nesterov' True is refused by SGD")(
    lambda c: c.run("optimizer._component_=torch.optim.SGD", "+optimizer.nesterov=true")
)
case("keep_last_n_epochs-negative", "'keep_last_n_epochs' must be at least 1, not -1")(
    lambda c: c.run("keep_last_n_epochs=-1")
)
case("keep_last_n_epochs-zero", "'keep_last_n_epochs' must be at least 1, not 0")(
    lambda c: c.run("keep_last_n_epochs=0")
)
case("clip_grad_norm-negative", "'clip_grad_norm' must be greater than 0, not -1")(
    lambda c: c.run("clip_grad_norm=-1")
)
case("max_steps_per_epoch-negative", "'max_steps_per_epoch' must be at least 1, not -2")(
    lambda c: c.run("max_steps_per_epoch=-2")
)
case("batch_size-zero", "'batch_size' must be at least 1, not 0")(lambda c: c.run("batch_size=0"))
case("epochs-not-an-int", "'epochs' must be int, not 'two'")(lambda c: c.run("epochs=two"))
case("gradient_accumulation_steps-zero", "'gradient_accumulation_steps' must be at least 1")(
    lambda c: c.run("gradient_accumulation_steps=0")
)
case("save_every_n_steps-zero", "'save_every_n_steps' must be at least 1, not 0")(
    lambda c: c.run("save_every_n_steps=0")
)
case("num_workers-negative", "'num_workers' must be at least 0, not -1")(
    lambda c: c.run("num_workers=-1")
)
case("seed-not-an-int", "'seed' must be int or null, not 'abc'")(lambda c: c.run("seed=abc"))
case("resume-flag-not-bool", "'resume_from_checkpoint' must be bool")(
    lambda c: c.run("resume_from_checkpoint=maybe")
)
case("malformed-interpolation-in-file", "has a malformed interpolation", "${key}")(
    lambda c: c.run(output_dir="${output_dir")
)
case("interpolation-of-a-missing-key", "cannot resolve 'checkpointer.output_dir'", "${...}")(
    lambda c: c.run(checkpointer={"output_dir": "${nowhere}"})
)
case("mandatory-value-left-unset", "'output_dir' is ??? (a value to fill in)")(
    lambda c: c.run(output_dir="???", checkpointer={"output_dir": "/tmp/unused"})
)
case("override-without-equals", "override 'batch_size' is not of the form key=value")(
    lambda c: c.run("batch_size")
)
case("override-of-a-missing-nested-key", "cannot override 'optimizer.momentum.x'")(
    lambda c: c.run("optimizer.momentum.x=1")
)
case("delete-a-missing-key", "cannot delete 'nothing_here'")(lambda c: c.run("~nothing_here"))
case("delete-no-key", "override '~' names no key")(lambda c: c.run("~"))
case("override-of-no-key", "override '.=1' is not of the form key=value")(lambda c: c.run(".=1"))
case("override-a-list-index-out-of-range", "index 5 is outside the list")(
    lambda c: c.run("+fields=[a,b]", "fields.5=c")
)
case("every-problem-listed", "config has 3 problems:")(
    lambda c: c.run("batch_size=0", "epochs=0", optimzer={"lr": 1})
)


def _yaml_syntax(c: Ctx) -> list[str]:
    bad = c.data("broken.yaml", "output_dir: /x\n  batch_size: [1, 2\n")
    return ["run", FULL, "--config", str(bad)]


def _yaml_list(c: Ctx) -> list[str]:
    return ["run", FULL, "--config", str(c.data("list.yaml", "- a\n- b\n"))]


case("yaml-syntax-error", "is not valid YAML", "fix the syntax")(_yaml_syntax)
case("config-not-utf8", "cannot read", "latin1.yaml")(
    lambda c: ["run", FULL, "--config", str(c.data("latin1.yaml", b"output_dir: caf\xe9\n"))]
)
case("yaml-not-a-mapping", "must hold a mapping of keys to values, not list")(_yaml_list)
case("config-file-missing", "config file", "does not exist")(
    lambda c: ["run", FULL, "--config", str(c.tmp_path / "nope.yaml")]
)
case("unknown-recipe", "full_finetune_single_devce")(
    lambda c: ["run", "full_finetune_single_devce", "--config", "x.yaml"]
)
case("run-without-config", "recipe full_finetune_single_device needs --config")(
    lambda c: ["run", FULL]
)
case("torchrun-flags-for-a-one-device-recipe", "runs on one device: drop --nproc-per-node 2")(
    lambda c: ["run", "generate", "--nproc-per-node", "2", "--config", "generation"]
)
case("validate-a-file-without-recipe", "is a file, so name its recipe")(
    lambda c: ["validate", str(c.make_config()[0])]
)

# --------------------------------------------------------- what may run ---

case("component-os-system", "metric_logger._component_: os.system", "runs programs")(
    lambda c: c.run(metric_logger={"_component_": "os.system", "command": f"touch {MARKER}"})
)
case("component-subprocess-run", "optimizer._component_: subprocess.run")(
    lambda c: c.run("optimizer._component_=subprocess.run")
)
case("component-builtins-eval", "loss._component_: builtins.eval")(
    lambda c: c.run(loss={"_component_": "builtins.eval", "source": "print(1)"})
)
case("component-torch-hub-load", "lr_scheduler._component_: torch.hub.load")(
    lambda c: c.run(lr_scheduler={"_component_": "torch.hub.load", "repo_or_dir": "x/y"})
)
case("component-posix-system", "posix.system")(
    lambda c: c.run(metric_logger={"_component_": "posix.system"})
)
case("component-not-the-expected-kind", "'optimizer._component_: torch.nn.Linear' is not a")(
    lambda c: c.run("optimizer._component_=torch.nn.Linear")
)
case("component-untrusted-module", "json is not a trusted module", "TUNESMITH_TRUSTED_MODULES")(
    lambda c: c.run(metric_logger={"_component_": "json.dumps"})
)
case("component-cannot-import", "cannot import 'tunesmith.training.NoSuchLoss'")(
    lambda c: c.run("loss._component_=tunesmith.training.NoSuchLoss")
)
case("component-unknown-name", "alpacca", "did you mean 'alpaca'")(
    lambda c: c.run("dataset._component_=alpacca")
)
case("component-not-a-string", "'loss._component_' must be a name or dotted path, not 42")(
    lambda c: c.run("loss._component_=42")
)
case("component-block-without-component", "'optimizer' has no _component_")(
    lambda c: c.run("~optimizer._component_")
)
case("peft-unknown-key", "lora_rnk", "did you mean 'lora_rank'")(
    lambda c: c.run("+peft.lora_rnk=4", recipe=LORA)
)


# -------------------------------------------------------------- checkpoint ---


def _checkpoint_run(c: Ctx, directory: Path) -> list[str]:
    return c.run(checkpointer={"checkpoint_dir": str(directory)})


case("checkpoint-dir-missing", "does not exist: point checkpointer.checkpoint_dir")(
    lambda c: _checkpoint_run(c, c.tmp_path / "missing")
)
case("checkpoint-dir-is-a-file", "is a file, not a directory")(
    lambda c: _checkpoint_run(c, c.data("weights.safetensors", b"x"))
)


def _empty_dir(c: Ctx) -> list[str]:
    (c.tmp_path / "empty").mkdir()
    return _checkpoint_run(c, c.tmp_path / "empty")


def _config_json(c: Ctx, text: str) -> list[str]:
    directory = c.checkpoint()
    (directory / "config.json").write_text(text)
    return _checkpoint_run(c, directory)


def _edit_config_json(c: Ctx, **changes: Any) -> list[str]:
    directory = c.checkpoint()
    config = json.loads((directory / "config.json").read_text())
    config.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del config[key]
    (directory / "config.json").write_text(json.dumps(config))
    return _checkpoint_run(c, directory)


def _no_weights(c: Ctx) -> list[str]:
    directory = c.checkpoint()
    (directory / "model.safetensors").unlink()
    return _checkpoint_run(c, directory)


def _truncated_weights(c: Ctx) -> list[str]:
    directory = c.checkpoint()
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return _checkpoint_run(c, directory)


def _index_names_a_missing_shard(c: Ctx) -> list[str]:
    directory = c.checkpoint()
    index = {
        "metadata": {},
        "weight_map": {"model.norm.weight": "model-00002-of-00002.safetensors"},
    }
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    return _checkpoint_run(c, directory)


def _planted_bin(c: Ctx) -> list[str]:
    directory = c.checkpoint()
    (directory / "model.safetensors").unlink()
    _plant(directory / "pytorch_model.bin", c.tmp_path / MARKER, w=torch.zeros(2))
    return _checkpoint_run(c, directory)


def _garbage_bin(c: Ctx) -> list[str]:
    directory = c.checkpoint()
    (directory / "model.safetensors").unlink()
    (directory / "pytorch_model.bin").write_bytes(b"\x80\x02 not a checkpoint")
    return _checkpoint_run(c, directory)


def _smaller_vocabulary(c: Ctx) -> list[str]:
    from safetensors.torch import load_file, save_file

    directory = c.checkpoint()
    config = json.loads((directory / "config.json").read_text())
    rows = config["vocab_size"] - 40
    weights = load_file(str(directory / "model.safetensors"))
    weights = {k: v[:rows] if v.shape[0] == config["vocab_size"] else v for k, v in weights.items()}
    save_file(weights, str(directory / "model.safetensors"), metadata={"format": "pt"})
    config["vocab_size"] = rows
    (directory / "config.json").write_text(json.dumps(config))
    return _checkpoint_run(c, directory)


case("checkpoint-dir-empty", "is not a checkpoint directory", "nothing (it is empty)")(_empty_dir)
case("config-json-invalid", "config.json is not valid JSON", "download the checkpoint again")(
    lambda c: _config_json(c, "{")
)
case("config-json-not-an-object", "holds a JSON list, not an object")(
    lambda c: _config_json(c, "[1, 2]")
)
case("config-json-without-model-type", "names no model_type: set checkpointer.model_type")(
    lambda c: _edit_config_json(c, model_type=None)
)
case("model-type-no-plugin-reads", "no installed plugin reads model_type 'gpt_neox'")(
    lambda c: _edit_config_json(c, model_type="gpt_neox")
)
case("checkpoint-without-weights", "no weights in", "but it holds")(_no_weights)
case("weights-truncated", "the file is damaged or incomplete")(_truncated_weights)
case("index-names-a-missing-shard", "weight file(s) named by model.safetensors.index.json")(
    _index_names_a_missing_shard
)
case("pickle-bin-that-runs-code", "holds more than tensors", "convert it to safetensors")(
    _planted_bin
)
case("pickle-bin-damaged", "the file is damaged or incomplete")(_garbage_bin)
case("checkpoint-shape-mismatch", "the checkpoint does not match the model")(
    lambda c: _edit_config_json(c, hidden_size=32, head_dim=8)
)
case("tokenizer-ids-beyond-the-embedding", "but the model's embedding has", "rows")(
    _smaller_vocabulary
)
case("checkpoint-files-missing", "weight file(s) named by checkpointer.checkpoint_files")(
    lambda c: c.run(checkpointer={"checkpoint_files": ["model-00001-of-00002.safetensors"]})
)

# --------------------------------------------------------------- tokenizer ---


def _tokenizer_dir(c: Ctx, files: dict[str, str]) -> list[str]:
    directory = c.tmp_path / "tok"
    directory.mkdir()
    for name, text in files.items():
        (directory / name).write_text(text)
    return c.run(f"+tokenizer.path={directory}")


case("tokenizer-path-without-tokenizer-files", "tok")(lambda c: _tokenizer_dir(c, {"a.txt": "x"}))
case("tokenizer-json-damaged", "tokenizer.json")(
    lambda c: _tokenizer_dir(c, {"tokenizer.json": "{not json", "tokenizer_config.json": "{}"})
)

# ----------------------------------------------------------------- dataset ---


def _data_run(c: Ctx, path: Path, **dataset: Any) -> list[str]:
    return c.run(dataset={"source": str(path), **dataset})


def _jsonl(c: Ctx, name: str, rows: list[Any], tail: bytes = b"") -> Path:
    text = "".join(json.dumps(r) + "\n" for r in rows).encode() + tail
    return c.data(name, text)


def _latin1_past_4kb(c: Ctx) -> list[str]:
    rows = c.rows(32) * 2  # 64 good lines, past the first 4 KB
    head = "".join(json.dumps(r) + "\n" for r in rows).encode()
    assert len(head) > 4096 and len(rows) == 64
    bad = json.dumps({"instruction": "caf_", "input": "", "output": "x"}).encode()
    return _data_run(c, c.data("latin1.jsonl", head + bad.replace(b"_", b"\xe9") + b"\n"))


def _latin1_csv(c: Ctx) -> list[str]:
    lines = [b"instruction,input,output"] + [b"q%d,,a" % i for i in range(300)] + [b"caf\xe9,,x"]
    return _data_run(c, c.data("latin1.csv", b"\n".join(lines) + b"\n"))


case("dataset-file-missing", "dataset file not found")(
    lambda c: _data_run(c, c.tmp_path / "nope.jsonl")
)
case("dataset-malformed-json-line", "line 3: invalid JSON", "fix or delete that line")(
    lambda c: _data_run(c, _jsonl(c, "bad.jsonl", c.rows(2), b'{"instruction": \n'))
)
case("dataset-non-utf8-past-4kb", "line 65: byte 0xe9 at column 21 is not utf-8 text")(
    _latin1_past_4kb
)
case("dataset-non-utf8-csv", "line 302: byte 0xe9 at column 4 is not utf-8 text")(_latin1_csv)
case("dataset-empty-file", "is empty: add rows")(lambda c: _data_run(c, c.data("e.jsonl", "")))
case("dataset-row-not-an-object", "line 2: expected a JSON object")(
    lambda c: _data_run(c, _jsonl(c, "list.jsonl", [c.rows(1)[0], [1, 2]]))
)
case("dataset-missing-column", "column 'output' not found", "column_map")(
    lambda c: _data_run(
        c, _jsonl(c, "cols.jsonl", [{"instruction": "q", "answer": "a"}] * 4), split="train"
    )
)
case("dataset-unknown-column_map-key", "column_map key 'outptu'")(
    lambda c: c.run("+dataset.column_map={outptu: answer}")
)
case("dataset-unknown-split", "could not load", "split 'validation'")(
    lambda c: c.run("dataset.split=validation")
)
case("dataset-unknown-extension", "cannot tell the format of", "'.xlsx'")(
    lambda c: _data_run(c, c.data("rows.xlsx", b"PK"))
)
case("dataset-builder-option-typo", "'trian_on_input' is not an option of the alpaca dataset")(
    lambda c: c.run("+dataset.trian_on_input=true")
)
case("dataset-no-rows-in-split", "has no rows")(lambda c: c.run("dataset.split=train[:0]"))
case("every-response-cut-away", "all 16 samples of 'dataset' lose their whole response")(
    lambda c: c.run("~dataset.train_on_input")
)
case("fewer-samples-than-one-step", "fewer than one optimizer step")(
    lambda c: c.run("dataset.split=train[:2]")
)

# ------------------------------------------------------------- output dir ---


def _output_is_a_file(c: Ctx) -> list[str]:
    out = c.data("out.txt", "the user's notes\n")
    return c.run(f"output_dir={out}")


def _previous_run(c: Ctx) -> list[str]:
    config, out = c.make_config()
    (out / "epoch_0").mkdir(parents=True)
    (out / "epoch_0" / "model.safetensors").write_bytes(b"weights of the user's earlier run")
    return ["run", FULL, "--config", str(config)]


def _planted_state(c: Ctx) -> list[str]:
    config, out = c.make_config()
    _plant(out / "recipe_state" / "recipe_state.pt", c.tmp_path / MARKER, step=torch.zeros(1))
    return ["run", FULL, "--config", str(config), "resume_from_checkpoint=true"]


def _garbage_state(c: Ctx) -> list[str]:
    config, out = c.make_config()
    (out / "recipe_state").mkdir(parents=True)
    (out / "recipe_state" / "recipe_state.pt").write_bytes(b"PK\x03\x04 half a zip")
    return ["run", FULL, "--config", str(config), "resume_from_checkpoint=true"]


case("output-dir-is-a-file", "is a file")(_output_is_a_file)
case("output-dir-under-a-file", "cannot create output_dir", "Not a directory")(
    lambda c: c.run(f"output_dir={c.data('plain.txt', 'x')}/run")
)
case("output-dir-holds-another-run", "already holds a run (epoch_0)", "overwrite_output_dir")(
    _previous_run
)
case("resume-without-state", "no training state in")(lambda c: c.run("resume_from_checkpoint=true"))
case("recipe-state-that-runs-code", "is not a training state tunesmith wrote", "not loaded")(
    _planted_state
)
case("recipe-state-damaged", "is not a training state tunesmith wrote")(_garbage_state)


# ---------------------------------------------------- other commands' inputs ---


def _user_folder(c: Ctx) -> Path:
    folder = c.tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("the user's files\n")
    return folder


case("convert-onto-a-users-folder", "already exists and is not empty", "--force")(
    lambda c: ["convert", str(c.base_dir), str(_user_folder(c))]
)
case("convert-onto-its-input", "is also the input")(
    lambda c: ["convert", str(c.base_dir), str(c.base_dir)]
)
case("convert-a-missing-source", "does not exist: point SOURCE at")(
    lambda c: ["convert", str(c.tmp_path / "nope"), str(c.tmp_path / "out")]
)


def _adapter(c: Ctx) -> Path:
    """A PEFT LoRA adapter of the tiny checkpoint's q_proj, written as PEFT writes one."""
    from safetensors.torch import save_file

    config = json.loads((c.base_dir / "config.json").read_text())
    hidden = config["hidden_size"]
    out = config["num_attention_heads"] * config.get(
        "head_dim", hidden // config["num_attention_heads"]
    )
    directory = c.tmp_path / "adapter"
    directory.mkdir()
    prefix = "base_model.model.model.layers"
    tensors = {}
    for layer in range(config["num_hidden_layers"]):
        tensors[f"{prefix}.{layer}.self_attn.q_proj.lora_A.weight"] = torch.randn(2, hidden)
        tensors[f"{prefix}.{layer}.self_attn.q_proj.lora_B.weight"] = torch.randn(out, 2)
    save_file(tensors, str(directory / "adapter_model.safetensors"))
    adapter_config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 2, "lora_alpha": 4,
        "target_modules": ["q_proj"], "base_model_name_or_path": str(c.base_dir),
    }  # fmt: skip
    (directory / "adapter_config.json").write_text(json.dumps(adapter_config))
    return directory


case("merge-adapter-onto-a-users-folder", "already exists and is not empty", "--force")(
    lambda c: ["merge-adapter", str(c.base_dir), str(_adapter(c)), str(_user_folder(c))]
)
case("merge-adapter-onto-a-base-that-is-none", "is not a checkpoint", "point BASE at one")(
    lambda c: ["merge-adapter", str(c.tmp_path), str(_adapter(c)), str(c.tmp_path / "merged")]
)
case("merge-adapter-without-an-adapter", "no adapter_config.json in")(
    lambda c: ["merge-adapter", str(c.base_dir), str(c.tmp_path), str(c.tmp_path / "merged")]
)


def _cp_onto_a_file(c: Ctx) -> list[str]:
    target = c.data("my.yaml", "# my edits\n")
    return ["cp", "generation", str(target)]


case("cp-onto-a-users-file", "already exists: choose another name or pass --force")(_cp_onto_a_file)
case("cp-unknown-config", "generaton")(lambda c: ["cp", "generaton", str(c.tmp_path / "x.yaml")])
case("upload-a-folder-that-is-no-model", "has no config.json or adapter_config.json")(
    lambda c: ["upload", str(_user_folder(c)), "me/model"]
)
case("upload-a-missing-folder", "is not a directory")(
    lambda c: ["upload", str(c.tmp_path / "nope"), "me/model"]
)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line_and_changes_nothing(
    name, tmp_path, base_dir, data_file, make_config
):
    build, expected = CASES[name]
    args = build(Ctx(tmp_path, base_dir, data_file, make_config))
    roots = (tmp_path, base_dir, data_file.parent)
    before = snapshot(*roots)

    result = invoke(*args)

    lines = error_lines(result)
    contains_all("\n".join(lines), expected)
    assert_unchanged(before, snapshot(*roots))
    assert not (tmp_path / MARKER).exists(), "a planted pickle ran code"
