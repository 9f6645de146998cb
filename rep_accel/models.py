"""The train-time RepVGG (Ding et al., "RepVGG: Making VGG-style ConvNets Great Again",
CVPR 2021) and its model zoo.

A block is three parallel branches on the same input, summed, then ReLU:

    y = relu(BN(conv3x3(x)) + BN(conv1x1(x)) + BN(x))

the identity branch BN(x) existing only where C_in == C_out and stride == 1. A network
is a sequence of stages; the first block of every stage has stride 2, the others
stride 1; stage 0 is a single block (the stem). Global average pooling and a fully
connected layer make the head. `rep_accel.fusion` turns each block into one 3x3 conv
with bias (`RepVGG.switch_to_deploy`, `fusion.fuse_model`).

Widths and depths of the paper's variants (Table 2 of the paper; the official
repository's `create_RepVGG_*`): stage widths
`[min(64, 64a), 64a, 128a, 256a, 512b]`, depths `[1, 2, 4, 14, 1]` (A) or
`[1, 4, 6, 16, 1]` (B). The g2/g4 variants use 2 or 4 groups in the blocks whose index
is in `GROUPWISE_LAYERS`, counting blocks across the whole network with the stem as
block 0 (the official repository's `optional_groupwise_layers`, whose `cur_layer_idx`
starts at 1 for the first block of stage 1): the second, fourth, ... block of stages 1-3.

State_dict keys of this module (this package's own layout, `rep_accel.checkpoints`):
`stages.S.B.conv3x3.conv.weight`, `stages.S.B.conv3x3.bn.{weight,bias,running_mean,
running_var}`, the same under `conv1x1`, `stages.S.B.identity.{weight,...}`, and
`head.weight`/`head.bias`; in deploy mode `stages.S.B.fused.weight`/`.bias`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .errors import RepAccelError
from .fusion import BN_EPS, block_params_from_module, fuse_block

#: BatchNorm epsilon of every BN in RepVGG (PyTorch's default, used by the official
#: repository and timm; a state_dict does not store it).

#: Block indices (stem = 0) that get groups in the g2/g4 variants: the official
#: repository's `optional_groupwise_layers`.
GROUPWISE_LAYERS = tuple(range(2, 27, 2))


@dataclass(frozen=True)
class RepVGGConfig:
    """The architecture of a RepVGG.

    widths: output channels of each stage (stage 0 is the stem); depths: blocks per
    stage (stage 0 has 1); groups: the groups of every block, in network order
    (len == sum(depths)); in_channels: input image channels; num_classes: outputs of
    the fully connected head.
    """

    widths: tuple[int, ...]
    depths: tuple[int, ...]
    groups: tuple[int, ...]
    in_channels: int = 3
    num_classes: int = 1000

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))
        object.__setattr__(self, "groups", tuple(int(g) for g in self.groups))
        if len(self.widths) != len(self.depths) or not self.widths:
            raise RepAccelError(f"RepVGG config: {len(self.widths)} widths for {len(self.depths)} stages")
        if any(d < 1 for d in self.depths) or any(w < 1 for w in self.widths):
            raise RepAccelError(f"RepVGG config: widths {self.widths} and depths {self.depths} must be >= 1")
        if len(self.groups) != sum(self.depths):
            raise RepAccelError(f"RepVGG config: {len(self.groups)} groups for {sum(self.depths)} blocks")
        for i, (cin, cout, stride, g) in enumerate(self.block_specs()):
            if g < 1 or cin % g or cout % g:
                raise RepAccelError(f"RepVGG config: block {i} has groups {g}, which does not divide "
                                    f"its {cin} input and {cout} output channels")

    def block_specs(self) -> list[tuple[int, int, int, int]]:
        """(C_in, C_out, stride, groups) of every block in network order."""
        specs, cin, i = [], self.in_channels, 0
        for width, depth in zip(self.widths, self.depths):
            for b in range(depth):
                specs.append((cin, width, 2 if b == 0 else 1, self.groups[i]))
                cin, i = width, i + 1
        return specs

    def block_names(self) -> list[str]:
        """`stage{S}.{B}` for every block in network order."""
        return [f"stage{s}.{b}" for s, d in enumerate(self.depths) for b in range(d)]

    def same_body(self, other: "RepVGGConfig") -> bool:
        """True if widths, depths and groups match (input channels and classes may differ)."""
        return (self.widths, self.depths, self.groups) == (other.widths, other.depths, other.groups)

    def to_dict(self) -> dict:
        """Plain ints and lists (what a weights_only checkpoint may hold)."""
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "RepVGGConfig":
        try:
            return cls(widths=tuple(d["widths"]), depths=tuple(d["depths"]), groups=tuple(d["groups"]),
                       in_channels=int(d["in_channels"]), num_classes=int(d["num_classes"]))
        except (KeyError, TypeError, ValueError) as e:
            raise RepAccelError(f"RepVGG config {d!r} is incomplete or malformed ({e})") from None


def _paper_config(depths, a: float, b: float, groups: int = 1) -> tuple:
    # int() truncates exactly like the official `int(64 * width_multiplier[i])`.
    widths = (min(64, int(64 * a)), int(64 * a), int(128 * a), int(256 * a), int(512 * b))
    depths = (1,) + tuple(depths)
    gl = [groups if (groups > 1 and i in GROUPWISE_LAYERS) else 1 for i in range(sum(depths))]
    return widths, depths, tuple(gl)


def _small(widths, depths, grouped: dict | None = None) -> tuple:
    gl = [1] * sum(depths)
    for i, g in (grouped or {}).items():
        gl[i] = g
    return tuple(widths), tuple(depths), tuple(gl)


_A = (2, 4, 14, 1)
_B = (4, 6, 16, 1)

#: name -> (widths, depths, groups per block). The paper's variants, then small ones:
#: 'nano' and 'tiny' (grouped blocks 2 and 4) for tests on 16x16..64x64 inputs, and
#: 'mnist', the demo model for 28x28 one-channel digits (28 -> 14 -> 7 -> 4 -> 2 -> 1).
_VARIANTS = {
    "A0": _paper_config(_A, 0.75, 2.5),
    "A1": _paper_config(_A, 1, 2.5),
    "A2": _paper_config(_A, 1.5, 2.75),
    "B0": _paper_config(_B, 1, 2.5),
    "B1": _paper_config(_B, 2, 4),
    "B1g2": _paper_config(_B, 2, 4, groups=2),
    "B1g4": _paper_config(_B, 2, 4, groups=4),
    "B2": _paper_config(_B, 2.5, 5),
    "B2g4": _paper_config(_B, 2.5, 5, groups=4),
    "B3": _paper_config(_B, 3, 5),
    "nano": _small((8, 8, 8, 16, 16), (1, 1, 1, 2, 1)),
    "tiny": _small((8, 16, 16, 32, 32), (1, 2, 2, 2, 1), grouped={2: 2, 4: 4}),
    "mnist": _small((16, 16, 32, 64, 128), (1, 1, 2, 2, 1)),
}

#: Every variant `create_model` accepts.
MODEL_NAMES = tuple(_VARIANTS)

#: The paper's variants (the rest are small ones for tests and the demo).
PAPER_MODEL_NAMES = tuple(n for n in MODEL_NAMES if n[0] in "AB")


def variant_config(name: str, in_channels: int = 3, num_classes: int = 1000) -> RepVGGConfig:
    """The RepVGGConfig of a zoo variant (names in MODEL_NAMES, case-insensitive)."""
    key = {n.lower(): n for n in MODEL_NAMES}.get(str(name).lower().removeprefix("repvgg-").removeprefix("repvgg_"))
    if key is None:
        raise RepAccelError(f"unknown RepVGG variant {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    widths, depths, groups = _VARIANTS[key]
    return RepVGGConfig(widths, depths, groups, in_channels=in_channels, num_classes=num_classes)


def match_variant(config: RepVGGConfig) -> str | None:
    """The zoo name whose widths, depths and groups equal `config`'s, or None."""
    for name in MODEL_NAMES:
        if variant_config(name).same_body(config):
            return name
    return None


