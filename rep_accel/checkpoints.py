"""Loading RepVGG checkpoints as people have them, and writing the fused (deploy) ones.

Recognised key layouts (`LoadedCheckpoint.layout`):

| layout | example keys |
|---|---|
| `official` | `stage0.rbr_dense.conv.weight`, `stage1.0.rbr_1x1.bn.running_var`, `stage1.1.rbr_identity.weight`, `linear.weight` |
| `official-deploy` | `stage0.rbr_reparam.weight`, `stage1.0.rbr_reparam.bias`, `linear.weight` |
| `timm` | `stem.conv_kxk.conv.weight`, `stages.0.1.conv_1x1.bn.weight`, `stages.0.1.identity.running_mean`, `head.fc.weight` |
| `timm-deploy` | `stem.reparam_conv.weight`, `stages.N.M.reparam_conv.bias`, `head.fc.weight` |
| `mmpretrain` | an mmengine checkpoint `{"meta", "state_dict", "message_hub", ...}` whose state_dict has `backbone.stem.branch_3x3.conv.weight`, `backbone.stage_1.0.branch_1x1.norm.running_var`, `backbone.stage_1.1.branch_norm.weight`, `head.fc.weight` |
| `mmpretrain-deploy` | `backbone.stem.branch_reparam.weight`, `backbone.stage_S.B.branch_reparam.bias`, `head.fc.weight` |
| `qarepvgg` | QARepVGG (cxxgtxy/QARepVGG `QARepVGGBlockV2`, YOLOv6 `QARepVGGBlock`): `stage0.rbr_dense.conv.weight`, `stage0.rbr_dense.bn.running_var`, `stage1.0.rbr_1x1.weight` (no BN), `stage1.0.bn.weight` (the BN after the sum), `linear.weight`; the identity has no tensors |
| `qarepvgg-deploy` | YOLOv6's deploy form, which keeps the BN after the fused conv: `stage0.rbr_reparam.weight`, `stage0.bn.running_mean`; QARepVGG's own deploy form is `official-deploy` |
| `rep_accel` | this package's own format: `{"format": "rep_accel", "version": 1, "kind": "train" or "deploy", "variant", "config", "state_dict", "extra"}` whose state_dict has the keys of `rep_accel.models.RepVGG` (`stages.S.B.conv3x3.conv.weight`, ..., deploy `stages.S.B.fused.weight`); a bare state_dict of that module is accepted too |

The official repository (DingXiaoH/RepVGG) names the stem `stage0` and stages 1-4
`stageS.B`; timm names the stem `stem` and stages 1-4 `stages.0`-`stages.3`; mmpretrain
names them `backbone.stem` and `backbone.stage_1`-`backbone.stage_4` and calls BN `norm`;
QARepVGG keeps the official names. docs/checkpoints.md cites the code. Around the
weights: a `state_dict`/`model`/`model_state_dict`/`net` entry beside other entries
(epoch, optimizer...), `module.` / `_orig_mod.` / `model.` prefixes, fp16/bf16/fp64
tensors (computed in float64, written as float32).

The architecture is inferred from keys and shapes: stages and blocks from the key
indices, widths from kernel shapes, groups from C_in / kernel.shape[1] (C_in is the
previous block's C_out; the first block's groups is 1), input channels from the first
kernel, classes from the head. Strides are RepVGG's: 2 for the first block of every
stage, 1 elsewhere; an identity branch on a stride-2 block, or a missing one where
C_in == C_out at stride 1, contradicts that and is refused. BN epsilon is 1e-5
(`rep_accel.fusion.BN_EPS`; a state_dict does not store it; every project here uses it).
A QARepVGG identity branch has no tensors, so it is inferred where RepVGG has one
(C_in == C_out at stride 1), as QARepVGG's own code builds it.

Files are read with `torch.load(..., weights_only=True)`: no code in a file ever runs.
Anything that is not a plain RepVGG (SE blocks, RepVGGplus, other networks) raises
`RepAccelError("... not supported: ...")` naming what was found.
"""

from __future__ import annotations

import io
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import RepAccelError
from .fsutil import atomic_write_bytes
from .fusion import BN_EPS, BatchNorm, BlockParams, ConvBNParams, fuse_blocks
from .models import RepVGG, RepVGGConfig, match_variant
from .network import FusedNetwork

#: The `format` tag of this package's checkpoints and its version.
FORMAT_TAG = "rep_accel"
FORMAT_VERSION = 1

#: Every value of LoadedCheckpoint.layout.
LAYOUTS = ("official", "official-deploy", "timm", "timm-deploy", "rep_accel", "mmpretrain", "mmpretrain-deploy",
           "qarepvgg", "qarepvgg-deploy")

#: Wrapper entries that may hold the state_dict, in order of preference.
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net", "module", "state_dict_ema", "model_ema")

#: Prefixes stripped when every key carries them (DataParallel, torch.compile, Lightning).
STRIP_PREFIXES = ("module.", "_orig_mod.", "model.")

_EXPORT_HINT = ("export a state_dict where the model is defined: "
                "torch.save(model.state_dict(), 'model.pt')")

_BN_FIELDS = ("weight", "bias", "running_mean", "running_var")


