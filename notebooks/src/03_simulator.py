# %% [markdown]
# # 3. The simulator
#
# `rep_accel.sim` runs a compiled network on the accelerator of [docs/architecture.md](../docs/architecture.md):
# a PI × PO systolic array of 3×3 units fed by line buffers, one fused layer at a time, tiles of PO output
# channels, feature maps in external memory. Two modes give bit-identical outputs:
#
# * **fast**: every output computed exactly (a Numba convolution), cycles from the schedule formula
#   (`rep_accel.layout.layer_cycles`);
# * **cycle**: the engine stepped clock by clock on the same streams the RTL reads; the count is measured, and a
#   per-cycle trace of the ports can be written.
#
# This notebook compiles the default model, simulates held-out digits, plots where the cycles and the memory
# traffic go, and then sweeps the array shape PI × PO for RepVGG-A0 at 224 × 224.

# %%
# %matplotlib inline
import tempfile
from pathlib import Path

import numpy as np
import matplotlib.pyplot as plt

from rep_accel import golden, images, numerics, quantize, workload
from rep_accel.checkpoints import load_fused
from rep_accel.commands.compile import compile_model
from rep_accel.datasets import default_model_path, mnist_split
from rep_accel.sim.network import NetworkSimulator
from rep_accel.sim.report import format_table

CLOCK_MHZ = 150.0
work = Path(tempfile.mkdtemp(prefix="rep-accel-nb3-"))
fused = load_fused(default_model_path())
x_train, y_train, x_test, y_test = mnist_split()
compile_model(fused, work / "build", x_train[:quantize.DEFAULT_NUM_CALIB], pi=8, po=8)  # = rep-accel compile
build = images.load_build(work / "build")
qnet, g = build.qnet, build.generics
print(f"build in {work / 'build'}: {len(qnet.layers)} layers laid out for a {g.pi}x{g.po} array")

# %% [markdown]
# ## Twenty held-out digits in fast mode
#
# The simulator's logits must equal the integer golden model's bit for bit (`rep_accel.golden`, the
# executable form of the numerics contract); its table gives, per layer, the cycles, the MAC utilization, what
# bounds the layer, the on-chip buffer use and the external memory traffic (definitions in
# docs/architecture.md, "Report").

# %%
idx = np.arange(0, len(x_test), len(x_test) // 20)          # two digits of every class
x_q = numerics.quantize_input(x_test[idx], qnet.input_scale)
result = NetworkSimulator(qnet, g, "fast", clock_mhz=CLOCK_MHZ).run(x_q, show_progress=False)
gold = golden.run_network(qnet, x_q)
print("logits equal to the golden model's:", np.array_equal(result.logits, gold))
print("predictions:", result.logits.argmax(1).tolist())
print("labels:     ", y_test[idx].tolist())
print()
report = result.report
print(format_table(report))

# %% [markdown]
# ## Cycles and MAC utilization per layer
#
# Utilization is useful MACs / (9 · PI · PO · cycles). This network is small and its feature maps shrink fast,
# so most layers are bound by something other than the array: stride-2 layers by the input stream (three scan
# steps in four only fill the line buffers), the 2 × 2 layers at the end by loading their weights
# (`parameters`), since every tile's weights stream in for only four output pixels.

# %%
colors = {"compute": "tab:green", "input": "tab:blue", "parameters": "tab:orange"}
names = [lr.name for lr in report.layers]
pos = np.arange(len(names))
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4))
ax1.bar(pos, [lr.cycles for lr in report.layers], color=[colors[lr.bottleneck] for lr in report.layers])
for b, c in colors.items():
    ax1.bar([0], [0], color=c, label=f"{b}-bound")
ax1.set_xticks(pos, names, rotation=30), ax1.set_ylabel("cycles"), ax1.legend()
ax1.set_title(f"cycles per layer: {report.cycles:,} per frame, {report.frames_per_second:,.0f} frames/s at "
              f"{CLOCK_MHZ:g} MHz")
ax2.bar(pos, [100 * lr.utilization for lr in report.layers], color=[colors[lr.bottleneck] for lr in report.layers])
ax2.axhline(100 * report.utilization, color="k", ls="--", lw=1, label=f"network {report.utilization:.1%}")
ax2.set_xticks(pos, names, rotation=30), ax2.set_ylabel("MAC utilization (%)"), ax2.legend()
ax2.set_title(f"MAC utilization of the {g.pi}x{g.po} array")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## External memory traffic per layer
#
# What the host moves per frame, as stream payloads: input activations read (`act_in` beats, PI bytes each,
# once per tile), weights and requantization parameters read (`params` beats, the layer's share of
# `params.bin`), output activations written (`act_out` beats, PO bytes each). The late layers read far more
# weights than activations.

