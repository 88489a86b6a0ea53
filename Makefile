# The course's two commands: `make lab` (open the notebooks) and `make test`
# (pass every test). Both create the virtual environment .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help setup lab test lint format clean

help:
	@echo "make lab    set up .venv and open the course in JupyterLab"
	@echo "make test   set up .venv and run the linter and every test"
	@echo "make setup  only create .venv and install the course into it"
	@echo "make clean  remove .venv and caches"

# Reinstall whenever pyproject.toml changes its dependencies.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --editable '.[lab,test]'
	touch $(STAMP)

setup: $(STAMP)

lab: setup
	$(BIN)/jupyter lab notebooks/

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	DHAM_QUICK=1 MPLBACKEND=Agg $(BIN)/python -m pytest

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache dham_lib.egg-info