@dataclass(frozen=True)
class KeyLayout:
    """The key convention of one project: block (S, B) lives under `block_prefix(S, B)`
    (named in the style of `naming`, default the family's), its branches under `dense`,
    `pointwise`, `identity` and `fused`, a branch's BN under `norm`, the head under
    `head`. QARepVGG's BN after the sum of the branches is `post_norm`."""

    family: str  # 'official', 'timm', 'rep_accel', 'mmpretrain' or 'qarepvgg'
    dense: str
    pointwise: str
    identity: str
    fused: str
    head: str
    norm: str = "bn"
    naming: str = ""
    post_norm: str = ""

    @property
    def block_naming(self) -> str:
        return self.naming or self.family

    def block_prefix(self, s: int, b: int) -> str:
        if self.block_naming == "official":
            return "stage0" if s == 0 else f"stage{s}.{b}"
        if self.block_naming == "timm":
            return "stem" if s == 0 else f"stages.{s - 1}.{b}"
        if self.block_naming == "mmpretrain":
            return "backbone.stem" if s == 0 else f"backbone.stage_{s}.{b}"
        return f"stages.{s}.{b}"

    def parse_block(self, key: str):
        """(S, B, rest) of a block key, or None."""
        if self.block_naming == "mmpretrain":
            m = re.match(r"^backbone\.stem\.(.+)$", key)
            if m:
                return 0, 0, m.group(1)
            m = re.match(r"^backbone\.stage_([1-9]\d*)\.(\d+)\.(.+)$", key)
            return (int(m.group(1)), int(m.group(2)), m.group(3)) if m else None
        if self.block_naming == "official":
            m = re.match(r"^stage0\.(.+)$", key)
            if m:
                return 0, 0, m.group(1)
            m = re.match(r"^stage([1-9]\d*)\.(\d+)\.(.+)$", key)
            return (int(m.group(1)), int(m.group(2)), m.group(3)) if m else None
        if self.block_naming == "timm":
            m = re.match(r"^stem\.(.+)$", key)
            if m:
                return 0, 0, m.group(1)
            m = re.match(r"^stages\.(\d+)\.(\d+)\.(.+)$", key)
            return (int(m.group(1)) + 1, int(m.group(2)), m.group(3)) if m else None
        m = re.match(r"^stages\.(\d+)\.(\d+)\.(.+)$", key)
        return (int(m.group(1)), int(m.group(2)), m.group(3)) if m else None


_KEY_LAYOUTS = {
    "official": KeyLayout("official", "rbr_dense", "rbr_1x1", "rbr_identity", "rbr_reparam", "linear"),
    "timm": KeyLayout("timm", "conv_kxk", "conv_1x1", "identity", "reparam_conv", "head.fc"),
    "rep_accel": KeyLayout("rep_accel", "conv3x3", "conv1x1", "identity", "fused", "head"),
    "mmpretrain": KeyLayout("mmpretrain", "branch_3x3", "branch_1x1", "branch_norm", "branch_reparam", "head.fc",
                            norm="norm"),
    "qarepvgg": KeyLayout("qarepvgg", "rbr_dense", "rbr_1x1", "rbr_identity", "rbr_reparam", "linear",
                          naming="official", post_norm="bn"),
}


