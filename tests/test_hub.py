"""`tunesmith download` / `upload` and tunesmith.hub, through the real huggingface_hub
client against tunesmith.testing.FakeHub on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import tunesmith
from tunesmith import TunesmithError
from tunesmith import hub as tunesmith_hub
from tunesmith.cli import cli
from tunesmith.testing import FakeHub, write_hf_tokenizer, write_tiktoken_ranks
from tunesmith_llama import write_tiny_llama_checkpoint

pytest.importorskip("tunesmith_llama")
pytestmark = pytest.mark.timeout(60)

REPO = "meta-llama/Llama-3.2-1B-Instruct"  # tiny random weights under a shipped config's name
GATED = "meta-llama/Llama-3.1-8B-Instruct"
TOKEN = "hf_fake_write_token"
DUPLICATES = {"original/consolidated.00.pth", "pytorch_model.bin"}


def _files(directory: Path) -> dict[str, bytes]:
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in directory.rglob("*")
        if p.is_file() and ".cache" not in p.relative_to(directory).parts
    }


@pytest.fixture(scope="module")
def repo_dir(tmp_path_factory) -> Path:
    """A Llama 3.2 repo as on the Hub: HF weights + tokenizer, and Meta's original/ copy."""
    directory = tmp_path_factory.mktemp("repo")
    write_tiny_llama_checkpoint(directory, vocab_size=768)  # 512 ranks + 256 specials
    write_hf_tokenizer(directory)
    write_tiktoken_ranks(directory / "original" / "tokenizer.model")
    (directory / "original" / "params.json").write_text(json.dumps({"dim": 64, "n_layers": 2}))
    (directory / "original" / "consolidated.00.pth").write_bytes(b"meta weights" * 100)
    (directory / "pytorch_model.bin").write_bytes(b"pickled weights" * 100)
    return directory


@pytest.fixture
def hub(repo_dir):
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    bars_were_off = are_progress_bars_disabled()
    disable_progress_bars()  # keeps stderr to the one error line the CLI tests assert
    try:
        with FakeHub({REPO: repo_dir}, gated=[GATED], token=TOKEN) as fake:
            yield fake
            assert fake.unhandled == [], "huggingface_hub asked for an endpoint FakeHub lacks"
    finally:
        if not bars_were_off:
            enable_progress_bars()


@pytest.fixture
def runner(monkeypatch) -> CliRunner:
    monkeypatch.setenv("TUNESMITH_DEBUG", "0")
    return CliRunner()


def invoke(runner: CliRunner, *args: str):
    return runner.invoke(cli, list(args), prog_name="tunesmith")


def one_line_error(result, code: int = 1) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


# ------------------------------------------------------------- download ---


def test_download_skips_duplicate_weights_and_loads(hub, repo_dir, tmp_path):
    path = tunesmith_hub.download(REPO, tmp_path / "model")

    assert path == tmp_path / "model"
    expected = {k: v for k, v in _files(repo_dir).items() if k not in DUPLICATES}
    files = _files(path)
    record = json.loads(files.pop("tunesmith_source.json"))  # where the files came from
    assert files == expected  # same names, same bytes
    assert record["repo_id"] == REPO and sorted(record["files"]) == sorted(expected)
    assert {"original/tokenizer.model", "original/params.json"} <= set(expected)

    model, tokenizer = tunesmith.load_pretrained(path)
    assert type(tokenizer).__name__ == "Llama3Tokenizer"  # from original/tokenizer.model
    tokens = torch.tensor([tokenizer.encode("Hello world")])
    with torch.no_grad():
        assert model(tokens).shape == (1, tokens.shape[1], 768)


def test_download_again_fetches_no_file_twice(hub, tmp_path):
    tunesmith_hub.download(REPO, tmp_path)
    fetched = [p for m, p in hub.requests if m == "GET" and "/resolve/" in p]
    tunesmith_hub.download(REPO, tmp_path)
    assert [p for m, p in hub.requests if m == "GET" and "/resolve/" in p] == fetched


