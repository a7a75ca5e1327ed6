# Two entry points for a fresh machine: `make run` and `make test`.
VENV := .venv
STAMP := $(VENV)/.installed
# Tests run on 2 CPU workers; TRITON_INTERPRET is set in tests/conftest.py before kernels import.
PYTEST_ARGS ?= -n 2 -q

.PHONY: run test setup clean

$(STAMP): pyproject.toml scripts/setup_venv.sh
	bash scripts/setup_venv.sh

setup: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/tokencost run

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
