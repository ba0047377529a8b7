"""Run records: every number the book shows comes from a ``results.json`` written by a run.

Schema (version 1) of ``results.json``::

    {
      "schema_version": 1,
      "chapter": "01_clusternet",          # the notebook's stem
      "profile": "book",                   # smoke | book | paper
      "parameters": {...},                 # every parameter the chapter ran with
      "seed": 0,
      "dataset": {"name": "mnist5k", "checksum": "sha256:...", "source": "..."},
      "rows": [                            # one row per reported number
        {"experiment": "table5", "method": "ClusterNet", "dataset": "mnist5k",
         "setting": "labels=2%, held-out", "metric": "acc", "value": 0.97,
         "paper_value": 0.9838}            # null where the paper reports none
      ],
      "wall_clock_seconds": 123.4,
      "device": "cpu (2 threads)",
      "versions": {"python": "3.11.7", "torch": "...", ...},
      "git_commit": "abc123...",           # null outside a git checkout; "+dirty.<diff hash>"
                                           # appended when tracked files had uncommitted changes
      "created_at": "2026-11-23T10:00:00+00:00"
    }

Every chapter writes one row with ``experiment == "headline"``: its main result at the
parameters it ran with. :func:`validate` checks a record against this schema.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
ROW_KEYS = ("experiment", "method", "dataset", "setting", "metric", "value", "paper_value")
TOP_KEYS = ("schema_version", "chapter", "profile", "parameters", "seed", "dataset", "rows",
            "wall_clock_seconds", "device", "versions", "git_commit", "created_at")
RESULTS_FILE = "results.json"


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries a result depends on."""
    import numpy
    import scipy
    import sklearn
    import torch
    import torchvision
    return {"python": platform.python_version(), "numpy": numpy.__version__,
            "scipy": scipy.__version__, "scikit-learn": sklearn.__version__,
            "torch": torch.__version__, "torchvision": torchvision.__version__}


def git_commit(path: Path | None = None) -> str | None:
    """The commit of the checkout holding `path` (this package by default), or None.

    A tree with uncommitted changes to tracked files gives ``<commit>+dirty.<hash>``, the hash
    being the first 12 hex digits of the SHA-256 of ``git diff HEAD``: a record never claims a
    commit whose code it did not run."""
    path = path or Path(__file__).resolve().parent
    commit = (_git(path, "rev-parse", "HEAD") or "").strip()
    diff = _git(path, "diff", "HEAD") if commit else None
    if not commit or diff is None:
        return None
    if diff:
        commit += "+dirty." + hashlib.sha256(diff.encode()).hexdigest()[:12]
    return commit


def run_commit(notebook_dir: Path | None = None) -> str | None:
    """The commit a run's code comes from: the checkout holding the notebook (the working directory
    by default), with ``+reprolib.<commit>`` appended when reprolib is imported from another
    checkout (a shared or installed environment), so a record names both pieces of code it ran.
    Outside any git checkout (a copy of the tree sent to a lent GPU machine has no ``.git``) it is
    the commit the caller names in the environment variable ``REPROLIB_GIT_COMMIT``, or None."""
    notebook_dir = Path(notebook_dir or Path.cwd()).resolve()
    here, package = git_commit(notebook_dir), git_commit()
    if here is None and package is None:
        return os.environ.get("REPROLIB_GIT_COMMIT") or None
    same_checkout = (_git(notebook_dir, "rev-parse", "--show-toplevel")
                     == _git(Path(__file__).resolve().parent, "rev-parse", "--show-toplevel"))
    if here is None or package is None or same_checkout:
        return here or package
    return f"{here}+reprolib.{package}"


