"""`rep-accel evaluate`: accuracy of a model on a labelled data set, float vs int8 vs simulator."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import RepAccelError
from ..fsutil import atomic_write_bytes

HELP = "measure top-1/top-5 of the float, int8 and simulated network on a labelled data set (on Ray)"
DESCRIPTION = """\
Run every image of a labelled data set through the float network, the integer golden
model and the accelerator simulator (fast mode, or --mode cycle), and report top-1 and
top-5 of each, float vs int8 top-1 agreement, the per-class accuracy, the simulated
cycles and frames/s. The simulator's logits must equal the golden model's on every
image: an image where they differ is named and the exit status is 1.

Model: a build folder (`rep-accel compile`; its float network only with --checkpoint) or
a checkpoint, compiled in memory as `rep-accel compile` does (--calib as there; the
bundled default model calibrates on its own training digits). Default: the bundled model.

Data (--data): a .npz with images (x) and labels (y) (np.savez(path, x=..., y=...)), a
.npy of images with --labels labels.npy, or a folder with one subfolder per class
(ImageNet's validation layout; a label is its folder's position in name order, as in
torchvision's ImageFolder; --input-size, --mean, --std as for `compile`). Images in
an .npz/.npy are float32 N x C x H x W, normalized. Read shard by shard: memory stays flat
however large the data set (a deflated .npz is decompressed front to back).

Work is cut into shards of --shard-size images and runs on Ray (pip install
'rep-accel[ray]'): a local instance of --workers CPUs (default all), or an existing
cluster with --address. Results are identical, logit for logit and in the same order,
to a serial run (--serial, or when Ray is not installed) for any number of workers; a
shard whose worker dies is run again.

examples:
  rep-accel evaluate --data mnist_test.npz
  rep-accel evaluate build/ --checkpoint rep_accel/data/default_model.pt --data mnist_test.npz --workers 2
  rep-accel evaluate model.pt --calib calib.npy --data val/ --input-size 3,224,224 \\
      --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 --address auto --json val.json
"""


def add_arguments(p) -> None:
    from rep_accel import evaluate
    from rep_accel.distributed import DEFAULT_MAX_RETRIES
    from rep_accel.sim.network import DEFAULT_CLOCK_MHZ, MODES
    p.add_argument("model", nargs="?", default=None,
                   help="build folder, or a checkpoint (.pt) to compile in memory (default: the bundled model)")
    p.add_argument("--data", required=True, help="labelled data: a .npz (x, y), a .npy of images with --labels, "
                                                 "or a folder with one subfolder per class")
    p.add_argument("--labels", help="with a .npy of images: a .npy of integer class indices, one per image")
    p.add_argument("--mean", help="folder images: per-channel mean of the normalization, e.g. 0.485,0.456,0.406")
    p.add_argument("--std", help="folder images: per-channel std of the normalization")
    p.add_argument("--input-size", help="C,H,W of the network input (folder images are resized to it)")
    p.add_argument("--limit", type=int, help="evaluate only the first N images")
    p.add_argument("--checkpoint", help="with a build: the checkpoint it was compiled from, for the float column")
    p.add_argument("--calib", help="with a checkpoint: calibration data, as `rep-accel compile --calib`")
    from .compile import add_quantization_arguments
    add_quantization_arguments(p, "with a checkpoint: ")
    p.add_argument("--mode", choices=MODES, default="fast",
                   help="simulator mode: fast (exact outputs, schedule cycles; default) or cycle (every clock)")
    p.add_argument("--clock-mhz", type=float, default=DEFAULT_CLOCK_MHZ,
                   help=f"clock for frames/s (default {DEFAULT_CLOCK_MHZ:g} MHz)")
    p.add_argument("--workers", type=int, help="CPUs of the local Ray instance (default: all cores)")
    p.add_argument("--address", help="join this Ray cluster instead (host:port from `ray start --head`, or auto)")
    p.add_argument("--serial", action="store_true", help="run in this process, without Ray")
    p.add_argument("--shard-size", type=int, default=evaluate.DEFAULT_SHARD_SIZE,
                   help=f"images per unit of work (default {evaluate.DEFAULT_SHARD_SIZE})")
    p.add_argument("--max-retries", type=int, default=DEFAULT_MAX_RETRIES,
                   help=f"times a shard is run again when its worker dies (default {DEFAULT_MAX_RETRIES})")
    p.add_argument("--json", help="write the report (every figure, per class, mismatches) to this .json")


def _input_size(args):
    from ..untrusted import parse_input_size
    return parse_input_size(args.input_size) if args.input_size else None


def load_model(args):
    """The EvalModel of args.model (build folder or checkpoint) and a line saying what it is."""
    from .. import images, quantize
    from ..datasets import default_model_path
    from ..evaluate import EvalModel
    from . import compile as C

    path = Path(args.model) if args.model else default_model_path()
    if path.is_dir():
        for opt in ("calib",):
            if getattr(args, opt) is not None:
                raise RepAccelError(f"--{opt} applies to a checkpoint; {path} is a build (already calibrated)")
        build = images.load_build(path)
        fused, note = None, ""
        if args.checkpoint:
            fused = C.load_model(Path(args.checkpoint))
        else:
            recorded = (build.manifest.get("source") or {}).get("model")
            note = (f"the build records it was compiled from {recorded!r}; " if recorded else "") + \
                "give --checkpoint for the float column"
        model = EvalModel.from_build(build, fused, args.mode, args.clock_mhz, note)
        return model, f"build {path} ({build.generics.pi}x{build.generics.po} array)"
    if args.checkpoint:
        raise RepAccelError(f"--checkpoint applies to a build folder; {path} is already the checkpoint")
    fused = C.load_model(path)
    quantize.check_fused(fused)
    input_size = _input_size(args)
    folder_calib = args.calib is not None and Path(args.calib).is_dir()
    if args.num_calib < 1:
        raise RepAccelError(f"--num-calib {args.num_calib} must be at least 1")
    calib, calib_source = C.load_calibration(path, args.num_calib, args.calib, args.input_size,
                                             args.mean if folder_calib else None, args.std if folder_calib else None)
    calib = quantize.check_calibration(calib, fused.in_channels)
    if input_size is not None and tuple(calib.shape[1:]) != input_size:
        raise RepAccelError(f"--calib: inputs are {'x'.join(map(str, calib.shape[1:]))}, --input-size is "
                            f"{'x'.join(map(str, input_size))}")
    shapes = quantize.layer_shapes(fused, calib.shape[1:])
    generics = C.fit_generics(shapes, [l.name for l in fused.layers], args.pi, args.po)
    qnet = quantize.quantize_network(fused, calib, args.observer)
    model = EvalModel(qnet, generics, fused, args.mode, args.clock_mhz)
    return model, f"checkpoint {path.name}, compiled in memory for a {args.pi}x{args.po} array on {calib_source}"


def run(args) -> int:
    from .. import distributed, evaluate
    from ..untrusted import check_clock_mhz, jsonable, strict_json

    from ..fsutil import check_output_file
    json_path = check_output_file(args.json, "--json", [args.data, args.model]) if args.json else None
    if json_path is not None and json_path.suffix.lower() != ".json":
        raise RepAccelError(f"--json {json_path}: give a .json file name")
    if args.limit is not None and args.limit < 1:
        raise RepAccelError(f"--limit {args.limit} must be at least 1")
    if args.max_retries < 0:
        raise RepAccelError(f"--max-retries {args.max_retries} must not be negative")
    check_clock_mhz(args.clock_mhz)
    source = evaluate.open_data(args.data, args.labels, _input_size(args), args.mean, args.std)
    model, what = load_model(args)
    evaluate.check_data(model, source)  # before Ray starts: a bad input fails in a second
    print(f"model: {what}", flush=True)
    with distributed.session(args.workers, args.address, args.serial, args.max_retries) as engine:
        if isinstance(engine, distributed.SerialEngine):
            print(f"note: {engine.reason}", file=sys.stderr, flush=True)
        ev = evaluate.evaluate(model, source, engine, args.shard_size, args.limit)
    rep = ev.report()
    print(evaluate.format_table(rep))
    if json_path is not None:
        atomic_write_bytes(json_path, (strict_json(jsonable(rep), indent=1) + "\n").encode())
        print(f"report written to {json_path}")
    if not rep["simulator_equals_golden"]:
        print("FAIL: the simulator differs from the golden model on the images named above")
        return 1
    return 0
