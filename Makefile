# One-command set-up: `make demo` and `make test` create .venv and install into it.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Two workers: the suite is sized for a 2-core machine.
PYTEST_ARGS ?= -n 2

.PHONY: install demo test test-services lint clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet "pip>=24"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -c "import torch, torchvision, timm, ray.tune, ray.train.torch, optuna; print('installed: torch', torch.__version__, '| torchvision', torchvision.__version__, '| timm', timm.__version__, '| ray', ray.__version__, '| optuna', optuna.__version__)"
	@touch $(STAMP)

install: $(STAMP)

# Rerunnable: --reuse keeps a finished trials/demo (and says so), continues an interrupted
# one (--resume), or starts it; the report is rewritten each time.
demo: install
	$(BIN)/mtlsearch search search_spaces/demo.yaml --profile cpu --reuse
	$(BIN)/mtlsearch report trials/demo --out reports/demo

# The whole suite but the tests of real services (a two-node Ray cluster, the S3 end to
# end), which `make test-services` runs (minutes each; CI runs both targets).
test: install
	$(BIN)/ruff check mtlsearch tests
	$(BIN)/python -m pytest $(PYTEST_ARGS) -m "not cluster and not s3" tests

test-services: install
	$(BIN)/python -m pytest -p no:xdist -m "cluster or s3" tests

lint: install
	$(BIN)/ruff check mtlsearch tests

clean:
	rm -rf $(VENV) .cache .pytest_cache
