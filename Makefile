# Two commands: `make quickstart` (the main job, offline, on the synthetic cohort) and `make test`.
# Each creates .venv and installs what it needs on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install quickstart test lint browser clean

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[demo,test,cpu-fast]"
	# Its timm/torchvision requirements would replace the pinned torch; the Plain/ResEnc UNets need neither. The pin
	# has one home, models/backbones.py (model cards print it too).
	$(BIN)/pip install -q --no-deps "$$($(BIN)/python -c 'from modeling_petct.models.backbones import DNA_REQUIREMENT as r; print(r)')"
	# nnU-Net itself, the reference of the import parity tests (its other requirements are in the test extra).
	$(BIN)/pip install -q --no-deps "nnunetv2==2.8.1"
	touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/petct quickstart

# The demo's browser test drives Debian's chromium (Playwright's own browser download is blocked here); CI runs as root.
browser:
	test -x /usr/bin/chromium || (apt-get update && apt-get install -y --no-install-recommends chromium)

# Static checks: pyflakes/pycodestyle errors (ruff) and the import layers of DESIGN.md (import-linter), config in
# pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check modeling_petct tests benchmarks hub_scripts train_mae.py train_seg.py
	$(BIN)/lint-imports

test: $(STAMP) browser lint
	$(BIN)/python -m pytest -q --durations=15 tests

clean:
	rm -rf $(VENV)
