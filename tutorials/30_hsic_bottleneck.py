"""30 - The HSIC bottleneck: training without backprop across layers, on Fashion-MNIST.

What you will see
-----------------
1. The kernel quantities on one batch: nHSIC of the labels with themselves
   (the ceiling ~8.4 for 10 classes at sigma = 6) and the near-linear regime
   (Gaussian vs linear-kernel nHSIC differ by < 1% at sigma = 6).
2. Unformatted HSIC training of the authors' dense net (blocks Linear ->
   BatchNorm(affine=False) -> ReLU, last block = 10 units), every block on its
   own objective J_k, no gradient crossing blocks; per step the "HSIC plane"
   nHSIC(Z_k, X) and nHSIC(Z_k, Y) of every block.
3. Its accuracy four ways: the authors' greedy unit-to-class metric (fitted on
   the test set itself, BN with test-batch statistics), the Hungarian
   assignment (also self-fitted), the honest train-fitted mapping (BN with
   running statistics as collected, and recomputed on the training images
   with the final weights), and a linear probe on the 10 output units.
4. Backprop on the same architecture plus a linear head.
5. The format layer: the HSIC net frozen, one linear layer trained on its output.
6. The sigma-combined net: three HSIC nets (sigma = 1, 5, 10) trained side by
   side, outputs averaged, normalised and formatted.
Figures: ``30_hsic_plane.png`` (trajectories per block), ``30_accuracy.png``.

Paper
-----
W.-D. K. Ma, J. P. Lewis, W. B. Kleijn, "The HSIC Bottleneck: Deep Learning
without Back-Propagation", AAAI 2020, arXiv:1908.01580; official code
github.com/choasma/HSIC-bottleneck. Implementation: the package refnets.algorithms.hsic
(algorithm.py, kernels.py for the estimators and gradients, metrics.py, format.py);
its README.md has the derivation, the equation tags HSIC-n used below and the
deviations from the paper and the authors' code.

Equations
---------
kernel        K_ij = exp(-||z_i - z_j||^2 / (2 sigma^2 d)),  d = columns of Z    (HSIC-1)
nHSIC         R_A = K_A H (K_A H + eps m I)^-1,  nHSIC(A, B) = tr(R_A R_B)      (HSIC-3, 4)
block k       J_k = nHSIC(Z_k, X) - beta nHSIC(Z_k, Y),   X = pixels, Y = one-hot   (HSIC-5)
gradient      G = dJ_k/dK = eps m (H M (R_X - beta R_Y) M)^T,  M = (K H + eps m I)^-1  (HSIC-6)
              dJ_k/dZ = -(2/s) (Diag(P 1) - P) Z,  P = (G + G^T) o K,  s = 2 sigma^2 d  (HSIC-7)
update        theta_k <- theta_k - lr (dJ_k/dtheta_k + wd theta_k), block by block,
              block k+1 sees block k's update (the authors' sequential loop)  (HSIC-9)

Run
---
    python tutorials/30_hsic_bottleneck.py             # full Fashion-MNIST if installed, ~8 min
    python tutorials/30_hsic_bottleneck.py --quick     # embedded 5000-image subset, ~10 s
    python tutorials/30_hsic_bottleneck.py --epochs 5 --width 1024   # the authors' Fig. 4 setting

Measured (2-core CPU shared with other jobs, load ~8, OPENBLAS_NUM_THREADS=1, seed 0)
-----------------------------------------------------------------------------------
Full run (~7.5 min), full Fashion-MNIST (60000/10000), width 256, 7 blocks,
sigma 6, beta 1000, lr 1e-3, wd 1e-3, m = 256, unshuffled, test accuracy:

    stage     greedy (authors')  Hungarian  train-fitted, running BN  train-fitted, calibrated BN
    epoch 1   0.844              0.844      0.818                     0.849
    epoch 2   0.844              0.844      0.829                     0.853

  linear probe on the 10 output units 0.854; format layer (2 epochs = 470 steps) 0.851;
  backprop on the same net + linear head (SGD lr 0.05, wd 1e-5): 0.835 / 0.853;
  last block nHSIC(Z_L, X) 6.77, nHSIC(Z_L, Y) 7.79 (ceiling ~8.4);
  HSIC 315 s for 470 steps incl. per-epoch evaluation and BN calibration,
  backprop 41 s (benchmarks/bench_hsic.py: ~3.3x per step at m = 256).
  sigma-combined (10240 images, width 128, output 64, 1 HSIC pass, 2 format
  epochs): sigma 1 0.722, sigma 5 0.810, sigma 10 0.808, combined 0.811.
The paper's numbers (read from its Fig. 4: width 1024, 5 epochs):
  unformatted HSIC 83.8 / 85.7 / 86.1 / 86.4 / 86.5 % after epochs 1-5,
  backprop 84.0 / 87.0 / 87.7 / 87.9 / 87.4 %.
  The paper's Fig. 6b (MNIST, 5 epochs): sigma 1/5/10/combined 69.6 / 93.5 / 93.2 /
  93.6 %: the same ordering (sigma 1 worst, combined ~ best single) as measured here.
--quick (embedded 5000/1000 subset, width 64, 4 blocks, 1 pass of 20 steps,
~10 s CPU): greedy 0.686, Hungarian 0.772, train-fitted 0.725 (running BN) /
0.768 (calibrated), probe 0.795, format layer 0.798 (400 steps = 20 epochs),
backprop 0.651, sigma-combined 0.431 (2560 images, too few steps: a smoke run).
The authors' greedy metric is self-fitted on the test set (and uses each test
batch's BN statistics); on the quick run it trails the Hungarian assignment
because two classes compete for one unit.
"""

