"""Reading what a user hands us: every file is untrusted input.

Build folders, RTL descriptions, checkpoints and calibration data may be damaged or
hostile. The helpers here are the only way the package turns a value read from a file
into a path, a tool argument or an allocation:

* `contained_path(root, name, field)`: a relative name from a file, resolved (symlinks
  included) and refused unless it stays inside `root`;
* `read_limited(path, max_bytes, field)`: the size is checked with `stat` before a byte
  is read;
* `tool_identifier(value, field)`: a name that goes into a Yosys/nextpnr/Verilator
  script or command line, refused unless it is a plain identifier;
* `expect(value, types, field)` and `int_in_range(...)` / `float_in_range(...)`: the type
  and range checks of a loaded structure;
* `strict_json(obj)`: the JSON we write, with NaN and infinities refused.

Every refusal raises `RepAccelError` naming the field (and the file), never a traceback.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path, PurePosixPath

import numpy as np

from .errors import RepAccelError

#: A Verilog / Yosys identifier: what a top-module or source stem may be.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,127}")
#: A source file name that may go into a tool script: an identifier, a dot, an extension.
_SOURCE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}\.(v|sv)")

#: The largest allocation a loaded file may ask for, in bytes (a real build of the
#: largest RepVGG, B3 at 224x224, needs under 200 MB).
MAX_ALLOCATION_BYTES = 4 << 30


def where(path, field: str) -> str:
    return f"{path}: field {field!r}" if path is not None else f"field {field!r}"


def contained_path(root, name, field: str, source=None) -> Path:
    """`root / name` for a `name` read from a file, refused unless it stays inside `root`.

    name: a relative path with `/` separators (no absolute path, no `..`, no empty
    part); the resolved path (symlinks followed) must lie inside the resolved `root`.
    source: the file the name was read from, for the message."""
    label = where(source, field)
    if not isinstance(name, str) or not name:
        raise RepAccelError(f"{label}: expected a relative file name, found {type(name).__name__} {name!r:.60}")
    if "\x00" in name or "\\" in name:
        raise RepAccelError(f"{label}: {name!r:.60} is not a plain relative file name")
    pure = PurePosixPath(name)
    if pure.is_absolute() or any(part in ("", "..") for part in name.split("/")):
        raise RepAccelError(f"{label}: {name!r:.60} leaves the folder (absolute or '..'); "
                            f"only names inside {root} are allowed")
    root_resolved = Path(root).resolve()
    candidate = Path(root) / pure
    resolved = candidate.resolve()
    if resolved != root_resolved and root_resolved not in resolved.parents:
        raise RepAccelError(f"{label}: {name!r:.60} is a link that leaves {root}; refused")
    return candidate


def read_limited(path, max_bytes: int, field: str) -> bytes:
    """The bytes of `path`, after checking with stat that it is a regular file of at most `max_bytes`."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as e:
        raise RepAccelError(f"{p}: cannot read {field} ({e.strerror})") from None
    if not p.is_file():
        raise RepAccelError(f"{p}: {field} is not a regular file")
    if st.st_size > max_bytes:
        raise RepAccelError(f"{p}: {field} is {st.st_size:,} bytes, more than the {max_bytes:,} it may hold")
    with open(p, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise RepAccelError(f"{p}: {field} grew past {max_bytes:,} bytes while being read")
    return data


def tool_identifier(value, field: str, source=None) -> str:
    """`value` if it is a plain identifier (letters, digits, `_`, `$`; not starting with a digit)."""
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise RepAccelError(f"{where(source, field)}: {value!r:.60} is not a Verilog identifier; "
                            f"only [A-Za-z_][A-Za-z0-9_$]* names reach the tools")
    return value


def source_file_name(value, field: str, source=None) -> str:
    """`value` if it is a plain Verilog file name (`name.v` / `name.sv`, no folder)."""
    if not isinstance(value, str) or not _SOURCE_NAME.fullmatch(value):
        raise RepAccelError(f"{where(source, field)}: {value!r:.60} is not a plain Verilog file name "
                            f"(letters, digits, '_', '.', '-', ending in .v or .sv, no folder)")
    return value


_TYPE_NAMES = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number",
               bool: "true or false"}


def expect(value, types, field: str, source=None):
    """`value` if it is of `types` (bool is not an int here); else a clean error."""
    types = types if isinstance(types, tuple) else (types,)
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        wanted = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
        raise RepAccelError(f"{where(source, field)}: expected {wanted}, found {type(value).__name__}")
    return value


