"""``python -m reprolib sweep`` and ``python -m reprolib collect``: a chapter over a grid.

``sweep NOTEBOOK --profile P --grid name=v1,v2 [--grid ...] [-p name=value ...] --out DIR``
runs every point of the grid (the Cartesian product of the ``--grid`` options, first option
varying slowest) as one ``python -m reprolib run`` process, so a point is exactly the run that
command makes. Each point gets its own folder ``DIR/<name=value,name=value>`` (grid parameters in
the order given) holding:

* ``request.json``: the notebook, profile and parameters asked for;
* ``log.txt``: the run's stdout and stderr;
* the executed notebook and ``results.json`` (schema in :mod:`reprolib.results`);
* ``error.txt``: the run's error line, when it failed;
* whatever the chapter keeps there (checkpoints).

The whole grid is checked with :func:`reprolib.params.check` against the notebook's parameters
cell before anything runs, so a bad name or value exits with status 2 and the line ``run`` prints.

Nothing is lost. Rerunning the same command skips every point whose ``results.json`` matches its
request, and reruns the others in place: an interrupted point resumes from its checkpoints (the
chapters do that), a failed one starts again. A point whose folder holds another request (another
profile or other ``-p`` values) is cleared first, so it never resumes another request's
checkpoints. A failing point is recorded (``error.txt``) while the others go on; the summary
lists done, skipped and failed points, and the status is 1 if any failed.

Engines differ only in how the points are submitted (:data:`ENGINES`); each point runs
:func:`run_point` in a worker process either way:

* ``local``: a process pool of ``--workers`` processes on this machine;
* ``ray``: one Ray task per point, asking Ray for ``--cpus-per-run`` CPUs and ``--gpus-per-run``
  GPUs. Without ``--address`` a fresh local Ray instance is started; ``--address auto`` joins one
  started with ``ray start --head``, ``--address HOST:PORT`` a cluster.

Every run gets ``OMP_NUM_THREADS=--cpus-per-run`` on both engines (Ray sets it for its tasks too),
so a point computes the same thing whichever engine ran it.

``collect DIR`` gathers every ``results.json`` under DIR into one CSV (:func:`collect_frame`) and
prints mean and standard deviation over seeds per setting beside the paper's value
(:func:`summarise`), and the runs and minutes per run (:func:`workload`).
"""
from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from . import params as P
from .results import RESULTS_FILE, ROW_KEYS, load as load_results
from .runner import EXIT_BAD_PARAMETER, chapter_defaults, parse_assignments, parse_value

REQUEST_FILE, LOG_FILE, ERROR_FILE = "request.json", "log.txt", "error.txt"
COLLECTED_FILE = "collected.csv"
#: Columns of the collected table that describe a run, not its results (left out of comparisons).
RUN_COLUMNS = ("wall_clock_seconds", "device")
#: Columns of the collected table that name the run a row came from.
ID_COLUMNS = ("point", "chapter", "profile")


@dataclass
class Point:
    """One grid point: ``python -m reprolib run notebook --profile profile -p ... --out folder``."""
    name: str  # the folder name, e.g. "seed=0,dataset=digits"
    notebook: str  # absolute path of the chapter's .py
    profile: str
    values: dict  # -p values, then this point's grid values
    folder: str  # absolute path of DIR/name
    cpus: int  # threads the run may use (OMP_NUM_THREADS)


@dataclass
class Outcome:
    """What became of a point: done, skipped or failed (with its error line)."""
    point: Point
    status: str
    seconds: float = 0.0
    error: str = ""


@dataclass
class EngineSettings:
    """How points are submitted: the engine's own options from the command line."""
    workers: int | None = None
    address: str | None = None
    cpus_per_run: int = 1
    gpus_per_run: float | None = None


# --- the grid ----------------------------------------------------------------------------------

