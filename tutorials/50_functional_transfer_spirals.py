"""50 - Functional transfer matrices on the two spirals: a learnable function per connection.

What you will see
-----------------
1. A 2-20-2 network whose every connection is a small learnable function
   f(x; theta) instead of a weight (a *functional transfer neural network*,
   FTNN), trained by backprop on the two-spirals benchmark, for several of the
   authors' 20 function types, beside an ordinary tanh MLP of the same size
   (function ``LIN``: f = w x, which *is* a Dense layer).
2. A table: train/test accuracy per function over seeds. Periodic and shifted
   functions (F03 a x^2 + b x, F12/F13 sin/cos, F19 shifted square) separate
   the spirals perfectly, while the same-size tanh MLP stays near 58% (and a
   3x wider one is not much better); F17 (w^2 x^2, an even function) is stuck
   at exactly 50%: it cannot tell x from -x, and the two spirals are point
   reflections of each other.
3. Decision regions per function (``decision_boundaries.png``) and training
   curves (``learning_curves.png``).

Paper
-----
C.-H. Cai, Y. Xu, D. Ke, K. Su, J. Sun, "Trainable back-propagated functional
transfer matrices", arXiv:1710.10403 (2017); the journal version (Applied
Intelligence, 2018) adds two-spirals, "FTNNs considerably better than MLPs".
Function types: the authors' ``Matrices/F01.py`` ... ``F20.py``.

Equations
---------
layer         a_j = sum_i f(x_i; theta_ij) + b_j,   y = tanh(a)   (hidden), logits = a (output)
delta rule    dE/dtheta_ij = sum_n delta_nj df/dtheta(x_ni; theta_ij),  delta = dE/da
error         dE/dx_ni = sum_j delta_nj f'(x_ni; theta_ij)   (an input-dependent W^T)
setup         CMU spirals scaled to [-1, 1]; 2-20-2, all layers functional, softmax-CE;
              full batch (194 points), Adam lr 0.01, 3000 epochs.
(FTM-2, FTM-4 and FTM-5 in refnets/algorithms/functional_transfer/README.md.)

Run
---
    python tutorials/50_functional_transfer_spirals.py                # full run, 3-10 min
    python tutorials/50_functional_transfer_spirals.py --quick        # ~10 s (used by the tests)
    python tutorials/50_functional_transfer_spirals.py --seeds 5 --out-dir /tmp/t50

Measured (2-core CPU, OPENBLAS_NUM_THREADS=1, machine loaded by other jobs)
---------------------------------------------------------------------------
Full run, 3 seeds (0, 1, 2), mean train accuracy [min-max] and mean test accuracy
on the interleaved i + 0.5 points; 662 s wall on a heavily loaded machine:

    LIN (tanh MLP 2-20-2)   0.577 [0.562-0.588]   test 0.572
    LIN (tanh MLP 2-60-2)   0.567 [0.557-0.577]   test 0.564
    F03 a x^2 + b x         1.000 [1.000-1.000]   test 0.998
    F05 a exp(b x)          0.852 [0.835-0.881]   test 0.825
    F12 w0 sin(w1 x + w2)   1.000 [1.000-1.000]   test 0.964  (high random frequencies)
    F13 w0 cos(w1 x + w2)   1.000 [1.000-1.000]   test 0.971
    F16 w0 tanh(w1 x + w2)  0.627 [0.577-0.655]   test 0.610
    F17 w^2 x^2             0.500 [0.500-0.500]   test 0.500  (even function)
    F19 w0^2 (x + w1)^2     1.000 [1.000-1.000]   test 1.000

The picture agrees with the journal's claim (the paper's words: FTNNs
"considerably better than MLPs" on two-spirals). Note that an FTNN layer has k times
the parameters of a Dense layer of the same width (k = 2 for F03, 3 for F12),
which is why the table also shows a 3x wider MLP.
"""

# %% Imports and arguments
import argparse
import json
import time
from pathlib import Path

import numpy as np

from refnets import plotting
from refnets.algorithms.functional_transfer.algorithm import FunctionalTransfer, ftnn
from refnets.datasets import two_spirals
from refnets.layers.functional.dense import get_function
from refnets.losses import accuracy
from refnets.optim import Adam

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--seed", type=int, default=0, help="first seed")
parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3; 1 quick)")
parser.add_argument("--epochs", type=int, default=None, help="full-batch epochs (default 3000)")
parser.add_argument("--quick", action="store_true", help="short run (used by the test suite)")
parser.add_argument("--out-dir", default="tutorials/out/50", help="where the figures go")
args = parser.parse_args()
out_dir = Path(args.out_dir)
out_dir.mkdir(parents=True, exist_ok=True)
t_start = time.perf_counter()

