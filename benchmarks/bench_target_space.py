"""Cost of one Target Space step relative to one backprop step, and where it goes.

For a dense, a conv and a recurrent net, the script times (float64, one thread):

* ``backprop``: one :class:`~refnets.algorithms.backprop.Backprop` step (forward,
  loss, backward) on the minibatch;
* ``target space``: one :meth:`TargetSpace.step` on the same minibatch and
  model, split into its parts:

  - ``realise``: the realisation pass on X_bar (every ridge solve + the
    realised forward), of which ``solves`` is the ridge solves alone
    (re-run on the recorded A_bar and T matrices);
  - ``minibatch``: forward + loss + backward with the realised weights
    (= a backprop step);
  - ``reverse``: the reverse pass through the solves (ridge VJPs, SCU
    realisation backprop, col2im / BPTT over the realisation).

A count of multiply-adds per layer (section 1 of
refnets/algorithms/target_space/README.md) estimates 2-4x backprop when the
realisation batch is about the minibatch size. Diagnostics (the implied-update
cosine, one more realisation pass) are off here.

Repetitions alternate between the methods and parts, and medians are
reported, so background load affects all of them alike; absolute times on a
shared machine are noisy, the ratios less so.

Run::

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_target_space.py [--reps 15] [--only conv]
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from refnets.algorithms.backprop import Backprop  # noqa: E402
from refnets.algorithms.target_space.algorithm import TargetSpace  # noqa: E402
from refnets.algorithms.target_space.solve import ridge_solve  # noqa: E402
from refnets.losses import masked_softmax_cross_entropy  # noqa: E402
from refnets.models import convnet, mlp, rnn_classifier  # noqa: E402
from refnets.plotting import format_table  # noqa: E402


def make_case(name, rng):
    """(model, x_source for X_bar, minibatch x, y, n_bar, loss, description)."""
    if name == "dense":
        model = mlp([784, 128, 128, 10], "tanh", rng)
        xs = rng.random((1000, 784))
        x, y = rng.random((100, 784)), rng.integers(0, 10, 100)
        return model, xs, x, y, 100, None, "784-128-128-10 tanh, minibatch 100, n_bar 100"
    if name == "conv":
        model = convnet((1, 28, 28), [8], 3, 10, rng, activation="relu", pool=2)
        xs = rng.random((500, 1, 28, 28))
        x, y = rng.random((100, 1, 28, 28)), rng.integers(0, 10, 100)
        return (model, xs, x, y, 100, None,
                "1x28x28 -> Conv 8x3x3 same, ReLU, MaxPool 2 -> Dense 10; minibatch 100, n_bar 100")
    if name == "rnn":
        model = rnn_classifier(1, 23, 2, rng, readout="all")
        xs = rng.integers(0, 2, (70, 400, 1)).astype(float)
        x, y = rng.integers(0, 2, (70, 100, 1)).astype(float), rng.integers(0, 2, (70, 100))
        y[:20] = -1
        return (model, xs, x, y, 100, masked_softmax_cross_entropy,
                "Elman 1-23-2 per-step read-out, T 70, minibatch 100, n_bar 100 (hybrid)")
    raise ValueError(f"unknown case {name!r}")


def parts(case, rng):
    """Callables timing backprop and each part of a Target Space step on one case."""
    model, xs, x, y, n_bar, loss, _ = case
    kw = {} if loss is None else {"loss": loss}
    bp = Backprop(**kw)
    ts = TargetSpace(xs, realisation_batch_size=n_bar, pseudoinverse_l2_regularisation=0.1,
                     diagnostics=False, **kw)
    state = ts.init_state(model, rng)
    bp_state = bp.init_state(model, rng)
    params, recs = ts.realise(model, state)
    solved = [recs[k]["solve"] for k, p in enumerate(params) if p is not None]

    def minibatch():
        out, caches = model.forward(x, params)
        _, dout = ts.loss(out, y)
        return model.backward(dout, caches, input_grad=False)[1]

    grads = minibatch()
    return {
        "backprop": lambda: bp.step(model, bp_state, x, y, rng),
        "ts step": lambda: ts.step(model, state, x, y, rng),
        "realise": lambda: ts.realise(model, state),
        "solves": lambda: [ridge_solve(s["A"], s["T"], 0.1) for s in solved],
        "minibatch": minibatch,
        "reverse": lambda: ts._target_gradients(model, state, recs, grads),
    }


def bench(name, reps, rng):
    case = make_case(name, rng)
    fns = parts(case, rng)
    times = {k: [] for k in fns}
    for f in fns.values():          # warm-up
        f()
    for _ in range(reps):
        for key, f in fns.items():  # interleaved: load hits every part alike
            t0 = time.perf_counter()
            f()
            times[key].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in times.items()}
    bp = med["backprop"]
    return {"case": name, "backprop ms": 1e3 * bp, "TS step ms": 1e3 * med["ts step"],
            "TS / BP": med["ts step"] / bp, "realise / BP": med["realise"] / bp,
            "(solves / BP)": med["solves"] / bp, "minibatch / BP": med["minibatch"] / bp,
            "reverse / BP": med["reverse"] / bp}, case[-1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--only", choices=["dense", "conv", "rnn"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = []
    for name in ([args.only] if args.only else ["dense", "conv", "rnn"]):
        row, desc = bench(name, args.reps, rng)
        rows.append(row)
        print(f"{name}: {desc}", flush=True)
    print()
    print(format_table(rows, floatfmt=".2f"))
    print("\nratios are medians over interleaved repetitions; 'solves' is part of 'realise'")


if __name__ == "__main__":
    main()
