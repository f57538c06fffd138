# Two commands do everything: `make demo` and `make test`. Both create .venv, install the package with its
# dependencies and fetch the pretrained weights first (all idempotent: a second run skips what is done).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
OUT    ?= out/demo

.PHONY: demo test editor browser weights setup lock bench gallery clean

demo: weights
	$(BIN)/i2s demo --outdir $(OUT)

test: weights browser
	$(BIN)/python -m pytest

# The browser editor (i2s serve): prints the address to open.
editor: weights
	$(BIN)/i2s serve

# The editor's browser tests drive Debian's Chromium (Playwright's own browser download does not work offline).
# Installed where we run as root (CI does) and it is missing; elsewhere the browser tests say what to install.
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's chromium for the editor's browser tests"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null || \
	  { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }; \
	fi

weights: setup
	$(BIN)/i2s weights fetch

setup: $(STAMP)

# torch==2.13.0 is pinned in pyproject.toml: pip takes the CPU wheel already on these machines. Every other package
# is installed at the exact version of constraints.txt, the versions the test suite was run with (pyproject.toml keeps
# the ranges library users get). To move to newer versions: `make lock`, run `make test`, commit constraints.txt.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,demo,editor,cluster]'
	touch $(STAMP)

# Regenerate constraints.txt: resolve pyproject.toml's ranges (every extra) in a throwaway venv and pin what pip chose.
# pip and the project itself are left out; local version labels (torch's +cpu) are dropped so that the same pin
# accepts the CPU or the CUDA wheel.
LOCK_VENV := .venv-lock
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test,demo,editor,cluster]'
	{ echo "# Exact versions for make setup (pip install -c constraints.txt), written by make lock on"; \
	  echo "# Python $$($(LOCK_VENV)/bin/python -c 'import platform; print(platform.python_version(), platform.system(), platform.machine())'). Regenerate with make lock, never by hand."; \
	  $(LOCK_VENV)/bin/python -m pip freeze --all --exclude-editable --disable-pip-version-check \
	    | grep -v -i -E '^(pip|image2stylegan)[ =@]' | sed -E 's/^([^=]+==[^+]+)\+.*$$/\1/'; \
	} > constraints.txt.tmp
	mv constraints.txt.tmp constraints.txt
	rm -rf $(LOCK_VENV)

bench: weights
	$(BIN)/python bench/reconstruct.py

# Every application of the paper through the CLI on real inputs -> docs/gallery/ (about 50 minutes on 2 CPU cores, every command at its quick budget).
gallery: weights
	$(BIN)/python scripts/make_gallery.py --outdir docs/gallery --work out/gallery

clean:
	rm -rf $(VENV) $(LOCK_VENV) out .pytest_cache
