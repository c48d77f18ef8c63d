# vidgen: the commands a developer needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
ENV_FILE := .local/infra.env
# Run a command with the local infrastructure's addresses in the environment
# (variables already set in the environment win over the env file).
WITH_ENV := scripts/with-env.sh

.PHONY: asyncapi docs help install infra-up infra-down infra-status lint format test test-unit run demo bench

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

install: ## install uv (if missing) and the whole workspace from uv.lock
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet uv
	uv sync --all-packages --frozen --quiet

infra-up: ## start local Kafka (tansu), S3 (nanio), PostgreSQL; a second call is a no-op
	@scripts/infra.sh up

infra-down: ## stop what infra-up started
	@scripts/infra.sh down

infra-status: ## show what local infrastructure runs
	@scripts/infra.sh status

lint: install ## ruff (lint + format check), mypy strict, import contracts
	uv run --frozen ruff check .
	uv run --frozen ruff format --check .
	uv run --frozen mypy libs/common/src services/*/src tools/*/src scripts
	uv run --frozen lint-imports

format: install ## apply ruff's fixes and formatting
	uv run --frozen ruff check --fix .
	uv run --frozen ruff format .

test: install infra-up ## every test, against the local infrastructure
	$(WITH_ENV) uv run --frozen pytest $(PYTEST_ARGS)

docs: install ## regenerate generated docs: events.asyncapi.yaml, README's configuration table
	uv run --frozen python scripts/gen_asyncapi.py
	uv run --frozen python scripts/gen_config_docs.py

asyncapi: docs

run: install ## run the whole system locally: infrastructure, Runway simulator, every service
	uv run --frozen python scripts/run.py

demo: install ## upload the sample image, generate a video, watch it live (starts the system if needed)
	uv run --frozen python scripts/demo.py

bench: install infra-up ## run the benchmarks (they print figures)
	@for b in bench/*.py; do echo "== $$b"; $(WITH_ENV) uv run --frozen python $$b || exit 1; done
