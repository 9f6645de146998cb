"""Simulator speed: fast mode on RepVGG-A0 at 224x224 against PyTorch's fbgemm int8
network of the same shape, in the same run; fast-mode time per GMAC across A0, A1 and
B0; cycle-mode simulated cycles per second on a stride-1 112x112x48 layer (PI=PO=8),
also under the external-memory model (16-bit DDR3-800 and SDR SDRAM-166 at 150 MHz).

    python benchmarks/sim_speed.py [--repeats 20] [--check]
    git show HEAD~1:sim/fast.py > /tmp/fast_before.py
    python benchmarks/sim_speed.py --cpu-time --threads 1 --baseline /tmp/fast_before.py

The networks have random int8 weights and realistic multipliers (`rep_accel.sim.synthetic`,
layer shapes from the model zoo). fbgemm gets the same layers as quantized Conv2d+ReLU
modules (per-channel int8 weights, uint8 activations), global average pooling and a
quantized Linear head, `torch.set_num_threads(2)`. Times are medians of one picture over
alternating blocks of repetitions (both in the same process, under the same machine
load). The simulator's time is `NetworkSimulator.run` (input checks, all layers, head,
report); preparing the weights (`NetworkSimulator(...)`) is not timed, as fbgemm's weight
packing is not. The last line is `ratio_vs_fbgemm=<sim time / fbgemm time>`.

`--baseline FILE` also times the simulator with another copy of `sim/fast.py` (an
earlier version, say) in the same alternating blocks, and prints one more line per
model: the before/after comparison under the same machine load.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import sys
import time

import numpy as np
import torch

from rep_accel import golden
from rep_accel.generics import HardwareGenerics
from rep_accel.layout import LayerShape
from rep_accel.sim import cycle, synthetic
from rep_accel.sim.network import NetworkSimulator


def fbgemm_network(qnet):
    """torch.ao quantized modules of the same shapes as qnet's layers and head."""
    import torch.ao.nn.intrinsic.quantized as nniq
    import torch.ao.nn.quantized as nnq
    torch.backends.quantized.engine = "fbgemm"
    mods = []
    for layer in qnet.layers:
        s = layer.shape
        m = nniq.ConvReLU2d(s.cin, s.cout, 3, stride=s.stride, padding=1, groups=s.groups)
        w = torch.quantize_per_channel(torch.from_numpy(layer.weight.astype(np.float32) * 0.01),
                                       torch.full((s.cout,), 0.01, dtype=torch.double),
                                       torch.zeros(s.cout, dtype=torch.long), 0, torch.qint8)
        m.set_weight_bias(w, torch.zeros(s.cout))
        m.scale, m.zero_point = 0.05, 0
        mods.append(m)
    fc = nnq.Linear(qnet.head.fc_weight.shape[1], qnet.head.fc_weight.shape[0])
    fc.set_weight_bias(torch.quantize_per_tensor(torch.from_numpy(qnet.head.fc_weight.astype(np.float32) * 0.01),
                                                 0.01, 0, torch.qint8), None)
    return torch.nn.Sequential(*mods, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), fc)


#: Seconds of idle time before each timed block.
PAUSE_S = 0.2


def median_time(fn, repeats: int, clock=time.perf_counter) -> float:
    ts = []
    for _ in range(repeats):
        t = clock()
        fn()
        ts.append(clock() - t)
    return float(np.median(ts))


