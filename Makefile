# Two entry points: `make demo` (the main job, end to end) and `make test`.
# Both create .venv on first use: torch's CPU wheel first, then everything else,
# so no install ever pulls a CUDA build of torch.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PACKAGES := -e ./core[quantize,plot] -e ./plugins/llama -e ./plugins/lora -e ./plugins/eval_eleuther -e ./examples/tunesmith-phi3 -e ./plugins/mistral -e ./plugins/qwen -e ./plugins/gemma
STAMP := $(VENV)/.tunesmith-installed

.PHONY: demo test install lint clean

demo: $(STAMP)
	$(BIN)/tunesmith demo --family llama

# Two test processes (pytest-xdist): half the tests wait on imports and Python, not
# on the cores, so two of them take ~0.65x the time of one on a 2-core machine.
TEST_WORKERS ?= 2

test: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal

install: $(STAMP)

$(STAMP): pyproject.toml core/pyproject.toml plugins/*/pyproject.toml examples/*/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q $(PACKAGES) -e ".[dev]"
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check core plugins tests benchmarks examples

clean:
	rm -rf $(VENV) output
