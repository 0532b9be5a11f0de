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

Two measurements behind defaults of the package (embedded Fashion-MNIST subset,
the ``refnets compare`` HSIC net [784, 128, 128, 10] trained 3 epochs, batch 50):

* ``--measure format``: test accuracy and training cross-entropy of the format
  layer (lr 0.05, batch 256, 20 steps per epoch) after 1..40 epochs, per seed;
  sets ``refnets.algorithms.hsic.format.FORMAT_MIN_STEPS``.
* ``--measure greedy``: the authors' greedy accuracy with running batch-norm
  statistics and with each evaluation batch's own statistics, on the test set
  as stored and sorted by class, against the net's own ``predict``; the reason
  ``HSICBottleneck.greedy_accuracy`` defaults to running statistics.

Run::

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_hsic.py [--width 256] [--middle 5]
        [--batches 64 128 256 512 1024] [--reps 7]
    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_hsic.py --measure format [--seeds 0 1 2]
    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_hsic.py --measure greedy [--seeds 0 1 2]
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


def compare_net(seed):
    """The ``refnets compare`` HSIC setup on the embedded subset, trained 3 epochs (batch 50)."""
    from refnets.algorithms import get_method
    from refnets.datasets import load_fashion_mnist_small, minibatches
    data = load_fashion_mnist_small()
    rng = np.random.default_rng(seed)
    setup = get_method("hsic").build([784, 128, 128, 10], "relu", rng)
    state = setup.algorithm.init_state(setup.model, rng)
    for _ in range(3):
        for xb, yb in minibatches(data.x_train, data.y_train, 50, rng):
            setup.algorithm.step(setup.model, state, xb, yb, rng)
    return data, setup.model, setup.algorithm, state, rng


def measure_format(seeds, max_epochs=40, shown=(1, 2, 5, 10, 15, 20, 30, 40)):
    """Format-layer test accuracy per epoch; the gap to the last epoch's accuracy."""
    from refnets.algorithms.hsic.format import format_setup
    from refnets.datasets import minibatches
    from refnets.losses import softmax_cross_entropy
    print(f"format layer (lr 0.05, wd 1e-3, batch 256) on the frozen compare-default HSIC net; "
          f"test accuracy [training cross-entropy] after each number of epochs")
    print("seed  " + "  ".join(f"{e:>13}" for e in shown))
    gaps = {e: [] for e in shown}
    for seed in seeds:
        data, model, algo, state, rng = compare_net(seed)
        setup = format_setup(model, algo, state, 10, rng, lr=0.05, weight_decay=1e-3)
        fst = setup.algorithm.init_state(setup.model, rng)
        f_train = algo.features(model, state, data.x_train)
        f_test = algo.features(model, state, data.x_test)
        acc, ce = {}, {}
        for epoch in range(1, max_epochs + 1):
            for xb, yb in minibatches(data.x_train, data.y_train, 256, rng):
                res = setup.algorithm.step(setup.model, fst, xb, yb, rng)
                setup.optimizer.update(setup.algorithm.variables(setup.model, fst), res.grads)
            if epoch in shown:
                ce[epoch] = softmax_cross_entropy(setup.model.forward(f_train)[0],
                                                  data.y_train)[0]
                acc[epoch] = float(np.mean(np.argmax(setup.model.forward(f_test)[0], 1)
                                           == data.y_test))
        print(f"{seed:>4}  " + "  ".join(f"{acc[e]:.3f} [{ce[e]:.2f}]" for e in shown), flush=True)
        for e in shown:
            gaps[e].append(acc[max_epochs] - acc[e])
    steps = -(-5000 // 256)
    print(f"gap to epoch {max_epochs} (points), worst over seeds; steps = epochs x {steps}:")
    print("      " + "  ".join(f"{100 * max(gaps[e]):>13.1f}" for e in shown))


def measure_greedy(seeds):
    """Greedy accuracy with running vs batch statistics, test set as stored vs class-sorted."""
    from refnets.algorithms.hsic.metrics import greedy_unit_accuracy
    print("authors' greedy accuracy of the compare-default HSIC net (embedded test set, 1000 "
          "images, evaluation batches of 256 unless stated)")
    print(f"{'seed':>4} {'predict':>8} {'running':>8} {'batch':>8} {'sorted, running':>16} "
          f"{'sorted, batch':>14} {'sorted, batch of 100':>21}")
    for seed in seeds:
        data, model, algo, state, rng = compare_net(seed)
        x, y = data.x_test, data.y_test
        order = np.argsort(y, kind="stable")
        xs, ys = x[order], y[order]

        def raw(xx, yy, bn, bs=256):      # the authors' computation, without refnets' guard
            out = np.vstack([algo.features(model, state, xx[i:i + bs], bn=bn)
                             for i in range(0, len(xx), bs)])
            return greedy_unit_accuracy(out, yy, 10)[0]

        pred = float(np.mean(np.argmax(algo.predict(model, state, x), 1) == y))
        print(f"{seed:>4} {pred:>8.3f} {algo.greedy_accuracy(model, state, x, y)[0]:>8.3f} "
              f"{algo.greedy_accuracy(model, state, x, y, bn='batch')[0]:>8.3f} "
              f"{algo.greedy_accuracy(model, state, xs, ys)[0]:>16.3f} "
              f"{raw(xs, ys, 'batch'):>14.3f} {raw(xs, ys, 'batch', 100):>21.3f}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--middle", type=int, default=5, help="middle blocks (authors: 5)")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--measure", choices=("timing", "format", "greedy"), default="timing")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="seeds of --measure format/greedy")
    args = parser.parse_args(argv)
    if args.measure == "format":
        return measure_format(args.seeds)
    if args.measure == "greedy":
        return measure_greedy(args.seeds)
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
