"""Writing outputs so that nothing half-written is ever left at the output path."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from .errors import RepAccelError


def check_output_dir(path: str | os.PathLike) -> Path:
    """Return `path` as a Path after checking it can become an output folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RepAccelError(f"output path {path} is a file; give a folder name (e.g. -o build/)")
    return path


@contextlib.contextmanager
def atomic_output_dir(path: str | os.PathLike):
    """Yield a temporary folder that replaces `path` only if the block succeeds.

    Files already in `path` that the block does not write are kept (the new files
    are moved in one by one at the end); on an exception nothing in `path` changes.
    """
    path = check_output_dir(path)
    parent = path.parent if str(path.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700
        yield tmp
        path.mkdir(parents=True, exist_ok=True)
        for item in sorted(tmp.iterdir()):
            target = path / item.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(item, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename."""
    path = Path(path)
    if path.is_dir():
        raise RepAccelError(f"output path {path} is a folder; give a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        # mkstemp creates the file 0600; give it the mode an ordinary open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
