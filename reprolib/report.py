"""Putting numbers into the book: glue for prose, tables of ours beside the paper's.

:func:`glue` wraps MyST-NB's glue (numbers in prose as ``{glue:text}`name:.3f```), converting
NumPy scalars to Python floats (a NumPy scalar with a format spec fails a strict build) and
doing nothing where MyST-NB is absent (Colab), so chapters run anywhere.
"""
from __future__ import annotations

from typing import Any

import pandas as pd


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def glue(name: str, value: Any, display: bool = False) -> Any:
    """Make `value` available to the book's prose as ``{glue:text}`name```; returns the value."""
    value = _plain(value)
    try:
        from myst_nb import glue as myst_glue
    except ImportError:  # outside the book build (e.g. Colab): nothing to glue into
        return value
    myst_glue(name, value, display=display)
    return value


def beside_paper(frame: pd.DataFrame, value: str = "ours", paper: str = "paper") -> pd.DataFrame:
    """Add a ``difference`` column (ours - paper) to a table holding both columns."""
    frame = frame.copy()
    frame["difference"] = frame[value] - frame[paper]
    return frame


def rows_table(rows: list[dict], index: list[str], columns: str = "metric") -> pd.DataFrame:
    """A results.json row list pivoted to a table of ours / paper / difference per metric."""
    frame = pd.DataFrame(rows)
    frame["difference"] = frame["value"] - frame["paper_value"]
    table = frame.pivot_table(index=index, columns=columns,
                              values=["value", "paper_value", "difference"], aggfunc="first",
                              dropna=False)
    table.columns = table.columns.swaplevel(0, 1)
    return table.sort_index(axis=1).rename(columns={"value": "ours", "paper_value": "paper"}, level=1)