# %% Imports and arguments
import argparse
import json
import time
from pathlib import Path

import numpy as np

from refnets import plotting
from refnets.algorithms.backprop import Backprop
from refnets.algorithms.hsic import kernels as hk
from refnets.algorithms.hsic import metrics as hm
from refnets.algorithms.hsic.algorithm import HSICBottleneck
from refnets.algorithms.hsic.format import (FORMAT_MIN_STEPS, HSICSigmaCombined,
                                            combined_format_setup, format_setup, train_format)
from refnets.algorithms.hsic.models import hsic_mlp
from refnets.datasets import load_fashion_mnist, load_fashion_mnist_small, minibatches
from refnets.layers import Dense
from refnets.models import Sequential
from refnets.optim import SGD

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--seed", type=int, default=0, help="seed of the initialisation")
parser.add_argument("--quick", action="store_true", help="short run (used by the test suite)")
parser.add_argument("--out-dir", default="tutorials/out/30", help="where the figures go")
parser.add_argument("--epochs", type=int, default=None, help="HSIC epochs (default 2, quick 1)")
parser.add_argument("--width", type=int, default=None, help="hidden width (default 256, quick 64)")
args = parser.parse_args()
out_dir = Path(args.out_dir)
out_dir.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(args.seed)
t_start = time.perf_counter()

epochs = args.epochs or (1 if args.quick else 2)
width = args.width or (64 if args.quick else 256)
n_middle = 2 if args.quick else 5            # authors' n_layers = 5 -> 7 blocks
batch = 256                                   # authors' m for the unformatted runs
sigma, beta, lr, wd = 6.0, 1000.0, 1e-3, 1e-3  # authors' Fashion-MNIST unformatted config

# %% Data: Fashion-MNIST, raw pixels in [0, 1] (the authors do not normalise)
data, source = None, "embedded 5000/1000 subset"
if not args.quick:
    try:
        data, source = load_fashion_mnist(), "full Fashion-MNIST"
    except (FileNotFoundError, OSError, ValueError) as exc:
        print(f"full Fashion-MNIST not found ({exc}); using the embedded subset")
if data is None:
    data = load_fashion_mnist_small()
x_train, y_train, x_test, y_test = data
print(f"{source}: train {x_train.shape}, test {x_test.shape}")

# %% The kernels on one batch: the label ceiling and the near-linear regime
xb, yb = x_train[:batch], y_train[:batch]
L = hk.gaussian_kernel(np.eye(10)[yb], sigma)
KX = hk.gaussian_kernel(xb, sigma)
s = hk.kernel_scale(sigma, xb.shape[1])
lin = hk.linear_kernel(xb) * 2.0 / s          # centred K ~ (2/s) x centred Gram for sigma >= 5
near_linear = abs(hk.nhsic(KX, L) - hk.nhsic(lin, L)) / hk.nhsic(KX, L)
print(f"nHSIC(Y, Y) = {hk.nhsic(L, L):.3f} (ceiling for 10 classes; 9 as sigma -> 0)")
print(f"nHSIC(X, Y): Gaussian {hk.nhsic(KX, L):.4f} vs linear kernel {hk.nhsic(lin, L):.4f} "
      f"({100 * near_linear:.2f}% apart: sigma = 6 is the near-linear, CCA-like regime)")

# %% Unformatted HSIC training: every block on J_k, sequential, unshuffled (authors')
sizes = [784] + [width] * (n_middle + 1) + [10]
model = hsic_mlp(sizes, rng)
algo = HSICBottleneck(n_classes=10, sigma=sigma, beta=beta, lr=lr, weight_decay=wd)
state = algo.init_state(model, rng)
n_blocks = len(state["blocks"])
print(f"\nHSIC net {sizes}: {n_blocks} blocks Linear -> BN -> ReLU")


