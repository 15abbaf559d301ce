# fleetwatch: every target installs what it needs first, and is quick the second time.
PY := .venv/bin/python
DEMO_SECONDS ?= 0
# pytest in two phases (scripts/run-pytest.sh): the tests that share the machine well on
# PYTEST_WORKERS pytest-xdist workers, then the `serial` ones (llama.cpp under load, the demo,
# chaos) one at a time. PYTEST_WORKERS=0 runs the first phase in one process too.
PYTEST_WORKERS ?= 2

.PHONY: setup venv-base venv-packages llm-artifacts demo test test-fast lint typecheck docs-build docs pytest bench lock clean

# The llama-server build is the long pole of a first setup, and fetching and building it needs
# only the standard library and pip: it starts as soon as the venv exists, beside the install
# of the locked packages.
setup:
	@scripts/ensure-system-packages.sh
	@$(MAKE) --no-print-directory -j2 venv-packages llm-artifacts

venv-base:
	@scripts/ensure-venv.sh --create-only

venv-packages: venv-base
	@scripts/ensure-venv.sh

llm-artifacts: venv-base
	@PYTHONPATH=src:testing/src $(PY) -m fleetwatch_testing.llama_build --quiet

demo: setup
	$(PY) -m fleetwatch demo --duration $(DEMO_SECONDS)

test: setup lint typecheck docs-build pytest

# The edit loop: lint, types and the tests not marked slow (no llama.cpp, no chaos), on the
# same two workers; under 3 minutes. `make test` still runs everything.
test-fast: setup lint typecheck
	.venv/bin/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not slow" $(PYTEST_ARGS)

# The docs site, built strictly: a broken link or a page left out of the nav fails.
docs-build: setup
	NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --site-dir .site

docs: setup
	.venv/bin/mkdocs serve

lint: setup
	.venv/bin/ruff check src testing tests bench examples
	.venv/bin/ruff format --check src testing tests bench examples

typecheck: setup
	.venv/bin/mypy

pytest: setup
	@PYTEST_WORKERS=$(PYTEST_WORKERS) scripts/run-pytest.sh $(PYTEST_ARGS)

bench: setup
	$(PY) bench/run_all.py $(BENCH_ARGS)

# Re-pin requirements.lock from what is installed in .venv.
lock: setup
	@{ echo "# Exact versions fleetwatch is tested with (pip freeze). Update with: make lock"; \
	   .venv/bin/pip freeze --exclude-editable | grep -v '^fleetwatch'; } > requirements.lock

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache .hypothesis test-artifacts .site