# %%
kib = lambda b: np.array(b) / 1024
act_rd = kib([lr.act_read_bytes for lr in report.layers])
wt_rd = kib([lr.weight_read_bytes for lr in report.layers])
act_wr = kib([lr.act_write_bytes for lr in report.layers])
fig, ax = plt.subplots(figsize=(9, 4))
ax.bar(pos, act_rd, label="activations read")
ax.bar(pos, wt_rd, bottom=act_rd, label="weights read")
ax.bar(pos, act_wr, bottom=act_rd + wt_rd, label="activations written")
ax.set_xticks(pos, names), ax.set_ylabel("KiB per frame"), ax.legend()
total = report.act_read_bytes + report.weight_read_bytes + report.act_write_bytes
ax.set_title(f"external memory traffic: {total / 1024:.1f} KiB per frame, "
             f"{total * report.frames_per_second / 2**20:.0f} MiB/s at {CLOCK_MHZ:g} MHz")
plt.show()

# %% [markdown]
# ## Cycle mode and its port trace
#
# The same build on one digit, stepped clock by clock. The count is measured, not computed, and equals the
# formula's; the trace shows the engine's stream handshakes. Below, the start of layer `stage2.1` (32 → 32
# channels at 4 × 4, four tiles): the descriptor, the first tile's parameter beats (header, 8 requantization
# beats, 8 · 4 weight beats), then the scan, where `act_in` transfers while the array consumes the image and
# `act_out` starts `L` cycles after the first completed output pixel.

# %%
params = [build.layer_params(i) for i in range(len(qnet.layers))]
cyc = NetworkSimulator(qnet, g, "cycle", params=params).run(x_q[:1], trace=True, show_progress=False)
print("cycle mode:", cyc.cycles[0].tolist(), "cycles per layer")
print("fast mode: ", result.cycles[0].tolist())
print("equal:", np.array_equal(cyc.cycles[0], result.cycles[0]), "| logits equal:", np.array_equal(cyc.logits, gold[:1]))

k = names.index("stage2.1")
tr = cyc.trace[cyc.trace["layer"] == k][:130]
signals = ["desc_valid", "desc_ready", "params_valid", "params_ready", "act_in_valid", "act_in_ready",
           "act_out_valid", "act_out_ready", "busy", "done"]
fig, ax = plt.subplots(figsize=(13, 4.5))
for i, s in enumerate(signals):
    y = len(signals) - 1 - i
    ax.fill_between(tr["cycle"], y, y + 0.7 * tr[s], step="post", alpha=0.35, color=f"C{i}")
    ax.step(tr["cycle"], y + 0.7 * tr[s], where="post", lw=1.2, color=f"C{i}")
    ax.axhline(y, color="0.85", lw=0.5, zorder=0)
ax.set_yticks(np.arange(len(signals))[::-1] + 0.35, signals)
ax.set_xlabel("cycle (0 = descriptor transfer)")
ax.set_title(f"{names[k]}: first {len(tr)} of {cyc.cycles[0, k] + 1} trace rows (cycle mode; filled = high)")
plt.show()

# %% [markdown]
# ## Sizing the array: RepVGG-A0 at 224 × 224
#
# How fast could a bigger array run a real ImageNet network, and what does it cost on chip? For every PI × PO
# below, `workload.sized_generics` gives the smallest buffers that run every layer of RepVGG-A0 (line buffer:
# PI lanes × W · cg entries × 2 rows; weight buffer: PI · PO units × max cg kernels × 9 bytes), and the cycles
# are the schedule's (`layout.layer_cycles` over the 22 fused layer shapes; no convolution needs to run). The
# line buffer barely depends on the array shape (its lanes hold a whole row of all channels: about
# W · C · 2 bytes), the weight buffer grows with PO (every column holds its tile's kernels for all input
# channels), and frames/s grow with PI · PO until the small late layers can no longer fill a large array.

# %%
a0 = workload.zoo_workload("A0", (3, 224, 224))
sizes = [1, 2, 4, 8, 16, 32, 64]
rows = []
for pi in sizes:
    for po in sizes:
        ga = workload.sized_generics(a0, pi, po)
        ra = workload.workload_report(a0, ga, CLOCK_MHZ)
        rows.append((pi, po, ga.line_buffer_bytes / 1024, ga.weight_buffer_bytes / 1024, ra.frames_per_second,
                     ra.utilization))
