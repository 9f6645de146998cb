"""Write the notebooks of this folder from their sources: `python notebooks/build_notebooks.py`.

Each notebook `NN_name.ipynb` is written from `src/NN_name.py`, a script in the "percent"
cell format: a line `# %%` starts a code cell, `# %% [markdown]` a markdown cell whose
lines are comments (`# text`); in a code cell, a line `# %magic` becomes the IPython
magic `%magic` (commented out, the source also runs as a plain script). The .ipynb
files are committed without outputs; a change to a notebook is a change to its source
followed by a rerun of this script (which rewrites only the notebooks whose text changed). `tests/test_notebooks.py` executes the
notebooks and checks that they are what this script writes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "src"


def parse_cells(text: str) -> list[tuple[str, str]]:
    """(kind, source) of every cell of a percent-format script; kind is "md" or "code"."""
    cells: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("# %%"):
            cells.append(("md" if "[markdown]" in line else "code", []))
        elif cells:
            kind, lines = cells[-1]
            if kind == "md":
                if line and not line.startswith("#"):
                    raise ValueError(f"markdown cell line is not a comment: {line!r}")
                line = line[2:] if line.startswith("# ") else line[1:]
            elif line.startswith("# %"):
                line = line[2:]  # an IPython magic, commented out so the source also runs as a script
            lines.append(line)
    return [(kind, "\n".join(lines).strip("\n")) for kind, lines in cells]


def make(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    """A notebook of (kind, source) cells with stable cell ids and no outputs."""
    nb = new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    }
    for i, (kind, source) in enumerate(cells):
        cell = new_markdown_cell(source) if kind == "md" else new_code_cell(source)
        cell.id = f"cell-{i:02d}"  # stable ids: rerunning the script changes nothing
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def notebook_text(source: Path) -> str:
    """The .ipynb text written for a source script."""
    return nbformat.writes(make(parse_cells(source.read_text()))) + "\n"


def main() -> int:
    for source in sorted(SOURCES.glob("[0-9][0-9]_*.py")):
        path = HERE / f"{source.stem}.ipynb"
        text = notebook_text(source)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