def test_default_ignore_patterns_rule():
    assert tunesmith_hub.default_ignore_patterns(["config.json", "pytorch_model.bin"]) == []
    assert tunesmith_hub.default_ignore_patterns(["original/consolidated.00.pth"]) == []
    patterns = tunesmith_hub.default_ignore_patterns(["model.safetensors", "pytorch_model.bin"])
    assert {"*.bin", "*.pth"} <= set(patterns)
    assert tunesmith_hub.default_output_dir("org/Some-Model").name == "Some-Model"


def test_cli_download_prints_path_and_next_command(hub, runner, tmp_path):
    out = tmp_path / "Llama-3.2-1B-Instruct"
    result = invoke(runner, "download", REPO, "--output-dir", str(out))
    assert result.exit_code == 0, result.output
    assert f"Downloaded {REPO} to {out}" in result.stdout
    assert (
        "tunesmith run lora_finetune_single_device --config llama3_2/1B_lora_single_device "
        f"checkpointer.checkpoint_dir={out}"
    ) in result.stdout
    assert not DUPLICATES & set(_files(out))


def test_cli_download_ignore_patterns(hub, runner, repo_dir, tmp_path):
    everything = tmp_path / "all"
    result = invoke(
        runner, "download", REPO, "--output-dir", str(everything), "--ignore-patterns", ""
    )
    assert result.exit_code == 0, result.output
    downloaded = _files(everything)
    assert json.loads(downloaded.pop("tunesmith_source.json"))["repo_id"] == REPO
    assert downloaded == _files(repo_dir)
    assert "tunesmith_source.json" in result.output and "  model.safetensors" in result.output

    some = tmp_path / "some"
    result = invoke(
        runner,
        "download",
        REPO,
        "--output-dir",
        str(some),
        "--ignore-patterns",
        "original/*",
        "--ignore-patterns",
        "*.bin",
    )
    assert result.exit_code == 0, result.output
    assert "model.safetensors" in _files(some)
    assert not any(k.startswith("original/") or k.endswith(".bin") for k in _files(some))


def test_cli_download_gated_repo(hub, runner, tmp_path):
    out = tmp_path / "gated"
    line = one_line_error(invoke(runner, "download", GATED, "--output-dir", str(out)))
    assert line == (
        f"error: {GATED} is a gated model: accept its license at {hub.endpoint}/{GATED}, "
        "then pass --hf-token (token= in Python) or run `hf auth login`"
    )
    assert not out.exists(), "a refused download leaves no folder behind"

    line = one_line_error(
        invoke(runner, "download", GATED, "--output-dir", str(out), "--hf-token", "hf_other")
    )
    assert f"your token has no access to gated model {GATED} yet" in line

    result = invoke(runner, "download", GATED, "--output-dir", str(out), "--hf-token", TOKEN)
    assert result.exit_code == 0, result.output
    assert (out / "config.json").is_file()


def test_cli_download_missing_repo_and_revision(hub, runner, tmp_path):
    line = one_line_error(
        invoke(runner, "download", "meta-llama/Llama-9", "--output-dir", str(tmp_path))
    )
    assert line.startswith(
        f"error: no model repo meta-llama/Llama-9 on {hub.endpoint}: check the id"
    )

    line = one_line_error(
        invoke(runner, "download", REPO, "--revision", "v9", "--output-dir", str(tmp_path))
    )
    assert line == f"error: {REPO} has no revision 'v9': pass an existing branch, tag or commit"

    line = one_line_error(invoke(runner, "download", "not a repo!", "--output-dir", str(tmp_path)))
    assert "is not a repo id: use owner/name" in line