rows = np.array(rows)
print(f"{a0.name}: {sum(s.macs for s in a0.shapes) / 1e9:.2f} GMAC per frame in {len(a0.shapes)} conv layers")
print(f"{'PI x PO':>8} {'line KiB':>9} {'weight KiB':>10} {'frames/s':>9} {'util':>6}")
for pi, po, lb, wb, fps, u in rows:
    if pi == po or (pi, po) in ((8, 16), (16, 8), (4, 16), (16, 4)):
        print(f"{f'{int(pi)}x{int(po)}':>8} {lb:9.1f} {wb:10.1f} {fps:9.1f} {u:6.1%}")

fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
fps = rows[:, 4].reshape(len(sizes), len(sizes))
im = axes[0].imshow(np.log10(fps), origin="lower", cmap="viridis")
for (i, j), v in np.ndenumerate(fps):
    axes[0].text(j, i, f"{v:.0f}" if v >= 10 else f"{v:.1f}", ha="center", va="center", fontsize=7,
                 color="white" if np.log10(v) < np.log10(fps).mean() else "black")
axes[0].set_xticks(range(len(sizes)), sizes), axes[0].set_yticks(range(len(sizes)), sizes)
axes[0].set_xlabel("PO (array columns)"), axes[0].set_ylabel("PI (array rows)")
axes[0].set_title(f"frames/s at {CLOCK_MHZ:g} MHz")
for ax, col, label in ((axes[1], 2, "line-buffer KiB"), (axes[2], 3, "weight-buffer KiB")):
    sc = ax.scatter(rows[:, col], rows[:, 4], c=np.log2(rows[:, 0] * rows[:, 1]), cmap="plasma", s=30)
    ax.set_yscale("log")
    if col == 3:
        ax.set_xscale("log")
    ax.set_xlabel(f"{label} (smallest that fits A0)"), ax.set_ylabel("frames/s")
    ax.set_title(f"frames/s against {label.split()[0]} size")
    for pi, po, lb, wb, f, _ in rows:
        if pi == po:
            ax.annotate(f"{int(pi)}x{int(po)}", (lb if col == 2 else wb, f), fontsize=7,
                        xytext=(4, -8), textcoords="offset points")
fig.colorbar(sc, ax=axes[1:], label="log2(PI x PO) (MACs per cycle / 9)")
plt.show()

# %% [markdown]
# Per layer at one array shape, the same picture as above for A0: where its cycles go on an 8 × 8 array.

# %%
ra = workload.workload_report(a0, workload.sized_generics(a0, 8, 8), CLOCK_MHZ)
stride2 = sum(lr.cycles for lr in ra.layers if lr.stride == 2) / ra.cycles
print(f"the {sum(lr.stride == 2 for lr in ra.layers)} stride-2 layers take {stride2:.0%} of the cycles "
      f"(input-bound: three scan steps in four only fill the line buffers)")
fig, ax = plt.subplots(figsize=(13, 4))
p = np.arange(len(ra.layers))
mcyc = np.array([lr.cycles for lr in ra.layers]) / 1e6
ax.bar(p, mcyc, color=[colors[lr.bottleneck] for lr in ra.layers])
for b, c in colors.items():
    ax.bar([0], [0], color=c, label=f"{b}-bound")
ax.set_ylim(0, 1.4 * mcyc.max())
ax2 = ax.twinx()
ax2.plot(p, [100 * lr.utilization for lr in ra.layers], "k.-", label="MAC utilization")
ax2.set_ylim(0, 140), ax2.set_yticks(range(0, 101, 20)), ax2.set_ylabel("MAC utilization (%)")
ax.set_xticks(p, [lr.name for lr in ra.layers], rotation=60, fontsize=8), ax.set_ylabel("Mcycles")
ax.set_title(f"RepVGG-A0 224x224 on 8x8: {ra.cycles / 1e6:.1f} Mcycles per frame, {ra.frames_per_second:.1f} frames/s "
             f"at {CLOCK_MHZ:g} MHz, utilization {ra.utilization:.1%}")
ax.legend(loc="upper left", ncol=3), ax2.legend(loc="upper right")
plt.show()

# %% [markdown]
# From the command line:
#
# ```sh
# rep-accel simulate build/ --input x.npy                      # fast mode, the table above
# rep-accel simulate build/ --input x.npy --mode cycle --trace trace.csv
# ```
#
# Next: `04_rtl_verification.ipynb` runs the same layer in the generated Verilog.
