# The two commands of README.md: `make serve` (the development host, TUF on)
# and `make test` (ruff, mypy, then the test suite with coverage). Both set up .venv on first use.
# `make test-fast`: the quick loop (SQLite only, no end-to-end or soak tests).
# `make test-warehouse`: the extension inside a real Warehouse (below).
# `make clean`: delete what the others made (.venv, .dev-data, caches, build output).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test test-fast install test-warehouse clean bench-cli lint typecheck

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@# The repository on the venv's path: `.venv/bin/python -m dev ...` works from any directory.
	$(BIN)/python -c 'import sysconfig; open(sysconfig.get_path("purelib") + "/warehouse-tuf-dev.pth", "w").write("$(CURDIR)\n")'
	touch $(STAMP)

# tuf-js, the independent client the end-to-end tests drive (tests/js, locked versions).
JS := tests/js
JS_STAMP := $(JS)/node_modules/.installed

$(JS_STAMP): $(JS)/package.json $(JS)/package-lock.json
	cd $(JS) && npm ci --no-audit --no-fund
	touch $(JS_STAMP)

install: $(STAMP) $(JS_STAMP)

serve: $(STAMP)
	$(BIN)/python -m dev serve

# The checks, then the whole suite with branch coverage of warehouse_tuf/ (fail_under in
# pyproject.toml); any failing stops `make test`.
test: $(STAMP) $(JS_STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest --cov --cov-report=term $(PYTEST_ARGS)

# The quick loop: SQLite only, no end-to-end, distributed, soak or slow tests (pyproject.toml's
# markers), on every core (pytest-xdist).
FAST_MARKERS := not postgres and not distributed and not e2e and not soak and not slow
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n auto -m "$(FAST_MARKERS)" $(PYTEST_ARGS)

# Lint (ruff; its rules in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check .

# Types (mypy on warehouse_tuf/; its settings in pyproject.toml).
typecheck: $(STAMP)
	$(BIN)/mypy

# Start-up time of the command lines (median of several runs): docs/performance.md.
bench-cli: $(STAMP)
	$(BIN)/python dev/bench_cli.py

clean:
	rm -rf $(VENV) .dev-data .pytest_cache .hypothesis build dist *.egg-info $(JS)/node_modules .warehouse
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# A real Warehouse with the extension enabled (integration/warehouse/prepare.sh: a fresh tree
# from $WAREHOUSE_SRC or ../shared/warehouse, its own venv under .warehouse/, README's
# enable-warehouse-tuf.patch), then Warehouse's own unit tests with TUF_ENV unset, then the
# end-to-end tests of integration/warehouse/tests. Skipped (success) when no Warehouse source
# is available. WAREHOUSE_TESTS=groups runs only the unit tests closest to the extension (about
# 620, half a minute) instead of all of tests/unit (about 3600, under two minutes);
# WAREHOUSE_PYTEST_ARGS adds pytest options to both pytest runs.
WAREHOUSE_TESTS ?= all
WAREHOUSE_GROUPS := tests/unit/test_config.py tests/unit/cli tests/unit/forklift \
	tests/unit/packaging tests/unit/test_tasks.py
WAREHOUSE_UNIT := $(if $(filter groups,$(WAREHOUSE_TESTS)),$(WAREHOUSE_GROUPS),tests/unit)
# integration/warehouse/deselect.txt lists the tests that fail here without the extension too
# (stripe-mock service, one flaky test); a small plugin deselects exactly those.
WAREHOUSE_PLUGINS := $(CURDIR)/integration/warehouse/pytest_plugins
WAREHOUSE_PYTEST := -p no:randomly -o addopts="" --disable-socket \
	--allow-hosts=localhost,::1,127.0.0.1 --postgresql-host 127.0.0.1 --postgresql-user postgres \
	-p warehouse_deselect

# One run at a time: prepare.sh replaces .warehouse/src, which another run may be testing.
test-warehouse:
	@mkdir -p .warehouse; exec 9>.warehouse/.lock; \
	flock -n 9 || { echo "test-warehouse: waiting for another run to finish"; flock 9; }; \
	rc=0; integration/warehouse/prepare.sh || rc=$$?; \
	if [ $$rc -eq 77 ]; then echo "test-warehouse: skipped, no Warehouse source (see above)"; exit 0; fi; \
	[ $$rc -eq 0 ] || exit $$rc; \
	. .warehouse/current.env; export WAREHOUSE_TREE WAREHOUSE_PYTHON; \
	unset TUF_ENV; export LC_ALL=C.UTF-8 LANG=C.UTF-8; status=0; \
	echo "test-warehouse: Warehouse unit tests ($(WAREHOUSE_UNIT))"; \
	(cd "$$WAREHOUSE_TREE" && PYTHONPATH="$$WAREHOUSE_TREE:$(WAREHOUSE_PLUGINS)" "$$WAREHOUSE_PYTHON" -m pytest \
		$(WAREHOUSE_PYTEST) $(WAREHOUSE_PYTEST_ARGS) $(WAREHOUSE_UNIT)) || status=1; \
	if [ -n "$$(find integration/warehouse/tests -name 'test_*.py' 2>/dev/null)" ]; then \
		echo "test-warehouse: end-to-end tests (integration/warehouse/tests)"; \
		"$$WAREHOUSE_PYTHON" -m pytest -p no:randomly $(WAREHOUSE_PYTEST_ARGS) integration/warehouse/tests \
			|| status=1; \
	else \
		echo "test-warehouse: end-to-end step skipped, no tests in integration/warehouse/tests yet"; \
	fi; \
	exit $$status
