# %% [markdown]
# # 2. Quantization
#
# The accelerator computes in integers only. `rep_accel.quantize` turns the fused float network into the
# integer network of the numerics contract ([docs/numerics.md](../docs/numerics.md)):
#
# | tensor | type | scale |
# |---|---|---|
# | weights | int8 in [-127, 127], symmetric | one per output channel, `s_w[c] = max|w_c| / 127` |
# | activations after every ReLU | uint8 in [0, 255] | one per tensor, `s_y = range / 255` |
# | network input | int8 | `s_in = range / 127` |
# | bias, accumulator | int32 | `s_x * s_w[c]` |
#
# Every layer computes `acc = Σ x·w` (int32), `v = acc + B`, then `y = clamp((v·M0 + 2^(n-1)) >> n, 0, 255)`:
# the multiplier `M0 / 2^n` approximates `s_x s_w[c] / s_y`, and the clamp is the ReLU. The activation ranges
# come from **calibration**: the float network runs on a few hundred training digits and an observer (default
# `mse`) picks, for every tensor, the range that minimizes the expected squared quantization error.
#
# This notebook quantizes the bundled default model and looks at what that costs: weight and activation ranges,
# the signal-to-quantization-noise ratio (SQNR) of every layer, float vs int8 accuracy on the 1000 held-out
# digits, and the digits the int8 network gets wrong.

# %%
# %matplotlib inline
import numpy as np
import matplotlib.pyplot as plt

from rep_accel import golden, quantize
from rep_accel.checkpoints import load_fused
from rep_accel.commands.compile import summary_table
from rep_accel.datasets import default_model_path, mnist_split
from rep_accel.generics import HardwareGenerics

fused = load_fused(default_model_path())
x_train, y_train, x_test, y_test = mnist_split()
calib = x_train[:quantize.DEFAULT_NUM_CALIB]
qnet, report = quantize.quantize_network(fused, calib, observer=quantize.DEFAULT_OBSERVER,
                                         return_report=True, show_progress=False)
# The same table `rep-accel compile` prints (bytes: the layer's share of params.bin for an 8x8 array).
print(summary_table(qnet, report, HardwareGenerics()))

# %% [markdown]
# ## Weight ranges
#
# Left: the float range of every layer's fused weights (bar from min to max). Right: the per-output-channel
# scales `s_w[c]`; one scale per channel instead of one per layer keeps channels with small weights from being
# rounded to a handful of levels (the spread is up to an order of magnitude within a layer).

# %%
names = [l.name for l in qnet.layers]
pos = np.arange(len(names))
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4))
lo = np.array([lr.weight_min for lr in report.layers])
hi = np.array([lr.weight_max for lr in report.layers])
ax1.bar(pos, hi - lo, bottom=lo, color="tab:blue", alpha=0.7)
ax1.axhline(0, color="k", lw=0.5)
ax1.set_ylim(1.1 * lo.min(), 1.1 * hi.max())
ax1.set_xticks(pos, names, rotation=30), ax1.set_ylabel("fused float weight")
ax1.set_title("weight range per layer (min to max)")
for i, l in enumerate(qnet.layers):
    ax2.scatter(np.full(l.s_w.size, i) + np.random.default_rng(i).uniform(-0.25, 0.25, l.s_w.size), l.s_w,
                s=6, alpha=0.6)
ax2.set_yscale("log"), ax2.set_xticks(pos, names, rotation=30)
ax2.set_ylabel("s_w[c] (real units per int8 step)"), ax2.set_title("per-channel weight scales")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Activation ranges
#
# Left: for every layer output, the largest value seen on the calibration digits and the range the `mse`
# observer chose (the value that maps to 255). Where the largest value is a rare outlier the observer clips it,
# trading a little error on a few values for a finer step on all others. Right: the distribution of one
# layer's nonzero activations (after ReLU most values are exact zeros, which quantize without error).

# %%
act_max = np.array([lr.act_max for lr in report.layers])
act_rng = np.array([lr.act_range for lr in report.layers])
_, acts = fused.forward(calib, return_activations=True)
k = names.index("stage2.1")
values = acts[k].ravel()
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4))
ax1.bar(pos - 0.2, act_max, 0.4, label="largest value seen")
ax1.bar(pos + 0.2, act_rng, 0.4, label="range chosen (255 * s_y)")
ax1.set_xticks(pos, names, rotation=30), ax1.set_ylabel("activation (real units)")
ax1.set_title(f"activation ranges ({report.observer} observer, {report.num_calib} calibration digits)")
ax1.legend()
ax2.hist(values[values > 0], bins=100, log=True, color="tab:gray")
ax2.axvline(act_rng[k], color="tab:orange", label=f"chosen range {act_rng[k]:.2f}")
ax2.axvline(act_max[k], color="tab:blue", ls="--", label=f"largest value {act_max[k]:.2f}")
ax2.set_xlabel("activation value"), ax2.set_ylabel("count (log)")
ax2.set_title(f"{names[k]} output: {np.mean(values == 0):.0%} zeros, nonzero values below")
ax2.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## SQNR per layer
#
# The SQNR of a layer's integer output (dequantized, `y * s_y`) against the float network's output at the same
# point, with the integer network run end to end (errors accumulate from the input on):
# `SQNR = 10 log10(Σ ref² / Σ (ref - approx)²)`. The compile report measures it on the calibration digits; here it
# is measured again on the held-out digits, which the calibration never saw.

