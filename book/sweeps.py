# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Running sweeps
#
# The papers' tables are means over seeds, label budgets, datasets and ablation settings: many
# independent runs of one chapter, each minutes to hours on a GPU. `python -m reprolib sweep` runs a
# chapter over a grid of parameters, on one machine or on a [Ray](https://docs.ray.io) cluster,
# and `python -m reprolib collect` turns the runs into one table.#
# ## One command per grid
#
# ```bash
# .venv/bin/python -m reprolib sweep notebooks/00_evaluation.py --profile smoke \
#     --grid seed=0,1 --grid dataset=digits,mnist5k --out runs/sweep-smoke
# .venv/bin/python -m reprolib collect runs/sweep-smoke
# ```
#
# Each `--grid name=v1,v2,...` lists the values of one parameter; the grid is the product of all
# of them (here 2 x 2 = 4 points), and `-p name=value` fixes a parameter for every point. Every point
# is one `python -m reprolib run` of the chapter, so it runs exactly as a single run does, in its
# own folder named by its grid values:
#
# ```text
# runs/sweep-smoke/
#     seed=0,dataset=digits/    request.json  log.txt  00_evaluation.ipynb  results.json
#     seed=0,dataset=mnist5k/   ...
#     seed=1,dataset=digits/    ...
#     seed=1,dataset=mnist5k/   ...
#     collected.csv             (written by collect)
# ```
#
# `request.json` is what the point asked for, `log.txt` the run's output, and a point that failed
# has an `error.txt` with its error line. The whole grid is checked against the chapter's
# parameters cell before anything runs: a bad name or value stops the sweep with status 2 and the
# same line `reprolib run` prints.
#
# ## Nothing is lost
#
# * **Rerun the same command** to finish a sweep. A point whose `results.json` matches its request
#   is skipped; an interrupted point resumes from its checkpoints, as a single run does; a failed
#   point runs again. A folder holding another request (another profile or other `-p` values) is
#   cleared first, so no run resumes from another run's checkpoints.
# * **A failing point does not stop the others.** Its error line goes to `error.txt`; the sweep
#   ends with a summary of done, skipped and failed points and their folders, and exits with
#   status 1 if any point failed. A progress bar counts finished points.
# * **On Ray, a lost machine is retried**: Ray reruns a task whose worker or node died (up to three
#   times, Ray's default), and the rerun resumes from the point's checkpoints.
#
# ## One machine, a GPU box, a cluster
#
# The two engines share everything but how points are submitted, and give every run
# `OMP_NUM_THREADS` equal to `--cpus-per-run` (default 1), so a point computes the same numbers on
# either one; the tests check that a 2 x 2 grid gives identical collected tables on both.
#
# `--engine local` (the default) is a process pool on this machine, `--workers` points at a time
# (default: the number of cores divided by `--cpus-per-run`). Every run sees the machine's first
# GPU, if it has one.
#
# `--engine ray` submits one Ray task per point. A task asks Ray for `--cpus-per-run` CPUs and
# `--gpus-per-run` GPUs; the default is one GPU when the Ray cluster has a GPU
# (`ray.cluster_resources()`), else none. Ray gives each task its own GPU and starts a point when
# its resources are free. Use `--gpus-per-run 0` to keep CPU-sized runs (the smoke profile) off the
# GPUs, or `0.5` to put two runs on each GPU. Ray is an optional extra
# (`pip install -e ".[sweep]"`; `make setup` installs it).
#
# ```bash
# # one machine, no Ray: 2 points at a time
# .venv/bin/python -m reprolib sweep notebooks/01_clusternet.py --profile book \
#     --grid seed=0,1,2,3 --out runs/ch1-book --workers 2
#
# # a GPU box: one Ray instance for all its GPUs, one point per GPU
# .venv/bin/ray start --head
# .venv/bin/python -m reprolib sweep notebooks/01_clusternet.py --profile paper \
#     --grid seed=0,1,2,3,4 -p n_runs=1 --out runs/ch1-paper --engine ray --address auto
#
# # a cluster: the same, from the head node, with the cluster's address
# .venv/bin/python -m reprolib sweep notebooks/01_clusternet.py --profile paper \
#     --grid seed=0,1,2,3,4 -p n_runs=1 --out /shared/ch1-paper --engine ray --address HEAD:6379
# ```
#
# Without `--address`, `--engine ray` starts a local Ray instance for the sweep and stops it after
# (with `--workers` x `--cpus-per-run` CPUs when `--workers` is given). On a cluster, every node
# needs the repository and its `.venv` at the same path, and `--out` must be on a filesystem every
# node shares: each point writes its folder where it runs, and the rerun and `collect` read them
# on the head node.
#
# ## One table back
#
# `python -m reprolib collect DIR` gathers every `results.json` under DIR into `DIR/collected.csv`
# (or `--csv FILE`): one row per metric row of every run, with the run's folder, chapter, profile,
# and as columns the parameters that differ between the runs, plus `seed`. A grid parameter whose
# name is also a row key is written `dataset (parameter)`, beside the row's own `dataset`. It
# then prints, per setting, the mean and standard deviation of each number over seeds, the number
# of runs, and the paper's value and the difference where the rows carry one, followed by the
# runs and mean minutes per run (the records' `wall_clock_seconds`) per chapter, profile and
# device.
#
# A chapter reads a committed sweep the way it reads a single reference run: a sweep's folder
# copied under `results/<chapter>/` (without checkpoints) is read by
# `reprolib.sweep.collect_frame(path)` into the same table, and `reprolib.sweep.summarise` gives
# the means and standard deviations over seeds.
# %% [markdown]
# ## The paper-profile workload
#
# Regenerating every paper table means running each chapter's paper profile over its grid. The
# table below is computed each time the page runs: one group of rows per chapter of the table of
# contents, with its paper-profile grid (`PAPER_GRIDS` in the next cell, checked against the
# chapter's parameters cell as `sweep` checks it), the number of runs that grid makes, and every
# record committed under `results/<chapter>/`: its folder, profile, device, the `-p` values it was
# run with (from the `request.json` a sweep writes beside it, or the `COMMAND` file committed with
# it), and its minutes per run, the record's `wall_clock_seconds` (from the moment the chapter
# creates its `reprolib.results.Recorder`, after its imports, to its `results.json`; starting the
# kernel and importing the libraries are not counted). Only a record at the `paper` profile whose
# `-p` values leave the chapter's experiments on times a point of the grid; the others say what a
# smaller run costs.

