"""52 - All 20 functional transfer matrices (and a plain MLP) on a Fashion-MNIST subset.

What you will see
-----------------
1. One 196-H-10 network per function type of the authors' code (F01-F20) and
   the linear LIN (= an ordinary MLP of the same width), each trained the same
   way on the embedded Fashion-MNIST subset (images 2x2-average-pooled to
   14 x 14, so that the generic per-connection path stays affordable).
2. A table: test accuracy, seconds per epoch (and the ratio to LIN), the
   number of trainable parameters per connection k and whether the layer runs
   on the exact matmul fast path or the generic broadcast path.
3. ``accuracy_vs_time.png``: accuracy against time per epoch (log scale).
4. Depth: a 5-hidden-layer F16 network with the official
   init does not train end to end (chance), while the fan-in-scaled init or
   the journal's greedy layer-wise supervised training make it learn.

Expected picture: most functions
are within a few points of the MLP; the polynomial/ReLU families and sin/cos
are the best; the sigmoid-edge families F10/F11 learn slowly (their edges
start almost input-independent, sigma(small) ~ 1/2); fast-path functions cost
1-3x an MLP, generic ones 10-100x (sin/cos, sinh/cosh, exp evaluated on
every connection of every sample).

Paper
-----
C.-H. Cai, Y. Xu, D. Ke, K. Su, J. Sun, "Trainable back-propagated functional
transfer matrices", arXiv:1710.10403 (2017): MNIST with all 20 functions
("most of them gain high test accuracies"); the journal version reports
MNIST "comparable to" an MLP. The paper's per-function numbers are for real
MNIST with its own setup; this table is a small, fast stand-in.

Equations
---------
layer     a_j = sum_i f(x_i; theta_ij) + b_j, ReLU hidden, softmax-CE output (all layers functional)
training  backprop with the revised delta rule, Adam lr 2e-3, batch 50
(FTM-2 to FTM-5, FTM-1b and FTM-12 in refnets/algorithms/functional_transfer/README.md.)

Run
---
    python tutorials/52_functional_transfer_table.py               # full run, ~3 min on an idle 2-core machine
    python tutorials/52_functional_transfer_table.py --quick       # ~20 s (used by the tests)
    python tutorials/52_functional_transfer_table.py --functions F03,F12,LIN --epochs 20

Measured (idle 2-core CPU, OPENBLAS_NUM_THREADS=1)
--------------------------------------------------
Full run (5000 / 1000 images, 196-32-10, 8 epochs, seed 0; 166 s wall; the
time ratios come from one run each, see benchmarks/bench_ftm.py for
interleaved timings):

    test acc   functions
    0.80-0.82  F07 0.819, LIN 0.815, F04 0.814, F06 0.812, F03 0.811, F12 0.804
    0.78-0.80  F15 0.796, F02 0.792, F14 0.791, F05 0.790, F08 0.788, F09 0.783,
               F20 0.780
    0.72-0.78  F01 0.775, F13 0.775, F16 0.774, F18 0.765, F17 0.746, F19 0.729
    0.54-0.57  F10 0.542, F11 0.565 (sigmoid edges: slow learners)

    s/epoch (x LIN): fast path 1.1-3.8x (F02 the most), generic ReLU 14-31x,
    exp/cosh/tanh/sigmoid/sinh 29-39x, sin/cos 80x.

So on this image task no function beats the plain MLP by more than noise
(the journal's "comparable to an MLP"), unlike the two spirals (tutorial 50).
Depth (F16, 5 hidden layers of 32, 8 epochs): official init end to end 0.100
(chance), fan-in init 0.793, layer-wise (4 epochs per stage + 8 fine-tuning)
0.759.
"""

# %% Imports and arguments
import argparse
import json
import time
from pathlib import Path

import numpy as np

from refnets import plotting
from refnets.algorithms.functional_transfer.algorithm import FunctionalTransfer, ftnn, train_ftnn
from refnets.datasets import load_fashion_mnist_small
from refnets.layers.functional.dense import FUNCTION_NAMES, get_function
from refnets.losses import accuracy
from refnets.optim import Adam
from refnets.training import train

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--quick", action="store_true", help="short run (used by the test suite)")
parser.add_argument("--epochs", type=int, default=None, help="epochs per function (default 8)")
parser.add_argument("--hidden", type=int, default=None, help="hidden width (default 32)")
parser.add_argument("--functions", default=None,
                    help="comma-separated subset, e.g. F03,F12,LIN (default: all 21)")
parser.add_argument("--out-dir", default="tutorials/out/52", help="where the figures go")
args = parser.parse_args()
out_dir = Path(args.out_dir)
out_dir.mkdir(parents=True, exist_ok=True)
t_start = time.perf_counter()

EPOCHS = args.epochs or (3 if args.quick else 8)
HIDDEN = args.hidden or (16 if args.quick else 32)
N_TRAIN, N_TEST = (500, 500) if args.quick else (None, None)      # None: the whole subset
FUNCTIONS = args.functions.split(",") if args.functions else list(FUNCTION_NAMES)

# %% Data: the embedded Fashion-MNIST subset, 2x2-average-pooled to 14 x 14 = 196 inputs
data = load_fashion_mnist_small(n_train=N_TRAIN, n_test=N_TEST, rng=np.random.default_rng(0))


