# The README's two commands:
#   make demo   set up everything and upscale a sample clip with the shipped checkpoint (no server)
#   make test   set up everything and run the test suite (what .ci/run calls)
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# torch first and pinned: a CPU build lies on this kind of machine's disk; a bare `torch` would pull
# a multi-GB CUDA build. GPU users: `make setup TORCH= VENV=path/to/env-with-your-torch` (an empty TORCH
# installs no torch, so the environment's own CUDA build stays).
TORCH  ?= torch==2.13.0
EXTRAS ?= serve,train,kernels,test

.PHONY: setup demo test lint clean

$(BIN)/vggx: pyproject.toml .ci/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	if [ -n "$(TORCH)" ]; then $(BIN)/python -m pip install -q "$(TORCH)"; fi
	$(BIN)/python -m pip install -q -c .ci/constraints.txt -e ".[$(EXTRAS)]"
	@touch $@

setup: $(BIN)/vggx

demo: setup
	$(BIN)/python -m vggx.sample out/sample.mp4
	$(BIN)/vggx upscale out/sample.mp4 out/sample_x4.mp4
	@echo "wrote out/sample_x4.mp4"

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) out .pytest_cache