@dataclass
class LoadedCheckpoint:
    """A checkpoint read and understood.

    layout: one of LAYOUTS; deploy: the file holds already fused blocks; config: the
    inferred architecture; variant: the zoo name it matches (or None); blocks: the raw
    float64 tensors of every block in network order; fc_weight (classes, C_last) and
    fc_bias (classes,) float64; network: the fused float32 FusedNetwork; dtypes: the
    floating dtypes found in the file; notes: how the weights were found (wrapper entry,
    stripped prefix, ...); extra: other plain entries of the file (epoch, accuracy...).
    """

    path: str
    layout: str
    deploy: bool
    config: RepVGGConfig
    variant: str | None
    blocks: list[BlockParams]
    fc_weight: np.ndarray
    fc_bias: np.ndarray
    network: FusedNetwork
    dtypes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @property
    def family(self) -> str:
        """'official', 'timm', 'rep_accel', 'mmpretrain' or 'qarepvgg'."""
        return self.layout.removesuffix("-deploy")

    def parameter_count(self) -> int:
        """Learned parameters in the file's form (conv kernels, BN weight and bias, head;
        BN running statistics are not parameters)."""
        n = self.fc_weight.size + self.fc_bias.size
        for p in self.blocks:
            if p.is_fused:
                n += p.weight.size + p.bias.size
            else:
                for br in (p.dense, p.pointwise):
                    n += br.kernel.size + (0 if br.bn is None else br.bn.weight.size + br.bn.bias.size)
                if p.identity is not None:
                    n += p.identity.weight.size + p.identity.bias.size
            if p.post_bn is not None:
                n += p.post_bn.weight.size + p.post_bn.bias.size
        return int(n)

    def to_model(self) -> torch.nn.Module:
        """The network as the file defines it, in eval mode: the train-time reference the
        fused network must equal. A rep_accel.models.RepVGG holding these weights (deploy
        mode if the file is fused) for plain RepVGG blocks; a BranchwiseReference for
        QARepVGG blocks, which that module does not have."""
        if any(p.post_bn is not None for p in self.blocks):
            return BranchwiseReference(self.blocks, self.fc_weight, self.fc_bias).eval()
        model = RepVGG(self.config, deploy=self.deploy, name=self.variant)
        sd = _blocks_to_state_dict(self.blocks, self.fc_weight, self.fc_bias, _KEY_LAYOUTS["rep_accel"])
        missing, unexpected = model.load_state_dict(
            {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in sd.items()}, strict=False)
        # num_batches_tracked is not a weight; everything else must be there.
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise RepAccelError(f"{self.path}: internal mismatch building the model "
                                f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        return model.eval()


class BranchwiseReference(torch.nn.Module):
    """A network of BlockParams evaluated branch by branch, without any fusion, in float64
    with eval-mode BN: each block is relu(post_bn(BN(conv3x3(x)) + BN(conv1x1(x)) +
    identity)) with every BN present in the file and only those, then global average
    pooling and the head. Input (N, C_in, H, W), output logits (N, classes) in the
    input's dtype."""

    def __init__(self, blocks: list[BlockParams], fc_weight: np.ndarray, fc_bias: np.ndarray):
        super().__init__()
        self.block_params = blocks
        self.fc_weight = torch.from_numpy(np.asarray(fc_weight, dtype=np.float64))
        self.fc_bias = torch.from_numpy(np.asarray(fc_bias, dtype=np.float64))

    @staticmethod
    def _t(a) -> torch.Tensor:
        return torch.from_numpy(np.asarray(a, dtype=np.float64))

    def _bn(self, x, bn: BatchNorm):
        return torch.nn.functional.batch_norm(x, self._t(bn.running_mean), self._t(bn.running_var),
                                              self._t(bn.weight), self._t(bn.bias), training=False, eps=bn.eps)

    def _branch(self, x, branch, stride, groups):
        k = branch.kernel.shape[-1]
        out = torch.nn.functional.conv2d(x, self._t(branch.kernel), stride=stride, padding=k // 2, groups=groups)
        return out if branch.bn is None else self._bn(out, branch.bn)

    def _block(self, p: BlockParams, x):
        if p.is_fused:
            out = torch.nn.functional.conv2d(x, self._t(p.weight), self._t(p.bias), stride=p.stride, padding=1,
                                             groups=p.groups)
        else:
            out = self._branch(x, p.dense, p.stride, p.groups) + self._branch(x, p.pointwise, p.stride, p.groups)
            if p.identity is not None:
                out = out + self._bn(x, p.identity)
            if p.identity_without_bn:
                out = out + x
        if p.post_bn is not None:
            out = self._bn(out, p.post_bn)
        return torch.relu(out)

    def forward(self, x):
        h = x.to(torch.float64)
        for p in self.block_params:
            h = self._block(p, h)
        return (h.mean(dim=(2, 3)) @ self.fc_weight.T + self.fc_bias).to(x.dtype)


def fused_parameter_count(net: FusedNetwork) -> int:
    """Parameters of the fused network: 3x3 kernels, biases and the head."""
    return int(sum(l.weight.size + l.bias.size for l in net.layers) + net.fc_weight.size + net.fc_bias.size)


# --------------------------------------------------------------------------- reading


class _UnreadObject(dict):
    """The stand-in for an mmengine object in a checkpoint (e.g. the HistoryBuffer of
    `message_hub`): built from the pickle's arguments and state without running any code
    of its class, and never looked at. A dict so that pickled dict items land in it."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def __setstate__(self, state):
        self["__state__"] = state

    def append(self, item):
        self.setdefault("__items__", []).append(item)

    def extend(self, items):
        self.setdefault("__items__", []).extend(items)


#: numpy globals that rebuild plain arrays, dtypes and scalars (what an mmengine
#: message_hub holds besides its own classes); unpickled with the same restrictions.
_NUMPY_GLOBALS = {
    "numpy.ndarray": np.ndarray,
    "numpy.dtype": np.dtype,
    "numpy.core.multiarray._reconstruct": np.ndarray.__reduce__(np.zeros(0))[0],
    "numpy._core.multiarray._reconstruct": np.ndarray.__reduce__(np.zeros(0))[0],
    "numpy.core.multiarray.scalar": np.float64(0).__reduce__()[0],
    "numpy._core.multiarray.scalar": np.float64(0).__reduce__()[0],
}


def _mmengine_stand_ins(path: Path) -> tuple[list, list[str]]:
    """(safe globals, other globals) of a checkpoint that torch.load(weights_only=True)
    refused: the safe globals read an mmengine training checkpoint (mmengine objects as
    _UnreadObject, numpy arrays as themselves) and are empty unless it has mmengine
    objects; the other globals are the ones it needs besides (each a refusal)."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 -- a legacy or broken file: the caller reports the first error
        return [], []
    numpy_dtypes = {f"numpy.dtypes.{n}": getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")}
    stand_ins, others = [], []
    for name in names:
        if name.startswith("mmengine."):
            stand_ins.append((_UnreadObject, name))
        elif name in _NUMPY_GLOBALS or name in numpy_dtypes:
            stand_ins.append((_NUMPY_GLOBALS.get(name) or numpy_dtypes[name], name))
        else:
            others.append(name)
    if "numpy.dtype" in names:
        # A dtype's pickled state is applied to an instance of its class (Float64DType...).
        stand_ins += list(numpy_dtypes.values())
    if not any(n.startswith("mmengine.") for n in names):
        stand_ins = []
    return stand_ins, others


def _read_file(path: Path):
    """torch.load(path, weights_only=True), every failure mapped to one RepAccelError.

    mmengine training checkpoints (mmpretrain) store mmengine objects in `message_hub`;
    those are read as inert stand-ins (_mmengine_stand_ins), still with weights_only."""
    if not path.exists():
        raise RepAccelError(f"{path}: no such file")
    if path.is_dir():
        raise RepAccelError(f"{path}: is a folder, not a checkpoint file")
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise RepAccelError(f"{path}: the file is empty, not a PyTorch checkpoint")
    # torch.save writes a zip archive (PK\x03\x04) or, in its legacy format, a pickle
    # (protocol 2+ starts with 0x80). Anything else is not a checkpoint at all.
    if not (head.startswith(b"PK\x03\x04") or head[0] == 0x80):
        raise RepAccelError(f"{path}: not a PyTorch checkpoint (neither a torch.save zip archive nor a pickle); "
                            "give the .pt/.pth file the model was saved to")
    try:
        # torch warns about pickle protocols it half-supports; the outcome is reported below.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", msg)
        stand_ins, others = _mmengine_stand_ins(path) if m else ([], [])
        if stand_ins and not others:
            try:
                with warnings.catch_warnings(), torch.serialization.safe_globals(stand_ins):
                    warnings.simplefilter("ignore")
                    return torch.load(path, map_location="cpu", weights_only=True)
            except Exception as retry_error:  # noqa: BLE001 -- any failure of the second reading is reported here
                first = str(retry_error).splitlines()[0][:100] if str(retry_error) else ""
                raise RepAccelError(
                    f"{path}: an mmengine checkpoint whose objects cannot be read even as inert stand-ins "
                    f"({type(retry_error).__name__}: {first}); "
                    "save its weights alone: torch.save(torch.load(f)['state_dict'], 'model.pt')") from None
        if m:
            unsafe = (others or [m.group(1)])[0]
            raise RepAccelError(
                f"{path}: refused: the file stores Python objects ({unsafe}) that only full unpickling "
                f"would rebuild, and full unpickling can run code; {_EXPORT_HINT}") from None
        m = re.search(r"Unsupported operand (\d+)", msg)
        if m:
            raise RepAccelError(
                f"{path}: refused: a pickle that torch.load(weights_only=True) cannot read (pickle opcode "
                f"{m.group(1)}): corrupted, or written by plain pickle rather than torch.save; {_EXPORT_HINT}") from None
        raise RepAccelError(f"{path}: cannot be read safely with weights_only=True "
                            f"({msg.splitlines()[-1][:120] if msg else 'unpickling error'}); {_EXPORT_HINT}") from None
    except EOFError:
        raise RepAccelError(f"{path}: the file ends early (truncated checkpoint); save or copy it again") from None
    except RuntimeError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "zip archive" in first or "central directory" in first or "PytorchStreamReader" in first:
            raise RepAccelError(f"{path}: truncated or corrupted checkpoint (its zip archive is unreadable); "
                                "save or copy it again") from None
        raise RepAccelError(f"{path}: cannot be read as a PyTorch checkpoint ({first[:160]})") from None
    except (ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError, AttributeError, OSError) as e:
        raise RepAccelError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {str(e)[:120]})") from None


def _tensor_items(d: dict) -> dict:
    return {k: v for k, v in d.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def _plain(v) -> bool:
    return isinstance(v, (int, float, str, bool)) or v is None


def _find_state_dict(obj, path: Path, notes: list, extra: dict):
    """The dict of tensors inside a loaded object (bare, or under a wrapper entry)."""
    if isinstance(obj, torch.Tensor):
        raise RepAccelError(f"{path}: holds a single tensor {tuple(obj.shape)}, not a model's state_dict")
    if not isinstance(obj, dict):
        raise RepAccelError(f"{path}: holds a {type(obj).__name__}, not a model's state_dict (a dict of tensors)")
    tensors = _tensor_items(obj)
    # A bare state_dict: (nearly) all entries are tensors.
    if tensors and len(tensors) >= len(obj) - sum(1 for v in obj.values() if _plain(v)):
        others = [k for k in obj if k not in tensors]
        extra.update({k: obj[k] for k in others if _plain(obj[k])})
        return tensors
    for key in WRAPPER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, dict) and (_tensor_items(inner) or any(isinstance(v, dict) for v in inner.values())):
            besides = [str(k) for k in obj if k != key]
            notes.append(f"weights under '{key}'" + (f" (beside {', '.join(besides[:6])})" if besides else ""))
            extra.update({k: v for k, v in obj.items() if k != key and _plain(v)})
            return _find_state_dict(inner, path, notes, extra)
    nested = [k for k, v in obj.items() if isinstance(v, dict)]
    raise RepAccelError(f"{path}: no state_dict found: a dict with entries {', '.join(map(str, list(obj)[:8]))}"
                        + (f"; none of {', '.join(map(str, nested[:5]))} holds tensors" if nested else "")
                        + f"; expected the tensors at the top or under one of {', '.join(WRAPPER_KEYS[:4])}")


def _strip_prefixes(sd: dict, notes: list) -> dict:
    changed = True
    while changed and sd:
        changed = False
        for prefix in STRIP_PREFIXES:
            if all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix):]: v for k, v in sd.items()}
                notes.append(f"stripped '{prefix}' prefix")
                changed = True
    return sd


