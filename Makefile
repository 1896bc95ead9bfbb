# kefu — two commands on a fresh machine:
#   make run    set everything up, then start every process (Ctrl-C stops them all)
#   make test   set everything up, then run the test suite
SHELL := /bin/bash
PYTHON311 ?= python3.11
PYTHON310 ?= $(shell PYENV_VERSION=3.10.13 pyenv which python 2>/dev/null || command -v python3.10)
VENV := .venv
RASA_VENV := .venv-rasa

export KEFU_HOST ?= 127.0.0.1
export KEFU_GATEWAY_PORT ?= 8000
export KEFU_RASA_PORT ?= 5005
export KEFU_ACTIONS_PORT ?= 5055
export KEFU_NLU_PORT ?= 5006
export KEFU_VAR_DIR ?= $(CURDIR)/var
export KEFU_TRACKER_DB ?= $(KEFU_VAR_DIR)/tracker.db
export SQLALCHEMY_SILENCE_UBER_WARNING := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test setup system-deps clean

run: setup
	@echo "Starting kefu: storefront + widget at http://$(KEFU_HOST):$(KEFU_GATEWAY_PORT)/ (Ctrl-C stops everything)"
	$(VENV)/bin/honcho start -f Procfile

# The tests' defect classifier: the demo recipe with 10 epochs instead of 30, kept apart from the
# demo's (a CPU without bfloat16 takes about 120 s per epoch; the tests exercise the photo dialog,
# not the model's accuracy, which benchmarks/vision.py and `kefu setup`'s report measure)
test: export KEFU_VISION_MODEL_DIR ?= $(KEFU_VAR_DIR)/models/vision-quick
test: export KEFU_VISION_DEMO_EPOCHS ?= 10
test: setup system-deps
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

setup: $(VENV)/.installed $(RASA_VENV)/.installed
	$(VENV)/bin/kefu setup

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON311) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip wheel
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -e ".[test]"
	@! $(VENV)/bin/pip show torchvision >/dev/null 2>&1 || (echo "torchvision must not be installed (see ARCHITECTURE.md)"; exit 1)
	touch $@

$(RASA_VENV)/.installed:
	test -x $(RASA_VENV)/bin/python || $(PYTHON310) -m venv $(RASA_VENV)
	$(RASA_VENV)/bin/pip install -q --upgrade "pip<25" wheel
	$(RASA_VENV)/bin/pip install -q rasa==3.6.21
	touch $@

# Debian packages the tests need: chromium and a CJK font for the browser tests (espeak-ng and sox for voice)
system-deps:
	@missing=""; for p in chromium fonts-wqy-zenhei espeak-ng sox; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ $$(id -u) -eq 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi

clean:
	rm -rf var test-output
