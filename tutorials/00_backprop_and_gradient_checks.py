"""00 - Backprop and gradient checks on the two-spirals problem.

What you will see
-----------------
1. The two-spirals data (194 training points, 194 test points halfway between them).
2. A finite-difference check of the whole network's gradient: every one of the
   ~1200 parameters, analytic (backprop) against centred differences, agree to
   ~1e-10 relative error.
3. The same check catching a deliberately wrong derivative (tanh' written as
   1 - tanh instead of 1 - tanh^2): the error jumps to order 1.
4. Backprop (Adam, full batch) learning the spirals, with figures of the
   learning curves and of the decision regions.

This script is the model for every other tutorial: seeded argparse flags
(--seed, --quick, --out-dir), ``# %%`` cells, figures saved (never shown), a
summary table, and a last line ``SUMMARY {json}`` with the headline numbers.

Paper
-----
D. E. Rumelhart, G. E. Hinton, R. J. Williams (1986), "Learning representations
by back-propagating errors", Nature 323, 533-536.
K. J. Lang, M. J. Witbrock (1988), "Learning to tell two spirals apart".

Equations (an MLP with layers k = 1..L, batch of N rows, W_k of shape (n_k, n_{k-1}))
-----------------------------------------------------------------------------
forward      z_k = h_{k-1} W_k^T + b_k,   h_k = tanh(z_k),   h_0 = x,   z_L = logits
loss         L = -(1/N) sum_n log softmax(z_L)[n, y_n]
backward     dz_L = (softmax(z_L) - onehot(y)) / N
             dW_k = dz_k^T h_{k-1},   db_k = sum_n dz_k[n],   dh_{k-1} = dz_k W_k
             dz_{k-1} = dh_{k-1} * (1 - h_{k-1}^2)
check        (L(theta + h e_i) - L(theta - h e_i)) / 2h = dL/dtheta_i + O(h^2),  h = 1e-5
             relative error = max|analytic - numerical| / max(max|analytic|, max|numerical|)

Run
---
    python tutorials/00_backprop_and_gradient_checks.py                 # full run, ~10 s
    python tutorials/00_backprop_and_gradient_checks.py --quick         # a few seconds (used by the tests)
    python tutorials/00_backprop_and_gradient_checks.py --out-dir /tmp/t00 --seed 1

Measured (2-core CPU, OPENBLAS_NUM_THREADS=1, seed 0)
-----------------------------------------------------
Full run (2500 full-batch Adam steps, lr 0.01, 2-32-32-2 tanh): train accuracy
1.00, test accuracy 0.95; gradient check max relative error 7e-10 over all
1218 parameters; broken tanh 0.94. --quick (300 steps): train 0.64, test 0.62.
The decision regions fit every training point but the arms are ragged between
them, which is why test accuracy stays below train accuracy.
"""

# %% Imports and arguments
import argparse
import json
import time
from pathlib import Path

import numpy as np

from refnets import mlp, plotting
from refnets.algorithms.backprop import Backprop
from refnets.algorithms.base import backprop_gradients
from refnets.datasets import two_spirals
from refnets.gradcheck import check_layer, numerical_gradient, rel_error
from refnets.layers.activations import Activation, Tanh
from refnets.losses import softmax_cross_entropy
from refnets.optim import Adam
from refnets.training import train

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--seed", type=int, default=0, help="seed of the initialisation and shuffling")
parser.add_argument("--quick", action="store_true", help="short run (used by the test suite)")
parser.add_argument("--out-dir", default="tutorials/out/00", help="where the figures go")
args = parser.parse_args()
out_dir = Path(args.out_dir)
out_dir.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(args.seed)
t_start = time.perf_counter()

# %% Data: two interleaved spirals, three turns each
data = two_spirals()
print(f"train {data.x_train.shape}, test {data.x_test.shape}, classes {np.bincount(data.y_train)}")

# %% Model: 2 -> 32 -> 32 -> 2, tanh hidden units, logits out
sizes = [2, 32, 32, 2]
model = mlp(sizes, "tanh", rng)
print(model)
n_params = sum(p.size for p in model.params().values())
print(f"{n_params} parameters")

# %% Gradient check of the whole network
# The loss as a function of one parameter array, everything else fixed. The
# numerical gradient perturbs each entry in place by +-h and restores it.
# A random subset of 20 points: the spirals come in pairs (x, -x), and on a set
# of whole pairs the zero-bias tanh network is odd, f(-x) = -f(x), so the bias
# gradients are exactly 0 by symmetry - a relative error of 0 vs 1e-17 says nothing.
pick = rng.permutation(len(data.y_train))[:20]
x_check, y_check = data.x_train[pick], data.y_train[pick]
_, analytic, _ = backprop_gradients(model, x_check, y_check)


def loss_of_params(_):
    return softmax_cross_entropy(model.forward(x_check)[0], y_check)[0]


rows = []
for key, value in model.params().items():
    numerical = numerical_gradient(loss_of_params, value)   # perturbs model.params()[key] in place
    rows.append({"parameter": key, "shape": str(value.shape),
                 "rel_error": rel_error(analytic[key], numerical)})
grad_error = max(r["rel_error"] for r in rows)
print("\nbackprop vs centred differences, loss on 20 points:")
print(plotting.format_table(rows, floatfmt=".2e"))

# %% A wrong derivative does not survive the check
# The same layer check refnets runs for every layer (refnets gradcheck), on a
# correct tanh and on one whose derivative forgot the square.


class BrokenTanh(Activation):
    """tanh with a wrong derivative 1 - tanh(z) (should be 1 - tanh(z)^2)."""

    def apply(self, z):
        return np.tanh(z)

    def derivative(self, z):
        return 1.0 - np.tanh(z)


z = rng.standard_normal((4, 6))
good = check_layer(Tanh(), z, rng)["x"]
broken = check_layer(BrokenTanh(), z, rng)["x"]
print(f"\nlayer check dL/dz: correct tanh {good:.1e}, broken tanh {broken:.1e} (tolerance 1e-7)")

# %% Train with backprop: full batch, Adam
steps = 300 if args.quick else 2500
t0 = time.perf_counter()
history = train(model, Backprop(), Adam(lr=0.01), (data.x_train, data.y_train), epochs=steps,
                batch_size=len(data.y_train), rng=rng, eval_data=(data.x_test, data.y_test),
                progress=False)
train_seconds = time.perf_counter() - t0
print(f"\ntrained {steps} full-batch steps in {train_seconds:.1f} s: "
      f"train acc {history.train_acc[-1]:.3f}, test acc {history.test_acc[-1]:.3f}")

# %% Figures: learning curves and decision regions
fig = plotting.learning_curves({"backprop": history}, title="backprop on two spirals")
plotting.save(fig, out_dir / "00_learning_curves.png")
fig = plotting.decision_boundary(lambda p: model.forward(p)[0], data.x_train, data.y_train,
                                 title=f"backprop: train {history.train_acc[-1]:.2f}, "
                                       f"test {history.test_acc[-1]:.2f}")
plotting.save(fig, out_dir / "00_decision_boundary.png")
print(f"figures in {out_dir}/")

# %% Summary
summary = {"train_acc": history.train_acc[-1], "test_acc": history.test_acc[-1],
           "gradcheck_max_rel_error": grad_error, "broken_tanh_rel_error": broken,
           "steps": steps, "seconds": round(time.perf_counter() - t_start, 2)}
print("\n" + plotting.format_table([summary], floatfmt=".3g"))
assert grad_error < 1e-7 and broken > 1e-2, "the gradient check should pass, and catch the bug"
print("SUMMARY " + json.dumps(summary))
