# Conditional diffusion course: set-up, tests and tools.
# Two commands are the whole set-up:  `make lab` (learn)  and  `make test` (check).
# `make help` lists every target.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
PORT   ?= 8888
# Jupyter refuses to run as root (containers, CI) unless told it may.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

# Tests run offline: nothing may reach a model hub. (No MPLBACKEND here: notebook kernels
# inherit it, and Agg would stop figures from being stored; tests/conftest.py picks Agg.)
TEST_ENV := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
            PYTHONHASHSEED=0 TOKENIZERS_PARALLELISM=false
NBVAL_OPTS := --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg \
              --nbval-cell-timeout=300

.DEFAULT_GOAL := help
.PHONY: help venv lab test test-determinism test-package test-notebooks bench lint format train train-fast train-scenes eval eval-shapes eval-scenes eval-guiders eval-a1111 clean distclean \
        student html test-site test-lab

help: ## Show this help
	@echo "Conditional diffusion course. Targets:"
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-15s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; \
	  sys.exit(0 if (3, 10) <= v <= (3, 12) else "Python 3.10-3.12 is needed, found %d.%d; set PYTHON=python3.11" % v)'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first and pinned (pyproject.toml says why): pip takes the CPU wheel where one is on disk
	# or on PIP_EXTRA_INDEX_URL (README, Troubleshooting); PyPI's Linux wheel is the large CUDA build.
	$(PIP) install --quiet "torch==2.13.0"
	$(PIP) install --quiet -e ".[dev]"
	@touch $(STAMP)

venv: $(STAMP) ## Create .venv and install the course package with its test extras

lab: venv ## Set up (if needed) and open JupyterLab in notebooks/
	# No kernel is registered: the notebooks use "python3", which JupyterLab started from .venv
	# resolves to .venv's own kernel (JUPYTER_PREFER_ENV_PATH puts the venv before ~/.local).
	# Bound to localhost, token authentication left on (the URL with the token is printed below).
	# Widget state is saved with the notebook (saveState), so a reopened notebook shows its controls.
	$(PY) scripts/check_lab.py --write-settings
	JUPYTER_PREFER_ENV_PATH=1 $(VENV)/bin/jupyter lab --notebook-dir=notebooks --ServerApp.ip=127.0.0.1 --ServerApp.port=$(PORT) $(ALLOW_ROOT)

test: venv ## Set up (if needed), run the package tests and execute every notebook with nbval
	$(TEST_ENV) $(PY) -m pytest -q tests notebooks $(NBVAL_OPTS)

test-determinism: venv ## The notebooks once more with one thread: stored outputs must not depend on the thread count
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(TEST_ENV) $(PY) -m pytest -q notebooks $(NBVAL_OPTS)

test-package: venv ## Only the package tests (fast)
	$(TEST_ENV) $(PY) -m pytest -q tests

test-notebooks: venv ## Only the notebooks, executed and compared with their stored outputs
	$(TEST_ENV) $(PY) -m pytest -q notebooks $(NBVAL_OPTS)

bench: venv ## Time every notebook and the package's benchmark rows; prints a table
	$(TEST_ENV) $(PY) benchmarks/run.py

lint: venv ## Ruff on the package, tests and scripts
	$(VENV)/bin/ruff check tutorial_lib tests benchmarks scripts

format: venv ## Format the code with ruff
	$(VENV)/bin/ruff format tutorial_lib tests benchmarks scripts

train: venv ## Retrain every shipped model from scratch (full configs, about 1-2 h on a laptop CPU)
	bash scripts/train_all.sh full

train-fast: venv ## The fast configs (minutes), as used by the appendix notebook
	bash scripts/train_all.sh fast

eval: venv ## Every committed sweep: shapes (docs/results.md), scenes and guiders (docs/results_scenes.md, results_guiders.md); about 3 h on 2 cores
	$(TEST_ENV) $(PY) scripts/evaluate.py
	$(TEST_ENV) $(PY) scripts/evaluate_scenes.py
	$(TEST_ENV) $(PY) scripts/evaluate_guiders.py
	$(TEST_ENV) $(PY) scripts/evaluate_a1111.py

eval-shapes: venv ## Only the shapes sweep -> docs/results.md
	$(TEST_ENV) $(PY) scripts/evaluate.py

eval-scenes: venv ## The scenes sweep (fidelity, Frechet distance, precision/recall) -> docs/results_scenes.md
	$(TEST_ENV) $(PY) scripts/evaluate_scenes.py

eval-guiders: venv ## Guidance after CFG on the scenes model (APG, CFG-Zero*, autoguidance, PAG) -> docs/results_guiders.md
	$(TEST_ENV) $(PY) scripts/evaluate_guiders.py

eval-a1111: venv ## A1111's s_min_uncond and prompt emphasis vs AND on the scenes model -> docs/results_a1111.md
	$(TEST_ENV) $(PY) scripts/evaluate_a1111.py

train-scenes: venv ## Train the scenes models (judge, denoiser, weak denoiser, noisy classifier; about 2 h on 2 CPU cores)
	bash scripts/train_all.sh scenes

student: venv ## Student copies in build/student/ (solutions stubbed); FORCE=1 overwrites edited ones, keeping a .bak
	$(PY) scripts/make_student.py $(if $(filter 1 yes true,$(FORCE)),--force)

html: venv ## Static site of the executed course in build/html/ (stored outputs; open build/html/index.html)
	$(PY) scripts/build_site.py

test-site: venv ## Build the site and check every page in headless Chromium (apt-get installs chromium if missing)
	$(TEST_ENV) $(PY) scripts/check_site.py --install

test-lab: venv ## Run notebooks 06 and 08 in JupyterLab in headless Chromium, use their widgets (apt-get installs chromium if missing)
	$(TEST_ENV) $(PY) scripts/check_lab.py --install

clean: ## Remove caches and build outputs (keeps .venv and students' work in build/student)
	rm -rf build/html build/lab dist *.egg-info .pytest_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
	find . -path ./$(VENV) -prune -o -name .ipynb_checkpoints -type d -exec rm -rf {} +

distclean: clean ## Also remove .venv
	rm -rf $(VENV)
