# %% [markdown]
# # 1. Structural re-parameterization
#
# A RepVGG block is trained with three parallel branches on the same input, summed, then ReLU:
#
# $$y = \mathrm{ReLU}\big(\mathrm{BN}_3(W_3 * x) + \mathrm{BN}_1(W_1 * x) + \mathrm{BN}_0(x)\big)$$
#
# (the identity branch $\mathrm{BN}_0(x)$ only where the block keeps its channel count and has stride 1).
# At inference every branch is linear, so the block is **one** 3×3 convolution with a bias
# (Ding et al., *RepVGG*, CVPR 2021, Sec. 3.3):
#
# 1. fold each BatchNorm into its convolution: $W' = W\,\gamma/\sqrt{\sigma^2+\epsilon}$,
#    $b' = \beta - \mu\,\gamma/\sqrt{\sigma^2+\epsilon}$;
# 2. pad the 1×1 kernel to the centre of a 3×3 kernel;
# 3. write the identity as a 3×3 kernel with a 1 at the centre tap of input channel = output channel;
# 4. add the three kernels and the three biases.
#
# That is why the accelerator needs only one kind of unit: a 3×3 convolution + ReLU.
# This notebook fuses the bundled default model (`rep_accel.fusion`), shows a block's branches and its
# fused kernel side by side, and measures how equal the fused network is to the train-time one.

# %%
# %matplotlib inline
import numpy as np
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from rep_accel.checkpoints import fused_parameter_count, load_checkpoint
from rep_accel.datasets import default_model_path, mnist_split
from rep_accel.fusion import fold_bn, fuse_block, identity_kernel, pad_1x1_to_3x3

torch.manual_seed(0)
loaded = load_checkpoint(default_model_path())   # the bundled train-time checkpoint
model = loaded.to_model()                        # a torch RepVGG holding it, eval mode
fused = loaded.network                           # the fused float network (rep_accel.network.FusedNetwork)
print(f"RepVGG-{loaded.variant}, {loaded.config.in_channels} input channel(s), {loaded.config.num_classes} classes")
print(f"{'block':<10} {'C_in->C_out':>11} {'stride':>6}  branches")
for b in loaded.blocks:
    branches = "3x3+BN, 1x1+BN" + (", identity BN" if b.identity is not None else "")
    print(f"{b.name:<10} {f'{b.cin}->{b.cout}':>11} {b.stride:>6}  {branches}")

# %% [markdown]
# ## One block, branch by branch
#
# `stage2.1` (32 → 32 channels, stride 1) has all three branches. Fold each BatchNorm into its kernel, put the
# 1×1 and identity kernels at the centre of a 3×3 kernel, and add: the sum is what `fuse_block` returns.

# %%
block = next(b for b in loaded.blocks if b.name == "stage2.1")
w3, b3 = fold_bn(block.dense.kernel, block.dense.bn)
w1, b1 = fold_bn(pad_1x1_to_3x3(block.pointwise.kernel), block.pointwise.bn)
wi, bi = fold_bn(identity_kernel(block.identity.channels, block.groups), block.identity)
layer = fuse_block(block)                      # float32 weight (32, 32, 3, 3), bias (32,)
print("max |(3x3 + 1x1 + identity) - fused| kernel:", np.abs(w3 + w1 + wi - layer.weight).max())
print("max |(3x3 + 1x1 + identity) - fused| bias:  ", np.abs(b3 + b1 + bi - layer.bias).max())
print("(float32 rounding of the fused tensors; the sum itself is float64)")

# %% [markdown]
# Each row below is one (output channel, input channel) kernel. The first rows have input channel = output
# channel, where the identity branch adds its folded BatchNorm scale at the centre; the last row is an
# off-diagonal kernel, where only the 3×3 and 1×1 branches contribute. Colours share one scale per row.

# %%
pairs = [(0, 0), (5, 5), (17, 17), (5, 12)]
columns = [("3x3 conv + BN", w3), ("1x1 conv + BN\n(at the centre)", w1), ("identity BN\n(at the centre)", wi),
           ("= fused 3x3 kernel", layer.weight.astype(np.float64))]
