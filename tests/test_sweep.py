"""`python -m reprolib sweep` and `collect` (issue 11), on Chapter 0 at the smoke profile.

A 2 x 2 grid on both engines (Ray on a local two-CPU instance) gives the same collected table;
a rerun skips every finished point; a failing point is recorded while the others finish; a bad
grid exits 2 before anything runs. The sweeps run as the command line does, in subprocesses.
"""
import json
import subprocess
import sys

import pandas as pd
import pytest

from reprolib import sweep
from reprolib.params import ParameterError

CHAPTER = "notebooks/00_evaluation.py"
GRID = ["--grid", "seed=0,1", "--grid", "dataset=digits,mnist5k"]
POINTS = ["seed=0,dataset=digits", "seed=0,dataset=mnist5k", "seed=1,dataset=digits", "seed=1,dataset=mnist5k"]


def cli(root, *args):
    return subprocess.run([sys.executable, "-m", "reprolib", *args], cwd=root, capture_output=True,
                          text=True, timeout=400)


def sweep_cli(root, out, *args):
    return cli(root, "sweep", CHAPTER, "--profile", "smoke", "--out", str(out), "--workers", "2", *args)


@pytest.fixture(scope="module")
def local_sweep(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "sweep"
    return out, sweep_cli(root, out, *GRID, "--engine", "local")


@pytest.fixture(scope="module")
def ray_sweep(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("ray") / "sweep"
    return out, sweep_cli(root, out, *GRID, "--engine", "ray")


@pytest.mark.notebook
def test_a_2x2_grid_gives_the_same_table_on_both_engines(local_sweep, ray_sweep):
    for out, done in (local_sweep, ray_sweep):
        assert done.returncode == 0, done.stdout + done.stderr
        assert "4 points, 4 done, 0 skipped, 0 failed" in done.stdout
        for name in POINTS:
            assert {"results.json", "log.txt", "request.json", "00_evaluation.ipynb"} <= {
                p.name for p in (out / name).iterdir()}
    local, ray = (sweep.comparable(sweep.collect_frame(out)) for out, _ in (local_sweep, ray_sweep))
    assert sorted(local["point"].unique()) == POINTS
    assert sorted(local["seed"].unique()) == [0, 1]
    assert sorted(local["dataset (parameter)"].unique()) == ["digits", "mnist5k"]
    pd.testing.assert_frame_equal(local, ray)


@pytest.mark.notebook
def test_a_rerun_skips_every_finished_point(root, local_sweep):
    out, _ = local_sweep
    before = {name: (out / name / "results.json").stat().st_mtime_ns for name in POINTS}
    done = sweep_cli(root, out, *GRID, "--engine", "local")
    assert done.returncode == 0, done.stderr
    assert "4 points, 0 done, 4 skipped, 0 failed" in done.stdout
    assert before == {name: (out / name / "results.json").stat().st_mtime_ns for name in POINTS}


@pytest.mark.notebook
def test_collect_writes_one_csv_and_prints_mean_and_std_over_seeds(root, local_sweep, tmp_path):
    out, _ = local_sweep
    csv = tmp_path / "table.csv"
    done = cli(root, "collect", str(out), "--csv", str(csv))
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(csv)
    assert set(table["point"]) == set(POINTS) and {"seed", "dataset (parameter)", "value"} <= set(table)
    summary = sweep.summarise(sweep.collect_frame(out))
    headline = summary[summary["experiment"] == "headline"]
    assert list(headline["runs"]) == [2, 2]  # two seeds per dataset
    assert {"mean", "std", "paper"} <= set(summary) and "mean" in done.stdout and "std" in done.stdout


@pytest.mark.notebook
def test_a_failing_point_is_recorded_while_the_others_finish(root, tmp_path):
    # 1,001 clusters of the smoke profile's 1,000 points: valid for the parameter checks (they
    # cannot know the data's size), fails in the notebook.
    out = tmp_path / "sweep"
    done = sweep_cli(root, out, "--grid", "n_clusters=1001,10", "-p", "dataset=digits")
    assert done.returncode == 1
    assert "2 points, 1 done, 0 skipped, 1 failed" in done.stdout
    error = (out / "n_clusters=1001" / "error.txt").read_text()
    assert "should be >= n_clusters=1001" in error and error.strip() in done.stdout
    assert (out / "n_clusters=1001" / "log.txt").exists()
    assert not (out / "n_clusters=1001" / "results.json").exists()
    assert (out / "n_clusters=10" / "results.json").exists()
    grid = sweep.parse_grid(["n_clusters=1001,10"])
    points = sweep.plan(root / CHAPTER, "smoke", grid, {"dataset": "digits"}, out)
    assert [sweep.finished(p) for p in points] == [False, True]  # a rerun reruns only the failure


@pytest.mark.parametrize("grid, fragment", [
    (["--grid", "dataset=digits,imagenet"], "parameter 'dataset': must be one of digits, mnist5k"),
    (["--grid", "seed"], "parameter 'seed': expected name=v1,v2,..."),
    (["--grid", "learning_rate=0.1,0.2"], "parameter 'learning_rate': unknown parameter"),
])
def test_a_bad_grid_exits_2_with_one_line_before_anything_runs(root, tmp_path, grid, fragment):
    out = tmp_path / "sweep"
    done = sweep_cli(root, out, "--grid", "seed=0,1", *grid)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0]
    assert not out.exists()


def test_grid_values_are_read_as_run_reads_them_and_name_the_folders():
    grid = sweep.parse_grid(["seed=0,1", "dataset=digits,mnist5k", "label_fraction=0.02", "n_clusters=None"])
    assert grid == {"seed": [0, 1], "dataset": ["digits", "mnist5k"], "label_fraction": [0.02],
                    "n_clusters": [None]}
    assert sweep.point_name({"seed": 0, "dataset": "digits", "n_clusters": None}) == \
        "seed=0,dataset=digits,n_clusters=None"
    for bad in (["seed=0,0"], ["seed=0", "seed=1"], ["seed=0,"], ["=1"]):
        with pytest.raises(ParameterError):
            sweep.parse_grid(bad)


def test_a_point_runs_the_run_command_with_its_values(root, tmp_path):
    points = sweep.plan(root / CHAPTER, "smoke", sweep.parse_grid(["seed=0,1"]), {"dataset": "digits"},
                        tmp_path)
    assert [p.name for p in points] == ["seed=0", "seed=1"]
    command = sweep.run_command(points[1])
    assert command[2:5] == ["reprolib", "run", str(root / CHAPTER)]
    assert command[-6:] == ["-p", "dataset=digits", "-p", "seed=1", "--out", str(tmp_path / "seed=1")]


def test_another_request_in_a_point_folder_is_cleared_the_same_one_is_kept(root, tmp_path):
    point, = sweep.plan(root / CHAPTER, "smoke", sweep.parse_grid(["seed=0"]), {}, tmp_path)
    folder = tmp_path / "seed=0"
    sweep.prepare(point)
    (folder / "checkpoints").mkdir()
    sweep.prepare(point)  # same request: an interrupted run resumes from its checkpoints
    assert (folder / "checkpoints").exists()
    assert json.loads((folder / "request.json").read_text())["parameters"] == {"seed": 0}
    other, = sweep.plan(root / CHAPTER, "book", sweep.parse_grid(["seed=0"]), {}, tmp_path)
    sweep.prepare(other)  # another profile: nothing of the old request survives
    assert not (folder / "checkpoints").exists()
    assert not sweep.finished(other)


def test_the_error_line_is_the_runners_error_line():
    log = "$ python -m reprolib run ...\nerror: x.py failed: ValueError: bad\nthe executed notebook is in y\n"
    assert sweep.error_line(log, 1) == "error: x.py failed: ValueError: bad"
    assert sweep.error_line("Traceback ...\nKeyError: 'a'\n", 1) == "KeyError: 'a'"
    assert sweep.error_line("", 137) == "exit status 137"