class ConvBN(nn.Sequential):
    """conv (no bias) then BatchNorm: one branch of a block. Keys `conv.*`, `bn.*`."""

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int, groups: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=kernel_size // 2,
                              groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)


class RepVGGBlock(nn.Module):
    """relu(conv3x3+BN + conv1x1+BN + identity BN); in deploy mode relu(fused 3x3 conv).

    Input (N, cin, H, W) -> output (N, cout, (H-1)//stride+1, (W-1)//stride+1).
    The identity branch exists only where cin == cout and stride == 1.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, groups: int = 1, deploy: bool = False):
        super().__init__()
        if stride not in (1, 2):
            raise RepAccelError(f"RepVGG block stride must be 1 or 2, got {stride}")
        if groups < 1 or cin % groups or cout % groups:
            raise RepAccelError(f"RepVGG block: groups {groups} must divide cin {cin} and cout {cout}")
        self.cin, self.cout, self.stride, self.groups = cin, cout, stride, groups
        self.act = nn.ReLU()
        if deploy:
            self.fused = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, groups=groups, bias=True)
        else:
            self.conv3x3 = ConvBN(cin, cout, 3, stride, groups)
            self.conv1x1 = ConvBN(cin, cout, 1, stride, groups)
            self.identity = nn.BatchNorm2d(cin, eps=BN_EPS) if (cin == cout and stride == 1) else None

    @property
    def deploy(self) -> bool:
        return hasattr(self, "fused")

    def forward(self, x):
        if self.deploy:
            return self.act(self.fused(x))
        y = self.conv3x3(x) + self.conv1x1(x)
        if self.identity is not None:
            y = y + self.identity(x)
        return self.act(y)

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Replace the three branches by their fused 3x3 conv (rep_accel.fusion.fuse_block)."""
        if self.deploy:
            return
        layer = fuse_block(block_params_from_module(self, "block"))
        fused = nn.Conv2d(self.cin, self.cout, 3, stride=self.stride, padding=1, groups=self.groups, bias=True)
        fused.weight.copy_(torch.from_numpy(layer.weight))
        fused.bias.copy_(torch.from_numpy(layer.bias))
        for name in ("conv3x3", "conv1x1", "identity"):
            delattr(self, name)
        self.fused = fused