def hsic_accuracies(tag):
    """The four readings of the unformatted output (see refnets.algorithms.hsic.metrics)."""
    # the authors' metric: BN with each test batch's own statistics (the test set is not
    # class-sorted; on class-sorted batches greedy_accuracy refuses or warns)
    greedy, _ = algo.greedy_accuracy(model, state, x_test, y_test, bn="batch", batch_size=batch)
    out_batch = np.vstack([algo.features(model, state, x_test[i:i + batch], bn="batch")
                           for i in range(0, len(x_test), batch)])
    hung, _ = hm.hungarian_accuracy(out_batch, y_test, 10)
    running = float(np.mean(np.argmax(algo.predict(model, state, x_test), 1) == y_test))
    # the running BN averages lag behind the moving first blocks: recompute them on the
    # training images with the current weights ("precise BN"), then score again
    algo.calibrate_batchnorm(model, state, x_train, batch_size=1000)
    fitted = float(np.mean(np.argmax(algo.predict(model, state, x_test), 1) == y_test))
    row = {"stage": tag, "greedy (authors')": greedy, "hungarian": hung,
           "train-fitted, running BN": running, "train-fitted": fitted}
    print("  " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else str(v) for k, v in row.items()))
    return row


rows = [hsic_accuracies("epoch 0")]
plane_x, plane_y, t0 = [], [], time.perf_counter()
for epoch in range(1, epochs + 1):
    for xb, yb in minibatches(x_train, y_train, batch, rng, shuffle=False):
        res = algo.step(model, state, xb, yb, rng)
        plane_x.append(res.info["nhsic_x"])
        plane_y.append(res.info["nhsic_y"])
    rows.append(hsic_accuracies(f"epoch {epoch}"))
hsic_seconds = time.perf_counter() - t0
plane_x, plane_y = np.array(plane_x), np.array(plane_y)
print(f"HSIC training: {len(plane_x)} steps in {hsic_seconds:.1f} s; last block "
      f"nHSIC(Z_L, X) {plane_x[-1, -1]:.2f}, nHSIC(Z_L, Y) {plane_y[-1, -1]:.2f}")

# a linear probe on the 10 output units (train-fitted softmax regression)
f_train = np.vstack([algo.features(model, state, x_train[i:i + 2048])
                     for i in range(0, len(x_train), 2048)])
probe = hm.linear_probe_accuracy(f_train, y_train, algo.features(model, state, x_test), y_test, 10)
print(f"linear probe on the frozen 10-unit output: test acc {probe:.3f}")

# %% Backprop on the same architecture + a linear head (authors' baseline: SGD, wd 1e-5)
bp_model = Sequential(hsic_mlp(sizes, np.random.default_rng(args.seed)).layers
                      + [Dense(10, 10, rng)])
bp, bp_opt = Backprop(), SGD(0.05, weight_decay=1e-5)
bp_acc, t0 = [], time.perf_counter()
for epoch in range(1, epochs + 1):
    for xb, yb in minibatches(x_train, y_train, batch, rng, shuffle=False):
        r = bp.step(bp_model, {}, xb, yb, rng)
        bp_opt.update(bp.variables(bp_model, {}), r.grads)
    # BN in training mode on each test batch, as for the HSIC greedy metric
    pred = np.vstack([bp.predict(bp_model, {}, x_test[i:i + batch])
                      for i in range(0, len(x_test), batch)])
    bp_acc.append(float(np.mean(np.argmax(pred, 1) == y_test)))
    print(f"backprop epoch {epoch}: test acc {bp_acc[-1]:.3f}")
bp_seconds = time.perf_counter() - t0

# %% The format layer: freeze the HSIC net, train one linear layer on its output
def format_and_score(setup, x, y, n_epochs=None, batch_size=256):
    """Train a format stage (only its output layer learns) and return its test accuracy."""
    st = train_format(setup, x, y, rng, epochs=n_epochs, batch_size=batch_size)
    pred = np.vstack([setup.algorithm.predict(setup.model, st, x_test[i:i + 1000])
                      for i in range(0, len(x_test), 1000)])
    return float(np.mean(np.argmax(pred, 1) == y_test))


