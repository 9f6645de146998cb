"""The notebooks of notebooks/: committed as their sources write them (no outputs), and
each one runs to its end in a fresh kernel and draws every figure it promises.

The kernel is this interpreter (a kernel spec written to a temporary JUPYTER_PATH), so
no `ipykernel install` is needed on a fresh machine. Notebooks run in a temporary
folder, so whatever they write never lands in the work tree. Execution times are printed
(`pytest -s`), never asserted.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
sys.path.insert(0, str(NOTEBOOKS))
import build_notebooks  # noqa: E402

KERNEL = "rep-accel-test-python"
#: Per-cell limit (seconds): a hung cell fails the test instead of the suite.
CELL_TIMEOUT = 600

#: notebook -> the figures (image outputs) it must produce.
FIGURES = {
    "01_reparameterization": 3,
    "02_quantization": 5,
    "03_simulator": 5,
    "04_rtl_verification": 1,
}
#: Over the default suite's budget: notebook 4 elaborates a 4x4 array and compiles it in Verilator
#: (about a minute on a fresh machine) before its layer test runs.
SLOW = {"04_rtl_verification"}


def _sources():
    return sorted(build_notebooks.SOURCES.glob("[0-9][0-9]_*.py"))


def test_every_notebook_has_a_source_and_a_check():
    names = {p.stem for p in _sources()}
    assert names == {p.stem for p in NOTEBOOKS.glob("*.ipynb")}
    assert names == set(FIGURES) and SLOW <= names


@pytest.mark.parametrize("source", _sources(), ids=lambda p: p.stem)
def test_notebook_is_its_source_without_outputs(source):
    """The committed .ipynb is exactly what build_notebooks writes: no outputs, no stale edit."""
    path = NOTEBOOKS / f"{source.stem}.ipynb"
    assert path.read_text() == build_notebooks.notebook_text(source), \
        f"{path.name} differs from its source; run `python notebooks/build_notebooks.py`"
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


@pytest.fixture(scope="module")
def kernel_path(tmp_path_factory):
    """A JUPYTER_PATH holding a kernel spec that starts ipykernel in this interpreter."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "rep-accel tests", "language": "python"}))
    return root


def _execute(name: str, kernel_path: Path, workdir: Path, monkeypatch) -> nbformat.NotebookNode:
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_path))
    monkeypatch.setenv("REP_ACCEL_QUIET", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend (Agg) draws the figures
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = NotebookClient(nb, kernel_name=KERNEL, timeout=CELL_TIMEOUT,
                            resources={"metadata": {"path": str(workdir)}})
    t = time.perf_counter()
    client.execute()
    print(f"\n{name}: executed in {time.perf_counter() - t:.1f} s")
    return nb


def _check_executed(nb, name: str) -> None:
    images = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        assert cell.execution_count is not None
        for out in cell.outputs:
            assert out.output_type != "error", f"{name}: {out.get('ename')}: {out.get('evalue')}"
            if out.output_type == "stream" and out.name == "stderr":
                # Warnings are bugs in a worked example (progress bars are off: REP_ACCEL_QUIET).
                assert "Warning" not in out.text, f"{name}: {out.text}"
            if out.output_type in ("display_data", "execute_result") and "image/png" in out.get("data", {}):
                images += 1
    assert images == FIGURES[name] if name in FIGURES else images > 0, f"{name}: {images} figures"


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(FIGURES)])
def test_notebook_runs(name, kernel_path, tmp_path, monkeypatch):
    nb = _execute(name, kernel_path, tmp_path, monkeypatch)
    _check_executed(nb, name)
    # Whatever the notebook wrote stayed in its working folder.
    assert not any(NOTEBOOKS.glob("*.png"))
