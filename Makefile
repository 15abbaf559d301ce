# fleetwatch: every target installs what it needs first, and is quick the second time.
PY := .venv/bin/python
DEMO_SECONDS ?= 0

.PHONY: setup demo test lint typecheck pytest bench lock clean

setup:
	@scripts/ensure-system-packages.sh
	@scripts/ensure-venv.sh
	@$(PY) -m fleetwatch.llm.artifacts --quiet

demo: setup
	$(PY) -m fleetwatch demo --duration $(DEMO_SECONDS)

test: setup lint typecheck pytest

lint: setup
	.venv/bin/ruff check src tests bench examples
	.venv/bin/ruff format --check src tests bench examples

typecheck: setup
	.venv/bin/mypy

pytest: setup
	$(PY) -m pytest

bench: setup
	$(PY) bench/run_all.py $(BENCH_ARGS)

# Re-pin requirements.lock from what is installed in .venv.
lock: setup
	@{ echo "# Exact versions fleetwatch is tested with (pip freeze). Update with: make lock"; \
	   .venv/bin/pip freeze --exclude-editable | grep -v '^fleetwatch'; } > requirements.lock

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache .hypothesis test-artifacts