def _to_float64(sd: dict, path: Path, dtypes: list) -> dict:
    # A few-KB file can hold a stride-0 "stretched" tensor of any shape: the float64 copy
    # is counted from the shapes before anything is converted (RepVGG-B3 needs ~1 GB).
    from .untrusted import check_allocation
    total = sum(v.numel() for k, v in sd.items() if not k.endswith("num_batches_tracked"))
    biggest = max(sd.items(), key=lambda kv: kv[1].numel())
    check_allocation(total * 8, f"{path}: its tensors ({total:,} values; '{biggest[0]}' alone is "
                                f"{tuple(biggest[1].shape)})", "this is not a RepVGG checkpoint a device can run")
    out = {}
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            continue
        if not v.is_floating_point():
            raise RepAccelError(f"{path}: tensor '{k}' has dtype {v.dtype}; only float weights are supported "
                                "(quantized or integer checkpoints are not)")
        name = str(v.dtype).removeprefix("torch.")
        if name not in dtypes:
            dtypes.append(name)
        arr = v.detach().to(torch.float64).numpy()
        if not np.all(np.isfinite(arr)):
            raise RepAccelError(f"{path}: tensor '{k}' holds NaN or infinite values; the checkpoint is damaged "
                                "(or was saved after training diverged)")
        if k.endswith("running_var") and np.any(arr < 0):
            raise RepAccelError(f"{path}: tensor '{k}' has negative variances (min {arr.min():.3g}); a BatchNorm's "
                                "running variance is never negative: the checkpoint is damaged")
        out[k] = arr
    return out


_OTHER_NETWORKS = (
    (lambda ks: any(k.startswith("layer1.") for k in ks) and "conv1.weight" in ks, "a ResNet"),
    (lambda ks: any(k.startswith("features.") for k in ks) and any(k.startswith("classifier.") for k in ks),
     "a torchvision VGG/MobileNet-style network"),
    (lambda ks: any("patch_embed" in k for k in ks), "a vision transformer"),
    (lambda ks: any("conv_scale" in k for k in ks) or any(re.search(r"\.conv_kxk\.\d+\.", k) for k in ks),
     "a MobileOne-style network (timm mobileone/fastvit)"),
    (lambda ks: any(k.startswith("stem.") for k in ks) and any(k.startswith("stages.") for k in ks),
     "a timm network that is not repvgg_*"),
)


