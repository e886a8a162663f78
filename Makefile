# Two commands: `make app` starts the app, `make test` runs the tests. Both set up .venv first.
# `make test` and `make test-fast` run the linter (ruff) and the type checker (mypy on core/, pages/ and app.py) first.
.PHONY: app serve-team test test-fast lint bench setup
# Only this machine can connect unless BACKBONE_LENS_ADDRESS names another interface; a non-loopback
# address switches on the team policy (data roots, no arbitrary models: README "Serving a team").
app:
	@scripts/setup.sh
	.venv/bin/streamlit run app.py --server.headless true --server.address "$${BACKBONE_LENS_ADDRESS:-127.0.0.1}"

serve-team:  ## serve others: every interface unless BACKBONE_LENS_ADDRESS says otherwise, team policy on
	@scripts/setup.sh
	BACKBONE_LENS_TEAM=1 .venv/bin/streamlit run app.py --server.headless true --server.address "$${BACKBONE_LENS_ADDRESS:-0.0.0.0}"

lint:
	.venv/bin/python -m ruff check .
	.venv/bin/python -m mypy

test:
	@scripts/setup.sh --test
	$(MAKE) lint
	.venv/bin/python -m pytest -q

test-fast:   ## skip the real-weights and browser tests
	$(MAKE) lint
	.venv/bin/python -m pytest -q -m "not slow"

setup:
	@scripts/setup.sh --test
