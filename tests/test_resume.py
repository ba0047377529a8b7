"""A chapter run interrupted mid-training and rerun with the same output folder ends with the same
metrics as an uninterrupted run (checkpoints with RNG state, reprolib.training.run_epochs)."""
import os

import pytest

from reprolib.book import ROOT
from reprolib.runner import execute
from reprolib.training import INTERRUPT_ENV

#: Chapters whose training goes through run_epochs checkpoints, each interrupted after 2 epochs.
RESUMABLE = [ROOT / "notebooks" / "01_clusternet.py", ROOT / "notebooks" / "02_dcae.py",
             ROOT / "notebooks" / "03_hsu_kira.py", ROOT / "notebooks" / "04_kingdra.py",
             ROOT / "notebooks" / "05_spice.py"]


def _metrics(record):
    # timing rows (speed benchmarks) are not results of the model
    return [(r["experiment"], r["method"], r["setting"], r["metric"], r["value"])
            for r in record["rows"] if r["experiment"] != "benchmark"]


@pytest.mark.notebook
@pytest.mark.parametrize("chapter", RESUMABLE, ids=[c.stem for c in RESUMABLE])
def test_interrupted_chapter_resumes_to_the_same_metrics(chapter, tmp_path, monkeypatch):
    reference = execute(chapter, "smoke", {}, tmp_path / "uninterrupted")
    out = tmp_path / "interrupted"
    monkeypatch.setenv(INTERRUPT_ENV, "2")  # e.g. after pretraining and the first fine-tuning epoch
    with pytest.raises(Exception, match="KeyboardInterrupt|simulated interruption"):
        execute(chapter, "smoke", {}, out)
    assert not (out / "results.json").exists() and any((out / "checkpoints").rglob("*.pt"))
    monkeypatch.delenv(INTERRUPT_ENV)
    resumed = execute(chapter, "smoke", {}, out)
    assert _metrics(resumed) == _metrics(reference)