# %%
f_logits, f_acts = fused.forward(x_test, return_activations=True)
x_q = golden.quantize_input(x_test, qnet)
q_logits, q_acts = golden.run_network(qnet, x_q, return_activations=True)
sqnr_test = [quantize.sqnr_db(fa, qa.astype(np.float64) * l.s_y) for fa, qa, l in zip(f_acts, q_acts, qnet.layers)]
logits_test = quantize.sqnr_db(f_logits, q_logits.astype(np.float64) * qnet.head.logit_scale)
fig, ax = plt.subplots(figsize=(9, 3.8))
ax.bar(pos - 0.2, [lr.sqnr_db for lr in report.layers], 0.4, label=f"calibration digits ({report.report_samples})")
ax.bar(pos + 0.2, sqnr_test, 0.4, label=f"held-out digits ({len(x_test)})")
ax.axhline(logits_test, color="k", ls="--", lw=1, label=f"logits, held-out: {logits_test:.1f} dB")
ax.set_xticks(pos, names), ax.set_ylabel("SQNR (dB)"), ax.set_ylim(0, None)
ax.set_title("integer layer outputs vs float, end to end")
ax.legend(loc="lower left")
plt.show()
for name, a, b in zip(names, report.layers, sqnr_test):
    print(f"{name:<9} calibration {a.sqnr_db:5.1f} dB   held-out {b:5.1f} dB")

# %% [markdown]
# ## Float vs int8 accuracy on the held-out digits
#
# The int8 prediction is the argmax of the integer logits (every logit has the same scale, so no
# dequantization is needed). Left: accuracy per digit; right: the integer logits (dequantized) against the
# float ones for 100 digits.

# %%
f_pred, q_pred = f_logits.argmax(1), q_logits.argmax(1)
print(f"top-1 on {len(y_test)} held-out digits: float {np.mean(f_pred == y_test):.1%}, "
      f"int8 {np.mean(q_pred == y_test):.1%}; int8 and float agree on {np.mean(f_pred == q_pred):.1%}")
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4))
digits = np.arange(10)
ax1.bar(digits - 0.2, [np.mean(f_pred[y_test == d] == d) for d in digits], 0.4, label="float")
ax1.bar(digits + 0.2, [np.mean(q_pred[y_test == d] == d) for d in digits], 0.4, label="int8")
ax1.set_ylim(0.9, 1.0), ax1.set_xticks(digits), ax1.set_xlabel("digit"), ax1.set_ylabel("top-1")
ax1.set_title("accuracy per class (100 held-out digits each)"), ax1.legend(loc="lower right")
sel = np.arange(0, len(x_test), 10)
ax2.scatter(f_logits[sel].ravel(), (q_logits[sel] * qnet.head.logit_scale).ravel(), s=4)
lim = np.abs(f_logits[sel]).max() * 1.05
ax2.plot([-lim, lim], [-lim, lim], "k", lw=0.5)
ax2.set_xlabel("float logit"), ax2.set_ylabel("int8 logit x logit_scale")
ax2.set_title(f"logits of {len(sel)} digits (SQNR {logits_test:.1f} dB)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The digits the int8 network gets wrong
#
# Every held-out digit the int8 network misclassifies, with what the float network said. A red title marks a
# digit where int8 and float disagree; where both are wrong in the same way, quantization is not the cause.

# %%
wrong = np.flatnonzero(q_pred != y_test)
cols = 8
rows = max(1, -(-len(wrong) // cols))
fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols, 2.0 * rows), squeeze=False)
for ax in axes.ravel():
    ax.axis("off")
for ax, i in zip(axes.ravel(), wrong):
    ax.imshow(x_test[i, 0], cmap="gray_r")
    ax.set_title(f"true {y_test[i]}\nfloat {f_pred[i]}  int8 {q_pred[i]}", fontsize=9,
                 color="tab:red" if f_pred[i] != q_pred[i] else "black")
fig.suptitle(f"{len(wrong)} of {len(y_test)} held-out digits misclassified by the int8 network", y=1.0)
fig.tight_layout()
plt.show()

# %% [markdown]
# The same quantization, with the weight images the simulator and the RTL read, is one command
# (calibration data of your own with `--calib`):
#
# ```sh
# rep-accel compile rep_accel/data/default_model.pt -o build/
# ```
#
# Next: `03_simulator.ipynb` runs the build on the accelerator's simulator.