def _git(path: Path, *args: str) -> str | None:
    """The output of `git <args>` run in `path`, as git wrote it; None outside a git checkout."""
    try:
        return subprocess.run(["git", *args], cwd=path, capture_output=True, text=True, timeout=30,
                              check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def _plain(value: Any) -> Any:
    """JSON-friendly Python values (NumPy and torch scalars become floats and ints)."""
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Recorder:
    """Collects the rows of one run and writes ``results.json``.

    Create it right after the parameters are checked (its clock starts then)::

        record = Recorder("01_clusternet", profile, params, seed, dataset)
        record.add("table5", "ClusterNet", "mnist5k", "labels=2%", "acc", 0.97, paper=0.9838)
        record.headline("ClusterNet", "acc", 0.97, setting="labels=2%, unlabelled train data")
        record.write(output_dir)
    """

    def __init__(self, chapter: str, profile: str, parameters: dict, seed: int, dataset=None,
                 device: str | None = None):
        self.started = time.perf_counter()
        self.chapter, self.profile, self.seed = chapter, profile, int(seed)
        self.parameters = {k: _plain(v) for k, v in parameters.items()}
        self.dataset = None
        if dataset is not None:
            self.dataset = {"name": dataset.name, "checksum": dataset.checksum, "source": dataset.source}
        if device is None:
            from .device import describe_device
            device = describe_device()
        self.device = device
        self.git_commit = run_commit()  # the code the run starts from, not HEAD when it ends
        self.rows: list[dict] = []

    def add(self, experiment: str, method: str, dataset: str, setting: str, metric: str,
            value: float, paper: float | None = None) -> dict:
        """Record one number (and the paper's value for it, where the paper reports one)."""
        row = {"experiment": experiment, "method": method, "dataset": dataset, "setting": setting,
               "metric": metric, "value": _plain(float(value)),
               "paper_value": None if paper is None else _plain(float(paper))}
        self.rows.append(row)
        return row

    def headline(self, method: str, metric: str, value: float, setting: str = "",
                 paper: float | None = None) -> dict:
        """The chapter's main result at the parameters it ran with."""
        dataset = self.dataset["name"] if self.dataset else ""
        return self.add("headline", method, dataset, setting, metric, value, paper)

    def to_dict(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "chapter": self.chapter,
            "profile": self.profile,
            "parameters": self.parameters,
            "seed": self.seed,
            "dataset": self.dataset,
            "rows": self.rows,
            "wall_clock_seconds": round(time.perf_counter() - self.started, 3),
            "device": self.device,
            "versions": library_versions(),
            "git_commit": self.git_commit,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    def write(self, output_dir: str | os.PathLike) -> Path:
        """Validate and write ``output_dir/results.json`` atomically; returns its path."""
        record = self.to_dict()
        validate(record)
        path = Path(output_dir) / RESULTS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, path)
        return path


def validate(record: dict) -> None:
    """Raise ValueError if `record` does not follow the schema above."""
    missing = [k for k in TOP_KEYS if k not in record]
    if missing:
        raise ValueError(f"results record lacks {', '.join(missing)}")
    if record["schema_version"] != SCHEMA_VERSION:
        raise ValueError(f"schema_version {record['schema_version']} is not {SCHEMA_VERSION}")
    if not isinstance(record["rows"], list) or not record["rows"]:
        raise ValueError("results record has no rows")
    for row in record["rows"]:
        if tuple(row) != ROW_KEYS:
            raise ValueError(f"row keys {tuple(row)} are not {ROW_KEYS}")
        if not isinstance(row["value"], (int, float)) or isinstance(row["value"], bool):
            raise ValueError(f"row value {row['value']!r} is not a number: {row}")
    if not any(row["experiment"] == "headline" for row in record["rows"]):
        raise ValueError("results record has no 'headline' row")


def load(path: str | os.PathLike) -> dict:
    """Read and validate a results.json (a file, or a folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    record = json.loads(path.read_text())
    validate(record)
    return record


def rows_frame(record: dict):
    """The rows of a record as a pandas DataFrame, with the difference to the paper."""
    import pandas as pd
    frame = pd.DataFrame(record["rows"], columns=list(ROW_KEYS))
    frame["difference"] = frame["value"] - frame["paper_value"]
    return frame


def load_committed(folder: str | os.PathLike) -> dict | None:
    """The one record under `folder` (a committed run a chapter shows in place of cells its `book`
    build skips, e.g. ``results/04_kingdra/book-side-experiments``); None where the folder has none."""
    paths = sorted(Path(folder).rglob(RESULTS_FILE))
    return load(paths[0]) if paths else None


def committed_variants(reference_dir: str | os.PathLike, name: str) -> dict[str, dict]:
    """The committed runs `name` and `name-*` under `reference_dir` (folder name -> record), e.g.
    ``book-side-experiments`` and ``book-side-experiments-avx2``: one run of the same command per
    machine kind or arithmetic whose floating-point sums differ, so that a build can show the one
    that trained what it trained. `name` itself comes first; folders without a record are left out."""
    folders = sorted(Path(reference_dir).glob(f"{name}-*"))
    found = {folder.name: load_committed(folder) for folder in [Path(reference_dir) / name, *folders]}
    return {folder: record for folder, record in found.items() if record is not None}


def provenance(record: dict) -> str:
    """Where a committed record's numbers come from, in words: profile, dataset, seed and code."""
    return (f"{record['profile']} profile, {record['dataset']['name']}, seed {record['seed']}, "
            f"code {(record['git_commit'] or 'unknown')[:7]}")


def headline(record: dict) -> dict:
    """The record's headline row."""
    return next(row for row in record["rows"] if row["experiment"] == "headline")
