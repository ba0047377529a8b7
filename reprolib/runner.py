"""``python -m reprolib run NOTEBOOK --profile P [-p name=value ...] [--out DIR]``.

Executes a jupytext notebook (percent-format ``.py``) with papermill and leaves the executed
``.ipynb`` and the chapter's ``results.json`` in DIR. Parameters are checked against the
notebook's parameters cell before anything runs: an unknown name or an invalid value exits with
status 2 and one line naming the parameter and what is allowed.

The same parser holds ``sweep`` (a chapter over a grid of parameters, every point one ``run``)
and ``collect`` (one table from the results of a sweep); both live in :mod:`reprolib.sweep`.
"""
from __future__ import annotations

import argparse
import ast
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import params as P
from .results import RESULTS_FILE, headline, load as load_results

EXIT_BAD_PARAMETER = 2
# papermill waits 60 s for a kernel by default; on two busy cores (a sweep with two workers next
# to the test suite) starting one has taken longer, and the point failed with "Kernel didn't respond".
KERNEL_START_TIMEOUT_S = 600
# On POSIX systems the kernel talks to papermill over Unix-domain sockets in a private temporary
# folder (jupyter_client's "ipc" transport): no TCP ports, so no plain-text traffic on localhost
# (ipykernel warns about that on every start) and no port races. Elsewhere it uses TCP, on ports
# jupyter_client picks free and then releases; two kernels started at the same moment (a sweep's
# parallel points) can then pick the same port, and the loser dies with "Address already in use"
# before it runs any cell. A kernel that dies while starting is started again.
KERNEL_START_ATTEMPTS = 3
KERNEL_DIED = "Kernel died before replying to kernel_info"


def parse_value(text: str) -> Any:
    """A -p value: a Python literal (1, 0.02, None, True, 'x') or else the plain string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_assignments(assignments: list[str]) -> dict[str, Any]:
    values = {}
    for item in assignments:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise P.ParameterError(item, "expected name=value")
        values[name.strip()] = parse_value(text.strip())
    return values


def to_ipynb(source: Path, folder: Path) -> Path:
    """The notebook as .ipynb in `folder` (papermill cannot read percent-format .py)."""
    import jupytext
    notebook = jupytext.read(source)
    notebook.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3",
                                                "language": "python"})
    target = folder / (source.stem + ".ipynb")
    jupytext.write(notebook, target)
    return target


def notebook_defaults(ipynb: Path) -> dict[str, Any]:
    """The notebook's parameters and their default values, read from its parameters cell."""
    import papermill
    found = papermill.inspect_notebook(str(ipynb))
    defaults = {}
    for name, info in found.items():
        try:
            defaults[name] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            defaults[name] = info["default"]
    if not defaults:
        raise SystemExit(f"error: {ipynb.name} has no cell tagged 'parameters'")
    return defaults


def chapter_defaults(source: Path) -> dict[str, Any]:
    """The parameters and defaults of a jupytext chapter (what :func:`execute` checks against)."""
    with tempfile.TemporaryDirectory() as tmp:
        return notebook_defaults(to_ipynb(source, Path(tmp)))


def output_dir_for(source: Path, out: Path) -> str:
    """`out` as the notebook sees it (it runs in its own folder): relative when both lie in the
    repository, so executed notebooks (and the book) show no machine's absolute paths."""
    out, here = out.resolve(), source.resolve().parent
    root = Path(__file__).resolve().parent.parent
    if out.is_relative_to(root) and here.is_relative_to(root):
        return os.path.relpath(out, here)
    return str(out)


def execute(source: Path, profile: str, values: dict[str, Any], out: Path) -> dict:
    """Check the parameters, run the notebook, return its results record."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        ipynb = to_ipynb(source, Path(tmp))
        defaults = notebook_defaults(ipynb)
        values = {"profile": profile, **values}
        P.check(values, defaults)
        values["output_dir"] = output_dir_for(source, out)
        executed = out / (source.stem + ".ipynb")
        execute_notebook(ipynb, executed, values, source.resolve().parent, progress_bar=sys.stderr.isatty())
    return load_results(out / RESULTS_FILE)


def kernel_transport(folder: Path) -> dict[str, Any]:
    """papermill keyword arguments that put the kernel's sockets in `folder` (POSIX); none elsewhere."""
    if os.name != "posix":
        return {}
    from traitlets.config import Config
    return {"config": Config({"KernelManager": {"transport": "ipc", "ip": str(folder / "kernel")}})}


