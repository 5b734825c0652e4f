# Quick start: `make demo` (train, evaluate, predict on the shipped CIFAR-10 sample) and `make test`.
# Both create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow test-all lint bench-train clean

# videos are decoded by TorchCodec, which needs FFmpeg's libraries: Debian's package where apt-get is there (the
# video tests say how to install it elsewhere, and are skipped without it)
$(STAMP): pyproject.toml
	command -v ffmpeg >/dev/null || ! command -v apt-get >/dev/null || \
		{ SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); $$SUDO apt-get update -q && \
		  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends ffmpeg; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m reslab.demo

# one pytest-xdist worker per core (at most 4), a test file each (its module fixtures built once): a test whose
# process dies (a native library's crash) fails alone, by name, and the rest go on in a new worker
XDIST := -n auto --maxprocesses 4 --dist loadfile

test: $(STAMP)
	$(PY) -m pytest -q $(XDIST) -m "not slow"

test-slow: $(STAMP)
	$(PY) -m pytest -q $(XDIST) -m slow

test-all: $(STAMP)
	$(PY) -m pytest -q $(XDIST)

lint: $(STAMP)
	$(PY) -m ruff check src tests

bench-train: $(STAMP)
	$(PY) -m reslab bench train

clean:
	rm -rf $(VENV) .demo runs
