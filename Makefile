# The course's two commands: `make lab` (open the notebooks) and `make test`
# (pass every test). Both create the virtual environment .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help setup lab app student site test lint format clean reproduce reproduce-scaling \
	reproduce-benchmark

help:
	@echo "make lab    set up .venv and open the course in JupyterLab"
	@echo "make app    serve the SNR slider page (app/snr_explorer.ipynb) with Voila"
	@echo "make student  regenerate the student edition in notebooks/student/ (nbgrader)"
	@echo "make site   build the course website into build/site/ (Sphinx, no execution)"
	@echo "make test   set up .venv and run the linter and every test"
	@echo "make setup  only create .venv and install the course into it"
	@echo "make reproduce  rerun the clean comparison, the CNN under noise, one sweep row and the clutter row (hours on a CPU)"
	@echo "make reproduce-scaling  rerun the 480-px scaling row (minutes on a GPU, a day on a CPU)"
	@echo "make reproduce-benchmark  rerun notebook 08's cluttered MNIST at 60 and 100 px (the full MNIST; days on a CPU)"
	@echo "make clean  remove .venv and caches"

# Reinstall whenever pyproject.toml changes its dependencies.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --editable '.[lab,teach,test,cluster]'
	touch $(STAMP)

setup: $(STAMP)

# Jupyter refuses to run as root unless told; containers and some cloud machines are root.
lab: setup
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

# The SNR slider as a standalone page for a projector: code hidden, only the widgets.
APP_PORT ?= 8866
app: setup
	$(BIN)/voila app/snr_explorer.ipynb --port=$(APP_PORT) --Voila.ip=127.0.0.1

# The student edition: nbgrader metadata on each exercise, then generate_assignment.
# Never edit notebooks/student/ by hand; a test regenerates it and compares.
TEACHER_NOTEBOOKS := $(wildcard notebooks/[0-9][0-9]_*.ipynb)
student: setup
	$(BIN)/python scripts/student_edition.py mark $(TEACHER_NOTEBOOKS)
	$(BIN)/python scripts/student_edition.py generate $(TEACHER_NOTEBOOKS) --out notebooks/student

# The website, from the committed notebooks as they are (their outputs are the figures).
SITE_DIR ?= build/site
site: setup
	rm -rf $(SITE_DIR)
	$(BIN)/sphinx-build -W --keep-going -q -c docs . $(SITE_DIR)
	@echo "open $(SITE_DIR)/index.html"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Unit tests, then every notebook under nbval in quick mode: each cell must run without error,
# and cells marked `# NBVAL_CHECK_OUTPUT` must reproduce their committed output.
test: lint
	DHAM_QUICK=1 MPLBACKEND=Agg $(BIN)/python -m pytest
	DHAM_QUICK=1 $(BIN)/python -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=600 \
		--nbval-sanitize-with notebooks/nbval_sanitize.cfg notebooks/