def execute_notebook(ipynb: Path, executed: Path, parameters: dict[str, Any], cwd: Path,
                     progress_bar: bool = False) -> None:
    """papermill.execute_notebook, started again when the kernel dies before running any cell."""
    import papermill
    for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
        try:
            with tempfile.TemporaryDirectory(prefix="reprolib-kernel-") as sockets:
                papermill.execute_notebook(str(ipynb), str(executed), parameters=parameters, kernel_name="python3",
                                           cwd=str(cwd), start_timeout=KERNEL_START_TIMEOUT_S,
                                           progress_bar=progress_bar, **kernel_transport(Path(sockets)))
            return
        except RuntimeError as error:
            if KERNEL_DIED not in str(error) or attempt == KERNEL_START_ATTEMPTS:
                raise
            print(f"[reprolib] the kernel died while starting ({error}); starting it again "
                  f"(attempt {attempt + 1} of {KERNEL_START_ATTEMPTS})", file=sys.stderr, flush=True)


def _add_chapter_arguments(command: argparse.ArgumentParser) -> None:
    """NOTEBOOK, --profile and -p: what ``run`` and ``sweep`` share."""
    command.add_argument("notebook", type=Path, help="a jupytext .py chapter, e.g. notebooks/00_evaluation.py")
    command.add_argument("--profile", default="book", help=f"one of {', '.join(P.PROFILES)} (default book)")
    command.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE",
                         help="set a chapter parameter (repeatable)")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1; got {text}")
    return value


def _add_sweep_parser(commands) -> None:
    sweep = commands.add_parser("sweep", help="run a chapter over a grid of parameters (local or Ray)")
    _add_chapter_arguments(sweep)
    sweep.add_argument("--grid", action="append", required=True, metavar="NAME=V1,V2,...",
                       help="values of one parameter to sweep (repeatable; the grid is their product)")
    sweep.add_argument("--out", type=Path, required=True,
                       help="one subfolder per point, named by its grid values; rerun to skip finished points")
    sweep.add_argument("--engine", choices=("local", "ray"), default="local",
                       help="local: a process pool here (default); ray: one Ray task per point")
    sweep.add_argument("--workers", type=_positive_int, default=None,
                       help="points run at once (default: this machine's cores / --cpus-per-run); with "
                            "--engine ray it sizes the local Ray instance, and with --address the cluster decides")
    sweep.add_argument("--address", default=None,
                       help="Ray cluster to join: 'auto' after `ray start --head` here, or HOST:PORT")
    sweep.add_argument("--cpus-per-run", type=_positive_int, default=1,
                       help="CPUs (threads, OMP_NUM_THREADS) each run gets, on either engine (default 1)")
    sweep.add_argument("--gpus-per-run", type=float, default=None,
                       help="GPUs each Ray task asks for (default: 1 if the Ray cluster has a GPU, else 0)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m reprolib",
                                     description="Run chapters of 'Deep Clustering, Reproduced'.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="execute a chapter with papermill")
    _add_chapter_arguments(run)
    run.add_argument("--out", type=Path, default=None,
                     help="output folder for the executed notebook and results.json "
                          "(default runs/<chapter>-<profile>); rerun with the same folder to resume")
    _add_sweep_parser(commands)
    collect = commands.add_parser("collect", help="gather every results.json under a folder into one table")
    collect.add_argument("folder", type=Path, help="a sweep's --out folder (or any folder of runs)")
    collect.add_argument("--csv", type=Path, default=None, help="where the table goes (default FOLDER/collected.csv)")
    return parser


def run_command(args: argparse.Namespace) -> int:
    """``python -m reprolib run``: execute one chapter, print its headline."""
    out = args.out or Path("runs") / f"{args.notebook.stem}-{args.profile}"
    try:
        record = execute(args.notebook, args.profile, parse_assignments(args.parameter), out)
    except Exception as error:  # papermill's execution error carries the cell's traceback
        if type(error).__name__ != "PapermillExecutionError":
            raise
        if error.ename == "ParameterError":  # a chapter's own check in its first cells: one line, exit 2
            print(f"error: {error.evalue}", file=sys.stderr)
            return EXIT_BAD_PARAMETER
        print(f"error: {args.notebook} failed: {error.ename}: {error.evalue}\n"
              f"the executed notebook with the full traceback is in {out}", file=sys.stderr)
        return 1
    top = headline(record)
    print(f"{record['chapter']} ({record['profile']}): {top['method']} {top['metric']} = "
          f"{top['value']:.4f} [{top['setting']}] in {record['wall_clock_seconds']:.0f} s; "
          f"wrote {out / RESULTS_FILE}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "collect":
        from .sweep import collect_command
        return collect_command(args)
    if not args.notebook.exists():
        print(f"error: no notebook at {args.notebook}", file=sys.stderr)
        return EXIT_BAD_PARAMETER
    try:
        if args.command == "sweep":
            from .sweep import sweep_command
            return sweep_command(args)
        return run_command(args)
    except P.ParameterError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_PARAMETER
