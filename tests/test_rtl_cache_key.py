"""The Verilator cache key covers exactly the sources the Verilog is generated from, found
from their import statements (no hand-written list of front-end files)."""

from pathlib import Path

from rep_accel.verification.runner import rtl_source_files


def test_rtl_sources_are_the_import_closure_of_hdl():
    names = {Path(p).relative_to(Path(p).parents[1]).as_posix() for p in rtl_source_files()}
    # What the RTL is built from: its own modules, the generics, the schedule's descriptor
    # fields, the FPGA family of --dsp ecp5, and the primitives' models and lint waivers.
    for needed in ("hdl/top.py", "hdl/unit.py", "rep_accel/generics.py", "rep_accel/layout.py",
                   "families/ecp5.py", "models/MULT18X18D.v", "hdl/lint_waivers.vlt"):
        assert any(n.endswith(needed) for n in names), needed
    # Front-end modules the RTL never imports do not invalidate the cache.
    for unrelated in ("checkpoints.py", "quantize.py", "synth.py", "sim/cycle.py"):
        assert not any(n.endswith(unrelated) for n in names), unrelated
