# Two commands do everything: `make demo` and `make test`. Both create .venv, install the package with its
# dependencies and fetch the pretrained weights first (all idempotent: a second run skips what is done).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
OUT    ?= out/demo

.PHONY: demo test weights setup bench gallery clean

demo: weights
	$(BIN)/i2s demo --outdir $(OUT)

test: weights
	$(BIN)/python -m pytest

weights: setup
	$(BIN)/i2s weights fetch

setup: $(STAMP)

# torch==2.13.0 is pinned in pyproject.toml: pip takes the CPU wheel already on these machines.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,demo]'
	touch $(STAMP)

bench: weights
	$(BIN)/python bench/reconstruct.py

# Every application of the paper through the CLI on real inputs -> docs/gallery/ (about 40 minutes on 2 CPU cores).
gallery: weights
	$(BIN)/python scripts/make_gallery.py --outdir docs/gallery --work out/gallery

clean:
	rm -rf $(VENV) out .pytest_cache