# authors: SGD lr 0.01, wd 1e-3, 5 epochs of the full set; here lr 0.05 for FORMAT_MIN_STEPS
# = 400 steps of 256 (2 epochs of the full set, 20 of the subset; benchmarks/bench_hsic.py
# --measure format)
fmt_epochs = -(-FORMAT_MIN_STEPS // -(-len(x_train) // 256))
fmt_acc = format_and_score(format_setup(model, algo, state, 10, rng, lr=0.05, weight_decay=1e-3),
                           x_train, y_train, fmt_epochs)
print(f"format layer on the frozen HSIC net ({fmt_epochs} epochs): test acc {fmt_acc:.3f}")

# %% The sigma-combined net (authors' Fig. 6b: sigma 1, 5, 10, beta 50, outputs averaged)
n_comb = 2560 if args.quick else 10240
cw, cout = (32, 16) if args.quick else (128, 64)
sigmas = (1.0, 5.0, 10.0)
members = [hsic_mlp([784, cw, cw, cw, cout], rng) for _ in sigmas]
combo = HSICSigmaCombined([HSICBottleneck(10, sigma=s_, beta=50.0, lr=1e-3, weight_decay=wd)
                           for s_ in sigmas])
cstate = combo.init_state(members, rng)
for xb, yb in minibatches(x_train[:n_comb], y_train[:n_comb], 256, rng, shuffle=False):
    combo.step(members, cstate, xb, yb, rng)
sigma_acc, comb_epochs = {}, 5    # authors: 5 format epochs
xc, yc = x_train[:n_comb], y_train[:n_comb]
for s_, m_, a_, st_ in zip(sigmas, members, combo.members, cstate["members"]):
    solo = HSICSigmaCombined([a_])          # one member: its own output, normalised, formatted
    sigma_acc[f"sigma {s_:g}"] = format_and_score(
        combined_format_setup([m_], solo, {"members": [st_]}, 10, rng), xc, yc, comb_epochs)
sigma_acc["combined"] = format_and_score(combined_format_setup(members, combo, cstate, 10, rng),
                                         xc, yc, comb_epochs)
print("sigma-combined (formatted, test acc): "
      + ", ".join(f"{k} {v:.3f}" for k, v in sigma_acc.items()))

# %% Figures: the HSIC plane per block, and accuracy per epoch
fig, axes = plotting.new_figure(1, 2, width=5.0, height=4.0)
ax = axes[0]
colors = [f"C{k}" for k in range(n_blocks)]
for k in range(n_blocks):
    xs = plotting.running_mean(plane_x[:, k], 10)
    ys = plotting.running_mean(plane_y[:, k], 10)
    ax.plot(xs, ys, color=colors[k], lw=1.2, label=f"block {k + 1}")
    ax.plot(xs[0], ys[0], "o", color=colors[k], ms=4)
    ax.plot(xs[-1], ys[-1], "s", color=colors[k], ms=5)
ax.set_xlabel("nHSIC(Z_k, X)")
ax.set_ylabel("nHSIC(Z_k, Y)")
ax.set_title("HSIC plane (o start, square end; 10-step means)")
ax.legend(fontsize=7)
ax = axes[1]
steps = np.arange(1, len(plane_y) + 1)
ax.plot(steps, plane_y[:, -1], lw=0.8, label="nHSIC(Z_L, Y)")
ax.plot(steps, plane_x[:, -1], lw=0.8, label="nHSIC(Z_L, X)")
ax.set_xlabel("step")
ax.set_title("last block")
ax.legend()
plotting.save(fig, out_dir / "30_hsic_plane.png")

fig, ax = plotting.new_figure(width=5.0, height=3.6)
ep = np.arange(len(rows))
for key in ("greedy (authors')", "hungarian", "train-fitted"):
    ax.plot(ep, [r[key] for r in rows], marker="o", label=f"HSIC {key}")
ax.plot(np.arange(1, epochs + 1), bp_acc, marker="s", color="k", label="backprop")
ax.axhline(fmt_acc, ls="--", color="C4", label="HSIC + format layer")
ax.set_xlabel("epoch")
ax.set_ylabel("test accuracy")
ax.set_title(f"Fashion-MNIST ({source})")
ax.legend(fontsize=7)
plotting.save(fig, out_dir / "30_accuracy.png")
print(f"figures in {out_dir}/")

# %% Summary
summary = {"hsic_greedy_test_acc": rows[-1]["greedy (authors')"],
           "hsic_hungarian_test_acc": rows[-1]["hungarian"],
           "hsic_train_fitted_test_acc": rows[-1]["train-fitted"],
           "hsic_probe_test_acc": probe, "hsic_format_test_acc": fmt_acc,
           "backprop_test_acc": bp_acc[-1],
           "sigma_combined_test_acc": sigma_acc["combined"],
           "nhsic_x_last": float(plane_x[-1, -1]), "nhsic_y_last": float(plane_y[-1, -1]),
           "hsic_seconds": round(hsic_seconds, 1), "backprop_seconds": round(bp_seconds, 1),
           "epochs": epochs, "width": width, "data": source,
           "seconds": round(time.perf_counter() - t_start, 1)}
print("\n" + plotting.format_table(rows, floatfmt=".3f"))
print("\n" + plotting.format_table([{k: v for k, v in summary.items() if k != "data"}],
                                   floatfmt=".3g"))
print("SUMMARY " + json.dumps(summary))