def int_in_range(value, lo: int, hi: int, field: str, source=None) -> int:
    """`value` as an int if it is an integer in [lo, hi]."""
    expect(value, int, field, source)
    if not lo <= value <= hi:
        raise RepAccelError(f"{where(source, field)}: {value} is outside [{lo}, {hi}]")
    return int(value)


def float_in_range(value, lo: float, hi: float, field: str, source=None, *, open_low: bool = False) -> float:
    """`value` as a float if it is a finite number in [lo, hi] ((lo, hi] with open_low)."""
    expect(value, (int, float), field, source)
    v = float(value)
    if not math.isfinite(v) or v > hi or v < lo or (open_low and v == lo):
        bracket = "(" if open_low else "["
        raise RepAccelError(f"{where(source, field)}: {value!r} is outside {bracket}{lo:g}, {hi:g}]")
    return v


#: The highest clock a frames/s figure may be computed at (MHz): far above any FPGA's.
MAX_CLOCK_MHZ = 5000.0


def check_clock_mhz(value, option: str = "--clock-mhz") -> float:
    """A clock in MHz for a frames/s figure: finite, positive, at most MAX_CLOCK_MHZ."""
    if value is None or not (isinstance(value, (int, float)) and math.isfinite(value) and 0 < value <= MAX_CLOCK_MHZ):
        raise RepAccelError(f"{option} {value}: give a clock in MHz in (0, {MAX_CLOCK_MHZ:g}], e.g. {option} 150")
    return float(value)


#: Bounds of a network input: the descriptor's 12-bit height/width fields, and channels.
MAX_INPUT_SIDE = (1 << 12) - 1
MAX_INPUT_CHANNELS = 8192


def parse_input_size(text, option: str = "--input-size") -> tuple[int, int, int]:
    """'C,H,W' -> (C, H, W): positive integers, H and W at most MAX_INPUT_SIDE (the
    hardware's 12-bit fields), C at most MAX_INPUT_CHANNELS."""
    try:
        size = tuple(int(v) for v in str(text).split(","))
    except ValueError:
        size = ()
    if len(size) != 3 or min(size) < 1:
        raise RepAccelError(f"{option} {text!r} must be three positive integers C,H,W, e.g. 3,224,224")
    c, h, w = size
    if c > MAX_INPUT_CHANNELS or h > MAX_INPUT_SIDE or w > MAX_INPUT_SIDE:
        raise RepAccelError(f"{option} {text!r}: at most {MAX_INPUT_CHANNELS} channels and {MAX_INPUT_SIDE} pixels "
                            f"a side (the accelerator's 12-bit height and width fields)")
    return size


def check_allocation(nbytes: int, what: str, fix: str = "") -> None:
    """Refuse an allocation of more than MAX_ALLOCATION_BYTES before it is made."""
    if nbytes > MAX_ALLOCATION_BYTES:
        raise RepAccelError(f"{what} would need {format_bytes(nbytes)} of memory, more than the "
                            f"{format_bytes(MAX_ALLOCATION_BYTES)} allowed{'; ' + fix if fix else ''}")


def format_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def jsonable(obj):
    """`obj` in plain JSON types (numpy scalars and arrays, tuples, objects with to_dict);
    non-finite floats (an SQNR of +inf for an exact layer) become strings, so the JSON
    we write stays strict."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else str(f)
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    if hasattr(obj, "to_dict"):
        return jsonable(obj.to_dict())
    raise TypeError(f"cannot store {type(obj).__name__} as JSON")


def open_npy(path, option: str) -> np.ndarray:
    """A .npy file memory-mapped (nothing read but its header, so its shape can be checked
    against the memory limit first); never unpickles. Errors name `option` and the file."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise RepAccelError(f"{option} {path}: not a readable .npy file ({str(e)[:200]})") from None
    if not isinstance(arr, np.ndarray):
        raise RepAccelError(f"{option} {path}: holds several arrays; give one N x C x H x W array")
    return arr


def strict_json(obj, **kwargs) -> str:
    """json.dumps that refuses NaN and infinities (strict JSON) with a clean error."""
    try:
        return json.dumps(obj, allow_nan=False, **kwargs)
    except ValueError as e:
        raise RepAccelError(f"a result is not finite and cannot be written as JSON ({e}); "
                            "check the option values (e.g. --clock-mhz)") from None


def is_same_file(a, b) -> bool:
    """True when paths `a` and `b` name the same existing file (links and hard links included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
