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

# Each prints its figures and PASS/FAIL per target; all four run, and make fails if any missed one. The WSGI and
# ASGI servers' throughput is measured with wrk if installed. httptools (requirements-bench.txt, for uvicorn's
# --http httptools) goes into $(VENV)/bench, apart from .venv's own packages, which the tests use. realtime.py:
# WebSocket (a 1,000-member chat, memory per idle connection, echo round trips) and server-sent events.
benchmark: $(VENV)/.installed $(VENV)/bench/.installed
	status=0; \
	$(BIN)/python benchmarks/load_driver.py || status=1; \
	$(BIN)/python benchmarks/wsgi_server.py || status=1; \
	$(BIN)/python benchmarks/asgi_server.py --packages $(VENV)/bench || status=1; \
	$(BIN)/python benchmarks/realtime.py || status=1; \
	exit $$status

binder-link: $(VENV)/.installed
	$(BIN)/python -m gatewaylab.binder

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt -e .
	touch $@

$(VENV)/bench/.installed: requirements-bench.txt $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --upgrade --target $(VENV)/bench -r requirements-bench.txt
	touch $@

clean:
	rm -rf $(VENV)
