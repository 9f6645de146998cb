"""Progress bars for long loops, on stderr, silent when REP_ACCEL_QUIET=1 or not a terminal."""

from __future__ import annotations

import os
import sys

# tqdm.std, not tqdm.auto: bars only ever go to a terminal's stderr, and tqdm.auto warns
# (TqdmWarning: IProgress not found) when imported in a Jupyter kernel without ipywidgets.
from tqdm.std import tqdm


def progress(iterable=None, *, desc: str, total: int | None = None, unit: str = "it", leave: bool = False):
    """Wrap `iterable` in a progress bar; shown on a terminal, hidden in tests and CI logs."""
    quiet = os.environ.get("REP_ACCEL_QUIET") == "1" or not sys.stderr.isatty()
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, disable=quiet, file=sys.stderr)
