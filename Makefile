# Two commands do all the set-up: `make demo` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
EXTRAS := models,ray,report,export,gbm,dev,exporttest

.PHONY: setup demo test bench bench-quality lint clean

setup: $(STAMP)

# torch is pinned to 2.13.* in pyproject so pip takes the CPU build that lies on disk.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS)]'
	# LLaMA-Factory's and axolotl's own loaders check the llamafactory and axolotl exports
	# in tests; without their dependencies (they would downgrade transformers and pull
	# gradio/torchaudio, and CUDA-only bitsandbytes/triton/xformers for axolotl).
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps 'llamafactory==0.9.5' 'axolotl==0.19.0'
	touch $(STAMP)

demo: setup
	$(VENV)/bin/taskpgm demo

test: setup
	$(PY) -m pytest

bench: setup
	$(PY) benchmarks/solver.py

# Options pass through, e.g. make bench-quality QUALITY="--redundancy --seeds 0 1 2 3 4"
QUALITY ?=
bench-quality: setup
	$(PY) benchmarks/quality.py $(QUALITY)

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
