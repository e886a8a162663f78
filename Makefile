# Two commands: `make app` starts the app, `make test` runs the tests. Both set up .venv first.
# `make test` and `make test-fast` run the linter (ruff) and the type checker (mypy on core/) first.
.PHONY: app test test-fast lint bench setup
app:
	@scripts/setup.sh
	.venv/bin/streamlit run app.py --server.headless true

lint:
	.venv/bin/python -m ruff check .
	.venv/bin/python -m mypy core

test:
	@scripts/setup.sh --test
	$(MAKE) lint
	.venv/bin/python -m pytest -q

test-fast:   ## skip the real-weights and browser tests
	$(MAKE) lint
	.venv/bin/python -m pytest -q -m "not slow"

setup:
	@scripts/setup.sh --test
