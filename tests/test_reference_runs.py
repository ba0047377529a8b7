"""Every committed reference run under results/ is a valid record with the command that made it."""
from pathlib import Path

import pytest

from reprolib import results

ROOT = Path(__file__).resolve().parent.parent / "results"
RUN_FOLDERS = sorted(path for path in ROOT.glob("*/*") if path.is_dir())


@pytest.mark.parametrize("folder", RUN_FOLDERS, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_reference_run_has_its_command_and_valid_records(folder):
    assert (folder / "COMMAND").read_text().strip(), f"{folder} has no COMMAND saying how it was made"
    records = sorted(folder.rglob(results.RESULTS_FILE))
    assert records, f"{folder} holds no {results.RESULTS_FILE}"
    for path in records:
        record = results.load(path)  # validates the schema
        assert record["chapter"] == folder.parent.name, f"{path} is a record of {record['chapter']}"
        assert record["device"] and record["git_commit"], f"{path} does not say where and from what code it ran"


# Committed runs that a chapter's `book` build shows in place of cells it no longer runs itself
# (to fit the chapter's six minutes): chapter, folder, the experiments the build reads from it.
# One such run per kind of machine or arithmetic (book-side-experiments and its -<variant> folders,
# reprolib.results.committed_variants); the build shows the one that trained what it trained.
SIDE_EXPERIMENTS = {"04_kingdra": {"table1", "appendix_c1", "ablation_im_weights"}, "05_spice": {"table7", "table8"}}
SHOWN_BY_THE_BOOK = [(chapter, folder, experiments) for chapter, experiments in SIDE_EXPERIMENTS.items()
                     for folder in results.committed_variants(ROOT / chapter, "book-side-experiments")]


def test_every_chapter_that_skips_side_experiments_has_a_committed_run_of_them():
    assert {chapter for chapter, _, _ in SHOWN_BY_THE_BOOK} == set(SIDE_EXPERIMENTS)


@pytest.mark.parametrize("chapter, folder, experiments", SHOWN_BY_THE_BOOK, ids=lambda v: str(v))
def test_a_run_the_book_shows_has_the_builds_settings(chapter, folder, experiments):
    from reprolib.runner import chapter_defaults

    records = [results.load(path) for path in sorted((ROOT / chapter / folder).rglob(results.RESULTS_FILE))]
    assert len(records) == 1, f"the build reads one run from results/{chapter}/{folder}, found {len(records)}"
    record = records[0]
    assert record["profile"] == "book" and record["parameters"]["side_experiments"] is True
    assert experiments <= {row["experiment"] for row in record["rows"]}, "a side experiment is missing"
    # every parameter with a fixed default ran at that default, so the run trained the ensemble the build trains
    defaults = chapter_defaults(ROOT.parent / "notebooks" / f"{chapter}.py")
    differ = {name: (record["parameters"][name], value) for name, value in defaults.items()
              if value is not None and name not in ("profile", "output_dir") and name in record["parameters"]
              and record["parameters"][name] != value}
    assert differ == {}, f"results/{chapter}/{folder} ran with other settings than the build's: {differ}"
