"""Cost of decorrelation relative to the layer it decorrelates (dense and conv).

For each case three things are timed, interleaved repetition by repetition
(so background load hits all alike), medians reported as ratios to (a):

(a) the plain layer: ``forward`` + ``backward`` (dx and the parameter
    gradients) of a Dense or Conv2D layer;
(b) the same layer behind its decorrelator: z = R (h - mu) in the forward,
    dL/dh through R and the batch mean in the backward;
(c) the R update of the paper's rule, R <- s (I - eta C_z) R, on the default
    sub-batch (k = min(N, max(floor(0.1 N) + 1, d)) rows; conv: the first
    floor(0.1 N) + 1 images, every position a row), with C_z R computed as
    Z^T (Z R) / k when k < d; and (d) the same update with C_z formed first
    and multiplied by R (O(d^3)), for comparison.

Run::

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_decorrelation.py [--reps 30] [--mode scaled]

With ``--rates`` it measures accuracy instead: each named rule of the
registry's family (fa, fa-st, dfa, np, wp) on the embedded Fashion-MNIST
subset with ``refnets compare``'s defaults (784-128-128-10, tanh, batch 50,
Adam with betas 0.9/0.9999 at the rule's registry rate), without
decorrelation (rate 0) and with the scaled rule at each ``--decor-lr``
(``target=T`` means ``suggest_decor_lr(x_train[:1000], T)``), and prints the
test accuracy after epoch 1, 3 and the last, mean +- std over the seeds::

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_decorrelation.py --rates fa \\
        --decor-lr 0 1e-4 3e-4 1e-3 target=0.1 target=0.01 --epochs 10 --seeds 3
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from refnets.algorithms.decorrelation import rules  # noqa: E402
from refnets.algorithms.decorrelation.algorithm import MODES, Decorrelation  # noqa: E402
from refnets.layers import Conv2D, Dense  # noqa: E402
from refnets.plotting import format_table  # noqa: E402

CASES = {
    "dense 784->256, N=128 (MLP input layer)": (lambda r: Dense(784, 256, r), (128, 784)),
    "dense 256->256, N=128 (hidden layer)": (lambda r: Dense(256, 256, r), (128, 256)),
    "conv 1->8 3x3 same, 28x28, N=64 (D=9)": (lambda r: Conv2D(1, 8, 3, padding=1, rng=r),
                                             (64, 1, 28, 28)),
    "conv 8->16 3x3 same, 14x14, N=64 (D=72)": (lambda r: Conv2D(8, 16, 3, padding=1, rng=r),
                                               (64, 8, 14, 14)),
    "conv 32->32 3x3 same, 16x16, N=64 (D=288)": (lambda r: Conv2D(32, 32, 3, padding=1, rng=r),
                                                 (64, 32, 16, 16)),
}


def _naive_update(dec, layer, st, cache):
    """The scaled rule with C formed first: s (R - eta C R), C R an O(d^3) product."""
    Z, H_raw, _ = dec._sub_batch(layer, cache)
    s = rules.norm_gain(H_raw, Z)
    return s * (st["R"] - dec.lr * (rules.second_moment(Z) @ st["R"]))


def bench_case(make, shape, mode, reps, rng):
    layer = make(rng)
    h = rng.standard_normal(shape) + 0.5
    dec = Decorrelation(mode=mode, lr=1e-4)
    st = dec.init_layer(layer)
    st["R"] = st["R"] + 0.01 * rng.standard_normal(st["R"].shape)
    y, _ = layer.forward(h)
    dy = rng.standard_normal(y.shape)

    def plain():
        _, c = layer.forward(h)
        layer.backward(dy, c)

    def decorrelated():
        _, c = dec.forward(layer, h, dict(st))
        dec.backward_input(layer, dy, c)
        dec.backward_params(layer, dy, c)

    _, cache = dec.forward(layer, h, dict(st))

    def update():
        dec.update(layer, dict(st), cache)

    def naive():
        _naive_update(dec, layer, st, cache)

    funcs = {"plain": plain, "decor": decorrelated, "update": update}
    if mode == "scaled":
        funcs["naive"] = naive
    times = {k: [] for k in funcs}
    for f in funcs.values():                       # warm-up
        f()
    for _ in range(reps):
        for key, f in funcs.items():
            t0 = time.perf_counter()
            f()
            times[key].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in times.items()}
    k_rows = dec._sub_batch(layer, cache)[0].shape
    return med, k_rows


#: rule -> (algorithm class, keyword arguments, Adam rate): the registry's settings.
RATE_RULES = {
    "fa": ("FeedbackAlignment", {}, 1e-3),
    "fa-st": ("FAStraightThrough", {}, 1e-3),
    "dfa": ("DirectFeedbackAlignment", {}, 1e-3),
    "np": ("NodePerturbation", {"sigma": 1e-4}, 3e-4),
    "wp": ("WeightPerturbation", {"sigma": 1e-4}, 3e-3),
}


def rate_sweep(rules_, decor_lrs, epochs, seeds, mode="scaled", opt_lr=None):
    """Test accuracy per epoch of each rule x decorrelation rate (0 = none), per seed."""
    from refnets.algorithms import decorrelation as family
    from refnets.datasets import load_fashion_mnist_small
    from refnets.models import mlp
    from refnets.optim import Adam
    from refnets.training import train

    data = load_fashion_mnist_small()
    lam = 0.1 / rules.suggest_decor_lr(data.x_train[:1000], 0.1)
    print(f"lambda_max(C_x) of the raw training pixels (first 1000): {lam:.2f}", flush=True)
    rows = []
    for rule in rules_:
        cls_name, kwargs, lr = RATE_RULES[rule]
        lr = lr if opt_lr is None else opt_lr
        for given_rate in decor_lrs:
            eta = (rules.suggest_decor_lr(data.x_train[:1000], float(given_rate[7:]))
                   if given_rate.startswith("target=") else float(given_rate))
            accs, secs = [], []
            for seed in seeds:
                rng = np.random.default_rng(seed)
                model = mlp([784, 128, 128, 10], "tanh", rng)
                decor = Decorrelation(mode=mode, lr=eta) if eta > 0 else False
                algorithm = getattr(family, cls_name)(decorrelate=decor, **kwargs)
                t0 = time.perf_counter()
                h = train(model, algorithm, Adam(lr=lr, beta2=0.9999),
                          (data.x_train, data.y_train), epochs, 50, rng,
                          eval_data=(data.x_test, data.y_test), progress=False)
                accs.append(h.test_acc)
                secs.append((time.perf_counter() - t0) / epochs)
            acc = np.array(accs)
            label = (f"{given_rate} ({eta:.2g})" if given_rate.startswith("target=")
                     else given_rate)
            row = {"rule": rule, "decor lr": label, "seeds": len(seeds)}
            for e in sorted({1, min(3, epochs), epochs}):
                row[f"acc ep {e}"] = f"{acc[:, e - 1].mean():.3f} +- {acc[:, e - 1].std():.3f}"
            row["s/epoch"] = float(np.mean(secs))
            rows.append(row)
            print(f"done: {rule} decor lr {given_rate}", flush=True)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--mode", choices=MODES, default="scaled")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rates", nargs="+", choices=sorted(RATE_RULES), metavar="RULE",
                   help=f"accuracy sweep over decorrelation rates for these rules "
                        f"({', '.join(RATE_RULES)}) instead of the timing")
    p.add_argument("--decor-lr", nargs="+", default=["0", "1e-4", "1e-3"],
                   help="rates of the sweep: numbers (0 = no decorrelation) or target=T")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seeds", type=int, default=3, help="seeds 0 .. seeds-1")
    p.add_argument("--opt-lr", type=float, default=None,
                   help="Adam rate for every rule of the sweep (default: the registry's)")
    args = p.parse_args(argv)
    if args.rates:
        rows = rate_sweep(args.rates, args.decor_lr, args.epochs, range(args.seeds), args.mode,
                          args.opt_lr)
        print(f"\nembedded Fashion-MNIST subset, test accuracy, mean +- std over seeds "
              f"0-{args.seeds - 1} (decor mode {args.mode!r})")
        print(format_table(rows, floatfmt=".2f"))
        return
    rng = np.random.default_rng(args.seed)
    rows = []
    for name, (make, shape) in CASES.items():
        med, (k, d) = bench_case(make, shape, args.mode, args.reps, rng)
        row = {"case": name, "d": d, "k rows": k, "layer f+b ms": 1e3 * med["plain"],
               "decor f+b / layer": med["decor"] / med["plain"],
               "R update / layer": med["update"] / med["plain"]}
        if "naive" in med:
            row["naive C@R update / layer"] = med["naive"] / med["plain"]
        rows.append(row)
        print(f"done: {name}", flush=True)
    print(f"\nmode {args.mode!r}, medians of {args.reps} interleaved repetitions "
          f"(OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')})")
    print(format_table(rows, floatfmt=".2f"))


if __name__ == "__main__":
    main()