def test_download_offline_and_unreachable(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(TunesmithError, match="HF_HUB_OFFLINE is set; unset it"):
        tunesmith_hub.download(REPO, tmp_path)

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(TunesmithError, match=rf"cannot reach http://127.0.0.1:{port} to download"):
        tunesmith_hub.download(REPO, tmp_path)


# --------------------------------------------------------------- upload ---


@pytest.fixture
def epoch_dir(tmp_path) -> Path:
    """An output_dir/epoch_N of a PEFT run, plus a run's state and logs inside it."""
    epoch = write_tiny_llama_checkpoint(tmp_path / "run" / "epoch_0")
    write_hf_tokenizer(epoch)
    (epoch / "adapter").mkdir()
    (epoch / "adapter" / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    (epoch / "adapter" / "adapter_model.safetensors").write_bytes(b"adapter bytes")
    (epoch / "recipe_state").mkdir()
    (epoch / "recipe_state" / "recipe_state.pt").write_bytes(b"optimizer")
    (epoch / "logs").mkdir()
    (epoch / "logs" / "log_1.txt").write_text("step 1 loss 2.0\n")
    return epoch


def test_cli_upload_epoch_dir(hub, runner, epoch_dir):
    result = invoke(
        runner, "upload", str(epoch_dir), "me/tiny-lora", "--private", "--hf-token", TOKEN
    )
    assert result.exit_code == 0, result.output
    assert (
        f"Uploaded {epoch_dir} to me/tiny-lora: {hub.endpoint}/me/tiny-lora/commit/"
        in result.stdout
    )

    sent = _files(epoch_dir)
    expected = {k: v for k, v in sent.items() if not k.startswith(("recipe_state/", "logs/"))}
    assert hub.files("me/tiny-lora") == expected
    assert {"config.json", "model.safetensors", "adapter/adapter_config.json"} <= set(expected)
    assert hub.is_private("me/tiny-lora")


def test_upload_to_branch(hub, epoch_dir):
    url = tunesmith_hub.upload(epoch_dir / "adapter", "me/tiny-lora", token=TOKEN, revision="v1")
    assert url.startswith(f"{hub.endpoint}/me/tiny-lora/commit/")
    assert set(hub.files("me/tiny-lora", "v1")) == {
        "adapter_config.json",
        "adapter_model.safetensors",
    }
    assert hub.files("me/tiny-lora", "main") == {}


def test_cli_upload_without_write_token(hub, runner, epoch_dir):
    line = one_line_error(invoke(runner, "upload", str(epoch_dir), "me/tiny-lora"))
    assert line.startswith("error: the Hub refused to upload to me/tiny-lora (401)")
    assert "`hf auth login` with a write token" in line


def test_cli_upload_refuses_non_model_folder(hub, runner, epoch_dir):
    line = one_line_error(invoke(runner, "upload", str(epoch_dir / "logs"), "me/x"))
    assert line == (
        f"error: {epoch_dir / 'logs'} has no config.json or adapter_config.json: upload a "
        "Hugging Face model directory (e.g. a run's output_dir/epoch_N) or a PEFT adapter "
        "(epoch_N/adapter)"
    )
    line = one_line_error(invoke(runner, "upload", str(epoch_dir.parent), "me/x"))
    assert line.endswith(
        f"it looks like a run's output_dir: upload one of its epochs, e.g. {epoch_dir}"
    )
    assert hub.requests == [], "nothing is sent for a refused folder"


# ------------------------------------------------------------- FakeHub ---


def test_fake_hub_restores_offline_mode_and_endpoint():
    from huggingface_hub import constants

    before = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("HF_ENDPOINT"), constants.ENDPOINT)
    offline = constants.HF_HUB_OFFLINE
    with FakeHub() as fake:
        assert constants.ENDPOINT == fake.endpoint == os.environ["HF_ENDPOINT"]
        assert not constants.HF_HUB_OFFLINE and "HF_HUB_OFFLINE" not in os.environ
    assert (
        os.environ.get("HF_HUB_OFFLINE"),
        os.environ.get("HF_ENDPOINT"),
        constants.ENDPOINT,
    ) == before
    assert constants.HF_HUB_OFFLINE == offline