fig, axes = plt.subplots(len(pairs), len(columns), figsize=(10, 2.4 * len(pairs)))
for r, (co, ci) in enumerate(pairs):
    vmax = max(np.abs(w[co, ci]).max() for _, w in columns)
    for c, (title, w) in enumerate(columns):
        ax = axes[r, c]
        ax.imshow(w[co, ci], cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        for (y, x), v in np.ndenumerate(w[co, ci]):
            ax.text(x, y, f"{v:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if abs(v) > 0.6 * vmax else "black")
        ax.set_xticks([]), ax.set_yticks([])
        if r == 0:
            ax.set_title(title, fontsize=10)
        if c == 0:
            ax.set_ylabel(f"out {co}, in {ci}")
fig.suptitle("stage2.1: the three train-time branches and their sum, the fused kernel")
fig.tight_layout()
plt.show()

# %% [markdown]
# Many kernels at once: a mosaic of the first 12 output × 12 input channels of the layer, each cell a 3×3
# kernel (grey lines separate them). The 1×1 branch adds to the centre of every kernel; the identity adds to
# the centre of the diagonal kernels only. The colour scale is clipped so that the small taps stay visible.

# %%
def mosaic(w, n=12):
    """The first n x n kernels of (C_out, C_in, 3, 3) as one (4n - 1, 4n - 1) image, NaN between kernels."""
    img = np.full((4 * n - 1, 4 * n - 1), np.nan)
    for o in range(n):
        for i in range(n):
            img[4 * o:4 * o + 3, 4 * i:4 * i + 3] = w[o, i]
    return img

cmap = plt.get_cmap("RdBu_r").copy()
cmap.set_bad("0.75")
clip = float(np.percentile(np.abs(w3), 99.5))
panels = [("3x3 branch", w3), ("1x1 + identity branches", w1 + wi), ("fused kernel", layer.weight)]
fig, axes = plt.subplots(1, 3, figsize=(15, 5.2))
for ax, (title, w) in zip(axes, panels):
    im = ax.imshow(mosaic(w), cmap=cmap, vmin=-clip, vmax=clip)
    ax.set_title(f"stage2.1: {title}")
    ax.set_xlabel("input channel"), ax.set_ylabel("output channel")
    ax.set_xticks(4 * np.arange(12) + 1, range(12)), ax.set_yticks(4 * np.arange(12) + 1, range(12))
fig.colorbar(im, ax=axes, shrink=0.8, extend="both", label=f"weight (clipped at ±{clip:.2f})")
plt.show()

# %% [markdown]
# ## The equivalence, measured
#
# First the block alone, on the activations it really sees (the held-out digits run through the blocks before
# it): the train-time block in eval mode against `relu(conv3x3(x, fused weight) + fused bias)`. In float32 the
# two differ by rounding only; in float64 by about 1e-15, which shows the fusion itself is exact.

# %%
x_train, y_train, x_test, y_test = mnist_split()
x = torch.from_numpy(x_test)
blocks = dict(model.blocks())
with torch.no_grad():
    h = x
    for name, b in model.blocks():
        if name == "stage2.1":
            break
        h = b(h)
    ref32 = blocks["stage2.1"](h)
    out32 = F.relu(F.conv2d(h, torch.from_numpy(layer.weight), torch.from_numpy(layer.bias), padding=1))
    ref64 = blocks["stage2.1"].double()(h.double())
    out64 = F.relu(F.conv2d(h.double(), torch.from_numpy(w3 + w1 + wi), torch.from_numpy(b3 + b1 + bi), padding=1))
    blocks["stage2.1"].float()
print(f"block input {tuple(h.shape)}, output max |y| = {ref32.abs().max():.3f}")
print(f"float32: max |train-time - fused| = {(ref32 - out32).abs().max():.3g}")
print(f"float64: max |train-time - fused| = {(ref64 - out64).abs().max():.3g}")

# %% [markdown]
# Then the whole network on the 1000 held-out digits: train-time model against the fused network.

# %%
with torch.no_grad():
    logits_train = model(x).numpy()
logits_fused = fused.forward(x_test)
diff = np.abs(logits_train - logits_fused)
acc_train = np.mean(logits_train.argmax(1) == y_test)
acc_fused = np.mean(logits_fused.argmax(1) == y_test)
agree = np.mean(logits_train.argmax(1) == logits_fused.argmax(1))
print(f"logits: max |train-time - fused| = {diff.max():.3g} (max |logit| {np.abs(logits_train).max():.1f})")
print(f"top-1 on {len(y_test)} held-out digits: train-time {acc_train:.1%}, fused {acc_fused:.1%}; "
      f"same prediction on {agree:.1%}")
print(f"parameters: train-time {loaded.parameter_count():,}, fused {fused_parameter_count(fused):,}")

exact = int(np.sum(diff == 0))
fig, ax = plt.subplots(figsize=(7, 3))
ax.hist(np.log10(diff[diff > 0]), bins=40)
ax.set_xlabel("log10 |train-time logit - fused logit|"), ax.set_ylabel("logits")
ax.set_title(f"{diff.size:,} logits of {len(y_test)} held-out digits ({exact:,} exactly equal): float32 rounding")
plt.show()

# %% [markdown]
# The same fusion, for any official-repository, timm or rep-accel checkpoint, is one command:
#
# ```sh
# rep-accel fuse model.pt -o deploy.pt
# ```
#
# It writes the deploy checkpoint in the input's key convention and checks it against the train-time network.
# Next: `02_quantization.ipynb` turns the fused network into integers.