def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """``--grid name=v1,v2,...`` options as {name: [values]}, values read as ``-p`` reads them."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        pieces = [piece.strip() for piece in text.split(",")]
        if not sep or not name or not all(pieces):
            raise P.ParameterError(item, "expected name=v1,v2,... (values separated by commas)")
        if name in grid:
            raise P.ParameterError(name, "given to --grid twice")
        values = [parse_value(piece) for piece in pieces]
        if len({repr(v) for v in values}) < len(values):
            raise P.ParameterError(name, f"a value is listed twice in --grid {item}")
        grid[name] = values
    return grid


def point_name(grid_values: dict[str, Any]) -> str:
    """The folder of a point: ``name=value`` pairs in grid order, joined by commas."""
    text = ",".join(f"{name}={_text(value)}" for name, value in grid_values.items())
    return re.sub(r"[^A-Za-z0-9._=,+-]", "-", text)


def _text(value: Any) -> str:
    """A value as ``-p`` takes it: strings bare when they read back as themselves, else repr."""
    if isinstance(value, str) and parse_value(value) == value:
        return value
    return repr(value)


def plan(notebook: Path, profile: str, grid: dict[str, list], fixed: dict[str, Any], out: Path,
         cpus: int = 1) -> list[Point]:
    """Every point of the grid, each checked like ``run`` checks its parameters.

    Raises :class:`reprolib.params.ParameterError` for the first bad name or value, before
    anything runs.
    """
    both = sorted(set(grid) & set(fixed))
    if both:
        raise P.ParameterError(both[0], "given both to --grid and to -p")
    defaults = chapter_defaults(notebook)
    points = []
    for combination in itertools.product(*grid.values()):
        grid_values = dict(zip(grid, combination))
        values = {**fixed, **grid_values}
        P.check({"profile": profile, **values}, defaults)
        name = point_name(grid_values)
        points.append(Point(name, str(notebook.resolve()), profile, values,
                            str((out / name).resolve()), cpus))
    return points


# --- one point ---------------------------------------------------------------------------------

def request(point: Point) -> dict:
    """What a point asks for, as stored in its ``request.json``."""
    return json.loads(json.dumps({"notebook": Path(point.notebook).name, "profile": point.profile,
                                  "parameters": point.values}))


def _stored_request(folder: Path) -> dict | None:
    try:
        return json.loads((folder / REQUEST_FILE).read_text())
    except (OSError, ValueError):
        return None


def finished(point: Point) -> bool:
    """True when the point's folder holds a valid results.json of this very request.

    The record must agree with every value asked for (None asks for the profile's value, so any
    recorded value agrees with it), and the stored request must be this one.
    """
    folder = Path(point.folder)
    try:
        record = load_results(folder / RESULTS_FILE)
    except (OSError, ValueError):
        return False
    wanted = request(point)
    recorded = json.loads(json.dumps(record["parameters"]))
    agrees = all(value is None or recorded.get(name, value) == value
                 for name, value in wanted["parameters"].items())
    return record["profile"] == point.profile and agrees and _stored_request(folder) == wanted


def prepare(point: Point) -> None:
    """Make a point's folder ready to run: the same request resumes in place (checkpoints kept),
    another request's folder is cleared; stale results and errors are removed."""
    folder = Path(point.folder)
    stored = _stored_request(folder)
    if stored is not None and stored != request(point):
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in (RESULTS_FILE, ERROR_FILE):
        (folder / stale).unlink(missing_ok=True)
    (folder / REQUEST_FILE).write_text(json.dumps(request(point), indent=2) + "\n")


def run_command(point: Point) -> list[str]:
    """The ``python -m reprolib run`` command line of a point."""
    flags = [part for name, value in point.values.items() for part in ("-p", f"{name}={_text(value)}")]
    return [sys.executable, "-m", "reprolib", "run", point.notebook, "--profile", point.profile,
            *flags, "--out", point.folder]


def error_line(log: str, status: int) -> str:
    """The line that says why a run failed: its last ``error:`` line, else its last line."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    if errors:
        return errors[-1]
    return lines[-1] if lines else f"exit status {status}"


def run_point(point: Point) -> Outcome:
    """Run one point in a ``python -m reprolib run`` process, its output in ``log.txt``.

    Runs in an engine's worker process (a pool process or a Ray task); never raises for a
    failing run: the outcome carries the error line, which is also written to ``error.txt``.
    """
    folder = Path(point.folder)
    command = run_command(point)
    environment = {**os.environ, "OMP_NUM_THREADS": str(point.cpus)}
    started = time.perf_counter()
    with open(folder / LOG_FILE, "w") as log:
        log.write(f"$ {shlex.join(command)}\n")
        log.flush()
        status = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                                env=environment).returncode
    seconds = time.perf_counter() - started
    if status == 0:
        return Outcome(point, "done", seconds)
    return failed(point, error_line((folder / LOG_FILE).read_text(errors="replace"), status), seconds)


def failed(point: Point, error: str, seconds: float = 0.0) -> Outcome:
    """A failed outcome, its error line written to the point's ``error.txt``."""
    error = error.splitlines()[0] if error.strip() else "failed"
    try:
        (Path(point.folder) / ERROR_FILE).write_text(error + "\n")
    except OSError:
        pass
    return Outcome(point, "failed", seconds, error)


def _outcome(point: Point, result: Callable[[], Outcome]) -> Outcome:
    """An engine's result for a point, or a failed outcome if the engine itself raised."""
    try:
        return result()
    except Exception as error:  # a worker that died, a Ray task that could not run
        return failed(point, f"{type(error).__name__}: {error}")


# --- engines: everything above is shared, only the submission differs -------------------------

