# Two commands: `make app` starts the app, `make test` runs the tests. Both set up .venv first.
.PHONY: app test test-fast bench setup
app:
	@scripts/setup.sh
	.venv/bin/streamlit run app.py --server.headless true

test:
	@scripts/setup.sh --test
	.venv/bin/python -m pytest -q

test-fast:   ## skip the real-weights and browser tests
	.venv/bin/python -m pytest -q -m "not slow"

setup:
	@scripts/setup.sh --test
