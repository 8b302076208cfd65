# The two commands of the README: `make up` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is pinned to the CPU wheel that lies on these machines; a bare `torch`
# would pull gigabytes of CUDA packages.
TORCH ?= torch==2.13.0

.PHONY: up test test-unit lint install install-test ffmpeg

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

install: $(PY)
	$(PY) -m pip install -q $(TORCH) -e .

install-test: $(PY) ffmpeg
	$(PY) -m pip install -q $(TORCH) -e '.[test]'

# The ffmpeg CLI is the real RTMP publisher in the ingest tests.
ffmpeg:
	@command -v ffmpeg >/dev/null || { apt-get update -qq && apt-get install -y -qq ffmpeg >/dev/null; }

up: install
	$(VENV)/bin/lumalive up

test: install-test
	$(PY) -m pytest

# The fast layer only: plain classes and real FFmpeg/PyAV, no Postgres, no Ray.
test-unit: install-test
	$(PY) -m pytest tests/unit

# What CI checks besides the tests: lint, formatting, types of the Ray-free packages.
lint: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy media lumalive models
