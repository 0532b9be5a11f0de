"""Time one HSIC-bottleneck step against one backprop step on the same net, over batch sizes.

Net: the authors' dense ``ModelLinear``: blocks Linear -> BatchNorm
(affine=False) -> ReLU, 784 -> width x (n_middle + 1) -> 10; default width 256
and 5 middle blocks (7 blocks). Backprop trains the same net plus a linear
head with softmax cross-entropy; both steps include the SGD update.

* HSIC step (sequential, the authors' loop in O(L)): per batch the NOCCO
  operators R_X, R_Y; per block the kernel of Z_k (O(m^2 d_k)), a solve and
  four m x m products (O(m^3)), the block's backward, the update and a
  second forward of the block.
* Backprop step: one forward and one backward (O(m d^2) per layer).

So HSIC's time per step grows like m^a with a between 1 (layer work
dominates, small m) and 3 (solves dominate, large m); backprop's like m^1.
The script fits a on log(time) = a log(m) + c over the batch sizes and
prints it, with the HSIC/backprop ratio per m and the share of the HSIC step
spent in the kernel maths (``block_objective``).

Repetitions interleave HSIC and backprop and report medians, so background
load hits both alike; absolute times on a shared machine are noisy, ratios
less so.

Run::

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_hsic.py [--width 256] [--middle 5]
        [--batches 64 128 256 512 1024] [--reps 7]
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from refnets.algorithms.backprop import Backprop  # noqa: E402
from refnets.algorithms.hsic.algorithm import HSICBottleneck  # noqa: E402
from refnets.algorithms.hsic.models import forward_layers, hsic_mlp  # noqa: E402
from refnets.layers import Dense  # noqa: E402
from refnets.models import Sequential  # noqa: E402
from refnets.optim import SGD  # noqa: E402


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_batch(m, sizes, reps, rng):
    """Median seconds of (HSIC step, backprop step, HSIC kernel part) at batch size m."""
    x = rng.random((m, sizes[0]))                  # pixel-like inputs in [0, 1]
    y = np.arange(m) % sizes[-1]
    hsic_model = hsic_mlp(sizes, np.random.default_rng(1))
    algo = HSICBottleneck(n_classes=sizes[-1], sigma=6.0, beta=1000.0, lr=1e-3)
    state = algo.init_state(hsic_model, rng)
    bp_model = Sequential(hsic_mlp(sizes, np.random.default_rng(1)).layers
                          + [Dense(sizes[-1], sizes[-1], rng)])
    bp, bp_opt = Backprop(), SGD(1e-3)

    def hsic_step():
        algo.step(hsic_model, state, x, y, rng)

    def bp_step():
        res = bp.step(bp_model, {}, x, y, rng)
        bp_opt.update(bp.variables(bp_model, {}), res.grads)

    # the kernel maths alone: R_X, R_Y and every block's objective + dJ/dZ
    zs, h = [], x
    for lo, hi in state["blocks"]:
        h, _ = forward_layers(hsic_model, lo, hi, h)
        zs.append(h)

    def kernel_part():
        RX, RY = algo._nocco_of(x), algo._nocco_of(np.eye(sizes[-1])[y])
        for z in zs:
            algo.block_objective(z, RX, RY)

    hsic_step(), bp_step(), kernel_part()            # warm-up
    t = {"hsic": [], "bp": [], "kernel": []}
    for _ in range(reps):                            # interleaved repetitions
        t["hsic"].append(timed(hsic_step))
        t["bp"].append(timed(bp_step))
        t["kernel"].append(timed(kernel_part))
    return {k: float(np.median(v)) for k, v in t.items()}


def fit_exponent(ms, ts):
    """Least-squares slope a of log t = a log m + c."""
    return float(np.polyfit(np.log(ms), np.log(ts), 1)[0])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--middle", type=int, default=5, help="middle blocks (authors: 5)")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = [784] + [args.width] * (args.middle + 1) + [10]
    rng = np.random.default_rng(args.seed)
    print(f"HSIC vs backprop, net {sizes} (Linear-BN-ReLU blocks), float64, one thread, "
          f"median of {args.reps} interleaved repetitions")
    print(f"{'m':>6} {'HSIC ms':>9} {'BP ms':>8} {'HSIC/BP':>8} {'kernel share':>13}")
    rows = []
    for m in args.batches:
        r = bench_batch(m, sizes, args.reps, rng)
        rows.append((m, r))
        print(f"{m:>6} {1e3 * r['hsic']:>9.1f} {1e3 * r['bp']:>8.1f} "
              f"{r['hsic'] / r['bp']:>8.2f} {r['kernel'] / r['hsic']:>12.0%}", flush=True)
    ms = np.array([m for m, _ in rows], dtype=float)
    for key, label in (("hsic", "HSIC step"), ("bp", "backprop step"),
                       ("kernel", "HSIC kernel part")):
        ts = np.array([r[key] for _, r in rows])
        print(f"fitted exponent, time ~ m^a: {label:17s} a = {fit_exponent(ms, ts):.2f}"
              + (f"   (largest two m: a = {fit_exponent(ms[-2:], ts[-2:]):.2f})"
                 if len(ms) > 2 else ""))


if __name__ == "__main__":
    main()