# %% tags=["remove-cell"]
import sys
if "google.colab" in sys.modules:  # on Colab: install reprolib (and its dependencies) from the repository
    import subprocess
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "reprolib @ git+https://github.com/deep-clustering-reproduced/book@main"], check=True)

# %% tags=["parameters"]
profile = "book"  # smoke | book | paper (this page is the same at every profile)
output_dir = "runs/sweeps"  # results.json goes here (set by python -m reprolib run --out)

# %%
import itertools
import json
import shlex
import tempfile
from pathlib import Path

import pandas as pd
from IPython.display import display

from reprolib import book, params, report, results
from reprolib.runner import parse_assignments
from reprolib.sweep import REQUEST_FILE, parse_grid, plan

params.check({"profile": profile})
record = results.Recorder("sweeps", profile, {"profile": profile}, seed=0)

# the repository: this page runs from book/ (papermill's cwd), or from the repository's root
ROOT = next((folder for folder in (Path.cwd().parent, Path.cwd(), book.ROOT)
             if (folder / "_toc.yml").exists() and (folder / "results").is_dir()), None)
if ROOT is None:
    raise FileNotFoundError("this page reads the repository's _toc.yml and results/: run it in a clone "
                            "of https://github.com/deep-clustering-reproduced/book (from its book/ folder)")

# %%
#: The sweep that regenerates a chapter's tables: the flags after `sweep notebooks/<chapter>.py --profile paper`.
PAPER_GRIDS = {
    "00_evaluation": "--grid dataset=digits,mnist5k,fashion-mnist",
    "01_clusternet": "--grid dataset=mnist,mnist5k --grid seed=0,1,2,3,4 -p n_runs=1",
    "02_dcae": "--grid dataset=mnist,fashion-mnist,usps,svhn --grid seed=0,1,2",
    "03_hsu_kira": "--grid seed=0,1,2,3,4 -p n_restarts=1",
    "04_kingdra": "--grid seed=0,1,2,3,4",
}

# %% tags=["hide-input"]
def grid_points(source: Path, flags: str) -> int:
    """The number of runs of `flags` (``--grid`` and ``-p`` options), every point checked as ``sweep`` does."""
    tokens = shlex.split(flags)
    grid = parse_grid([value for option, value in zip(tokens, tokens[1:]) if option == "--grid"])
    fixed = parse_assignments([value for option, value in zip(tokens, tokens[1:]) if option == "-p"])
    if source.exists():
        with tempfile.TemporaryDirectory() as tmp:
            return len(plan(source, "paper", grid, fixed, Path(tmp)))
    return len(list(itertools.product(*grid.values())))


