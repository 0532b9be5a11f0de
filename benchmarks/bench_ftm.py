"""Time one functional-transfer layer step: generic path vs fast path vs Dense.

One step = ``forward`` + ``backward`` of one layer (784 -> 100, batch 100 by
default: the size of a first MNIST layer) with a random
upstream gradient. Cases:

* ``Dense``: the reference affine layer (one matmul forward, two backward);
* ``<F> fast``: a fast-path function (LIN, F01-F04, F06, F07, F17-F20) on its
  exact matmul path (sum over powers p of x^p @ C_p^T);
* ``<F> generic``: the same function forced onto the chunked broadcast path
  (every connection of every sample evaluated element-wise);
* generic-only functions (F05, F09, F12, F16).

Before timing, the script checks that the fast and generic paths of every
fast-path function agree (relative error < 1e-12) and that LIN equals Dense.
Repetitions cycle through all cases in turn (interleaved; a repetition of a
fast case runs enough back-to-back steps to last ~30 ms) and the medians are
reported, so background load hits every case alike; the table gives each
case's median time and its ratio to Dense, plus generic / fast per function.
``--chunks`` also times the generic path at several block sizes
(``max_elements``).

Run::

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_ftm.py [--reps 15] [--n-in 784]
        [--n-out 100] [--batch 100] [--chunks]
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from refnets.gradcheck import rel_error  # noqa: E402
from refnets.layers import Dense  # noqa: E402
from refnets.layers.functional.dense import FunctionalDense  # noqa: E402

FAST_FUNCTIONS = ("LIN", "F03", "F04", "F19")
GENERIC_ONLY = ("F05", "F09", "F12", "F16")


def step(layer, x, dy):
    y, cache = layer.forward(x)
    return layer.backward(dy, cache)


def make_cases(args, rng):
    """Return {name: layer} and check the paths against each other."""
    cases = {"Dense": Dense(args.n_in, args.n_out, rng)}
    x = rng.uniform(0, 1, (args.batch, args.n_in))                   # pixel-like inputs
    dy = rng.standard_normal((args.batch, args.n_out)) / args.batch
    for name in FAST_FUNCTIONS:
        fast = FunctionalDense(args.n_in, args.n_out, name, rng, path="fast")
        generic = FunctionalDense(args.n_in, args.n_out, name, rng, path="generic")
        generic.params["theta"], generic.signs = fast.params["theta"], fast.signs
        (dx1, g1), (dx2, g2) = step(fast, x, dy), step(generic, x, dy)
        err = max(rel_error(dx1, dx2), rel_error(g1["theta"], g2["theta"]))
        if not err < 1e-12:
            raise SystemExit(f"{name}: fast and generic paths disagree (rel. error {err:.2e})")
        cases[f"{name} fast"] = fast
        cases[f"{name} generic"] = generic
    lin, dense = cases["LIN fast"], cases["Dense"]
    lin.params["theta"][0] = dense.params["W"]
    if rel_error(step(lin, x, dy)[0], step(dense, x, dy)[0]) != 0.0:
        raise SystemExit("LIN fast path is not bit-identical to Dense")
    for name in GENERIC_ONLY:
        cases[f"{name} generic"] = FunctionalDense(args.n_in, args.n_out, name, rng)
    if args.chunks:
        for max_elements in (2 ** 14, 2 ** 17, 2 ** 20, 2 ** 23):
            layer = FunctionalDense(args.n_in, args.n_out, "F12", rng, max_elements=max_elements)
            cases[f"F12 generic, max_elements=2^{int(np.log2(max_elements))}"] = layer
    return cases, x, dy


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--n-in", type=int, default=784)
    parser.add_argument("--n-out", type=int, default=100)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--chunks", action="store_true", help="also vary the generic block size")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    cases, x, dy = make_cases(args, rng)

    # Each repetition of a case runs `inner` back-to-back steps (>= ~30 ms, so a fast case
    # is not timed with caches cold from the previous, memory-heavy generic case).
    inner = {}
    for name, layer in cases.items():
        t0 = time.perf_counter()
        step(layer, x, dy)
        inner[name] = max(1, int(0.03 / max(time.perf_counter() - t0, 1e-6)))
    times = {name: [] for name in cases}
    for _ in range(args.reps):                                  # interleaved repetitions
        for name, layer in cases.items():
            t0 = time.perf_counter()
            for _ in range(inner[name]):
                step(layer, x, dy)
            times[name].append((time.perf_counter() - t0) / inner[name])
    med = {name: float(np.median(t)) for name, t in times.items()}

    print(f"one layer {args.n_in} -> {args.n_out}, batch {args.batch}, forward + backward, "
          f"median of {args.reps} interleaved repetitions")
    print(f"{'case':34s} {'ms/step':>9s} {'x Dense':>9s} {'generic/fast':>13s}")
    for name, t in med.items():
        base = name.split(" ")[0]
        ratio = (f"{t / med[base + ' fast']:13.1f}" if name.endswith(" generic")
                 and base + " fast" in med else " " * 13)
        print(f"{name:34s} {1e3 * t:9.2f} {t / med['Dense']:9.1f} {ratio}")


if __name__ == "__main__":
    main()
