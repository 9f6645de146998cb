"""Verilog of the accelerator (amaranth.back.verilog) and the JSON description of its ports."""

from __future__ import annotations

import json
from pathlib import Path

from amaranth.back import verilog
from amaranth.lib import wiring

from rep_accel import families
from rep_accel.errors import RepAccelError
from rep_accel.generics import HardwareGenerics
from rep_accel.layout import DESCRIPTOR_FIELDS

from .top import Accelerator

#: Verilog module name of the top level.
TOP_NAME = "rep_accel_top"
#: Verilator waivers the emitted Verilog lints clean with (see the file for each one's reason).
WAIVERS_FILE = "lint_waivers.vlt"


def simulation_model_names(dsp: str) -> list[str]:
    """File names (in hdl/models/) of the vendor primitives DSP style `dsp` instantiates:
    its family's SIMULATION_MODELS (rep_accel.families), none for "generic"."""
    family = families.dsp_family(dsp)
    return list(family.SIMULATION_MODELS) if family is not None else []


def simulation_models(dsp: str) -> list[Path]:
    """Verilog models a simulator (never synthesis) needs beside the top for DSP style `dsp`."""
    return [Path(__file__).resolve().parent / "models" / name for name in simulation_model_names(dsp)]


def waivers_path() -> Path:
    """The Verilator configuration file of lint waivers, installed beside this module."""
    return Path(__file__).resolve().parent / WAIVERS_FILE


def top_ports(top: Accelerator) -> list[dict]:
    """Ports of the Verilog top: name, direction ('input'/'output'), width (bits); clk and rst first."""
    ports = [{"name": "clk", "direction": "input", "width": 1},
             {"name": "rst", "direction": "input", "width": 1}]
    for path, member, value in top.signature.flatten(top):
        ports.append({
            "name": "__".join(str(p) for p in path),
            "direction": "input" if member.flow == wiring.In else "output",
            "width": len(value.as_value()) if hasattr(value, "as_value") else len(value),
        })
    return ports


def generate(generics: HardwareGenerics, dsp: str = "generic") -> tuple[str, dict]:
    """Elaborate the top for `generics` with multipliers in DSP style `dsp` (unit.DSP_STYLES);
    return (Verilog text, port/generics description). A unit kind hdl/ does not build
    (UnitKind.rtl) is refused with the user's remedy."""
    if not generics.unit_kind.rtl:
        raise RepAccelError(f"unit kind {generics.unit!r} has no RTL yet: the simulator runs it (rep-accel compile/"
                            f"simulate --unit {generics.unit}), hdl/ does not build it; use --unit direct for rtl, "
                            f"verify and synth")
    top = Accelerator(generics, dsp)
    text = verilog.convert(top, name=TOP_NAME, emit_src=False)
    fields, pos = [], 0
    for name, bits in DESCRIPTOR_FIELDS:
        fields.append({"name": name, "lsb": pos, "width": bits})
        pos += bits
    desc = {
        "top": TOP_NAME,
        "generics": generics.to_dict(),
        "pipeline_latency": generics.pipeline_latency,
        "latency_fixed": generics.unit_kind.latency_fixed,
        "dsp": dsp,
        "sources": [f"{TOP_NAME}.v"],
        "simulation_models": simulation_model_names(dsp),
        "clock": "clk",
        "reset": {"name": "rst", "kind": "synchronous, active high"},
        "ports": top_ports(top),
        "descriptor_fields": fields,
        "param_beat_bytes": generics.param_beat_bytes,
        "streams": "a stream s is s__payload, s__valid, s__ready; a transfer is a cycle with valid and ready high",
    }
    return text, desc


def describe_json(desc: dict) -> str:
    return json.dumps(desc, indent=2) + "\n"
