"""Parameter checks, profiles and the results.json schema."""
import json
import math

import pytest

from reprolib import params, results
from reprolib.data import load

DEFAULTS = {"profile": "book", "dataset": "mnist5k", "seed": 0, "n_clusters": None,
            "label_fraction": 0.02, "pretrain_epochs": None, "margin": 2.0, "output_dir": "runs/x"}


@pytest.mark.parametrize("name, value, fragment", [
    ("profile", "fast", "smoke, book, paper"),
    ("dataset", "imagenet", "mnist5k"),
    ("label_fraction", 1.5, "(0, 1]"),
    ("label_fraction", 0, "(0, 1]"),
    ("n_clusters", 1, ">= 2"),
    ("pretrain_epochs", -1, ">= 0"),
    ("seed", -3, ">= 0"),
    ("margin", "wide", "number"),
    ("lr", 0.1, "unknown parameter"),
])
def test_bad_parameters_name_the_parameter_and_what_is_allowed(name, value, fragment):
    with pytest.raises(params.ParameterError) as error:
        params.check({name: value}, DEFAULTS)
    assert f"'{name}'" in str(error.value) and fragment in str(error.value)


def test_good_parameters_pass():
    params.check({"profile": "smoke", "label_fraction": 1, "n_clusters": 12, "pretrain_epochs": 0,
                  "margin": 3}, DEFAULTS)


def test_resolve_fills_budgets_from_the_profile_and_keeps_overrides():
    budgets = {"smoke": {"epochs": 1}, "book": {"epochs": 20}, "paper": {"epochs": 100}}
    assert params.resolve("book", budgets).epochs == 20
    assert params.resolve("book", budgets, epochs=None).epochs == 20
    assert params.resolve("paper", budgets, epochs=7).epochs == 7
    with pytest.raises(params.ParameterError):
        params.resolve("huge", budgets)


def test_recorder_writes_the_documented_schema(tmp_path):
    ds = load("digits")
    record = results.Recorder("00_test", "smoke", {"seed": 0}, 0, ds, device="cpu")
    record.add("table", "k-means", "digits", "raw", "acc", 0.5, paper=0.6)
    record.headline("k-means", "acc", 0.5, setting="raw pixels")
    path = record.write(tmp_path)
    saved = json.loads(path.read_text())
    assert tuple(saved) == results.TOP_KEYS
    assert saved["dataset"]["checksum"] == ds.checksum
    assert saved["rows"][0]["paper_value"] == 0.6 and saved["rows"][1]["experiment"] == "headline"
    assert results.load(tmp_path)["chapter"] == "00_test"
    assert results.rows_frame(saved)["difference"].iloc[0] == pytest.approx(-0.1)


def test_records_without_a_headline_or_with_nan_are_refused(tmp_path):
    record = results.Recorder("00_test", "smoke", {}, 0, device="cpu")
    record.add("table", "m", "d", "", "acc", 0.5)
    with pytest.raises(ValueError, match="headline"):
        record.write(tmp_path)
    record.headline("m", "acc", math.nan)
    with pytest.raises(ValueError, match="not a number"):
        record.write(tmp_path)


def test_per_class_counts_are_positive_integers():
    from reprolib import params
    params.check({"samples_per_class": 60})
    for bad in (0, -3, 2.5, "60"):
        with pytest.raises(params.ParameterError, match="samples_per_class"):
            params.check({"samples_per_class": bad})


def test_seeds_stay_in_the_range_numpy_and_scikit_learn_accept():
    from reprolib import params
    params.check({"seed": 2**32 - 1})
    for bad in (-1, 2**32, 1.5):
        with pytest.raises(params.ParameterError, match="seed"):
            params.check({"seed": bad})


def test_shares_named_fraction_lie_in_the_unit_interval():
    params.check({"supervised_fraction": 0.2})
    params.check({"supervised_fraction": 1})
    for bad in (0, 1.5, -0.1, "half"):
        with pytest.raises(params.ParameterError, match="supervised_fraction.*\\(0, 1\\]"):
            params.check({"supervised_fraction": bad})


def test_a_supervision_level_outside_the_papers_four_is_refused_with_the_allowed_ones():
    for level in ("all", "none", "unsupervised", "parent", "supervised"):
        params.check({"supervision": level})
    with pytest.raises(params.ParameterError) as error:
        params.check({"supervision": "semi"})
    assert "'supervision'" in str(error.value) and "parent" in str(error.value)


def test_a_record_names_uncommitted_changes_with_their_diff(tmp_path):
    import subprocess

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    git("init", "-q")
    (tmp_path / "code.py").write_text("a = 1\n")
    git("add", "code.py")
    git("commit", "-qm", "one")
    clean = results.git_commit(tmp_path)
    assert clean is not None and len(clean) == 40 and "+" not in clean
    (tmp_path / "code.py").write_text("a = 2\n")
    dirty = results.git_commit(tmp_path)
    assert dirty.startswith(clean + "+dirty.") and len(dirty) == 40 + len("+dirty.") + 12
    (tmp_path / "code.py").write_text("a = 3\n")
    assert results.git_commit(tmp_path) != dirty  # another diff, another hash


def test_a_record_names_both_checkouts_when_reprolib_comes_from_another(tmp_path):
    import subprocess
    from pathlib import Path

    package_commit = results.git_commit()
    assert results.run_commit(Path(results.__file__).parent) == package_commit  # same checkout: one commit
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "notebook.py").write_text("x = 1\n")
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "notebook.py"], cwd=tmp_path, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one"], cwd=tmp_path, check=True)
    recorded = results.run_commit(tmp_path)
    assert recorded.startswith(results.git_commit(tmp_path))
    if package_commit is not None:  # reprolib is in a git checkout (not an installed wheel)
        assert recorded.endswith("+reprolib." + package_commit)


def test_outside_any_checkout_the_record_names_the_commit_the_caller_gives(tmp_path, monkeypatch):
    # A copy of the tree sent to a lent GPU machine has no .git: the caller names the commit.
    monkeypatch.setattr(results, "git_commit", lambda path=None: None)
    monkeypatch.delenv("REPROLIB_GIT_COMMIT", raising=False)
    assert results.run_commit(tmp_path) is None
    monkeypatch.setenv("REPROLIB_GIT_COMMIT", "0123abc")
    assert results.run_commit(tmp_path) == "0123abc"


@pytest.mark.parametrize("name", params.PROFILE_SWITCHES)
@pytest.mark.parametrize("value", [1, 0, "maybe"])
def test_a_profile_switch_takes_only_true_false_or_none(name, value):
    for good in (True, False, None):
        params.check({name: good})
    with pytest.raises(params.ParameterError) as error:
        params.check({name: value})
    assert f"'{name}'" in str(error.value) and "True, False or None" in str(error.value)


def test_committed_variants_finds_a_run_and_its_variants_and_skips_empty_folders(tmp_path):
    for folder, value in (("side", 0.5), ("side-avx2", 0.6), ("side-fp32", 0.7)):
        record = results.Recorder("00_test", "book", {"seed": 0}, 0, device="cpu")
        record.headline("k-means", "acc", value, setting="raw pixels")
        record.write(tmp_path / folder / "seed=0")
    (tmp_path / "side-empty").mkdir()
    (tmp_path / "sidebar").mkdir()   # another name, not a variant
    runs = results.committed_variants(tmp_path, "side")
    assert list(runs) == ["side", "side-avx2", "side-fp32"]
    assert [results.headline(run)["value"] for run in runs.values()] == [0.5, 0.6, 0.7]
    assert results.committed_variants(tmp_path, "missing") == {}
