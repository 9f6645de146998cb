"""`rep-accel compile`: checkpoint -> calibrated integer network -> weight images."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from .. import images, quantize
from ..errors import RepAccelError
from ..fsutil import add_force_argument, check_output_folder
from ..datasets import IMAGE_SUFFIXES, read_normalized_image
from ..untrusted import check_allocation, jsonable, open_npy, parse_input_size
from ..generics import HardwareGenerics
from ..layout import size_generics

HELP = "quantize a model to integers (calibrating on data) and write its weight images"
DESCRIPTION = """\
Fuse a RepVGG checkpoint, calibrate it on data, quantize every layer to the integer
contract of docs/numerics.md and write the build folder the simulator and the RTL read:
manifest.json, params.bin (the parameter stream, in load order), head.bin, hex/*.hex.

Calibration data: --calib x.npy (float32 N x C x H x W, normalized as the network takes
it) or --calib images/ with --mean/--std (every image is resized to --input-size and
normalized as (pixel/255 - mean) / std). Without --calib, the bundled default model
calibrates on its own training digits; any other model needs --calib.

examples:
  rep-accel compile rep_accel/data/default_model.pt -o build/
  rep-accel compile model.pt -o build/ --calib calib.npy --pi 16 --po 8
  rep-accel compile model.pt -o build/ --calib images/ --mean 0.485,0.456,0.406 \\
      --std 0.229,0.224,0.225 --input-size 3,64,64 --observer mse --num-calib 256
"""

def add_arguments(p) -> None:
    p.add_argument("model", nargs="?", default=None,
                   help="checkpoint (.pt): rep-accel, official RepVGG, timm, mmpretrain or QARepVGG layout, "
                        "train-time or fused "
                        "(default: the bundled default model)")
    p.add_argument("-o", "--output", required=True, help="build folder to write (created or updated)")
    p.add_argument("--calib", help="calibration data: a .npy of N x C x H x W float32, or a folder of images")
    p.add_argument("--mean", help="per-channel mean of the normalization of folder images, e.g. 0.1307 or 0.485,0.456,0.406")
    p.add_argument("--std", help="per-channel std of the normalization of folder images")
    p.add_argument("--input-size", help="C,H,W of the network input (default: the calibration data's)")
    add_quantization_arguments(p)
    p.add_argument("--w-max", type=int, help="check the layers fit a build with this W_MAX (default: derived)")
    p.add_argument("--max-cg", type=int, help="check against this weight-buffer depth (default: derived)")
    p.add_argument("--line-depth", type=int, help="check against this line-buffer depth (default: derived)")
    from .rtl import add_arithmetic_arguments, add_group_argument
    add_group_argument(p)         # the images are laid out in its tile groups: the RTL must have the same
    add_arithmetic_arguments(p)   # recorded in the build: its RTL must have the same
    p.add_argument("--json", action="store_true", help="print the quantization report as JSON instead of the table")
    add_force_argument(p)


def add_quantization_arguments(p, when: str = "") -> None:
    """--num-calib, --observer, --pi, --po: how a checkpoint is quantized and laid out (also
    `rep-accel evaluate`'s, which compiles a checkpoint in memory; `when` prefixes the help)."""
    p.add_argument("--num-calib", type=int, default=quantize.DEFAULT_NUM_CALIB,
                   help=f"{when}calibration inputs to use, the first ones (default {quantize.DEFAULT_NUM_CALIB})")
    p.add_argument("--observer", choices=quantize.OBSERVERS, default=quantize.DEFAULT_OBSERVER,
                   help=f"{when}activation range observer (default {quantize.DEFAULT_OBSERVER}; docs/numerics.md)")
    p.add_argument("--pi", type=int, default=8, help=f"{when}array rows (input channels per cycle) the images are "
                                                     f"laid out for (default 8)")
    p.add_argument("--po", type=int, default=8, help=f"{when}array columns (output channels in parallel; default 8)")


# ----------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------

def _parse_floats(text: str, option: str, channels: int) -> np.ndarray:
    try:
        vals = np.array([float(v) for v in text.split(",")], dtype=np.float32)
    except ValueError:
        raise RepAccelError(f"{option} {text!r} must be numbers separated by commas") from None
    if vals.size == 1:
        vals = np.repeat(vals, channels)
    if vals.size != channels or not np.all(np.isfinite(vals)):
        raise RepAccelError(f"{option} {text!r} must give 1 or {channels} finite values")
    return vals


def load_calib_npy(path: Path, limit: int) -> np.ndarray:
    arr = open_npy(path, "--calib")
    if arr.ndim == 4:
        arr = arr[:limit]
    # The header's shape is checked (memory-mapped, nothing read yet) before the copy.
    check_allocation(arr.size * max(arr.dtype.itemsize, 4), f"--calib {path}: {limit} inputs of {arr.shape[1:]}",
                     "give fewer or smaller inputs (--num-calib)")
    return np.array(arr)


def load_calib_folder(folder: Path, input_size, mean: str | None, std: str | None, limit: int) -> np.ndarray:
    """Images of `folder` (sorted by name, the first `limit`) as float32 (N, C, H, W):
    converted to C channels (grey or RGB), resized to H x W, (pixel/255 - mean) / std."""
    if input_size is None:
        raise RepAccelError(f"--calib {folder}: a folder of images needs --input-size C,H,W")
    if mean is None or std is None:
        raise RepAccelError(f"--calib {folder}: a folder of images needs --mean and --std (the normalization the "
                            f"model was trained with, e.g. --mean 0.1307 --std 0.3081 for MNIST)")
    c, h, w = input_size
    check_allocation(limit * c * h * w * 4, f"--calib {folder}: up to {limit} images of {c}x{h}x{w}",
                     "give a smaller --input-size or --num-calib")
    if c not in (1, 3):
        raise RepAccelError(f"--calib {folder}: images give 1 (grey) or 3 (RGB) channels, the input has {c}")
    m, s = _parse_floats(mean, "--mean", c), _parse_floats(std, "--std", c)
    if np.any(s == 0):
        raise RepAccelError("--std must not be 0")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())[:limit]
    if not files:
        raise RepAccelError(f"--calib {folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in the folder")
    out = np.empty((len(files), c, h, w), dtype=np.float32)
    for i, f in enumerate(files):
        out[i] = read_normalized_image(f, (c, h, w), m, s)
    return out


def _is_default_model(model: Path) -> bool:
    from ..datasets import default_model_path
    try:
        return model.resolve() == default_model_path().resolve()
    except OSError:
        return False


def load_calibration(model: Path, limit: int, calib_path=None, input_size=None, mean=None, std=None
                     ) -> tuple[np.ndarray, str]:
    """(calibration inputs float32 (N, C, H, W), a description of where they came from):
    the first `limit` of `calib_path` (a .npy, or a folder of images with `mean`/`std` and
    `input_size` "C,H,W"), or the bundled model's own digits when `calib_path` is None."""
    input_size = parse_input_size(input_size) if input_size else None
    if calib_path is None:
        if mean is not None or std is not None:
            raise RepAccelError("--mean/--std apply to a folder given with --calib")
        if not _is_default_model(model):
            raise RepAccelError(f"{model} needs calibration data: give --calib x.npy (N x C x H x W float32, "
                                f"normalized) or --calib images/ --mean M --std S")
        from ..datasets import mnist_split
        x_train = mnist_split()[0]
        calib, source = x_train[:limit], f"default model's training digits (mnist_split), first {min(limit, len(x_train))}"
    else:
        path = Path(calib_path)
        if path.is_dir():
            calib = load_calib_folder(path, input_size, mean, std, limit)
            source = f"{path} ({len(calib)} images)"
        elif path.is_file():
            if mean is not None or std is not None:
                raise RepAccelError("--mean/--std apply to a folder of images; a .npy must already be normalized")
            calib = load_calib_npy(path, limit)
            source = f"{path.name} (first {len(calib)})"
        else:
            raise RepAccelError(f"--calib {path}: no such file or folder")
    if calib.ndim == 4 and calib.shape[0] == 0:
        raise RepAccelError(f"--calib {calib_path or 'default'}: no calibration inputs (N = 0)")
    if input_size is not None and calib.ndim == 4 and tuple(calib.shape[1:]) != input_size:
        raise RepAccelError(f"--calib {calib_path}: inputs are {'x'.join(map(str, calib.shape[1:]))}, "
                            f"--input-size is {'x'.join(map(str, input_size))}")
    return calib, source


def load_model(path: Path):
    """The fused float network of a checkpoint (rep_accel.checkpoints.load_fused)."""
    if not path.is_file():
        raise RepAccelError(f"model {path}: no such file")
    try:
        from ..checkpoints import load_fused
    except ImportError as e:  # the loader is part of the package; this only guards a broken install
        raise RepAccelError(f"cannot load checkpoints: {e}") from None
    return load_fused(path)


# ----------------------------------------------------------------------------------
# Hardware fit
# ----------------------------------------------------------------------------------

def fit_generics(shapes, names, pi: int, po: int, w_max=None, max_cg=None, line_depth=None,
                 max_group=None) -> HardwareGenerics:
    """Generics for an array of pi x po with tile groups of up to max_group tiles (default
    HardwareGenerics') whose buffers take every layer: the defaults, or larger where a
    layer needs it, or exactly the given sizes (layout.size_generics, policy "defaults").
    The images depend on pi, po and the tile groups (max_group, and max_cg if given smaller
    than the groups need)."""
    return size_generics(shapes, pi, po, "defaults", names=names, w_max=w_max, max_cg=max_cg, line_depth=line_depth,
                         max_group=max_group)


# ----------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------

def _fmt_db(v: float) -> str:
    return "exact" if v == float("inf") else f"{v:.1f}"


def summary_table(qnet, report, generics: HardwareGenerics) -> str:
    """Human summary: one row per layer (shape, parameters, image bytes, scales, SQNR), head, totals."""
    rows = [("layer", "Cin->Cout", "g", "s", "input HxW", "params", "bytes", "s_x", "s_y", "SQNR dB")]
    total_params = total_bytes = 0
    for layer, lr in zip(qnet.layers, report.layers):
        s = layer.shape
        nbytes = sum(b.nbytes for b in images.layer_param_beats(layer, generics))
        total_params += lr.parameters
        total_bytes += nbytes
        rows.append((layer.name, f"{s.cin}->{s.cout}", str(s.groups), str(s.stride), f"{s.height}x{s.width}",
                     str(lr.parameters), str(nbytes), f"{layer.s_x:.4g}", f"{layer.s_y:.4g}", _fmt_db(lr.sqnr_db)))
    h = qnet.head
    head_params = h.fc_weight.size + h.fc_bias.size
    head_bytes = h.fc_weight.size + 4 * h.fc_bias.size
    total_params += head_params
    rows.append(("head (GAP+FC)", f"{h.fc_weight.shape[1]}->{h.fc_weight.shape[0]}", "", "", "", str(head_params),
                 str(head_bytes), f"{h.s_pool:.4g}", f"{h.logit_scale:.4g}", _fmt_db(report.logits_sqnr_db)))
    rows.append(("total", "", "", "", "", str(total_params), str(total_bytes + head_bytes), "", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    lines.append(f"observer {report.observer}, {report.num_calib} calibration inputs; SQNR of each integer layer "
                 f"output vs float on {report.report_samples} of them; float/int8 top-1 agreement "
                 f"{100 * report.top1_agreement:.1f}%; head row: s_x = pooled scale, s_y = logit scale")
    for lr in report.layers:
        for note in lr.notes:
            lines.append(f"note: {lr.name}: {note}")
    for note in report.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def compile_model(model, output, calib: np.ndarray, observer: str = quantize.DEFAULT_OBSERVER,
                  pi: int = 8, po: int = 8, w_max=None, max_cg=None, line_depth=None, source=None,
                  force: bool = False, arithmetic: dict | None = None, max_group=None):
    """Quantize a fused network on `calib` (N, C, H, W) and write its build to `output`.
    force: write into a folder holding files `compile` did not write (fsutil).
    arithmetic: the unit kind and LUT-multiplier count to record, {name: value} of
    generics.ARITHMETIC_GENERICS (default: HardwareGenerics' defaults). max_group: the most
    tiles per tile group (default HardwareGenerics').
    Returns (QuantizedNetwork, QuantReport, HardwareGenerics)."""
    check_output_folder(output, "compile", force)
    quantize.check_fused(model)
    calib = quantize.check_calibration(calib, model.in_channels)
    shapes = quantize.layer_shapes(model, calib.shape[1:])
    generics = fit_generics(shapes, [l.name for l in model.layers], pi, po, w_max, max_cg, line_depth, max_group)
    generics = generics.replace(**(arithmetic or {}))
    qnet, report = quantize.quantize_network(model, calib, observer, return_report=True)
    images.write_build(qnet, generics, output, report=report, source=source, force=force)
    return qnet, report, generics


def run(args) -> int:
    from ..datasets import default_model_path
    from .rtl import arithmetic_options

    output = check_output_folder(args.output, "compile", args.force)
    for given, what in ((args.model, "the model"), (args.calib, "the calibration data")):
        if given is not None and Path(given).resolve() == output.resolve():
            raise RepAccelError(f"-o {output} is {what} given as input; write the build to another folder")
    if args.num_calib < 1:
        raise RepAccelError(f"--num-calib {args.num_calib} must be at least 1")
    model_path = Path(args.model) if args.model else default_model_path()
    fused = load_model(model_path)
    quantize.check_fused(fused)
    calib, calib_source = load_calibration(model_path, args.num_calib, args.calib, args.input_size, args.mean,
                                           args.std)
    source = {"model": model_path.name, "calibration": calib_source}
    qnet, report, generics = compile_model(fused, output, calib, args.observer, args.pi, args.po,
                                           args.w_max, args.max_cg, args.line_depth, source, args.force,
                                           arithmetic_options(args), args.max_group)
    if args.json:
        print(json.dumps(jsonable(report.to_dict()), indent=1))
    else:
        print(summary_table(qnet, report, generics))
        size = (output / images.PARAMS).stat().st_size
        print(f"wrote {output}/: {images.MANIFEST}, {images.PARAMS} ({size} bytes), {images.HEAD}, "
              f"{len(qnet.layers)} hex files; laid out for a {generics.pi}x{generics.po} array", file=sys.stdout)
    return 0
