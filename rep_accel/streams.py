"""Whole-layer streams and the port-trace format: what the host and the engine exchange,
defined once for the simulator (`rep_accel.sim.cycle`) and the cocotb testbench
(`rep_accel.verification.tb`), which both import it.

* `layer_params(layer, generics)`: a layer's parameter beats, uint8 (beats, 9 * PI), every
  tile group's `layout.pack_group_params` in group order (what params.bin holds);
* `layer_streams(x, shape, generics)`: a picture's act_in beats, uint8 (beats, PI), every
  tile group's `layout.input_beats` in group order;
* `layer_output(beats, shape, generics)`: act_out beats (tiles * H_out * W_out, PO) in
  transfer order back to the output uint8 (C_out, H_out, W_out);
* `Stimulus`: the host's per-cycle valid/ready patterns on the three streams;
* the port trace: `TRACE_SIGNALS`, `TRACE_DTYPE` (one row per cycle), `trace_struct`,
  `compare_traces`, `write_trace` / `read_trace` (CSV or NPZ).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import RepAccelError
from .fsutil import atomic_write_bytes
from .generics import HardwareGenerics
from .layout import LayerShape, as_scheduled, input_beats, output_from_beats, pack_group_params

#: The engine's port signals in a trace, after the `cycle` column (all one bit).
TRACE_SIGNALS = ("desc_valid", "desc_ready", "params_valid", "params_ready", "act_in_valid",
                 "act_in_ready", "act_out_valid", "act_out_ready", "busy", "done")
#: The trace's numpy structured dtype.
TRACE_DTYPE = np.dtype([("cycle", np.int64)] + [(s, np.uint8) for s in TRACE_SIGNALS])



@dataclass
class Stimulus:
    """Host behaviour on the streams: uint8 patterns indexed by cycle modulo their length.

    params_valid / act_in_valid: 1 = the host offers a beat that cycle (if it has one);
    act_out_ready: 1 = the host takes an output beat. None = all ones (never stalls).
    """

    params_valid: np.ndarray | None = None
    act_in_valid: np.ndarray | None = None
    act_out_ready: np.ndarray | None = None

    @classmethod
    def random(cls, seed: int, p_params: float = 0.7, p_act_in: float = 0.7, p_act_out: float = 0.7,
               length: int = 1009) -> "Stimulus":
        """Random patterns, each cycle high with the given probability (None for 1.0)."""
        rng = np.random.default_rng(seed)

        def pat(p):
            if p >= 1.0:
                return None
            a = (rng.random(length) < p).astype(np.uint8)
            a[rng.integers(length)] = 1  # never all zero: the layer must finish
            return a
        return cls(pat(p_params), pat(p_act_in), pat(p_act_out))

    def arrays(self):
        out = []
        for name in ("params_valid", "act_in_valid", "act_out_ready"):
            a = getattr(self, name)
            a = np.ones(1, np.uint8) if a is None else np.ascontiguousarray(a, dtype=np.uint8).ravel()
            if a.size == 0 or not a.any():
                raise RepAccelError(f"stimulus {name}: the pattern must have at least one 1, or the layer never finishes")
            out.append(a)
        return out


def trace_struct(rows: np.ndarray) -> np.ndarray:
    t = np.zeros(rows.shape[0], dtype=TRACE_DTYPE)
    t["cycle"] = np.arange(rows.shape[0])
    for k, name in enumerate(TRACE_SIGNALS):
        t[name] = rows[:, k]
    return t


def layer_streams(x: np.ndarray, shape: LayerShape, generics: HardwareGenerics) -> np.ndarray:
    """The act_in beats of a whole layer for one picture x (C_in, H, W): every tile group's
    `layout.input_beats` in group order, as bytes uint8 (beats, PI). shape: a LayerShape or
    ScheduledLayer."""
    scheduled = as_scheduled(shape, generics)
    parts = [input_beats(x, j, generics, scheduled.shape.stride) for j in scheduled.groups]
    return np.ascontiguousarray(np.concatenate(parts).view(np.uint8))


def layer_params(layer, generics: HardwareGenerics) -> np.ndarray:
    """The parameter beats of a whole QuantizedLayer (what params.bin holds for it)."""
    s = layer.shape
    return np.concatenate([pack_group_params(layer.weight, layer.bias, layer.m0, layer.n, s, j, generics)
                           for j in as_scheduled(s, generics, layer.name).groups])


def compare_traces(rtl: np.ndarray, sim: np.ndarray) -> str | None:
    """None if the two port traces (TRACE_DTYPE) are equal row for row, else where they first differ."""
    names = TRACE_DTYPE.names
    n = min(len(rtl), len(sim))
    for name in names:
        if not np.array_equal(rtl[name][:n].astype(np.int64), sim[name][:n].astype(np.int64)):
            break
    else:
        if len(rtl) == len(sim):
            return None
        return f"RTL trace has {len(rtl)} rows, simulator {len(sim)} (equal over the first {n})"
    diff = np.zeros(n, dtype=bool)
    for name in names:
        diff |= rtl[name][:n].astype(np.int64) != sim[name][:n].astype(np.int64)
    c = int(np.flatnonzero(diff)[0])
    cols = [f"{name} rtl={int(rtl[name][c])} sim={int(sim[name][c])}" for name in names
            if int(rtl[name][c]) != int(sim[name][c])]
    return f"first difference in cycle {c}: " + ", ".join(cols)


def write_trace(path: str | os.PathLike, trace: np.ndarray, extra: dict | None = None) -> None:
    """Write a trace (TRACE_DTYPE, optionally with more leading integer fields such as
    `layer`) as CSV (header line, one row per cycle) or NPZ (one array per column),
    chosen by the file extension."""
    path = Path(path)
    names = trace.dtype.names
    if path.suffix.lower() == ".npz":
        import io
        buf = io.BytesIO()
        np.savez_compressed(buf, **{n: trace[n] for n in names}, **(extra or {}))
        atomic_write_bytes(path, buf.getvalue())
    elif path.suffix.lower() == ".csv":
        cols = np.stack([trace[n].astype(np.int64) for n in names], axis=1)
        import io
        buf = io.StringIO()
        buf.write(",".join(names) + "\n")
        np.savetxt(buf, cols, fmt="%d", delimiter=",")
        atomic_write_bytes(path, buf.getvalue().encode())
    else:
        raise RepAccelError(f"trace file {path}: use a .csv or .npz extension")


def read_trace(path: str | os.PathLike) -> np.ndarray:
    """Read a trace written by `write_trace` back as a structured array."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        z = np.load(path)
        names = [n for n in z.files]
        cols = {n: z[n] for n in names}
    else:
        with open(path) as f:
            names = f.readline().strip().split(",")
        data = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
        cols = {n: data[:, k] for k, n in enumerate(names)}
    dtype = np.dtype([(n, np.int64 if n in ("cycle", "layer") else np.uint8) for n in cols])
    t = np.zeros(len(next(iter(cols.values()))), dtype=dtype)
    for n in cols:
        t[n] = cols[n]
    return t


def layer_output(beats: np.ndarray, shape: LayerShape, generics: HardwareGenerics) -> np.ndarray | None:
    """A layer's act_out beats (tiles * H_out * W_out, PO) in transfer order as the output
    uint8 (C_out, H_out, W_out) (layout.output_from_beats per tile group); None if the count
    is wrong. shape: a LayerShape or ScheduledLayer."""
    scheduled = as_scheduled(shape, generics)
    shape = scheduled.shape
    hw = shape.out_height * shape.out_width
    if len(beats) != scheduled.output_beats:
        return None
    out = np.zeros((shape.cout, shape.out_height, shape.out_width), dtype=np.uint8)
    at = 0
    for j in scheduled.groups:
        output_from_beats(beats[at:at + j.count * hw], shape, j, out, scheduled.winograd)
        at += j.count * hw
    return out
