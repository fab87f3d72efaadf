# spal: every user-facing task is one target. Run `make help` for the list.
SHELL := /bin/bash
PY ?= .venv/bin/python
DATASET ?= synthetic
PROTOCOL ?=
SEEDS ?=
DATA_DIR ?= data
export DATA_DIR
# The torch pair the project is tested with (pyproject.toml gives ranges; the Dockerfile's ARGs name the same pair).
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: help setup pretrain demo test test-browser lint bench bench-eval bench-label gpu-check reproduce report ci-regression \
        ablation sweep docker-build docker-reproduce lint-docker clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

setup:  ## create .venv and install spal with its test, browser and docker extras (CPU or CUDA machine)
	python3 -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	.venv/bin/pip install -e '.[test,browser,docker]' $(TORCH_PINS)

pretrain:  ## the synthetic benchmark's pretrained backbone (cached under DATA_DIR/pretrained/; make demo does it too)
	$(PY) -m spal pretrain --data-dir $(DATA_DIR)

demo:  ## SPAL on the synthetic benchmark from its pretrained backbone vs the same run at --budget 0 (CPU, minutes)
	$(PY) -m harness demo --data-dir $(DATA_DIR)

test:  ## run the test suite (browser tests skip when no Chromium is installed)
	$(PY) -m pytest

test-browser:  ## install Chromium + Playwright's client when missing, then run the real-browser tests
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	@$(PY) -c "import playwright" 2>/dev/null || .venv/bin/pip install -q playwright
	SPAL_REQUIRE_BROWSER=1 $(PY) -m pytest -m browser tests/annotation

lint:  ## ruff (lint and format check) over the code and hadolint over the Dockerfile
	.venv/bin/ruff check spal harness tests
	.venv/bin/ruff format --check spal harness tests
	.venv/bin/hadolint --failure-threshold error Dockerfile

lint-docker:  ## hadolint at error level
	.venv/bin/hadolint --failure-threshold error Dockerfile

bench-eval:  ## evaluation at MSMT17 size (11,659 x 82,161), figures to results/bench/
	$(PY) -m harness.bench.evaluation --size msmt17

bench-label:  ## the label phase at MSMT17 and Market-1501 size, figures to results/bench/
	$(PY) -m harness.bench.label_phase --size msmt17
	$(PY) -m harness.bench.label_phase --size market1501

bench: bench-eval bench-label  ## every timing benchmark (+ pytest-benchmark per step, + the training step)
	$(PY) -m pytest tests/harness/bench --benchmark-enable --benchmark-only \
		--benchmark-json results/bench/pytest-benchmark-$$($(PY) -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')").json
	$(PY) -m harness bench

gpu-check:  ## on a lent GPU machine (stock Python, no install): the paper protocol at MSMT17 size, timed; gpu tests
	bash harness/gpu_check.sh

reproduce:  ## make reproduce DATASET=market1501|msmt17|synthetic [PROTOCOL=paper] [SEEDS=1,2,3] [DATA_DIR=...] [PRETRAINED=PATH]
	$(PY) -m harness reproduce --dataset $(DATASET) $(if $(PROTOCOL),--protocol $(PROTOCOL)) \
		$(if $(SEEDS),--seeds $(SEEDS)) $(if $(PRETRAINED),--pretrained $(PRETRAINED)) --data-dir $(DATA_DIR)

report:  ## regenerate results/REPORT.md, results/figures/ and results/tables/ from results/
	$(PY) -m harness report

ci-regression:  ## SPAL's paired gain over budget 0 and its level on a cut of synthetic-bench (results/ci/baseline.json)
	$(PY) -m harness ci-regression --data-dir $(DATA_DIR)

ablation:  ## make ablation DATASET=... [SEEDS=...]: the component ablation matrix
	$(PY) -m harness ablation --dataset $(DATASET) $(if $(PROTOCOL),--protocol $(PROTOCOL)) \
		$(if $(SEEDS),--seeds $(SEEDS)) $(if $(PRETRAINED),--pretrained $(PRETRAINED)) --data-dir $(DATA_DIR)

sweep:  ## make sweep DATASET=...: accuracy against labeling budget
	$(PY) -m harness sweep --dataset $(DATASET) $(if $(PROTOCOL),--protocol $(PROTOCOL)) \
		$(if $(SEEDS),--seeds $(SEEDS)) $(if $(PRETRAINED),--pretrained $(PRETRAINED)) --data-dir $(DATA_DIR)

docker-build:  ## build the CUDA image (needs a Docker engine)
	$(PY) -m harness docker build

docker-reproduce:  ## make docker-reproduce DATASET=... [WEIGHTS_DIR=...]: run the harness in the container on all GPUs
	$(PY) -m harness docker reproduce --dataset $(DATASET) --data-dir $(DATA_DIR) \
		$(if $(WEIGHTS_DIR),--weights-dir $(WEIGHTS_DIR))

clean:  ## remove caches and local logs (keeps data/ and results/)
	rm -rf logs .pytest_cache .ruff_cache .benchmarks
