"""The fused (inference-time) network: a plain stack of 3x3 conv + bias + ReLU layers
followed by global average pooling and a fully connected head.

This float representation is what `rep_accel.fusion` produces from any checkpoint
layout and what `rep_accel.quantize` turns into the integer network.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class FusedLayer:
    """One fused RepVGG block: y = relu(conv3x3(x, weight, stride, padding=1, groups) + bias).

    weight: float32 (C_out, C_in / groups, 3, 3); bias: float32 (C_out,).
    """

    name: str
    weight: np.ndarray
    bias: np.ndarray
    stride: int
    groups: int = 1

    @property
    def cout(self) -> int:
        return int(self.weight.shape[0])

    @property
    def cin(self) -> int:
        return int(self.weight.shape[1]) * self.groups

    @property
    def cin_per_group(self) -> int:
        return int(self.weight.shape[1])

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """(H_out, W_out) of a 3x3 conv with padding 1: (H - 1) // stride + 1."""
        return (h - 1) // self.stride + 1, (w - 1) // self.stride + 1


@dataclass
class FusedNetwork:
    """The plain network: `layers` then global average pooling then `fc`.

    fc_weight: float32 (classes, C_last); fc_bias: float32 (classes,).
    """

    in_channels: int
    layers: list[FusedLayer]
    fc_weight: np.ndarray
    fc_bias: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return int(self.fc_weight.shape[0])

    def feature_sizes(self, h: int, w: int) -> list[tuple[int, int]]:
        """Input (H, W) of every layer, then the final feature map's, for an (h, w) input."""
        sizes = [(h, w)]
        for layer in self.layers:
            h, w = layer.output_size(h, w)
            sizes.append((h, w))
        return sizes

    @torch.no_grad()
    def forward(self, x, return_activations: bool = False):
        """Float reference forward pass. x: float32 (N, C, H, W). Returns logits (N, classes)
        and, with `return_activations`, the list of every layer's post-ReLU output."""
        t = torch.as_tensor(np.asarray(x, dtype=np.float32))
        acts = []
        for layer in self.layers:
            t = F.relu(F.conv2d(t, torch.from_numpy(layer.weight), torch.from_numpy(layer.bias),
                                stride=layer.stride, padding=1, groups=layer.groups))
            acts.append(t.numpy())
        pooled = t.mean(dim=(2, 3))
        logits = F.linear(pooled, torch.from_numpy(self.fc_weight), torch.from_numpy(self.fc_bias)).numpy()
        return (logits, acts) if return_activations else logits
