"""Test helpers: the checkpoint layouts of the official RepVGG repository and of timm,
produced by renaming the keys of this package's own models (no timm or official code).

The key conventions are written out here independently of rep_accel.checkpoints, from
the issue text and the two projects' module names:

- official (DingXiaoH/RepVGG): stem `stage0.`, stage S>=1 block B `stageS.B.`; branches
  `rbr_dense`, `rbr_1x1`, `rbr_identity`, deploy `rbr_reparam`; head `linear`.
- timm (byobnet repvgg_*): stem `stem.`, stage S>=1 block B `stages.{S-1}.B.`; branches
  `conv_kxk`, `conv_1x1`, `identity`, deploy `reparam_conv`; head `head.fc`.
"""

from __future__ import annotations

import re

import torch

from rep_accel.models import RepVGG, create_model, randomize_batchnorm

BRANCHES = {
    "official": {"conv3x3": "rbr_dense", "conv1x1": "rbr_1x1", "identity": "rbr_identity", "fused": "rbr_reparam"},
    "timm": {"conv3x3": "conv_kxk", "conv1x1": "conv_1x1", "identity": "identity", "fused": "reparam_conv"},
}
HEAD = {"official": "linear", "timm": "head.fc"}


def rename_key(key: str, family: str) -> str:
    """A key of rep_accel.models.RepVGG in the official or timm convention."""
    m = re.match(r"^head\.(weight|bias)$", key)
    if m:
        return f"{HEAD[family]}.{m.group(1)}"
    m = re.match(r"^stages\.(\d+)\.(\d+)\.(conv3x3|conv1x1|identity|fused)\.(.+)$", key)
    assert m, key
    s, b, branch, rest = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
    if family == "official":
        prefix = "stage0" if s == 0 else f"stage{s}.{b}"
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
