# The README's two commands:
#   make demo   set up everything and upscale a sample clip with the shipped checkpoint (no server)
#   make test   set up everything and run the test suite (what .ci/run calls)
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# torch first and pinned (vggx's CI machines keep its CPU wheel on disk). On PyPI, torch for Linux x86-64 is
# the CUDA build, with several GB of CUDA libraries: a machine without a GPU takes PyTorch's CPU wheel from its
# own index, `make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu`. GPU users with a torch of their own:
# `make setup TORCH= VENV=path/to/env-with-your-torch` (an empty TORCH installs none, so that build stays; the
# triton pin then gives way to the one it requires: .ci/constraints.py).
TORCH  ?= torch==2.13.0
TORCH_INDEX ?=
EXTRAS ?= serve,train,kernels,test

.PHONY: setup demo test lint clean

$(BIN)/vggx: pyproject.toml .ci/constraints.txt .ci/constraints.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	if [ -n "$(TORCH)" ]; then $(BIN)/python -m pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"; fi
	$(BIN)/python .ci/constraints.py .ci/constraints.txt > $(VENV)/constraints.txt
	$(BIN)/python -m pip install -q -c $(VENV)/constraints.txt -e ".[$(EXTRAS)]"
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
