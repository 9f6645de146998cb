"""Compare the activation observers on the default model: the measurement behind
quantize.DEFAULT_OBSERVER (docs/numerics.md, "Choice of the default observer").

    python scripts/compare_observers.py [--subsets 8] [--num-calib 500]

For every observer it calibrates on `--subsets` disjoint slices of the training digits
(mnist_split's 4000, `--num-calib` each) and on all 4000, and prints the int8 top-1 on
the 1000 held-out digits (mean, min, max over the slices), the agreement of the int8 and
float predictions, and the SQNR of the logits, of the last layer and of the worst layer on
the held-out digits (means over the slices).
"""

from __future__ import annotations

import argparse

import numpy as np

from rep_accel import golden, quantize
from rep_accel.checkpoints import load_fused
from rep_accel.datasets import default_model_path, mnist_split


def evaluate(fused, calib, observer, x_test, y_test, f_ref):
    """int8 top-1, agreement with float, and SQNRs (dB) on the held-out digits."""
    f_logits, f_acts = f_ref
    qnet = quantize.quantize_network(fused, calib, observer, show_progress=False)
    q_logits, q_acts = golden.run_network(qnet, golden.quantize_input(x_test, qnet), return_activations=True)
    pred = q_logits.argmax(1)
    layer_db = [quantize.sqnr_db(f, q * layer.s_y) for f, q, layer in zip(f_acts, q_acts, qnet.layers)]
    return {"top1": float((pred == y_test).mean()), "agree": float((pred == f_logits.argmax(1)).mean()),
            "logits_db": quantize.sqnr_db(f_logits, q_logits * qnet.head.logit_scale),
            "last_db": layer_db[-1], "min_layer_db": min(layer_db)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subsets", type=int, default=8)
    ap.add_argument("--num-calib", type=int, default=quantize.DEFAULT_NUM_CALIB)
    args = ap.parse_args(argv)
    fused = load_fused(default_model_path())
    x_train, _, x_test, y_test = mnist_split()
    f_ref = fused.forward(x_test, return_activations=True)
    print(f"float top-1 on the {len(y_test)} held-out digits: {100 * (f_ref[0].argmax(1) == y_test).mean():.2f}%")
    print("SQNR columns: integer vs float on the held-out digits (logits, last layer, worst layer)")
    print(f"{'observer':<11} {'calibration':<22} {'int8 top-1 % (mean [min, max])':<32} {'agree %':>8} "
          f"{'logits dB':>10} {'last dB':>8} {'min layer dB':>13}")
    for obs in quantize.OBSERVERS:
        rows = [evaluate(fused, x_train[i * args.num_calib:(i + 1) * args.num_calib], obs, x_test, y_test, f_ref)
                for i in range(args.subsets)]
        top = np.array([r["top1"] for r in rows]) * 100
        mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        print(f"{obs:<11} {f'{args.subsets} x {args.num_calib}':<22} "
              f"{f'{top.mean():.2f} [{top.min():.1f}, {top.max():.1f}]':<32} {100 * mean['agree']:>8.2f} "
              f"{mean['logits_db']:>10.1f} {mean['last_db']:>8.1f} {mean['min_layer_db']:>13.1f}")
        r = evaluate(fused, x_train, obs, x_test, y_test, f_ref)
        top_all = f"{100 * r['top1']:.2f}"
        print(f"{obs:<11} {f'all {len(x_train)}':<22} {top_all:<32} {100 * r['agree']:>8.2f} "
              f"{r['logits_db']:>10.1f} {r['last_db']:>8.1f} {r['min_layer_db']:>13.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
