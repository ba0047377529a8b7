"""A chapter run interrupted mid-training and rerun with the same output folder ends with the same
metrics as an uninterrupted run (checkpoints with RNG state, reprolib.training.run_epochs)."""
import os

import pytest

from reprolib.book import ROOT
from reprolib.runner import execute
from reprolib.training import INTERRUPT_ENV

CHAPTER = ROOT / "notebooks" / "01_clusternet.py"


def _metrics(record):
    # timing rows (speed benchmarks) are not results of the model
    return [(r["experiment"], r["method"], r["setting"], r["metric"], r["value"])
            for r in record["rows"] if r["experiment"] != "benchmark"]


@pytest.mark.notebook
@pytest.mark.skipif(not CHAPTER.exists(), reason="chapter 1 not written yet")
def test_interrupted_chapter_resumes_to_the_same_metrics(tmp_path, monkeypatch):
    reference = execute(CHAPTER, "smoke", {}, tmp_path / "uninterrupted")
    out = tmp_path / "interrupted"
    monkeypatch.setenv(INTERRUPT_ENV, "2")  # after pretraining and the first fine-tuning epoch
    with pytest.raises(Exception, match="KeyboardInterrupt|simulated interruption"):
        execute(CHAPTER, "smoke", {}, out)
    assert not (out / "results.json").exists() and any((out / "checkpoints").glob("*.pt"))
    monkeypatch.delenv(INTERRUPT_ENV)
    resumed = execute(CHAPTER, "smoke", {}, out)
    assert _metrics(resumed) == _metrics(reference)
