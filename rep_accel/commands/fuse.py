"""`rep-accel fuse`: structural re-parameterization of a checkpoint into a deploy checkpoint."""

from __future__ import annotations

import numpy as np
import torch

from ..checkpoints import LAYOUTS, fused_parameter_count, load_checkpoint, save_deploy
from ..errors import RepAccelError
from .export import check_onnx_output
from ..fsutil import check_output_file

HELP = "fuse a RepVGG checkpoint into plain 3x3 conv layers (a deploy checkpoint)"

DESCRIPTION = """\
Load a RepVGG checkpoint (the official repository's train-time or deploy state_dict,
timm's repvgg_* train-time or reparameterized state_dict, an mmpretrain/mmengine
checkpoint, a QARepVGG (or YOLOv6 QARepVGGBlock) checkpoint, or rep-accel's own format;
wrapped under 'state_dict'/'model', with 'module.' prefixes, fp16/bf16 tensors), infer
its architecture, fuse every block (3x3 conv+BN, 1x1 conv+BN, identity BN; QARepVGG's
1x1 and identity without BN and its BN after the sum) into one 3x3 conv with bias, and
write the fused network as a deploy checkpoint in the same key convention as the input,
so it loads into the original project's deploy-mode model: official -> stageS.B.rbr_reparam.*,
timm -> stages.N.M.reparam_conv.*, mmpretrain -> backbone.*.branch_reparam.*, rep-accel ->
its deploy format (docs/checkpoints.md). The fused network is checked against the train-time one on a random input.

The file is read with torch.load(weights_only=True): it never runs code from the file.

example:
  rep-accel fuse model.pt -o deploy.pt
  rep-accel fuse RepVGG-A0-train.pth -o RepVGG-A0-deploy.pth --layout rep_accel
  rep-accel fuse model.pt -o deploy.pt --onnx deploy.onnx
"""


def add_arguments(parser) -> None:
    parser.add_argument("model", help="checkpoint file (.pt/.pth)")
    parser.add_argument("-o", "--output", required=True, help="deploy checkpoint to write (.pt)")
    parser.add_argument("--layout", choices=("same",) + LAYOUTS, default="same",
                        help="key convention of the output (default: the input's)")
    parser.add_argument("--check-size", type=int, default=64, metavar="PIXELS",
                        help=f"side of the random input used to compare fused and train-time outputs "
                             f"(0 = skip the check; at most {MAX_CHECK_SIZE}; default 64)")
    parser.add_argument("--onnx", metavar="FILE",
                        help="also write the fused float network as ONNX (.onnx: Conv+Relu per layer, "
                             "GlobalAveragePool, Gemm; needs pip install 'rep-accel[onnx]')")


#: Largest --check-size (pixels a side): the check runs the float network twice on it.
MAX_CHECK_SIZE = 1024


def _stage_summary(config) -> str:
    return ", ".join(f"{d}x{w}" for d, w in zip(config.depths, config.widths))


def run(args) -> int:
    if not 0 <= args.check_size <= MAX_CHECK_SIZE:
        raise RepAccelError(f"--check-size must be in [0, {MAX_CHECK_SIZE}] pixels, got {args.check_size}")
    # Before anything is read: the output is a writable file name and not the input.
    check_output_file(args.output, "-o", [args.model])
    onnx_path = check_onnx_output(args.onnx, "--onnx", [args.model, args.output]) if args.onnx else None
    loaded = load_checkpoint(args.model)
    layout = loaded.layout if args.layout == "same" else args.layout
    cfg, net = loaded.config, loaded.network

    verified = None
    if args.check_size and not loaded.deploy:
        # The fused float network must equal the train-time one in eval mode.
        rng = np.random.default_rng(0)
        x = rng.standard_normal((1, cfg.in_channels, args.check_size, args.check_size)).astype(np.float32)
        with torch.no_grad():
            ref = loaded.to_model()(torch.from_numpy(x)).numpy()
        diff = float(np.abs(net.forward(x) - ref).max())
        scale = float(np.abs(ref).max())
        verified = (diff, scale)
        if not diff <= 1e-5 * scale:
            raise RepAccelError(f"{args.model}: fused network differs from the train-time one by {diff:.3g} "
                                f"(max |output| {scale:.3g}); not writing {args.output}")

    ckpt = save_deploy(loaded, args.output, layout)

    grouped = [(l.name, l.groups) for l in net.layers if l.groups > 1]
    print(f"read      {args.model}: layout {loaded.layout}"
          + (f" ({'; '.join(loaded.notes)})" if loaded.notes else "")
          + f", dtype {'/'.join(loaded.dtypes)}")
    print(f"model     RepVGG-{loaded.variant}" if loaded.variant else "model     RepVGG (custom)", end="")
    print(f": {len(cfg.depths)} stages (blocks x width) {_stage_summary(cfg)}; "
          f"{cfg.in_channels} input channels, {cfg.num_classes} classes")
    if grouped:
        print(f"groups    {len(grouped)} grouped layers: " + ", ".join(f"{n} g{g}" for n, g in grouped[:6])
              + (" ..." if len(grouped) > 6 else ""))
    strides = sum(1 for l in net.layers if l.stride == 2)
    print(f"fused     {len(net.layers)} blocks -> {len(net.layers)} 3x3 conv+ReLU layers ({strides} with stride 2) "
          f"+ global pool + fc {net.fc_weight.shape[1]}->{net.num_classes}; parameters "
          f"{loaded.parameter_count():,} -> {fused_parameter_count(net):,}"
          + (" (input already reparameterized)" if loaded.deploy else ""))
    if verified:
        print(f"checked   max |fused - train-time| = {verified[0]:.3g} on a random 1x{cfg.in_channels}x"
              f"{args.check_size}x{args.check_size} input (max |output| {verified[1]:.3g})")
    print(f"wrote     {args.output}: {layout.removesuffix('-deploy')} deploy keys "
          f"({len(ckpt['state_dict'] if 'state_dict' in ckpt else ckpt)} tensors, float32)")
    if onnx_path is not None:
        from .. import onnx_export

        nbytes = onnx_export.save(onnx_export.float_model(net), onnx_path)
        print(f"wrote     {onnx_path}: the fused float network as ONNX (opset {onnx_export.OPSET}, "
              f"{len(net.layers)} Conv+Relu, GlobalAveragePool, Gemm; {nbytes:,} bytes; checked by onnx.checker)")
    return 0