def load_fast_module(path: str):
    """Another copy of sim/fast.py, imported as rep_accel.sim.baseline_fast (its relative
    imports resolve in rep_accel.sim)."""
    spec = importlib.util.spec_from_file_location("rep_accel.sim.baseline_fast", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def fast_module(module):
    """NetworkSimulator's fast mode runs on `module` (None: the installed sim/fast.py) inside."""
    from rep_accel.sim import network
    installed = network.fast
    network.fast = module or installed
    try:
        yield
    finally:
        network.fast = installed


def bench_model(name: str, hw: int, repeats: int, check: bool, clock=time.perf_counter,
                baseline=None) -> tuple[float, float, float, float | None]:
    """GMAC, fast-mode time, fbgemm time and (with a baseline fast module) its time."""
    qnet = synthetic.random_zoo_qnetwork(name, hw, seed=0, num_classes=1000)
    gmac = sum(layer.shape.macs for layer in qnet.layers) / 1e9
    x = synthetic.random_input(qnet, 1, seed=1)
    sim = NetworkSimulator(qnet, HardwareGenerics(), "fast")
    run = lambda: sim.run(x, show_progress=False)  # noqa: E731
    result = run()  # compile / load the Numba cache
    run_base = None
    if baseline is not None:
        with fast_module(baseline):
            sim_base = NetworkSimulator(qnet, HardwareGenerics(), "fast")
            assert np.array_equal(sim_base.run(x, show_progress=False).logits, result.logits), \
                f"{name}: the baseline's logits differ"

        def run_baseline():
            with fast_module(baseline):
                sim_base.run(x, show_progress=False)
        run_base = run_baseline
    if check:
        assert np.array_equal(result.logits, golden.run_network(qnet, x)), f"{name}: fast mode differs from golden"
        print(f"{name}: fast-mode logits equal the golden model's")
    net = fbgemm_network(qnet)
    xt = torch.quantize_per_tensor(torch.from_numpy(x.astype(np.float32)), 1.0, 128, torch.quint8)
    with torch.no_grad():
        net(xt)
        t_sim, t_fb, t_base = [], [], []
        # Alternating blocks, so both see the same machine load; a pause before each
        # block lets the other runtime's worker threads go idle (PyTorch's OpenMP
        # threads spin for a while after a parallel region and would take cores away).
        block = max(1, repeats // 5)
        for _ in range(max(1, repeats // block)):
            time.sleep(PAUSE_S)
            t_sim.append(median_time(run, block, clock))
            time.sleep(PAUSE_S)
            t_fb.append(median_time(lambda: net(xt), block, clock))
            if run_base is not None:
                time.sleep(PAUSE_S)
                t_base.append(median_time(run_base, block, clock))
    return gmac, float(np.median(t_sim)), float(np.median(t_fb)), float(np.median(t_base)) if t_base else None


def bench_cycle(repeats: int, clock=time.perf_counter, memory=None) -> tuple[int, float, float]:
    rng = np.random.default_rng(0)
    shape = LayerShape(48, 48, 1, 1, 112, 112)
    qnet = synthetic.random_qnetwork([(48, 48, 1, 1)], (48, 112, 112), seed=0)
    layer = qnet.layers[0]
    layer = type(layer)(**{**layer.__dict__, "shape": shape})
    g = HardwareGenerics(pi=8, po=8)
    x = rng.integers(0, 256, (48, 112, 112)).astype(np.uint8)
    params = cycle.layer_params(layer, g)
    res = cycle.run_layer(x, shape, params, g, memory=memory)
    t_total = median_time(lambda: cycle.run_layer(x, shape, params, g, memory=memory), repeats, clock)
    t_trace = median_time(lambda: cycle.run_layer(x, shape, params, g, trace=True, memory=memory),
                          max(1, repeats // 3), clock)
    return res.cycles, t_total, t_trace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--check", action="store_true", help="also check fast-mode logits against the golden model")
    ap.add_argument("--threads", type=int, default=2, help="threads of both PyTorch and Numba (default 2)")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time with the process CPU clock instead of the wall clock: with --threads 1 it is the "
                         "work done, insensitive to other processes on a shared machine")
    ap.add_argument("--baseline", metavar="FILE",
                    help="also time fast mode with this copy of sim/fast.py (e.g. an earlier commit's)")
    args = ap.parse_args()
    baseline = load_fast_module(args.baseline) if args.baseline else None
    torch.set_num_threads(args.threads)
    import numba
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    clock = time.process_time if args.cpu_time else time.perf_counter
    print(f"clock: {'process CPU time' if args.cpu_time else 'wall time'}")
    print(f"threads: torch {torch.get_num_threads()}, numba {numba.get_num_threads()} "
          f"({numba.config.THREADING_LAYER} layer); load average {os.getloadavg()[0]:.2f}")

    cycles, t_cyc, t_trace = bench_cycle(max(3, args.repeats // 4), clock)
    print(f"cycle mode, 112x112x48 -> 48 stride 1, PI=PO=8: {cycles:,} cycles in {t_cyc * 1e3:.1f} ms = "
          f"{cycles / t_cyc / 1e6:.2f} M cycles/s ({cycles / t_trace / 1e6:.2f} M cycles/s with the port trace)")
    from rep_accel import memory
    for spec in ("ddr3-16-800", "sdr16-166"):
        cycles, t_cyc, t_trace = bench_cycle(max(3, args.repeats // 4), clock, memory.parse(spec, 150.0))
        print(f"cycle mode, same layer, memory {spec} at 150 MHz: {cycles:,} cycles in {t_cyc * 1e3:.1f} ms = "
              f"{cycles / t_cyc / 1e6:.2f} M cycles/s ({cycles / t_trace / 1e6:.2f} M cycles/s with the port trace)")

    rows = {}
    for name in ("A0", "A1", "B0"):
        rows[name] = bench_model(name, 224, args.repeats if name == "A0" else max(3, args.repeats // 2), args.check,
                                 clock, baseline)
        gmac, ts, tf, tb = rows[name]
        print(f"RepVGG-{name} 224x224: {gmac:.3f} GMAC; fast mode {ts * 1e3:.2f} ms ({ts / gmac * 1e3:.2f} ms/GMAC); "
              f"fbgemm {tf * 1e3:.2f} ms ({tf / gmac * 1e3:.2f} ms/GMAC); ratio {ts / tf:.2f}")
        if tb is not None:
            print(f"RepVGG-{name} 224x224: baseline fast mode ({args.baseline}) {tb * 1e3:.2f} ms, ratio {tb / tf:.2f}; "
                  f"this build {tb / ts:.2f}x faster")
    per = [rows[n][1] / rows[n][0] for n in rows]
    print(f"fast-mode time per GMAC across A0/A1/B0: {', '.join(f'{p * 1e3:.2f}' for p in per)} ms "
          f"(max/min {max(per) / min(per):.2f})")
    from rep_accel import memory
    qnet = synthetic.random_zoo_qnetwork("A0", 224, seed=0, num_classes=1000)
    x = synthetic.random_input(qnet, 1, seed=1)
    for spec in ("ddr3-16-800", "sdr16-166"):
        t = clock()
        sim = NetworkSimulator(qnet, HardwareGenerics(), "fast", memory=memory.parse(spec, 150.0))
        t_make = clock() - t
        sim.run(x, show_progress=False)
        t_run = median_time(lambda: sim.run(x, show_progress=False), max(3, args.repeats // 4), clock)
        print(f"RepVGG-A0 224x224 fast mode under memory {spec} (PI=PO=8): NetworkSimulator(...) {t_make:.2f} s "
              f"(weights and the timing replay, once), run {t_run * 1e3:.2f} ms")
    gmac, ts, tf, _ = rows["A0"]
    print(f"ratio_vs_fbgemm={ts / tf:.2f}")


if __name__ == "__main__":
    main()
