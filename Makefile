# vidgen: the commands a developer needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
ENV_FILE := .local/infra.env
# Run a command with the local infrastructure's addresses in the environment
# (variables already set in the environment win over the env file).
WITH_ENV := scripts/with-env.sh

.PHONY: asyncapi docs help install infra-up infra-down infra-status lint format test test-unit test-containers images run demo bench web chaos
# What the web page is built from: `make web` (and so `make run`, `make test`) rebuilds it
# only when one of these is newer than web/dist/index.html.
WEB_SOURCES := $(shell find web/src web/scripts -type f 2>/dev/null) \
	web/index.html web/vite.config.ts web/tsconfig.json web/openapi.json web/package.json

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

install: ## install uv (if missing) and the whole workspace from uv.lock
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet uv
	uv sync --all-packages --frozen --quiet --compile-bytecode

infra-up: ## start local Kafka (tansu), S3 (nanio), PostgreSQL; a second call is a no-op
	@scripts/infra.sh up

infra-down: ## stop what infra-up started
	@scripts/infra.sh down

infra-status: ## show what local infrastructure runs
	@scripts/infra.sh status

lint: install ## ruff (lint + format check), mypy strict, import contracts
	uv run --frozen ruff check .
	uv run --frozen ruff format --check .
	uv run --frozen mypy libs/common/src libs/runway/src libs/testing/src services/*/src tools/*/src scripts tests/chaos/vidgen_chaos
	uv run --frozen lint-imports

format: install ## apply ruff's fixes and formatting
	uv run --frozen ruff check --fix .
	uv run --frozen ruff format .

test: install infra-up web ## every test (browser tests included), then the images and the e2e suite against them
	$(WITH_ENV) uv run --frozen pytest $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory test-containers

test-containers: install infra-up web ## build every image, check each, run tests/e2e against the system as containers (podman)
	scripts/compose-e2e.sh test

images: install infra-up web ## build every image with podman (base images made once), print sizes, check each
	scripts/images.sh build
	scripts/images.sh infra
	$(WITH_ENV) scripts/images.sh check

docs: install web/node_modules/.package-lock.json ## regenerate generated docs: events.asyncapi.yaml, README's configuration table, web/openapi.json and the page's API client
	uv run --frozen python scripts/gen_asyncapi.py
	uv run --frozen python scripts/gen_config_docs.py
	uv run --frozen python scripts/gen_openapi.py
	cd web && npm run --silent gen:api

web: install web/dist/index.html ## build the web page into web/dist (when web/ changed)

web/node_modules/.package-lock.json: web/package-lock.json
	cd web && npm ci --no-audit --no-fund

web/dist/index.html: web/node_modules/.package-lock.json $(WEB_SOURCES)
	uv run --frozen python scripts/gen_openapi.py --check
	cd web && npm run --silent build

asyncapi: docs

run: install web ## run the whole system locally: the web page, infrastructure, Runway simulator, every service
	uv run --frozen python scripts/run.py

demo: install ## upload the sample image, generate a video, watch it live (starts the system if needed)
	uv run --frozen python scripts/demo.py

bench: install infra-up ## run the benchmarks (they print figures)
	@for b in bench/*.py; do echo "== $$b"; $(WITH_ENV) uv run --frozen python $$b || exit 1; done

chaos: install ## the chaos suite, full size, on its own private stack (CHAOS_ARGS="--seed N --size ci --signal term")
	PYTHONPATH=tests/chaos uv run --frozen python -m vidgen_chaos $(CHAOS_ARGS)
