"""``python -m reprolib run NOTEBOOK --profile P [-p name=value ...] [--out DIR]``.

Executes a jupytext notebook (percent-format ``.py``) with papermill and leaves the executed
``.ipynb`` and the chapter's ``results.json`` in DIR. Parameters are checked against the
notebook's parameters cell before anything runs: an unknown name or an invalid value exits with
status 2 and one line naming the parameter and what is allowed.
"""
from __future__ import annotations

import argparse
import ast
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import params as P
from .results import RESULTS_FILE, headline, load as load_results

EXIT_BAD_PARAMETER = 2


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


def execute(source: Path, profile: str, values: dict[str, Any], out: Path) -> dict:
    """Check the parameters, run the notebook, return its results record."""
    import papermill
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        ipynb = to_ipynb(source, Path(tmp))
        defaults = notebook_defaults(ipynb)
        values = {"profile": profile, **values}
        P.check(values, defaults)
        values["output_dir"] = str(out.resolve())
        executed = out / (source.stem + ".ipynb")
        papermill.execute_notebook(str(ipynb), str(executed), parameters=values,
                                   kernel_name="python3", cwd=str(source.resolve().parent),
                                   progress_bar=sys.stderr.isatty())
    return load_results(out / RESULTS_FILE)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m reprolib",
                                     description="Run chapters of 'Deep Clustering, Reproduced'.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="execute a chapter with papermill")
    run.add_argument("notebook", type=Path, help="a jupytext .py chapter, e.g. notebooks/00_evaluation.py")
    run.add_argument("--profile", default="book", help=f"one of {', '.join(P.PROFILES)} (default book)")
    run.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE",
                     help="set a chapter parameter (repeatable)")
    run.add_argument("--out", type=Path, default=None,
                     help="output folder for the executed notebook and results.json "
                          "(default runs/<chapter>-<profile>); rerun with the same folder to resume")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.notebook.exists():
        print(f"error: no notebook at {args.notebook}", file=sys.stderr)
        return EXIT_BAD_PARAMETER
    out = args.out or Path("runs") / f"{args.notebook.stem}-{args.profile}"
    try:
        values = parse_assignments(args.parameter)
        record = execute(args.notebook, args.profile, values, out)
    except P.ParameterError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_PARAMETER
    except Exception as error:  # papermill's execution error carries the cell's traceback
        if type(error).__name__ != "PapermillExecutionError":
            raise
        print(f"error: {args.notebook} failed: {error.ename}: {error.evalue}\n"
              f"the executed notebook with the full traceback is in {out}", file=sys.stderr)
        return 1
    top = headline(record)
    print(f"{record['chapter']} ({record['profile']}): {top['method']} {top['metric']} = "
          f"{top['value']:.4f} [{top['setting']}] in {record['wall_clock_seconds']:.0f} s; "
          f"wrote {out / RESULTS_FILE}")
    return 0