class RepVGG(nn.Module):
    """A RepVGG network: `stages` (ModuleList of ModuleLists of RepVGGBlock), global
    average pooling, `head` (Linear). Input (N, in_channels, H, W) float32, output
    logits (N, num_classes)."""

    def __init__(self, config: RepVGGConfig, deploy: bool = False, name: str | None = None):
        super().__init__()
        self.config = config
        self.name = name or match_variant(config) or "custom"
        specs = iter(config.block_specs())
        self.stages = nn.ModuleList()
        for depth in config.depths:
            stage = nn.ModuleList()
            for _ in range(depth):
                cin, cout, stride, groups = next(specs)
                stage.append(RepVGGBlock(cin, cout, stride, groups, deploy=deploy))
            self.stages.append(stage)
        self.head = nn.Linear(config.widths[-1], config.num_classes)

    def blocks(self):
        """(name, block) for every block in network order; names `stage{S}.{B}`."""
        for s, stage in enumerate(self.stages):
            for b, block in enumerate(stage):
                yield f"stage{s}.{b}", block

    def features(self, x):
        """The last stage's feature map, (N, widths[-1], H', W')."""
        for _, block in self.blocks():
            x = block(x)
        return x

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))

    def switch_to_deploy(self) -> "RepVGG":
        """Fuse every block in place (structural re-parameterization); returns self."""
        for _, block in self.blocks():
            block.switch_to_deploy()
        return self

    @property
    def deploy(self) -> bool:
        return all(block.deploy for _, block in self.blocks())


@torch.no_grad()
def randomize_batchnorm(model: nn.Module, seed: int) -> nn.Module:
    """Give every BatchNorm random, non-default statistics and affine parameters
    (gamma in [0.5, 1.5], beta in [-0.5, 0.5], running mean in [-0.5, 0.5], running var
    in [0.5, 2]), as a trained network has; PyTorch's defaults (mean 0, var 1, gamma 1,
    beta 0) would hide a wrong BN fold. For tests and examples; returns `model`."""
    gen = torch.Generator().manual_seed(seed)

    def u(n, lo, hi):
        return torch.rand(n, generator=gen, dtype=torch.float32) * (hi - lo) + lo

    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.weight.copy_(u(n, 0.5, 1.5))
            m.bias.copy_(u(n, -0.5, 0.5))
            m.running_mean.copy_(u(n, -0.5, 0.5))
            m.running_var.copy_(u(n, 0.5, 2.0))
    return model


def create_model(name: str, in_channels: int = 3, num_classes: int = 1000, deploy: bool = False) -> RepVGG:
    """A freshly initialized zoo model (PyTorch's default init), in train-time form
    unless `deploy`. Names: MODEL_NAMES (case-insensitive, 'RepVGG-' prefix allowed)."""
    if in_channels < 1 or num_classes < 1:
        raise RepAccelError(f"in_channels ({in_channels}) and num_classes ({num_classes}) must be >= 1")
    config = variant_config(name, in_channels=in_channels, num_classes=num_classes)
    return RepVGG(config, deploy=deploy, name=match_variant(config))
