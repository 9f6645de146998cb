"""rep-accel: the toolchain of an accelerator built from 3x3-conv+ReLU units.

Train-time RepVGG checkpoints are fused into plain 3x3 conv + ReLU layers
(`rep_accel.fusion`), quantized to the integer contract of `docs/numerics.md`
(`rep_accel.numerics`, `rep_accel.quantize`), laid out as the weight images the
hardware loads (`rep_accel.layout`, `rep_accel.images`), simulated bit- and
cycle-exactly (`rep_accel.sim`), and generated as Amaranth RTL (`rep_accel.hdl`).
"""

from .errors import RepAccelError
from .generics import HardwareGenerics

__all__ = ["RepAccelError", "HardwareGenerics"]
__version__ = "0.1.0"
