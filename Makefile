# The commands of the README: `make demo` runs the main job, `make test` every test (what CI runs),
# `make test-fast` all but the tests marked slow (QEMU guests, the role, ansible-test sanity, benchmarks).
VENV ?= $(CURDIR)/.venv
export JUMPSTARTER_LAB_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/jumpstarter-lab
export JUMPSTARTER_LAB_UPSTREAM ?= $(JUMPSTARTER_LAB_CACHE)/upstream-0.9.0
PYTEST_ARGS ?=

.PHONY: demo test test-fast bootstrap bench proto

bootstrap:
	@VENV=$(VENV) scripts/bootstrap.sh

demo: bootstrap
	@PATH=$(VENV)/bin:$$PATH scripts/demo.sh

test: bootstrap
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

test-fast: bootstrap
	$(VENV)/bin/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: bootstrap
	$(VENV)/bin/python bench/run.py
	$(VENV)/bin/python bench/connection.py

proto: bootstrap
	$(VENV)/bin/python scripts/gen_proto.py