def command_values(folder: Path) -> str:
    """The -p values a committed run was made with: its request.json (a sweep's point), else its COMMAND."""
    if (folder / REQUEST_FILE).exists():
        values = json.loads((folder / REQUEST_FILE).read_text())["parameters"]
        return " ".join(f"{name}={value}" for name, value in values.items()) or "none"
    if (folder / "COMMAND").exists():
        lines = [line for line in (folder / "COMMAND").read_text().replace("\\\n", " ").splitlines()
                 if "reprolib" in line and not line.lstrip().startswith("#")]
        if lines:
            tokens = shlex.split(lines[0])
            return " ".join(value for option, value in zip(tokens, tokens[1:]) if option == "-p") or "none"
    return "not recorded"


rows = []
for source in book.chapters(ROOT):
    chapter = source.stem
    flags = PAPER_GRIDS.get(chapter, "no grid on this page yet")
    points = grid_points(source, flags) if chapter in PAPER_GRIDS else None
    if points is not None:
        record.add("workload", chapter, "", flags, "grid_points", points)
    group = {"chapter": chapter, "grid (with --profile paper)": flags, "runs": "" if points is None else points}
    folder = ROOT / "results" / chapter
    paths = sorted(folder.rglob(results.RESULTS_FILE)) if folder.is_dir() else []
    if not paths:
        rows.append({**group, "record": "no committed run yet"})
    for path in paths:
        run = results.load(path)
        minutes = run["wall_clock_seconds"] / 60
        name = path.parent.relative_to(folder).as_posix()
        record.add("workload", chapter, run["dataset"]["name"] if run["dataset"] else "",
                   f"{name} ({run['profile']}, {run['device']})", "minutes_per_run", minutes)
        rows.append({**group, "record": f"results/{chapter}/{name}", "profile": run["profile"],
                     "device": run["device"], "-p values": command_values(path.parent),
                     "minutes per run": minutes})

workload = pd.DataFrame(rows, columns=["chapter", "grid (with --profile paper)", "runs", "record", "profile",
                                       "device", "-p values", "minutes per run"])
committed = workload.dropna(subset=["device"])
n_gpu_runs = int((~committed["device"].str.startswith("cpu")).sum())
record.headline("committed records", "gpu_runs", n_gpu_runs,
                setting=f"records made on a GPU, of {len(committed)} committed under results/")
report.glue("n_records", len(committed))
report.glue("n_gpu_runs", n_gpu_runs)

shown = workload.astype(object).assign(**{"minutes per run": workload["minutes per run"].map(
    lambda minutes: "" if pd.isna(minutes) else f"{minutes:.1f}")}).fillna("")
with pd.option_context("display.max_colwidth", None):
    display(shown.set_index(["chapter", "grid (with --profile paper)", "runs", "record"]))
print(f"GPU runs committed: {n_gpu_runs} (of {len(committed)} committed records)")

# %% [markdown]
# Of the {glue:text}`n_records` committed records, {glue:text}`n_gpu_runs` ran on a GPU (a
# `device` other than `cpu (...)`). A GPU's minutes per run appear here once a record made on one
# is committed, its device named in it.
#
# {doc}`Chapter 0 <../notebooks/00_evaluation>` has no paper table of its own (every `paper_value` is empty); its grid gives the
# k-means baselines that later chapters compare with, on the datasets available offline. For
# {doc}`Chapter 1 <../notebooks/01_clusternet>`, one paper-profile run regenerates Table 3 (MNIST row), Table 5, Table 6 and
# Fig. 5 for one dataset and one labelled split per label fraction; the grid spreads the paper's
# five splits over five seeds, so `collect` prints Table 5's mean and standard deviation over
# them. `mnist` (the full 70,000 digits, as in the paper) is downloaded by torchvision where the
# network allows; `mnist5k` runs offline. Table 4 (faces) is not reproduced (see the chapter).
# For {doc}`Chapter 3 <../notebooks/03_hsu_kira>`, one paper-profile run regenerates Table 1 and Figures 3-6 on one dataset
# (`mnist5k` unless `-p dataset=...`; add `-p dataset=cifar10` where torchvision can download it,
# on Colab for instance). The grid runs five seeds with one restart each, so `collect` gives the
# mean and standard deviation over seeds; the paper keeps the best of five restarts per setting,
# which is what one run without `-p n_restarts=1` does.
#
# How the table grows: a chapter gets its group when it joins the table of contents, with its
# grid once `PAPER_GRIDS` names it, and a record when a run's folder is committed under
# `results/<chapter>/` (a single run with its `COMMAND`, or a sweep's folder without checkpoints).
# `python -m reprolib collect results/NN_<key> --csv /tmp/table.csv` prints the same runs and
# minutes per run per chapter, profile and device.

# %%
record.write(output_dir)
