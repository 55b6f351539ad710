# Two commands do everything on a fresh clone:
#   make train   set up, then train the vision model (collecting CarRacing frames first if needed)
#   make test    set up, then run the whole test suite
#   make quick   the same without the tests marked slow (the tools run end to end)
#   make setup   the set-up alone: the virtual environment in .venv, which bin/'s tools then run under
# Each creates the virtual environment it needs in .venv the first time.

PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: setup train test quick bench clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[collect,test,distributed,export,tensorboard]"
	touch $@

setup: $(VENV)/.installed

train: $(VENV)/.installed
	$(BIN)/python bin/train-scratch $(ARGS)

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

# the suite without the tests marked slow (the tools end to end, the whole model's finite differences)
quick: $(VENV)/.installed
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(VENV)/.installed
	$(BIN)/python bench/bench_step.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info
