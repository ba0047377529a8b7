"""Every chapter of the table of contents runs at the smoke profile and writes a valid record.

Also: the same seed gives the same metrics (determinism on CPU).
"""
import pytest

from reprolib import results
from reprolib.book import ROOT, chapters
from reprolib.runner import execute

# every chapter, and the other pages executed from a .py source (the datasets page)
CHAPTERS = chapters() + sorted((ROOT / "book").glob("*.py"))


def _metrics(record):
    # timing rows (speed benchmarks) are not results of the model
    return [(r["experiment"], r["method"], r["setting"], r["metric"], r["value"])
            for r in record["rows"] if r["experiment"] != "benchmark"]


@pytest.mark.notebook
@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_chapter_runs_at_smoke_and_is_repeatable(chapter, tmp_path):
    first = execute(chapter, "smoke", {}, tmp_path / "a")
    results.validate(first)
    assert first["chapter"] == chapter.stem and first["profile"] == "smoke"
    assert (tmp_path / "a" / f"{chapter.stem}.ipynb").exists()
    if chapter.parent.name == "notebooks":  # chapters run on one dataset; the datasets page on many
        assert first["dataset"]["checksum"].startswith("sha256:")
    second = execute(chapter, "smoke", {}, tmp_path / "b")
    assert _metrics(first) == _metrics(second)


@pytest.mark.notebook
@pytest.mark.parametrize("chapter", chapters(), ids=[c.stem for c in chapters()])
def test_chapter_runs_at_smoke_on_8x8_digits(chapter, tmp_path):
    """CHAPTER_CONTRACT point 5: every image dataset of the registry works, 1 x 8 x 8 included."""
    record = execute(chapter, "smoke", {"dataset": "digits"}, tmp_path)
    results.validate(record)
    assert record["dataset"]["name"] == "digits"
