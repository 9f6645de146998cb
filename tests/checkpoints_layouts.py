"""Test helpers: the checkpoint layouts of the official RepVGG repository, timm, mmpretrain
and QARepVGG, produced from this package's own models' keys and weights (no code of
those projects).

The key conventions are written out here independently of rep_accel.checkpoints, from
the issue text and the projects' module names (mmpretrain and QARepVGG: below, and
docs/checkpoints.md):

- official (DingXiaoH/RepVGG): stem `stage0.`, stage S>=1 block B `stageS.B.`; branches
  `rbr_dense`, `rbr_1x1`, `rbr_identity`, deploy `rbr_reparam`; head `linear`.
- timm (byobnet repvgg_*): stem `stem.`, stage S>=1 block B `stages.{S-1}.B.`; branches
  `conv_kxk`, `conv_1x1`, `identity`, deploy `reparam_conv`; head `head.fc`.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from rep_accel.models import RepVGG, create_model, randomize_batchnorm

BRANCHES = {
    "official": {"conv3x3": "rbr_dense", "conv1x1": "rbr_1x1", "identity": "rbr_identity", "fused": "rbr_reparam"},
    "timm": {"conv3x3": "conv_kxk", "conv1x1": "conv_1x1", "identity": "identity", "fused": "reparam_conv"},
    "mmpretrain": {"conv3x3": "branch_3x3", "conv1x1": "branch_1x1", "identity": "branch_norm",
                   "fused": "branch_reparam"},
}
HEAD = {"official": "linear", "timm": "head.fc", "mmpretrain": "head.fc"}


def rename_key(key: str, family: str) -> str:
    """A key of rep_accel.models.RepVGG in the official, timm or mmpretrain convention
    (mmpretrain's below)."""
    m = re.match(r"^head\.(weight|bias)$", key)
    if m:
        return f"{HEAD[family]}.{m.group(1)}"
    m = re.match(r"^stages\.(\d+)\.(\d+)\.(conv3x3|conv1x1|identity|fused)\.(.+)$", key)
    assert m, key
    s, b, branch, rest = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
    if family == "official":
        prefix = "stage0" if s == 0 else f"stage{s}.{b}"
    elif family == "mmpretrain":
        prefix = "backbone.stem" if s == 0 else f"backbone.stage_{s}.{b}"
        if branch in ("conv3x3", "conv1x1"):
            rest = re.sub(r"^bn\.", "norm.", rest)
    else:
        prefix = "stem" if s == 0 else f"stages.{s - 1}.{b}"
    assert s != 0 or b == 0
    return f"{prefix}.{BRANCHES[family][branch]}.{rest}"


def renamed_state_dict(model: RepVGG, family: str) -> dict:
    """model.state_dict() with every key in `family`'s convention (tensors cloned)."""
    return {rename_key(k, family): v.detach().clone() for k, v in model.state_dict().items()}


def trained_like(name: str, seed: int, in_channels: int = 3, num_classes: int = 10) -> RepVGG:
    """A zoo model with seeded random weights and random BN statistics, in eval mode."""
    torch.manual_seed(seed)
    return randomize_batchnorm(create_model(name, in_channels=in_channels, num_classes=num_classes), seed).eval()


# ---------------------------------------------------------------- mmpretrain
# mmpretrain (open-mmlab/mmpretrain, mmpretrain/models/backbones/repvgg.py, inside an
# ImageClassifier): stem `backbone.stem.`, stage S>=1 block B `backbone.stage_S.B.`;
# branches `branch_3x3`, `branch_1x1` (conv + `norm`), `branch_norm` (the identity BN),
# deploy `branch_reparam`; head `head.fc` (LinearClsHead). The file is an mmengine
# checkpoint {"meta", "state_dict", "message_hub", "optimizer", ...}.

def mmengine_checkpoint(model: RepVGG) -> dict:
    """model's weights as mmengine's Runner saves them (meta, state_dict, optimizer)."""
    return {
        "meta": {"epoch": 120, "iter": 600600, "mmengine_version": "0.10.4", "seed": 0,
                 "dataset_meta": {"classes": tuple(f"class {i}" for i in range(model.config.num_classes))},
                 "experiment_name": "repvgg-A0_8xb32_in1k"},
        "state_dict": renamed_state_dict(model, "mmpretrain"),
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "momentum": 0.9, "params": [0, 1]}]},
    }


