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