def local_engine(points: list[Point], settings: EngineSettings) -> Iterator[Outcome]:
    """A process pool on this machine: ``workers`` points at a time (default: CPU cores / cpus)."""
    workers = settings.workers or max(1, (os.cpu_count() or 1) // settings.cpus_per_run)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(run_point, point): point for point in points}
        for future in as_completed(futures):
            yield _outcome(futures[future], future.result)


def start_ray(settings: EngineSettings):
    """Join the Ray cluster at ``address``, or start a local instance of ``workers`` runs' CPUs."""
    import ray
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": "WARNING"}
    if settings.address:
        ray.init(address=settings.address, **quiet)
    else:
        cpus = settings.workers * settings.cpus_per_run if settings.workers else None
        ray.init(address="local", num_cpus=cpus, **quiet)
    return ray


def gpus_per_run(ray, settings: EngineSettings) -> float:
    """GPUs a run asks for: ``--gpus-per-run`` if given, else 1 when the cluster has a GPU."""
    if settings.gpus_per_run is not None:
        return settings.gpus_per_run
    return 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0


def ray_engine(points: list[Point], settings: EngineSettings) -> Iterator[Outcome]:
    """One Ray task per point; Ray places it where its CPUs (and GPU) are free."""
    ray = start_ray(settings)
    try:
        gpus = gpus_per_run(ray, settings)
        resources = ray.cluster_resources()
        print(f"ray: cluster of {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs; "
              f"each run asks for {settings.cpus_per_run} CPU and {gpus:g} GPU", file=sys.stderr)
        task = ray.remote(run_point).options(num_cpus=settings.cpus_per_run, num_gpus=gpus)
        pending = {task.remote(point): point for point in points}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            point = pending.pop(ready[0])
            yield _outcome(point, lambda: ray.get(ready[0]))
    finally:
        ray.shutdown()


ENGINES: dict[str, Callable[[list[Point], EngineSettings], Iterator[Outcome]]] = {
    "local": local_engine, "ray": ray_engine}


# --- the sweep ---------------------------------------------------------------------------------

def run_sweep(points: list[Point], engine: str, settings: EngineSettings) -> list[Outcome]:
    """Skip finished points, run the others on `engine` with a progress bar; outcomes in grid order."""
    from tqdm import tqdm
    outcomes = {point.name: Outcome(point, "skipped") for point in points if finished(point)}
    to_run = [point for point in points if point.name not in outcomes]
    for point in to_run:
        prepare(point)
    with tqdm(total=len(points), initial=len(outcomes), unit="point", desc="sweep",
              file=sys.stderr) as bar:
        if to_run:
            for outcome in ENGINES[engine](to_run, settings):
                outcomes[outcome.point.name] = outcome
                bar.update(1)
                bar.set_postfix(failed=sum(o.status == "failed" for o in outcomes.values()))
    return [outcomes[point.name] for point in points]


def _shown(path: str) -> str:
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def summary(outcomes: list[Outcome], seconds: float) -> str:
    """Counts of done, skipped and failed points, then one line per point with its folder."""
    counts = {status: sum(o.status == status for o in outcomes) for status in ("done", "skipped", "failed")}
    lines = [f"sweep: {len(outcomes)} points, {counts['done']} done, {counts['skipped']} skipped, "
             f"{counts['failed']} failed in {seconds:.0f} s"]
    for outcome in outcomes:
        line = f"  {outcome.status:<8} {_shown(outcome.point.folder)}"
        if outcome.status == "done":
            line += f" ({outcome.seconds:.0f} s)"
        if outcome.status == "failed":
            line += f": {outcome.error} (log: {_shown(str(Path(outcome.point.folder) / LOG_FILE))})"
        lines.append(line)
    return "\n".join(lines)


def engine_problem(args) -> str | None:
    """Why the engine options cannot work, or None."""
    if args.address and args.engine != "ray":
        return "--address needs --engine ray"
    if args.engine == "ray":
        import importlib.util
        if importlib.util.find_spec("ray") is None:
            return "--engine ray needs Ray: pip install -e \".[sweep]\""
    return None


def sweep_command(args) -> int:
    """``python -m reprolib sweep``: check the grid, run it, print the summary; 1 if a point failed."""
    problem = engine_problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_PARAMETER
    grid = parse_grid(args.grid)
    points = plan(args.notebook, args.profile, grid, parse_assignments(args.parameter), args.out,
                  args.cpus_per_run)
    settings = EngineSettings(args.workers, args.address, args.cpus_per_run, args.gpus_per_run)
    started = time.perf_counter()
    outcomes = run_sweep(points, args.engine, settings)
    print(summary(outcomes, time.perf_counter() - started))
    print(f"one table: python -m reprolib collect {_shown(str(args.out.resolve()))}")
    return 1 if any(o.status == "failed" for o in outcomes) else 0


# --- collect -----------------------------------------------------------------------------------

def _cell(value: Any) -> Any:
    """A parameter value as a table cell: lists and dicts as JSON text."""
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def grid_parameters(records: list[dict]) -> list[str]:
    """Parameter names whose values differ between records, and always ``seed``."""
    names = ["seed"]
    for record in records:
        names += [name for name in record["parameters"] if name not in names]
    names = [name for name in names if name not in ("profile", *P.RUNNER_PARAMETERS)]

    def values(name):
        return {json.dumps(_parameters(r).get(name), sort_keys=True) for r in records}
    return [name for name in names if name == "seed" or len(values(name)) > 1]


def _parameters(record: dict) -> dict:
    return {**record["parameters"], "seed": record["seed"]}


def parameter_column(name: str) -> str:
    """The column of a grid parameter (``dataset (parameter)`` where a row key has the name)."""
    return f"{name} (parameter)" if name in ROW_KEYS else name


def collect_frame(folder: str | os.PathLike):
    """Every results.json under `folder` as one tidy table: a row per metric row.

    Columns: ``point`` (the run's folder under `folder`), ``chapter``, ``profile``, the grid
    parameters (:func:`grid_parameters`), the row keys of :mod:`reprolib.results`, then
    ``wall_clock_seconds`` and ``device``. Rows are in folder order, then in the run's order.
    Chapters read committed sweeps under ``results/`` with this function.
    """
    import pandas as pd
    folder = Path(folder)
    paths = sorted(folder.rglob(RESULTS_FILE), key=lambda p: p.relative_to(folder).as_posix())
    records = [load_results(path) for path in paths]
    grid = grid_parameters(records)
    columns = [*ID_COLUMNS, *map(parameter_column, grid), *ROW_KEYS, *RUN_COLUMNS]
    rows = []
    for path, record in zip(paths, records):
        parameters = _parameters(record)
        run = {"point": path.parent.relative_to(folder).as_posix(), "chapter": record["chapter"],
               "profile": record["profile"],
               **{parameter_column(n): _cell(parameters.get(n)) for n in grid}}
        extra = {"wall_clock_seconds": record["wall_clock_seconds"], "device": record["device"]}
        rows += [{**run, **row, **extra} for row in record["rows"]]
    frame = pd.DataFrame(rows, columns=columns, dtype=object)  # parameters keep their types
    for numeric in ("value", "paper_value", "wall_clock_seconds"):
        frame[numeric] = pd.to_numeric(frame[numeric])
    return frame


def comparable(frame):
    """The collected table without what differs between identical runs: timing columns and
    speed-benchmark rows (their values are timings)."""
    kept = frame[frame["experiment"] != "benchmark"]
    return kept.drop(columns=list(RUN_COLUMNS)).reset_index(drop=True)


def setting_columns(frame) -> list[str]:
    """The columns that name a setting: chapter, profile, grid parameters but seed, row keys."""
    grid = [c for c in frame.columns if c not in (*ID_COLUMNS, *ROW_KEYS, *RUN_COLUMNS, "seed")]
    return ["chapter", "profile", *grid, "experiment", "method", "dataset", "setting", "metric"]


def summarise(frame):
    """Mean and standard deviation over seeds per setting, beside the paper's value."""
    keys = setting_columns(frame)
    table = frame.assign(**{key: frame[key].astype(str) for key in keys})
    summary_ = table.groupby(keys, sort=False).agg(
        runs=("value", "size"), mean=("value", "mean"), std=("value", "std"),
        paper=("paper_value", "first"))
    summary_["difference"] = summary_["mean"] - summary_["paper"]
    return summary_.reset_index()


def workload(frame):
    """Runs and mean minutes per run for each chapter, profile and device."""
    runs = frame.drop_duplicates("point")
    table = runs.groupby(["chapter", "profile", "device"], sort=False)["wall_clock_seconds"]
    return table.agg(runs="size", minutes_per_run=lambda s: s.mean() / 60).reset_index()


def collect_command(args) -> int:
    """``python -m reprolib collect DIR``: write the CSV, print the summary and the workload."""
    import pandas as pd
    if not args.folder.is_dir():
        print(f"error: no folder {args.folder}", file=sys.stderr)
        return EXIT_BAD_PARAMETER
    frame = collect_frame(args.folder)
    if frame.empty:
        print(f"error: no {RESULTS_FILE} under {args.folder}", file=sys.stderr)
        return 1
    csv = args.csv or args.folder / COLLECTED_FILE
    frame.to_csv(csv, index=False)
    with pd.option_context("display.max_rows", None, "display.max_columns", None,
                           "display.width", 250, "display.max_colwidth", 70):
        print(summarise(frame).to_string(index=False, float_format=lambda x: f"{x:.4f}"))
        print()
        print(workload(frame).to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    print(f"\n{len(frame)} rows from {frame['point'].nunique()} runs; wrote {csv}")
    return 0