def _detect_family(keys: list[str], path: Path, what: str) -> str:
    """Refuse SE / RepVGGplus / other networks; return 'official', 'timm' or 'rep_accel'."""
    def first(pattern):
        return next((k for k in keys if re.search(pattern, k)), None)

    plus = first(r"(^|\.)stage\d+(_first|_second)?_aux\.|^stage3_(first|second)\.|(^|\.)post_se\.")
    if plus:
        raise RepAccelError(f"{path}: not supported: RepVGGplus (found '{plus}'); its auxiliary heads and "
                            "post-SE blocks are not plain 3x3 conv + ReLU layers. Give a plain RepVGG checkpoint")
    se = first(r"(^|\.)se\.(down|up)\.") or first(r"(^|\.)se_layer\.") or first(r"(^|\.)attn\.")
    if se:
        kind = "timm attention/SE" if ".attn." in "." + se else "squeeze-and-excitation (SE)"
        raise RepAccelError(f"{path}: not supported: RepVGG with {kind} blocks (found '{se}'); the SE branch "
                            "scales channels by a global pooling of the input and cannot be fused into a plain "
                            "3x3 conv. Give a plain RepVGG checkpoint (A0-B3, g2/g4)")
    if any(k.startswith(("backbone.stem.branch_3x3.", "backbone.stem.branch_reparam.")) for k in keys):
        return "mmpretrain"
    # QARepVGG: a 1x1 conv without BN, or a BN of the block itself (after the sum).
    if any(re.match(r"^stage\d+(\.\d+)?\.(rbr_1x1\.weight|bn\.running_var)$", k) for k in keys):
        return "qarepvgg"
    if any(k.startswith("stage0.rbr_") for k in keys):
        return "official"
    if any(k.startswith(("stem.conv_kxk.", "stem.reparam_conv.")) for k in keys):
        return "timm"
    if any(re.match(r"^stages\.0\.0\.(conv3x3|fused)\.", k) for k in keys):
        return "rep_accel"
    guess = next((name for test, name in _OTHER_NETWORKS if test(keys)), None)
    shown = ", ".join(f"'{k}'" for k in keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")
    raise RepAccelError(
        f"{path}: not supported: {what} is not a RepVGG checkpoint"
        + (f" (it looks like {guess})" if guess else "")
        + f"; found keys {shown}; expected the official RepVGG ('stage0.rbr_dense.conv.weight'), timm "
        "repvgg_* ('stem.conv_kxk.conv.weight'), mmpretrain ('backbone.stem.branch_3x3.conv.weight'), QARepVGG "
        "('stage0.rbr_1x1.weight', 'stage0.bn.weight') or rep-accel ('stages.0.0.conv3x3.conv.weight') layout")


def _parse_blocks(sd: dict, kl: KeyLayout, path: Path):
    """Group the tensors of a state_dict in layout `kl` into (blocks, fc_weight, fc_bias, in_channels)."""
    raw: dict[tuple[int, int], dict[str, np.ndarray]] = {}
    head = {}
    unknown = []
    for k, v in sd.items():
        if k in (f"{kl.head}.weight", f"{kl.head}.bias"):
            head[k.rsplit(".", 1)[1]] = v
            continue
        parsed = kl.parse_block(k)
        if parsed is None:
            unknown.append(k)
            continue
        s, b, rest = parsed
        raw.setdefault((s, b), {})[rest] = v
    if unknown:
        shown = ", ".join(f"'{k}'" for k in unknown[:3]) + (f" (+{len(unknown) - 3} more)" if len(unknown) > 3 else "")
        raise RepAccelError(f"{path}: not supported: keys that are not part of a plain RepVGG in the {kl.family} "
                            f"layout: {shown}")
    if "weight" not in head or "bias" not in head:
        raise RepAccelError(f"{path}: no classifier head ('{kl.head}.weight' and '{kl.head}.bias'); a RepVGG "
                            "checkpoint ends with global pooling and a fully connected layer")

    # Stages 0..S-1, blocks 0..n-1 of each, with no gaps.
    stages: dict[int, list[int]] = {}
    for s, b in raw:
        stages.setdefault(s, []).append(b)
    if sorted(stages) != list(range(len(stages))):
        raise RepAccelError(f"{path}: inconsistent: stages {sorted(stages)} are not numbered 0..{len(stages) - 1}")
    depths = []
    for s in range(len(stages)):
        bs = sorted(stages[s])
        if bs != list(range(len(bs))):
            raise RepAccelError(f"{path}: inconsistent: stage {s} has blocks {bs}, not 0..{len(bs) - 1}")
        depths.append(len(bs))

    blocks, cin, in_channels = [], None, None
    for s, depth in enumerate(depths):
        for b in range(depth):
            prefix = kl.block_prefix(s, b)
            parse = _parse_quantization_aware_block if kl.post_norm else _parse_one_block
            p = parse(raw[(s, b)], kl, f"{prefix}", f"stage{s}.{b}", 2 if b == 0 else 1, cin, path)
            if in_channels is None:
                in_channels = p.cin
            cin = p.cout
            blocks.append(p)

    fc_w, fc_b = head["weight"], head["bias"]
    if fc_w.ndim != 2 or fc_b.shape != (fc_w.shape[0],) or fc_w.shape[1] != cin:
        raise RepAccelError(f"{path}: inconsistent shapes: head '{kl.head}.weight' {tuple(fc_w.shape)}, "
                            f"'{kl.head}.bias' {tuple(fc_b.shape)}; the last block has {cin} output channels")
    if fc_w.shape[0] < 1:
        raise RepAccelError(f"{path}: the head '{kl.head}.weight' has 0 classes; a classifier needs at least one")
    return blocks, depths, fc_w, fc_b, in_channels


def _parse_one_block(t: dict, kl: KeyLayout, prefix: str, name: str, stride: int, cin, path: Path) -> BlockParams:
    def take(branch, sub):
        key = f"{branch}.{sub}" if sub else branch
        if key not in t:
            raise RepAccelError(f"{path}: inconsistent: block '{prefix}' has '{prefix}.{next(iter(t))}' "
                                f"but no '{prefix}.{key}'")
        return t[key]

    branches = {k.split(".", 1)[0] for k in t}
    known = {kl.dense, kl.pointwise, kl.identity, kl.fused}
    if branches - known:
        odd = sorted(branches - known)[0]
        raise RepAccelError(f"{path}: not supported: block '{prefix}' has a '{odd}' branch "
                            f"(e.g. '{prefix}.{next(k for k in t if k.startswith(odd))}'), not part of a plain RepVGG")
    expected_keys = set()

    def shape_error(what, got, want):
        return RepAccelError(f"{path}: inconsistent shapes: '{prefix}.{what}' is {tuple(got)}, expected {want}")

    if kl.fused in branches:
        if branches != {kl.fused}:
            raise RepAccelError(f"{path}: inconsistent: block '{prefix}' holds both a fused '{kl.fused}' and "
                                f"train-time branches {sorted(branches - {kl.fused})}")
        w, bias = take(kl.fused, "weight"), take(kl.fused, "bias")
        expected_keys |= {f"{kl.fused}.weight", f"{kl.fused}.bias"}
        if w.ndim != 4 or w.shape[2:] != (3, 3):
            raise shape_error(f"{kl.fused}.weight", w.shape, "(C_out, C_in/groups, 3, 3)")
        if bias.shape != (w.shape[0],):
            raise shape_error(f"{kl.fused}.bias", bias.shape, f"({w.shape[0]},)")
        groups = _groups(cin, w, prefix, f"{kl.fused}.weight", path)
        p = BlockParams(name, stride, groups, weight=w, bias=bias)
    else:
        def conv_bn(branch, k):
            kernel = take(branch, "conv.weight")
            if kernel.ndim != 4 or kernel.shape[2:] != (k, k):
                raise shape_error(f"{branch}.conv.weight", kernel.shape, f"(C_out, C_in/groups, {k}, {k})")
            bn = [take(branch, f"{kl.norm}.{f}") for f in _BN_FIELDS]
            for f, v in zip(_BN_FIELDS, bn):
                if v.shape != (kernel.shape[0],):
                    raise shape_error(f"{branch}.{kl.norm}.{f}", v.shape, f"({kernel.shape[0]},)")
            expected_keys.update([f"{branch}.conv.weight"] + [f"{branch}.{kl.norm}.{f}" for f in _BN_FIELDS])
            return ConvBNParams(kernel, BatchNorm(*bn, eps=BN_EPS))

        if kl.dense not in branches or kl.pointwise not in branches:
            missing = kl.dense if kl.dense not in branches else kl.pointwise
            raise RepAccelError(f"{path}: inconsistent: block '{prefix}' has no '{missing}' branch "
                                f"(found {sorted(branches)})")
        dense, pw = conv_bn(kl.dense, 3), conv_bn(kl.pointwise, 1)
        if pw.kernel.shape[:2] != dense.kernel.shape[:2]:
            raise shape_error(f"{kl.pointwise}.conv.weight", pw.kernel.shape,
                              f"({dense.kernel.shape[0]}, {dense.kernel.shape[1]}, 1, 1) like its 3x3 branch")
        groups = _groups(cin, dense.kernel, prefix, f"{kl.dense}.conv.weight", path)
        cin_b, cout = dense.kernel.shape[1] * groups, dense.kernel.shape[0]
        identity = None
        if kl.identity in branches:
            if stride != 1 or cin_b != cout:
                raise RepAccelError(
                    f"{path}: inconsistent: block '{prefix}' has an identity branch but "
                    + (f"{cin_b} input and {cout} output channels" if cin_b != cout else
                       "is the first block of its stage (stride 2 in RepVGG)"))
            bn = [take(kl.identity, f) for f in _BN_FIELDS]
            for f, v in zip(_BN_FIELDS, bn):
                if v.shape != (cin_b,):
                    raise shape_error(f"{kl.identity}.{f}", v.shape, f"({cin_b},)")
            expected_keys.update(f"{kl.identity}.{f}" for f in _BN_FIELDS)
            identity = BatchNorm(*bn, eps=BN_EPS)
        elif stride == 1 and cin_b == cout:
            raise RepAccelError(f"{path}: inconsistent: block '{prefix}' ({cin_b} -> {cout} channels, stride 1) "
                                f"has no identity branch '{kl.identity}', which RepVGG always has there")
        p = BlockParams(name, stride, groups, dense=dense, pointwise=pw, identity=identity)
    extra = sorted(set(t) - expected_keys)
    if extra:
        raise RepAccelError(f"{path}: not supported: unexpected tensor '{prefix}.{extra[0]}' in a plain RepVGG block")
    return p


def _parse_quantization_aware_block(t: dict, kl: KeyLayout, prefix: str, name: str, stride: int, cin,
                                    path: Path) -> BlockParams:
    """One QARepVGG block: train-time `rbr_dense` (3x3 conv, with or without its BN),
    `rbr_1x1.weight` (1x1 conv, no BN, no bias), an identity without tensors where
    C_in == C_out at stride 1, and `bn` (the BN after the sum); or deploy
    `rbr_reparam.{weight,bias}` with or without `bn` after it (YOLOv6 keeps it)."""
    def shape_error(what, got, want):
        return RepAccelError(f"{path}: inconsistent shapes: '{prefix}.{what}' is {tuple(got)}, expected {want}")

    def take(key):
        if key not in t:
            raise RepAccelError(f"{path}: inconsistent: QARepVGG block '{prefix}' has '{prefix}.{next(iter(t))}' "
                                f"but no '{prefix}.{key}'")
        expected_keys.add(key)
        return t[key]

    def kernel(key, k):
        w = take(key)
        if w.ndim != 4 or w.shape[2:] != (k, k):
            raise shape_error(key, w.shape, f"(C_out, C_in/groups, {k}, {k})")
        return w

    def batch_norm(branch, channels):
        bn = [take(f"{branch}.{f}") for f in _BN_FIELDS]
        for f, v in zip(_BN_FIELDS, bn):
            if v.shape != (channels,):
                raise shape_error(f"{branch}.{f}", v.shape, f"({channels},)")
        return BatchNorm(*bn, eps=BN_EPS)

    expected_keys: set[str] = set()
    branches = {k.split(".", 1)[0] for k in t}
    known = {kl.dense, kl.pointwise, kl.fused, kl.post_norm}
    if branches - known:
        odd = sorted(branches - known)[0]
        raise RepAccelError(f"{path}: not supported: QARepVGG block '{prefix}' has a '{odd}' branch "
                            f"(e.g. '{prefix}.{next(k for k in t if k.startswith(odd))}'), not part of a plain "
                            "QARepVGG block")
    if kl.fused in branches:
        if branches - {kl.fused, kl.post_norm}:
            raise RepAccelError(f"{path}: inconsistent: block '{prefix}' holds both a fused '{kl.fused}' and "
                                f"train-time branches {sorted(branches - {kl.fused, kl.post_norm})}")
        w = kernel(f"{kl.fused}.weight", 3)
        bias = take(f"{kl.fused}.bias")
        if bias.shape != (w.shape[0],):
            raise shape_error(f"{kl.fused}.bias", bias.shape, f"({w.shape[0]},)")
        groups = _groups(cin, w, prefix, f"{kl.fused}.weight", path)
        post = batch_norm(kl.post_norm, w.shape[0]) if kl.post_norm in branches else None
        p = BlockParams(name, stride, groups, weight=w, bias=bias, post_bn=post)
    else:
        for needed in (kl.dense, kl.pointwise, kl.post_norm):
            if needed not in branches:
                raise RepAccelError(f"{path}: inconsistent: QARepVGG block '{prefix}' has no '{needed}' "
                                    f"(found {sorted(branches)})")
        # QARepVGGBlockV2 (the paper's block) keeps a BN on the 3x3 branch; the repository's
        # QARepVGGBlock has a bare 3x3 conv there.
        if f"{kl.dense}.weight" in t:
            dense = ConvBNParams(kernel(f"{kl.dense}.weight", 3), None)
        else:
            k3 = kernel(f"{kl.dense}.conv.weight", 3)
            dense = ConvBNParams(k3, batch_norm(f"{kl.dense}.{kl.norm}", k3.shape[0]))
        pointwise = ConvBNParams(kernel(f"{kl.pointwise}.weight", 1), None)
        if pointwise.kernel.shape[:2] != dense.kernel.shape[:2]:
            raise shape_error(f"{kl.pointwise}.weight", pointwise.kernel.shape,
                              f"({dense.kernel.shape[0]}, {dense.kernel.shape[1]}, 1, 1) like its 3x3 branch")
        groups = _groups(cin, dense.kernel, prefix, f"{kl.dense} kernel", path)
        cout = dense.kernel.shape[0]
        post = batch_norm(kl.post_norm, cout)
        # The identity has no tensors: QARepVGG builds it exactly where RepVGG has one.
        with_identity = stride == 1 and dense.kernel.shape[1] * groups == cout
        p = BlockParams(name, stride, groups, dense=dense, pointwise=pointwise,
                        identity_without_bn=with_identity, post_bn=post)
    extra = sorted(set(t) - expected_keys)
    if extra:
        raise RepAccelError(f"{path}: not supported: unexpected tensor '{prefix}.{extra[0]}' in a QARepVGG block "
                            "(3x3 conv+BN, 1x1 conv, identity, BN after the sum)")
    return p


def _groups(cin, kernel: np.ndarray, prefix: str, what: str, path: Path) -> int:
    if cin is None:  # the first block: its input channels are the kernel's (groups 1)
        return 1
    per_group = kernel.shape[1]
    if per_group == 0 or cin % per_group or kernel.shape[0] % (cin // per_group):
        raise RepAccelError(f"{path}: inconsistent shapes: '{prefix}.{what}' is {tuple(kernel.shape)} but the "
                            f"previous block has {cin} output channels (no groups count fits)")
    return cin // per_group


def load_checkpoint(path) -> LoadedCheckpoint:
    """Read a RepVGG checkpoint in any supported layout, infer its architecture and fuse it.

    Raises RepAccelError (one line naming the file and the problem) for anything else."""
    path = Path(path)
    return checkpoint_from_object(_read_file(path), path)


def checkpoint_from_object(obj, source="<state_dict>") -> LoadedCheckpoint:
    """load_checkpoint for an object already in memory: a state_dict (any supported
    layout, tensors of any float dtype), a wrapper dict around one, or this package's
    checkpoint dict. `source` names it in error messages."""
    path = source if isinstance(source, Path) else Path(str(source))
    notes: list[str] = []
    extra: dict = {}
    stored_config = None
    own = isinstance(obj, dict) and obj.get("format") == FORMAT_TAG
    if own:
        if obj.get("version") != FORMAT_VERSION:
            raise RepAccelError(f"{path}: rep_accel checkpoint version {obj.get('version')!r} is not supported "
                                f"(this rep-accel reads version {FORMAT_VERSION}); upgrade rep-accel")
        if not isinstance(obj.get("state_dict"), dict):
            raise RepAccelError(f"{path}: rep_accel checkpoint without a state_dict entry")
        for field_name in ("config", "extra"):
            if not isinstance(obj.get(field_name) or {}, dict):
                raise RepAccelError(f"{path}: rep_accel checkpoint field '{field_name}' must be a dict, found "
                                    f"{type(obj.get(field_name)).__name__}; the file is damaged, save it again")
        stored_config = RepVGGConfig.from_dict(obj.get("config") or {})
        extra.update({k: v for k, v in (obj.get("extra") or {}).items() if _plain(v)})
        sd = _tensor_items(obj["state_dict"])
    else:
        sd = _find_state_dict(obj, path, notes, extra)
    sd = _strip_prefixes(sd, notes)
    if not sd:
        raise RepAccelError(f"{path}: holds no tensors")
    keys = list(sd)
    family = _detect_family(keys, path, "the file")
    if own and family != "rep_accel":
        raise RepAccelError(f"{path}: inconsistent: tagged format 'rep_accel' but its keys are in the {family} layout")
    dtypes: list[str] = []
    sd64 = _to_float64(sd, path, dtypes)
    kl = _KEY_LAYOUTS[family]
    blocks, depths, fc_w, fc_b, in_channels = _parse_blocks(sd64, kl, path)

    deploy_flags = {p.is_fused for p in blocks}
    if len(deploy_flags) > 1:
        raise RepAccelError(f"{path}: inconsistent: some blocks are reparameterized and some are not")
    deploy = deploy_flags.pop()
    widths = []
    i = 0
    for s, d in enumerate(depths):
        couts = {blocks[i + j].cout for j in range(d)}
        if len(couts) != 1:
            raise RepAccelError(f"{path}: inconsistent: stage {s} mixes output widths {sorted(couts)}")
        widths.append(couts.pop())
        i += d
    config = RepVGGConfig(tuple(widths), tuple(depths), tuple(p.groups for p in blocks),
                          in_channels=int(in_channels), num_classes=int(fc_w.shape[0]))
    if stored_config is not None and stored_config != config:
        raise RepAccelError(f"{path}: inconsistent: its stored config {stored_config.to_dict()} does not match its "
                            f"tensors ({config.to_dict()})")
    if own and obj.get("kind") not in (None, "deploy" if deploy else "train"):
        raise RepAccelError(f"{path}: inconsistent: kind '{obj.get('kind')}' but the blocks are "
                            f"{'fused' if deploy else 'train-time'}")
    layout = family if family == "rep_accel" or not deploy else f"{family}-deploy"
    variant = match_variant(config)
    meta = {"layout": layout, "variant": variant or "custom", "source": str(path),
            "config": config.to_dict()}
    network = fuse_blocks(blocks, fc_w, fc_b, in_channels, meta)
    return LoadedCheckpoint(str(path), layout, deploy, config, variant, blocks, fc_w, fc_b, network,
                            dtypes=dtypes, notes=notes, extra=extra)


def load_fused(path) -> FusedNetwork:
    """The fused float32 network of any supported checkpoint (load_checkpoint(path).network)."""
    return load_checkpoint(path).network


# --------------------------------------------------------------------------- writing


def _blocks_to_state_dict(blocks, fc_weight, fc_bias, kl: KeyLayout) -> dict:
    """Key -> array in layout `kl`; stage and block indices come from the block names."""
    sd = {}
    for p in blocks:
        s, b = (int(x) for x in re.match(r"^stage(\d+)\.(\d+)$", p.name).groups())
        if s == 0 and b != 0 and kl.family != "rep_accel":
            raise RepAccelError(f"the {kl.family} layout has a single stem block; this network's stage 0 has more")
        pre = kl.block_prefix(s, b)
        if p.is_fused:
            sd[f"{pre}.{kl.fused}.weight"], sd[f"{pre}.{kl.fused}.bias"] = p.weight, p.bias
            continue
        if p.post_bn is not None or p.identity_without_bn or p.dense.bn is None or p.pointwise.bn is None:
            raise RepAccelError(f"block {p.name}: a QARepVGG block has no train-time form in the {kl.family} "
                                "layout; write its fused (deploy) form")
        for branch, params in ((kl.dense, p.dense), (kl.pointwise, p.pointwise)):
            sd[f"{pre}.{branch}.conv.weight"] = params.kernel
            for f in _BN_FIELDS:
                sd[f"{pre}.{branch}.{kl.norm}.{f}"] = getattr(params.bn, f)
        if p.identity is not None:
            for f in _BN_FIELDS:
                sd[f"{pre}.{kl.identity}.{f}"] = getattr(p.identity, f)
    sd[f"{kl.head}.weight"], sd[f"{kl.head}.bias"] = fc_weight, fc_bias
    return sd


def _stage_names(net: FusedNetwork) -> list[str]:
    """`stage{S}.{B}` of every fused layer: a new stage starts at every stride-2 layer."""
    names, s, b = [], -1, 0
    for i, layer in enumerate(net.layers):
        if layer.stride == 2:
            s, b = s + 1, 0
        elif i == 0:
            raise RepAccelError(f"layer {layer.name} has stride {layer.stride}; a RepVGG starts with a stride-2 stem")
        else:
            b += 1
        names.append(f"stage{s}.{b}")
    return names


def deploy_state_dict(net: FusedNetwork, layout: str) -> dict:
    """The fused network as a float32 state_dict in `layout`'s deploy key convention
    (official and qarepvgg -> `stageS.B.rbr_reparam.*`, timm -> `stages.N.M.reparam_conv.*`,
    mmpretrain -> `backbone.stage_S.B.branch_reparam.*`, rep_accel -> `stages.S.B.fused.*`).
    QARepVGG's deploy-mode model has exactly the official deploy keys (its BN after the
    sum is folded into `rbr_reparam`)."""
    family = layout.removesuffix("-deploy")
    if family not in _KEY_LAYOUTS:
        raise RepAccelError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    blocks = [BlockParams(n, l.stride, l.groups, weight=l.weight, bias=l.bias)
              for n, l in zip(_stage_names(net), net.layers)]
    sd = _blocks_to_state_dict(blocks, net.fc_weight, net.fc_bias, _KEY_LAYOUTS[family])
    return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in sd.items()}


def deploy_config(net: FusedNetwork) -> RepVGGConfig:
    """The RepVGGConfig of a fused network (stages from its strides)."""
    names = _stage_names(net)
    depths = [0] * (int(names[-1].split(".")[0][5:]) + 1)
    widths = [0] * len(depths)
    for n, layer in zip(names, net.layers):
        s = int(n.split(".")[0][5:])
        depths[s] += 1
        widths[s] = layer.cout
    return RepVGGConfig(tuple(widths), tuple(depths), tuple(l.groups for l in net.layers),
                        in_channels=net.in_channels, num_classes=net.num_classes)


def _to_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def deploy_checkpoint(loaded_or_fused, layout: str | None = None):
    """What save_deploy writes: a bare state_dict (official, timm, qarepvgg), an mmengine
    checkpoint `{"meta", "state_dict"}` (mmpretrain, as its reparameterize_model tool
    writes) or this package's deploy checkpoint dict (rep_accel). `layout` defaults to
    the loaded file's."""
    if isinstance(loaded_or_fused, LoadedCheckpoint):
        net, layout = loaded_or_fused.network, layout or loaded_or_fused.layout
    elif isinstance(loaded_or_fused, FusedNetwork):
        net, layout = loaded_or_fused, layout or loaded_or_fused.meta.get("layout", "rep_accel")
    else:
        raise TypeError(f"save_deploy needs a LoadedCheckpoint or FusedNetwork, got {type(loaded_or_fused).__name__}")
    sd = deploy_state_dict(net, layout)
    if layout.removesuffix("-deploy") == "mmpretrain":
        return {"meta": {"fused_by": "rep-accel", "fused_from": str(net.meta.get("source", ""))}, "state_dict": sd}
    if layout.removesuffix("-deploy") != "rep_accel":
        return sd
    config = deploy_config(net)
    return {"format": FORMAT_TAG, "version": FORMAT_VERSION, "kind": "deploy",
            "variant": match_variant(config) or "custom", "config": config.to_dict(), "state_dict": sd,
            "extra": {"fused_from": str(net.meta.get("source", ""))}}


def save_deploy(loaded_or_fused, path, layout: str | None = None) -> dict:
    """Write the fused network to `path` (atomically) in `layout`'s deploy convention,
    so it loads into the original project's deploy-mode model; returns what was saved."""
    ckpt = deploy_checkpoint(loaded_or_fused, layout)
    atomic_write_bytes(path, _to_bytes(ckpt))
    return ckpt


def model_checkpoint(model: RepVGG, extra: dict | None = None) -> dict:
    """This package's checkpoint of a rep_accel.models.RepVGG: a plain dict
    {format, version, kind ('train' or 'deploy'), variant, config, state_dict, extra}
    that torch.load(..., weights_only=True) reads."""
    return {
        "format": FORMAT_TAG,
        "version": FORMAT_VERSION,
        "kind": "deploy" if model.deploy else "train",
        "variant": model.name,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "extra": dict(extra or {}),
    }


def save_model(model: RepVGG, path, extra: dict | None = None) -> None:
    """Write `model_checkpoint(model, extra)` to `path` atomically."""
    atomic_write_bytes(path, _to_bytes(model_checkpoint(model, extra)))


def fuse_state_dict(state_dict) -> FusedNetwork:
    """Fuse a state_dict held in memory (any supported key layout, train-time or deploy,
    any float dtype; architecture inferred as described above)."""
    return checkpoint_from_object(state_dict).network