# nbstripout keeps the outputs and counts but drops widget state and volatile metadata.
format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
	$(BIN)/nbstripout --keep-output --keep-count --keep-id notebooks/*.ipynb

# The experiments of data/results/README.md, at the recipes chosen on the validation split:
# the clean comparison (DHAM, the oracle, the zoom STN and the translation-invariant CNN,
# 5 seeds each), the CNN under noise (0 and -3 dB, 3 seeds) and the 6 dB row of the
# SNR x width sweep (widths 2-48, 5 seeds), the clutter row at the 30 epochs chosen on cluttered validation (the four models, 3 seeds),
# then their tables and figures. A sweep skips
# cells already in its CSV: delete a CSV to recompute it from scratch.
# Fresh files in $(REPRODUCE_DIR), the same names as data/results/, to compare with them
# (a sweep resumes, so writing into data/results/ would rerun nothing).
REPRODUCE_DIR ?= runs/reproduce
SWEEP := $(BIN)/python -m dham_lib sweep --checkpoints $(REPRODUCE_DIR)/checkpoints
reproduce: setup
	$(SWEEP) --models dham oracle --widths 16 --snr-db clean --seeds 0 1 2 3 4 --epochs 10 \
		--out $(REPRODUCE_DIR)/clean_validated.csv
	$(SWEEP) --models stn_zoom --attention-lr 1e-3 --start-scale 0.5 --canvas-curriculum 4 \
		--canvas-curriculum-start 60 --snr-db clean --seeds 0 1 2 3 4 --epochs 24 \
		--out $(REPRODUCE_DIR)/clean_validated.csv
	$(SWEEP) --models pooled_cnn --widths 16 --lr 3e-3 --batch-norm true --snr-db clean \
		--seeds 0 1 2 3 4 --epochs 10 --out $(REPRODUCE_DIR)/clean_validated.csv
	$(SWEEP) --models pooled_cnn --widths 16 --lr 3e-3 --batch-norm true --snr-db 0 -3 \
		--seeds 0 1 2 --epochs 10 --out $(REPRODUCE_DIR)/noisy_pooled_cnn.csv
	$(SWEEP) --models dham oracle --widths 2 4 8 16 32 48 --snr-db 6 --seeds 0 1 2 3 4 \
		--epochs 10 --out $(REPRODUCE_DIR)/sweep_validated.csv
	$(SWEEP) --models dham oracle --widths 16 --snr-db clean --background clutter \
		--seeds 0 1 2 --epochs 30 --out $(REPRODUCE_DIR)/clutter_epochs.csv
	$(SWEEP) --models stn_zoom --attention-lr 1e-3 --start-scale 0.5 --canvas-curriculum 4 \
		--canvas-curriculum-start 60 --snr-db clean --background clutter --seeds 0 1 2 \
		--epochs 30 --out $(REPRODUCE_DIR)/clutter_epochs.csv
	$(SWEEP) --models pooled_cnn --widths 16 --lr 3e-3 --batch-norm true --snr-db clean \
		--background clutter --seeds 0 1 2 --epochs 30 --out $(REPRODUCE_DIR)/clutter_epochs.csv
	$(BIN)/python -m dham_lib report $(REPRODUCE_DIR)

# The 480-px row of notebook 07's section 6; each run takes the GPU when there is one.
reproduce-scaling: setup
	$(SWEEP) --models dham --widths 16 --snr-db clean --seeds 0 1 2 3 4 --epochs 10 --canvas 480 \
		--canvas-curriculum 4 --out $(REPRODUCE_DIR)/canvas480_scaling.csv
	$(SWEEP) --models pooled_cnn --widths 16 --lr 1e-3 --batch-norm true --snr-db clean \
		--seeds 0 1 2 3 4 --epochs 10 --canvas 480 --out $(REPRODUCE_DIR)/canvas480_scaling.csv
	$(SWEEP) --models pooled_cnn --widths 4 --lr 3e-3 --batch-norm true --snr-db clean \
		--seeds 0 1 2 3 4 --epochs 10 --canvas 480 --out $(REPRODUCE_DIR)/canvas480_scaling.csv

# Notebook 08: the literature's cluttered MNIST at 60 and 100 px on the full MNIST (downloaded
# once, or copied into $$DHAM_CACHE_DIR/MNIST/raw/), every model at its recipe chosen on
# validation at 60 px (data/results/pilot_cluttered60.csv), 20 epochs; at 100 px the STN adds
# DHAM's canvas curriculum, chosen on validation there (data/results/pilot_cluttered100.csv).
CLUTTERED := --source full --background mnist_cluttered --snr-db clean --epochs 20
BENCHMARK := $(CLUTTERED) --canvas 60 --out $(REPRODUCE_DIR)/cluttered60.csv
BENCHMARK100 := $(CLUTTERED) --canvas 100 --out $(REPRODUCE_DIR)/cluttered100.csv
DHAM_RECIPE := --models dham --widths 16 --classifier small --stride 4 --canvas-curriculum 4 \
	--canvas-curriculum-start 40 --seeds 0 1 2 3 4
ORACLE_RECIPE := --models oracle --classifier small --seeds 0 1 2
STN_RECIPE := --models stn_zoom --classifier small --attention-lr 1e-3 --start-scale 0.5 --seeds 0 1 2
CNN_RECIPE := --models pooled_cnn --widths 16 --lr 3e-3 --batch-norm true --seeds 0 1 2
reproduce-benchmark: setup
	$(SWEEP) $(BENCHMARK) $(DHAM_RECIPE)
	$(SWEEP) $(BENCHMARK) $(ORACLE_RECIPE)
	$(SWEEP) $(BENCHMARK) $(STN_RECIPE)
	$(SWEEP) $(BENCHMARK) $(CNN_RECIPE)
	$(SWEEP) $(BENCHMARK100) $(DHAM_RECIPE)
	$(SWEEP) $(BENCHMARK100) $(ORACLE_RECIPE)
	$(SWEEP) $(BENCHMARK100) $(STN_RECIPE) --canvas-curriculum 4 --canvas-curriculum-start 40
	$(SWEEP) $(BENCHMARK100) $(CNN_RECIPE)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache dham_lib.egg-info
