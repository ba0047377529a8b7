# Two entry points (see README): `make book` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup book test bench sync clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[repro,book,test,sweep]"
	touch $(STAMP)

## Unit tests, then every chapter at the smoke profile.
test: $(STAMP)
	$(BIN)/python -m pytest

## Execute every chapter at the book profile with papermill, then render the HTML book.
book: $(STAMP)
	$(BIN)/python -m reprolib book

## Speed benchmarks (print ratios against a baseline measured in the same run).
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_constrained_kmeans.py
	$(BIN)/python benchmarks/bench_pairwise_kl.py
	$(BIN)/python benchmarks/bench_high_precision_clusters.py
	$(BIN)/python benchmarks/bench_reliable_pseudo_labels.py
	$(BIN)/python benchmarks/bench_memory_format.py
	$(BIN)/python benchmarks/bench_dropout.py
	$(BIN)/python benchmarks/bench_prefetch.py
	$(BIN)/python benchmarks/bench_bf16.py

## Regenerate the paired .ipynb of every executed page (chapters, datasets) from its .py source.
sync: $(STAMP)
	$(BIN)/jupytext --sync notebooks/*.py book/*.py

clean:
	rm -rf _build runs
