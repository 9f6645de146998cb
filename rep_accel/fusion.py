"""Structural re-parameterization: a train-time RepVGG block -> one 3x3 conv with bias.

Exactly the paper's derivation (Ding et al. 2021, Sec. 3.3), in float64:

- BN folded into its conv: for a conv kernel W (C_out, C_in/g, k, k) followed by BN
  (gamma, beta, running mean mu, running var var, eps),
  `W' = W * (gamma / sqrt(var + eps))[:, None, None, None]`,
  `b' = beta - mu * gamma / sqrt(var + eps)`.
- the 1x1 kernel zero-padded to the centre of a 3x3 kernel (both branches have padding
  k // 2 and the same stride, so they sample the same input pixels);
- the identity as a 3x3 kernel with a 1 at the centre tap of (channel c, in-group
  channel c mod C_in/g), which is the identity map also with groups, then BN-folded;
- the three kernels and the three biases summed.

QARepVGG blocks (Chu et al. 2022, "Make RepVGG Greater Again: A Quantization-aware
Approach"; docs/checkpoints.md) put one BN after the sum instead of one per branch:
`y = relu(BN(BN3(conv3x3(x)) + conv1x1(x) + x))`. A branch without its own BN
(`ConvBNParams.bn is None`, `BlockParams.identity_without_bn`) enters the sum as its
bare kernel, and the BN after the sum (`BlockParams.post_bn`) is folded last, into a
kernel that already has a bias b: `W' = W * s`, `b' = beta + (b - mu) * s` with
`s = gamma / sqrt(var + eps)`. YOLOv6 keeps that BN beside its fused conv in deploy
form, so `post_bn` may follow a fused `weight`/`bias` too.

`fuse_block` works on raw tensors (`BlockParams`, filled by `rep_accel.checkpoints`
from any key layout, or by `block_params_from_module` from a `rep_accel.models`
block); `fuse_blocks` builds the `FusedNetwork`; `fuse_model` does it for a module.
The result is float32, as `FusedNetwork` specifies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .errors import RepAccelError
from .network import FusedLayer, FusedNetwork

#: BatchNorm epsilon of both RepVGG projects (a state_dict does not store it).
BN_EPS = 1e-5


@dataclass
class BatchNorm:
    """BatchNorm parameters, float64 (C,) each, and its epsilon."""

    weight: np.ndarray
    bias: np.ndarray
    running_mean: np.ndarray
    running_var: np.ndarray
    eps: float = BN_EPS

    @property
    def channels(self) -> int:
        return int(self.weight.shape[0])


@dataclass
class ConvBNParams:
    """One conv+BN branch: kernel float64 (C_out, C_in/groups, k, k), k = 3 or 1; bn
    None for a conv without BN of its own (QARepVGG's 1x1 branch)."""

    kernel: np.ndarray
    bn: BatchNorm | None


@dataclass
class BlockParams:
    """The tensors of one block, train-time (`dense`, `pointwise`, optional `identity`)
    or already fused (`weight` (C_out, C_in/groups, 3, 3), `bias` (C_out,)).

    stride: 1 or 2; groups: conv groups of both convs (and the fused one);
    identity_without_bn: the identity enters the sum without a BN (QARepVGG);
    post_bn: a BN (C_out,) applied to the sum of the branches, or to the fused conv,
    before the ReLU (QARepVGG), else None."""

    name: str
    stride: int
    groups: int
    dense: ConvBNParams | None = None
    pointwise: ConvBNParams | None = None
    identity: BatchNorm | None = None
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    identity_without_bn: bool = False
    post_bn: BatchNorm | None = None

    @property
    def is_fused(self) -> bool:
        return self.weight is not None

    @property
    def cout(self) -> int:
        return int((self.weight if self.is_fused else self.dense.kernel).shape[0])

    @property
    def cin(self) -> int:
        return int((self.weight if self.is_fused else self.dense.kernel).shape[1]) * self.groups


def fold_bn(kernel: np.ndarray, bn: BatchNorm) -> tuple[np.ndarray, np.ndarray]:
    """conv(kernel) followed by BN (eval) == conv(kernel') + bias'. Returns (kernel', bias')."""
    std = np.sqrt(bn.running_var.astype(np.float64) + bn.eps)
    scale = bn.weight.astype(np.float64) / std
    return (kernel.astype(np.float64) * scale[:, None, None, None],
            bn.bias.astype(np.float64) - bn.running_mean.astype(np.float64) * scale)


def fold_bn_after(kernel: np.ndarray, bias: np.ndarray, bn: BatchNorm) -> tuple[np.ndarray, np.ndarray]:
    """conv(kernel) + bias followed by BN (eval) == conv(kernel') + bias'. Returns (kernel', bias')."""
    std = np.sqrt(bn.running_var.astype(np.float64) + bn.eps)
    scale = bn.weight.astype(np.float64) / std
    return (kernel.astype(np.float64) * scale[:, None, None, None],
            bn.bias.astype(np.float64) + (bias.astype(np.float64) - bn.running_mean.astype(np.float64)) * scale)


def _fold_branch(branch: ConvBNParams) -> tuple[np.ndarray, np.ndarray]:
    """A branch as (kernel, bias): BN folded in, or the bare kernel and a zero bias."""
    if branch.bn is None:
        return branch.kernel.astype(np.float64), np.zeros(branch.kernel.shape[0], dtype=np.float64)
    return fold_bn(branch.kernel, branch.bn)


def pad_1x1_to_3x3(kernel: np.ndarray) -> np.ndarray:
    """(C_out, C_in/g, 1, 1) -> (C_out, C_in/g, 3, 3) with the 1x1 tap at the centre."""
    out = np.zeros(kernel.shape[:2] + (3, 3), dtype=np.float64)
    out[:, :, 1, 1] = kernel[:, :, 0, 0]
    return out


def identity_kernel(channels: int, groups: int) -> np.ndarray:
    """The 3x3 kernel (channels, channels/groups, 3, 3) of the identity map with `groups`:
    output channel c reads input channel c, which is in-group channel c mod (channels/groups)."""
    if channels % groups:
        raise RepAccelError(f"identity branch: groups {groups} does not divide {channels} channels")
    cpg = channels // groups
    k = np.zeros((channels, cpg, 3, 3), dtype=np.float64)
    k[np.arange(channels), np.arange(channels) % cpg, 1, 1] = 1.0
    return k


def fuse_block(p: BlockParams) -> FusedLayer:
    """One block -> FusedLayer (float32 weight (C_out, C_in/g, 3, 3), bias (C_out,))."""
    if p.is_fused:
        w, b = np.asarray(p.weight, np.float64), np.asarray(p.bias, np.float64)
    else:
        if p.dense.kernel.shape[2:] != (3, 3) or p.pointwise.kernel.shape[2:] != (1, 1):
            raise RepAccelError(f"block {p.name}: expected a 3x3 and a 1x1 kernel, got "
                                f"{p.dense.kernel.shape} and {p.pointwise.kernel.shape}")
        w, b = _fold_branch(p.dense)
        w1, b1 = _fold_branch(ConvBNParams(pad_1x1_to_3x3(p.pointwise.kernel), p.pointwise.bn))
        w, b = w + w1, b + b1
        if p.identity is not None:
            wi, bi = fold_bn(identity_kernel(p.identity.channels, p.groups), p.identity)
            w, b = w + wi, b + bi
        if p.identity_without_bn:
            w = w + identity_kernel(p.cout, p.groups)
    if p.post_bn is not None:
        w, b = fold_bn_after(w, b, p.post_bn)
    return FusedLayer(name=p.name, weight=np.ascontiguousarray(w, dtype=np.float32),
                      bias=np.ascontiguousarray(b, dtype=np.float32), stride=int(p.stride), groups=int(p.groups))


def fuse_blocks(blocks: list[BlockParams], fc_weight, fc_bias, in_channels: int,
                meta: dict | None = None) -> FusedNetwork:
    """Every block fused, plus the head, as a FusedNetwork (float32)."""
    return FusedNetwork(
        in_channels=int(in_channels),
        layers=[fuse_block(p) for p in blocks],
        fc_weight=np.ascontiguousarray(fc_weight, dtype=np.float32),
        fc_bias=np.ascontiguousarray(fc_bias, dtype=np.float32),
        meta=dict(meta or {}),
    )


def _np(t) -> np.ndarray:
    return t.detach().cpu().to(dtype=torch.float64).numpy()


def _bn_from_module(bn) -> BatchNorm:
    return BatchNorm(_np(bn.weight), _np(bn.bias), _np(bn.running_mean), _np(bn.running_var), float(bn.eps))


def block_params_from_module(block, name: str) -> BlockParams:
    """The BlockParams of a `rep_accel.models.RepVGGBlock` (train-time or deploy)."""
    if block.deploy:
        return BlockParams(name, block.stride, block.groups, weight=_np(block.fused.weight), bias=_np(block.fused.bias))
    return BlockParams(
        name, block.stride, block.groups,
        dense=ConvBNParams(_np(block.conv3x3.conv.weight), _bn_from_module(block.conv3x3.bn)),
        pointwise=ConvBNParams(_np(block.conv1x1.conv.weight), _bn_from_module(block.conv1x1.bn)),
        identity=None if block.identity is None else _bn_from_module(block.identity),
    )


def fuse_model(model) -> FusedNetwork:
    """A `rep_accel.models.RepVGG` (train-time or deploy mode) -> FusedNetwork.

    The module is not changed; BN uses its running statistics (eval-mode semantics)."""
    blocks = [block_params_from_module(block, name) for name, block in model.blocks()]
    meta = {"variant": model.name, "config": model.config.to_dict()}
    return fuse_blocks(blocks, _np(model.head.weight), _np(model.head.bias), model.config.in_channels, meta)