# ---------------------------------------------------------------- QARepVGG
# QARepVGG (cxxgtxy/QARepVGG repvgg.py `QARepVGGBlockV2`, "the default implementation";
# meituan/YOLOv6 yolov6/layers/common.py `QARepVGGBlock`), with the official RepVGG's
# module names (`stage0`, `stageS.B`, `linear`):
#   rbr_dense = conv_bn(3x3)   -> rbr_dense.conv.weight, rbr_dense.bn.*
#   rbr_1x1   = Conv2d(1x1, bias=False)   -> rbr_1x1.weight
#   rbr_identity = nn.Identity()          (no tensors), where C_in == C_out, stride 1
#   bn        = BatchNorm2d(C_out) after the sum   -> bn.*
#   forward: relu(bn(rbr_dense(x) + rbr_1x1(x) + rbr_identity(x)))
# The repository's `QARepVGGBlock` has a bare `rbr_dense = Conv2d(3x3, bias=False)`
# (`rbr_dense.weight`). Deploy: cxxgtxy deletes `bn` (keys `rbr_reparam.*`, the official
# deploy keys); YOLOv6 keeps it: relu(bn(rbr_reparam(x))).


class QABlockReference(nn.Module):
    """One QARepVGG block with the reference code's module names and forward."""

    def __init__(self, cin: int, cout: int, stride: int, groups: int, form: str):
        super().__init__()
        self.form = form
        if form == "yolov6-deploy":
            self.rbr_reparam = nn.Conv2d(cin, cout, 3, stride, 1, groups=groups, bias=True)
        else:
            if form == "bare-dense":
                self.rbr_dense = nn.Conv2d(cin, cout, 3, stride, 1, groups=groups, bias=False)
            else:
                self.rbr_dense = nn.Sequential()
                self.rbr_dense.add_module("conv", nn.Conv2d(cin, cout, 3, stride, 1, groups=groups, bias=False))
                self.rbr_dense.add_module("bn", nn.BatchNorm2d(cout))
            self.rbr_1x1 = nn.Conv2d(cin, cout, 1, stride, groups=groups, bias=False)
            self.rbr_identity = nn.Identity() if cin == cout and stride == 1 else None
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        if self.form == "yolov6-deploy":
            return torch.relu(self.bn(self.rbr_reparam(x)))
        id_out = 0 if self.rbr_identity is None else self.rbr_identity(x)
        return torch.relu(self.bn(self.rbr_dense(x) + self.rbr_1x1(x) + id_out))


class QARepVGGReference(nn.Module):
    """A QARepVGG classifier (stage0, stage1..N, gap, linear) of a RepVGGConfig's shape.

    form: 'v2' (QARepVGGBlockV2 / YOLOv6 QARepVGGBlock train-time), 'bare-dense'
    (cxxgtxy QARepVGGBlock) or 'yolov6-deploy' (fused conv + the kept BN)."""

    def __init__(self, config, form: str = "v2"):
        super().__init__()
        specs = config.block_specs()
        i = 0
        for s, depth in enumerate(config.depths):
            blocks = [QABlockReference(*specs[i + j], form) for j in range(depth)]
            i += depth
            if s == 0:
                assert depth == 1
                self.stage0 = blocks[0]
            else:
                self.add_module(f"stage{s}", nn.Sequential(*blocks))
        self.num_stages = len(config.depths)
        self.linear = nn.Linear(config.widths[-1], config.num_classes)

    def forward(self, x):
        for s in range(self.num_stages):
            x = getattr(self, f"stage{s}")(x)
        return self.linear(x.mean(dim=(2, 3)))


def qarepvgg_from(model: RepVGG, seed: int, form: str = "v2") -> QARepVGGReference:
    """A QARepVGG with the weights of `model` where the block has them (3x3 conv and its BN,
    the 1x1 conv), random post-sum BNs; for 'yolov6-deploy' the fused kernels of `model`.
    In eval mode."""
    qa = QARepVGGReference(model.config, form)
    ours = model.state_dict()
    if form == "yolov6-deploy":
        fused = RepVGG(model.config)
        fused.load_state_dict(ours)
        ours = fused.eval().switch_to_deploy().state_dict()
    sd = {}
    for key in qa.state_dict():
        m = re.match(r"^stage(\d+)\.(?:(\d+)\.)?(.+)$", key)
        if not m:
            sd[key] = ours[key.replace("linear.", "head.")]
            continue
        ours_prefix = f"stages.{m.group(1)}.{m.group(2) or 0}."
        rest = m.group(3)
        source = {"rbr_dense.weight": "conv3x3.conv.weight", "rbr_1x1.weight": "conv1x1.conv.weight",
                  "rbr_reparam.weight": "fused.weight", "rbr_reparam.bias": "fused.bias"}.get(rest)
        if source is None and rest.startswith("rbr_dense."):
            source = rest.replace("rbr_dense.", "conv3x3.")
        if source is not None:
            sd[key] = ours[ours_prefix + source].detach().clone()
    qa.load_state_dict(sd, strict=False)
    torch.manual_seed(seed)
    return randomize_batchnorm(qa, seed).eval()
