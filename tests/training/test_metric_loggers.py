import json
import re
import sys
import types

import pytest
import torch

from tunesmith.errors import TunesmithError
from tunesmith.training import DiskLogger, StdoutLogger, TensorBoardLogger, WandBLogger


@pytest.fixture
def as_rank_one(monkeypatch):
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda *a, **k: 1)


def test_disk_logger_writes_jsonl(tmp_path):
    with DiskLogger(tmp_path / "logs") as logger:
        assert re.fullmatch(r"log_\d+\.jsonl", logger.path.name)
        logger.log("loss", torch.tensor(1.5), step=1)
        # Flushed after every call: readable while the run goes on.
        assert json.loads(logger.path.read_text()) == {"step": 1, "loss": 1.5}
        logger.log_dict({"loss": 0.25, "lr": 2e-5, "tokens": torch.tensor(7)}, step=2)
        logger.log_config({"seed": 3, "model": {"_component_": "x"}})
    lines = [json.loads(line) for line in logger.path.read_text().splitlines()]
    assert lines == [{"step": 1, "loss": 1.5}, {"step": 2, "loss": 0.25, "lr": 2e-5, "tokens": 7}]
    config = json.loads((tmp_path / "logs" / (logger.path.stem + ".config.json")).read_text())
    assert config == {"seed": 3, "model": {"_component_": "x"}}


def test_disk_logger_given_filename_appends(tmp_path):
    for step in (1, 2):
        logger = DiskLogger(tmp_path, filename="metrics.jsonl")
        logger.log("loss", 1.0, step)
        logger.close()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2]


def test_only_rank_zero_writes(tmp_path, as_rank_one, capsys):
    logger = DiskLogger(tmp_path / "logs", filename="m.jsonl")
    logger.log("loss", 1.0, 1)
    logger.log_config({"a": 1})
    logger.close()
    assert not (tmp_path / "logs").exists()
    StdoutLogger().log("loss", 1.0, 1)
    assert capsys.readouterr().out == ""
    tb = TensorBoardLogger(tmp_path / "tb")
    tb.log("loss", 1.0, 1)
    tb.close()
    assert not (tmp_path / "tb").exists()


def test_stdout_logger(capsys):
    logger = StdoutLogger()
    logger.log_dict({"loss": 1.23456789, "lr": 3e-5, "tokens": 12}, step=4)
    logger.log_config({"x": 1})
    logger.close()
    assert capsys.readouterr().out == "Step 4 | loss:1.2346 lr:3e-05 tokens:12\n"


def test_tensorboard_logger_writes_event_file(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(tmp_path)
    logger.log("loss", 2.5, step=1)
    logger.log_dict({"loss": torch.tensor(1.25), "lr": 1e-4}, step=2)
    logger.log_config({"seed": 1})
    logger.close()
    assert list(tmp_path.glob("events.out.tfevents.*"))

    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("loss")] == [(1, 2.5), (2, 1.25)]
    assert acc.Scalars("lr")[0].value == pytest.approx(1e-4)


def test_tensorboard_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(TunesmithError, match="pip install tensorboard"):
        TensorBoardLogger(tmp_path)


def test_wandb_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(TunesmithError) as e:
        WandBLogger(project="p")
    assert "WandBLogger needs the wandb package: pip install wandb" in str(e.value)


class _FakeRun:
    def __init__(self, **kwargs):
        self.init_kwargs = kwargs
        self.logged = []
        self.config = {}
        self.finished = False

    def log(self, data, step):
        self.logged.append((step, data))

    def finish(self):
        self.finished = True


class _FakeConfig(dict):
    def update(self, other, allow_val_change=False):
        super().update(other)


def _fake_wandb():
    mod = types.ModuleType("wandb")
    mod.run = None

    def init(**kwargs):
        run = _FakeRun(**kwargs)
        run.config = _FakeConfig()
        mod.run = run
        return run

    mod.init = init
    return mod


def test_wandb_logger_with_fake_module(monkeypatch):
    fake = _fake_wandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    logger = WandBLogger(project="proj", name="run1")
    run = fake.run
    assert run.init_kwargs == {"project": "proj", "name": "run1"}
    logger.log("loss", torch.tensor(0.5), 3)
    logger.log_config({"lr": 1e-3})
    logger.close()
    assert run.logged == [(3, {"loss": 0.5})]
    assert run.config == {"lr": 1e-3}
    assert run.finished


def test_wandb_logger_not_initialised_off_rank_zero(monkeypatch, as_rank_one):
    fake = _fake_wandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    logger = WandBLogger(project="proj")
    logger.log("loss", 1.0, 1)
    logger.close()
    assert fake.run is None
