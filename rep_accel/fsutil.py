"""Writing outputs so that nothing half-written is ever left at the output path."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from .errors import RepAccelError


#: The file every output folder of ours carries: which command wrote it and which files
#: are ours. A folder holding anything else is not ours to write into without --force.
OWNERSHIP_FILE = ".rep-accel-output.json"
#: The largest ownership file we read (a build of B3 lists a few hundred names).
_OWNERSHIP_MAX_BYTES = 1 << 20
#: Names listed in a refusal.
_SHOWN = 3


def add_force_argument(parser) -> None:
    """The `--force` option of every command that writes an output folder."""
    parser.add_argument("--force", action="store_true",
                        help="write into an output folder that holds files this command did not write "
                             "(files of the same name are replaced; others are kept)")


def check_output_name(path, option: str = "-o") -> Path:
    """Refuse an empty output name (which would mean the current folder)."""
    if path is None or str(path).strip() == "":
        raise RepAccelError(f"{option} '': give an output name (an empty one would write into the current folder)")
    return Path(path)


def check_output_dir(path: str | os.PathLike, option: str = "-o") -> Path:
    """Return `path` as a Path after checking it can become an output folder."""
    path = check_output_name(path, option)
    if path.exists() and not path.is_dir():
        raise RepAccelError(f"output path {path} is a file; give a folder name (e.g. -o build/)")
    _check_parents(path, option)
    return path


def _check_parents(path: Path, option: str) -> None:
    """The nearest existing parent of `path` is a writable folder."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RepAccelError(f"{option} {path}: {parent} is a file, not a folder; choose another place")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise RepAccelError(f"{option} {path}: {parent} is not writable; choose another place")
            return


def check_output_file(path, option: str, inputs=()) -> Path:
    """Check before any work that `path` can be written as a file and is none of `inputs`."""
    from .untrusted import is_same_file
    path = check_output_name(path, option)
    if path.is_dir():
        raise RepAccelError(f"{option} {path} is a folder; give a file name")
    for inp in inputs:
        if inp is not None and (is_same_file(path, inp) or Path(path).resolve() == Path(inp).resolve()):
            raise RepAccelError(f"{option} {path} is also an input; write the output to another file")
    _check_parents(path, option)
    if path.exists() and not os.access(path, os.W_OK):
        raise RepAccelError(f"{option} {path} is not writable; choose another file")
    return path


def _files_under(folder: Path) -> list[str]:
    """Every file (or link) under `folder`, as relative posix names, links not followed."""
    names = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        rel = Path(dirpath).relative_to(folder)
        for d in list(dirnames):
            if (Path(dirpath) / d).is_symlink():
                names.append((rel / d).as_posix())
        names.extend((rel / f).as_posix() for f in filenames)
    return sorted(names)


def _owned_files(folder: Path, command: str, force: bool) -> set[str]:
    """The files of `folder` that an earlier run of `command` wrote (from its ownership file).

    Raises RepAccelError when the folder holds anything else, unless `force`."""
    from .untrusted import contained_path, read_limited
    if not folder.is_dir():
        return set()
    present = [n for n in _files_under(folder) if n != OWNERSHIP_FILE]
    owned: set[str] = set()
    marker = folder / OWNERSHIP_FILE
    if marker.is_file() and not marker.is_symlink():
        try:
            doc = json.loads(read_limited(marker, _OWNERSHIP_MAX_BYTES, "ownership file"))
        except (RepAccelError, UnicodeDecodeError, json.JSONDecodeError):
            doc = None
        if isinstance(doc, dict) and doc.get("command") == command and isinstance(doc.get("files"), list):
            for name in doc["files"]:
                try:
                    contained_path(folder, name, "files", marker)
                except RepAccelError:
                    continue
                owned.add(name)
    foreign = [n for n in present if n not in owned]
    if foreign and not force:
        shown = ", ".join(foreign[:_SHOWN]) + (f" and {len(foreign) - _SHOWN} more" if len(foreign) > _SHOWN else "")
        raise RepAccelError(f"output folder {folder} holds files that `rep-accel {command}` did not write ({shown}); "
                            f"choose a new or empty folder, or pass --force to write beside them "
                            f"(files of the same name are then replaced)")
    return owned & set(present)


def check_output_folder(path, command: str, force: bool = False, option: str = "-o") -> Path:
    """Check before any work that `path` can become `command`'s output folder: a folder
    name, in a writable place, new or empty or an earlier output of the same command
    (anything else needs `force`). atomic_output_dir checks the same again at the end."""
    path = check_output_dir(path, option)
    _owned_files(path, command, force)
    return path


@contextlib.contextmanager
def atomic_output_dir(path: str | os.PathLike, command: str = "output", force: bool = False):
    """Yield a temporary folder whose files replace `path`'s only if the block succeeds.

    `path` must be new, empty, or an earlier output of the same `command` (its ownership
    file lists what it wrote); anything else is refused unless `force`. At the end, the
    new files are moved in one by one; files of the earlier output that this run did not
    write are removed; nothing we did not write is ever removed. On an exception
    nothing in `path` changes, and the temporary folder is removed on every exit path."""
    path = check_output_dir(path)
    previous = _owned_files(path, command, force)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=parent))
    except OSError as e:
        raise RepAccelError(f"cannot create the output folder {path} ({e.strerror}); choose another place") from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700
        yield tmp
        _move_in(tmp, path, previous, command)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _move_in(tmp: Path, path: Path, previous: set[str], command: str) -> None:
    from .untrusted import contained_path
    written = [n for n in _files_under(tmp) if n != OWNERSHIP_FILE]
    path.mkdir(parents=True, exist_ok=True)
    for name in written:
        target = contained_path(path, name, "output", path)
        if target.is_dir() and not target.is_symlink():
            raise RepAccelError(f"output folder {path}: {name} is a folder there; move it away and run again")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / name, target)
    for name in sorted(previous - set(written)):
        stale = path / name
        if stale.is_file() or stale.is_symlink():
            stale.unlink()
            # Remove the folders that held only what we wrote.
            for folder in stale.parents:
                if folder == path or path not in folder.parents:
                    break
                with contextlib.suppress(OSError):
                    folder.rmdir()
    doc = {"tool": "rep-accel", "command": command, "files": written}
    atomic_write_bytes(path / OWNERSHIP_FILE, (json.dumps(doc, indent=1) + "\n").encode())


def write_outputs_together(writers: dict) -> None:
    """Write several output files so that they appear together or not at all.

    writers: {final path: function(temporary path)} (each function writes its file; the
    temporary path keeps the final suffix). Every file is written to a temporary name
    beside its final one first; only when all succeeded are they renamed into place.
    On any failure every temporary file is removed and no output changes."""
    temps = {}
    try:
        for final, write in writers.items():
            final = Path(final)
            try:
                fd, tmp = tempfile.mkstemp(prefix=f".{final.stem}.tmp-", suffix=final.suffix,
                                           dir=final.parent if str(final.parent) else ".")
            except OSError as e:
                raise RepAccelError(f"cannot write {final} ({e.strerror}); choose another place") from None
            os.close(fd)
            temps[final] = Path(tmp)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            write(Path(tmp))
        for final, tmp in temps.items():
            os.replace(tmp, final)
        temps.clear()
    finally:
        for tmp in temps.values():
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename."""
    path = Path(path)
    if path.is_dir():
        raise RepAccelError(f"output path {path} is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    except OSError as e:
        raise RepAccelError(f"cannot write {path} ({e.strerror}); choose another place") from None
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
