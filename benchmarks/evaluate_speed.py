"""`rep-accel evaluate` on Ray: 1 worker against 2 on the 1000 held-out MNIST digits, and
the projected time of ImageNet's 50,000 validation images on RepVGG-A0 at 224x224.

    python benchmarks/evaluate_speed.py [--workers 1,2] [--shard-size 50] [--repeats 3]

Part 1: the bundled model compiled in memory (8x8 array, its own 500 calibration digits,
as `rep-accel evaluate` does), evaluated on `mnist_split`'s 1000 held-out digits (float,
golden and fast-mode simulator on every digit) on a fresh local Ray instance of 1, then
2 CPUs. Times are `evaluate.evaluate`'s wall time (reading, every shard, folding), not
Ray's start-up, which is printed apart. The runs' logit digests must be equal. The last
line of this part is `ratio_1_vs_2_workers=<time on 1 / time on 2>` of the second of two
runs on the same workers (the first also counts each worker's start: importing rep_accel
and loading the Numba cache, printed too).

Part 2: the fast-mode simulator's time for one 224x224 image of RepVGG-A0 (random int8
weights, realistic multipliers, 1000 classes: `rep_accel.sim.synthetic`) with one Numba
thread, as a one-CPU Ray worker runs it (median of --repeats), then
per-image time x 50,000 / workers for 1, 2, 8, 32 and 128 workers. That projection counts
the simulator only; the golden model and the float network run on every image too, and
--with-golden measures the golden model's time for one A0 image as well.

A benchmark, run on demand; nothing here is asserted on timing.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

IMAGENET_VAL = 50_000


def compile_bundled():
    """The bundled model as `rep-accel evaluate` compiles it (8x8, 500 training digits)."""
    from rep_accel import evaluate, quantize
    from rep_accel.commands.compile import fit_generics, load_model
    from rep_accel.datasets import default_model_path, mnist_split

    fused = load_model(default_model_path())
    calib = quantize.check_calibration(mnist_split()[0][:quantize.DEFAULT_NUM_CALIB], fused.in_channels)
    shapes = quantize.layer_shapes(fused, calib.shape[1:])
    generics = fit_generics(shapes, [l.name for l in fused.layers], 8, 8)
    qnet = quantize.quantize_network(fused, calib, show_progress=False)
    return evaluate.EvalModel(qnet, generics, fused)


def time_workers(model, data: Path, workers: int, shard_size: int):
    """(seconds of a first evaluate, of a second one, of Ray's start-up, report) on a fresh
    local Ray of `workers` CPUs. The first run includes each worker's start (importing
    rep_accel, loading the Numba cache); the second runs on the same, warm workers."""
    from rep_accel import distributed, evaluate
    t0 = time.perf_counter()
    with distributed.session(workers=workers) as engine:
        t_start = time.perf_counter() - t0
        cold = evaluate.evaluate(model, evaluate.open_data(data), engine, shard_size, show_progress=False)
        warm = evaluate.evaluate(model, evaluate.open_data(data), engine, shard_size, show_progress=False)
    rep = warm.report()
    assert rep["simulator_equals_golden"] and rep["images"] == 1000
    assert rep["logits_sha256"] == cold.report()["logits_sha256"]
    return cold.wall_seconds, warm.wall_seconds, t_start, rep


def a0_per_image(repeats: int, with_golden: bool):
    """Median seconds of one fast-mode A0 224x224 image with one Numba thread (and the golden model's)."""
    import numba

    from rep_accel import golden
    from rep_accel.generics import HardwareGenerics
    from rep_accel.sim import synthetic
    from rep_accel.sim.network import NetworkSimulator

    numba.set_num_threads(1)
    qnet = synthetic.random_zoo_qnetwork("A0", 224, seed=0, num_classes=1000)
    x = synthetic.random_input(qnet, 1, seed=1)
    sim = NetworkSimulator(qnet, HardwareGenerics(), "fast")
    result = sim.run(x, show_progress=False)  # compiles / loads the Numba cache
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        sim.run(x, show_progress=False)
        times.append(time.perf_counter() - t)
    t_golden = None
    if with_golden:
        t = time.perf_counter()
        assert np.array_equal(golden.run_network(qnet, x), result.logits)
        t_golden = time.perf_counter() - t
    return float(np.median(times)), t_golden, sum(l.shape.macs for l in qnet.layers)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", default="1,2", help="worker counts to time on the MNIST digits (default 1,2)")
    ap.add_argument("--shard-size", type=int, default=50, help="images per shard (default 50)")
    ap.add_argument("--repeats", type=int, default=3, help="A0 images timed (median; default 3)")
    ap.add_argument("--with-golden", action="store_true", help="also time the golden model on one A0 image")
    ap.add_argument("--skip-mnist", action="store_true", help="only the A0 projection")
    args = ap.parse_args(argv)
    os.environ.setdefault("REP_ACCEL_QUIET", "1")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")

    if not args.skip_mnist:
        from rep_accel.datasets import mnist_split
        model = compile_bundled()
        x, y = mnist_split()[2:]
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "mnist_test.npz"
            np.savez(data, x=x, y=y)
            times, warm_times, digests = {}, {}, set()
            for w in (int(v) for v in args.workers.split(",")):
                t, t_warm, t_start, rep = time_workers(model, data, w, args.shard_size)
                times[w], warm_times[w] = t, t_warm
                digests.add(tuple(sorted(rep["logits_sha256"].items())))
                print(f"MNIST 1000 digits, {w} worker(s): {t:.1f} s first run, {t_warm:.1f} s again on the warm "
                      f"workers ({1000 / t_warm:.1f} images/s; Ray start-up {t_start:.1f} s apart); top-1 float {100 * rep['float']['top1']:.1f}%, int8 "
                      f"{100 * rep['int8']['top1']:.1f}%, simulator {100 * rep['simulator']['top1']:.1f}%; in the "
                      f"workers {rep['seconds']['simulator']:.1f} s simulator, {rep['seconds']['golden']:.1f} s "
                      f"golden, {rep['seconds']['float']:.1f} s float")
        assert len(digests) == 1, "the logits differ between worker counts"
        print("logits identical (sha256) for every worker count")
        if 1 in times and 2 in times:
            print(f"first runs: 1 worker / 2 workers = {times[1] / times[2]:.2f}")
            print(f"ratio_1_vs_2_workers={warm_times[1] / warm_times[2]:.2f}")

    t_img, t_golden, macs = a0_per_image(args.repeats, args.with_golden)
    print(f"RepVGG-A0 224x224 ({macs / 1e9:.2f} GMAC), fast-mode simulator, 1 Numba thread: {t_img:.3f} s per image"
          + (f"; golden model {t_golden:.2f} s per image" if t_golden is not None else ""))
    for w in (1, 2, 8, 32, 128):
        hours = t_img * IMAGENET_VAL / w / 3600
        extra = f" (with the golden model: {(t_img + t_golden) * IMAGENET_VAL / w / 3600:.2f} h)" if t_golden else ""
        print(f"  ImageNet val, {IMAGENET_VAL:,} images on {w:>3} worker(s): {hours:.2f} h of simulator{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
