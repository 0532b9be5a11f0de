"""Time per epoch of DTP (and its variants) against backprop on the same network.

The network is Lee et al.'s width on three hidden layers, 784-240-240-240-10
tanh, batch 100; the data are random [0, 1] images with
random labels (timing does not depend on them). One *step* is everything a
method does per minibatch, optimiser update included; for DTP that is the
inverse update, the forward pass, the targets, the local losses and, unless
switched off, the backprop reference used for the angle diagnostics.

Repetitions cycle through the methods (so background load hits all of them
alike) and the medians are reported, as seconds per 60 000-image epoch
(600 steps) and as the ratio to backprop; results in benchmarks/README.md.

Run::

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_dtp.py [--reps 7] [--steps 20]
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from refnets.algorithms.backprop import Backprop  # noqa: E402
from refnets.algorithms.target_propagation.algorithm import DifferenceTargetPropagation  # noqa: E402
from refnets.algorithms.target_propagation.variants import (  # noqa: E402
    DifferenceReconstructionLoss, DirectDTP, FixedWeightDTP, LocalDifferenceReconstructionLoss)
from refnets.models import mlp  # noqa: E402
from refnets.optim import LeeRMSprop  # noqa: E402

SIZES = [784, 240, 240, 240, 10]
BATCH = 100
STEPS_PER_EPOCH = 60000 // BATCH

METHODS = {
    "backprop": lambda: Backprop(),
    "DTP": lambda: DifferenceTargetPropagation(),
    "DTP, no BP diagnostics": lambda: DifferenceTargetPropagation(compare_to_backprop=False),
    "plain TP": lambda: DifferenceTargetPropagation(difference=False),
    "DRL": lambda: DifferenceReconstructionLoss(),
    "L-DRL": lambda: LocalDifferenceReconstructionLoss(first_target="penultimate_grad"),
    "FW-DTP": lambda: FixedWeightDTP(),
    "DDTP": lambda: DirectDTP(),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=7, help="repetitions per method (median)")
    parser.add_argument("--steps", type=int, default=20, help="training steps per repetition")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    batches = [(rng.random((BATCH, SIZES[0])), rng.integers(0, SIZES[-1], BATCH))
               for _ in range(args.steps)]
    runs = {}
    for name, make in METHODS.items():
        r = np.random.default_rng(1)
        model = mlp(SIZES, "tanh", r, init="orthogonal")
        algo = make()
        runs[name] = (model, algo, algo.init_state(model, r), LeeRMSprop(lr=1e-3), r)

    times = {name: [] for name in METHODS}
    for _ in range(args.reps):
        for name, (model, algo, state, opt, r) in runs.items():
            t0 = time.perf_counter()
            for x, y in batches:
                res = algo.step(model, state, x, y, r)
                opt.update(algo.variables(model, state), res.grads)
            times[name].append((time.perf_counter() - t0) / args.steps)

    base = np.median(times["backprop"])
    print(f"{SIZES} tanh, batch {BATCH}, float64, 1 thread; median of {args.reps} x "
          f"{args.steps} steps")
    print(f"{'method':24s} {'ms/step':>8s} {'s/epoch(60k)':>13s} {'ratio to BP':>12s}")
    for name, ts in times.items():
        med = np.median(ts)
        print(f"{name:24s} {1e3 * med:8.2f} {med * STEPS_PER_EPOCH:13.1f} {med / base:12.2f}")


if __name__ == "__main__":
    main()