def pool2(x):
    """(N, 784) -> (N, 196): mean of each 2 x 2 block of the 28 x 28 image."""
    return x.reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4))


x_train, x_test = pool2(data.x_train).reshape(-1, 196), pool2(data.x_test).reshape(-1, 196)
y_train, y_test = data.y_train, data.y_test
print(f"Fashion-MNIST subset: {len(x_train)} train / {len(x_test)} test images at 14 x 14; "
      f"196-{HIDDEN}-10 ReLU nets, {EPOCHS} epochs each")

# %% One run per function
rows = []
for name in FUNCTIONS:
    fn = get_function(name)
    rng = np.random.default_rng(args.seed)
    model = ftnn([196, HIDDEN, 10], fn, "relu", rng)
    hist = train(model, FunctionalTransfer(), Adam(lr=2e-3), (x_train, y_train), EPOCHS, 50, rng,
                 eval_data=(x_test, y_test), progress=False)
    rows.append({"function": fn.name, "f(x)": fn.formula, "k": fn.k,
                 "path": model[0].path, "train acc": hist.train_acc[-1],
                 "test acc": hist.test_acc[-1], "s/epoch": float(np.median(hist.epoch_time))})
    print(f"{fn.name}: test acc {hist.test_acc[-1]:.3f}  ({rows[-1]['s/epoch']:.2f} s/epoch)",
          flush=True)

lin_time = next((r["s/epoch"] for r in rows if r["function"] == "LIN"), None)
for r in rows:
    r["x LIN time"] = r["s/epoch"] / lin_time if lin_time else float("nan")
print()
print(plotting.format_table(rows, ["function", "f(x)", "k", "path", "train acc", "test acc",
                                   "s/epoch", "x LIN time"]))

# %% Figure: accuracy against cost
fig, ax = plotting.new_figure(width=6.5, height=4.2)
for r in rows:
    color = "tab:blue" if r["path"] == "fast" else "tab:red"
    ax.scatter(r["s/epoch"], r["test acc"], color=color, s=18)
    ax.annotate(r["function"], (r["s/epoch"], r["test acc"]), fontsize=7,
                xytext=(3, 2), textcoords="offset points")
ax.set_xscale("log")
ax.set(xlabel="seconds per epoch (log)", ylabel="test accuracy",
       title="FTNN per function type (blue: matmul fast path, red: generic path)")
plotting.save(fig, out_dir / "accuracy_vs_time.png")
print(f"figure in {out_dir}  ({time.perf_counter() - t_start:.1f} s)")

# %% Depth: official init vs fan-in-scaled init vs greedy layer-wise supervised training
# With the official ranges every edge has a gain ~ w0 w1 ~ 1e-2, so the signal of a deep
# stack vanishes and end-to-end training sits at chance. Two fixes: the
# fan-in-scaled init (w0 ~ U(+-sqrt(6/fan_in)), w1 ~ U(+-1)), or the journal's layer-wise
# supervised training: stage k trains hidden layer k + a fresh output layer on the frozen
# features of layers 1..k-1, then the whole net is fine-tuned.
DEPTH_FUNCTION = "F16"
DEPTH, WIDTH, DEPTH_EPOCHS = (3, 16, 2) if args.quick else (5, 32, 8)
depth_sizes = [196] + [WIDTH] * DEPTH + [10]
depth_rows = []
for label, kwargs in (("official init, end to end", {}),
                      ("fan-in init, end to end", {"init": "fan_in"}),
                      ("official init, layer-wise", {"layerwise": True,
                                                     "epochs_per_layer": max(1, DEPTH_EPOCHS // 2)})):
    t0 = time.perf_counter()
    model, hists = train_ftnn(depth_sizes, (x_train, y_train), np.random.default_rng(args.seed),
                              function=DEPTH_FUNCTION, activation="relu", epochs=DEPTH_EPOCHS,
                              batch_size=50, **kwargs)
    acc = accuracy(model.forward(x_test)[0], y_test)
    depth_rows.append({"training": label, "test acc": acc, "seconds": time.perf_counter() - t0})
    print(f"{label:28s} test acc {acc:.3f}", flush=True)
print()
print(f"{DEPTH_FUNCTION}, {DEPTH} hidden layers of {WIDTH} (ReLU), {DEPTH_EPOCHS} epochs "
      f"(layer-wise: {max(1, DEPTH_EPOCHS // 2)} per stage + {DEPTH_EPOCHS} fine-tuning):")
print(plotting.format_table(depth_rows))

# %% Summary
summary = {f"test_acc_{r['function']}": round(r["test acc"], 4) for r in rows}
best = max(rows, key=lambda r: r["test acc"])
summary["best_function"] = best["function"]
summary["best_test_acc"] = round(best["test acc"], 4)
summary.update({"deep_official_test_acc": round(depth_rows[0]["test acc"], 4),
                "deep_fan_in_test_acc": round(depth_rows[1]["test acc"], 4),
                "deep_layerwise_test_acc": round(depth_rows[2]["test acc"], 4)})
print("SUMMARY " + json.dumps(summary))