N_SEEDS = args.seeds or (1 if args.quick else 3)
EPOCHS = args.epochs or (1500 if args.quick else 3000)
EVAL_EVERY = 50
HIDDEN = 20
# (label, function, hidden width); LIN = an ordinary tanh MLP
RUNS = ([("LIN", "LIN", HIDDEN), ("F03", "F03", HIDDEN), ("F19", "F19", HIDDEN),
         ("F17", "F17", HIDDEN)] if args.quick else
        [("LIN", "LIN", HIDDEN), ("LIN x3 wide", "LIN", 3 * HIDDEN), ("F03", "F03", HIDDEN),
         ("F05", "F05", HIDDEN), ("F12", "F12", HIDDEN), ("F13", "F13", HIDDEN),
         ("F16", "F16", HIDDEN), ("F17", "F17", HIDDEN), ("F19", "F19", HIDDEN)])

# %% Data: the CMU two spirals (97 points per arm, 3 turns), scaled to [-1, 1]
data = two_spirals()
scale = np.abs(data.x_train).max()
x_train, y_train = data.x_train / scale, data.y_train
x_test, y_test = data.x_test / scale, data.y_test
print(f"two spirals: {len(x_train)} training points, {len(x_test)} interleaved test points")


# %% Training: full-batch backprop through the functional layers
def run(function, hidden, seed):
    """Train a 2-hidden-2 FTNN; return (model, curve of train accuracies, seconds)."""
    rng = np.random.default_rng(seed)
    model = ftnn([2, hidden, 2], function, "tanh", rng)
    algo, opt = FunctionalTransfer(), Adam(lr=0.01)
    curve = []
    t0 = time.perf_counter()
    for epoch in range(1, EPOCHS + 1):
        res = algo.step(model, {}, x_train, y_train, rng)      # loss, exact gradient, info
        opt.update(algo.variables(model, {}), res.grads)
        if epoch % EVAL_EVERY == 0:
            curve.append(accuracy(model.forward(x_train)[0], y_train))
    return model, curve, time.perf_counter() - t0


rows, models, curves = [], {}, {}
for label, function, hidden in RUNS:
    train_accs, test_accs, secs = [], [], []
    for s in range(N_SEEDS):
        model, curve, sec = run(function, hidden, args.seed + s)
        train_accs.append(accuracy(model.forward(x_train)[0], y_train))
        test_accs.append(accuracy(model.forward(x_test)[0], y_test))
        secs.append(sec)
        if s == 0:
            models[label], curves[label] = model, curve
    rows.append({"function": label, "f(x)": get_function(function).formula,
                 "params": sum(v.size for v in models[label].params().values()),
                 "train acc": float(np.mean(train_accs)), "min": float(np.min(train_accs)),
                 "max": float(np.max(train_accs)), "test acc": float(np.mean(test_accs)),
                 "s/run": float(np.mean(secs))})
    print(f"{label:12s} train {np.round(train_accs, 3)}  test {np.round(test_accs, 3)}  "
          f"({np.mean(secs):.1f} s/run)", flush=True)

print()
print(f"2-{HIDDEN}-2 networks, {EPOCHS} full-batch Adam epochs, {N_SEEDS} seed(s):")
print(plotting.format_table(rows))

# %% Figures: decision regions of seed 0 and the training curves
n = len(models)
ncols = min(n, 3 if n <= 6 else 5)
nrows = -(-n // ncols)
fig, axes = plotting.new_figure(nrows, ncols, width=3.2, height=3.2)
axes = np.atleast_1d(axes).ravel()
for ax, (label, model) in zip(axes, models.items()):
    acc = accuracy(model.forward(x_train)[0], y_train)
    plotting.decision_boundary(lambda p, m=model: m.forward(p)[0], x_train, y_train, ax=ax,
                               resolution=150, margin=0.1, title=f"{label}: {acc:.2f}")
for ax in axes[n:]:
    ax.set_axis_off()
plotting.save(fig, out_dir / "decision_boundaries.png")

fig, ax = plotting.new_figure(width=6, height=3.8)
epochs = EVAL_EVERY * np.arange(1, EPOCHS // EVAL_EVERY + 1)
for label, curve in curves.items():
    ax.plot(epochs, curve, label=label)
ax.set(xlabel="epoch", ylabel="train accuracy", ylim=(0.4, 1.02),
       title="two spirals: FTNN vs tanh MLP (seed 0)")
ax.legend(fontsize=7, ncol=2)
plotting.save(fig, out_dir / "learning_curves.png")
print(f"figures in {out_dir}  ({time.perf_counter() - t_start:.1f} s)")

# %% Summary
summary = {f"train_acc_{r['function'].replace(' ', '_')}": round(r["train acc"], 4) for r in rows}
summary.update({f"test_acc_{r['function'].replace(' ', '_')}": round(r["test acc"], 4)
                for r in rows})
print("SUMMARY " + json.dumps(summary))
