# Two commands do everything: `make lab` opens the course, `make test` runs the whole test suite.
# Both create .venv with the pinned requirements on first use (and again whenever a requirements file changes).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: lab test exercises benchmark binder-link clean

lab: $(VENV)/.installed
	$(BIN)/jupyter lab notebooks/00_welcome.ipynb

test: $(VENV)/.installed
	$(BIN)/python -m pytest -n 2 --dist loadgroup

exercises: $(VENV)/.installed
	$(BIN)/python -m gatewaylab.build

# Both print their figures and exit non-zero when a target is missed; the second uses wrk if installed.
benchmark: $(VENV)/.installed
	$(BIN)/python benchmarks/load_driver.py
	$(BIN)/python benchmarks/wsgi_server.py

binder-link: $(VENV)/.installed
	$(BIN)/python -m gatewaylab.binder

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt -e .
	touch $@

clean:
	rm -rf $(VENV)
