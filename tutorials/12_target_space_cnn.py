"""12 - Target Space on a small CNN: targets for every pixel of the realisation images.

What you will see
-----------------
1. A small convnet (3x3 conv, 8 channels, 'same', ReLU, 2x2 max-pool, dense
   read-out) on the Fashion-MNIST subset shipped with refnets, trained in
   **target space** and in **weight space** from the same data order.
2. In target space the conv layer has one target per (realisation image, pixel,
   channel): 100 images x 28 x 28 = 78,400 rows of an im2col ridge solve
   with 1 + 9 columns; the dense read-out after the flatten is
   *underdetermined* (100 rows, 1 + 1568 columns: its weights lie in the span
   of the 100 realised feature vectors, by design of the method).
3. Learning curves (test accuracy per epoch and per second), the realised
   conv kernels next to the backprop ones, and the per-layer realisation
   residual ||A_bar W - T|| / ||T|| over training.

Paper
-----
M. Fairbank, S. Samothrakis, L. Citi (2022), "Deep Learning in Target Space",
JMLR 23(8); arXiv 2006.01578 (CNN experiments on MNIST, Fashion-MNIST,
CIFAR-10/100). Settings from the authors' TF1 ``cnn_target_space_tf1.py``:
``--realisation_batch_size 100 --prc 0.1 --ti 0.1``, TS Adam 0.01, WS Adam
0.001 with their He-normal baseline initialisation (bias counted in fan-in).
Their nets are much larger and train for up to 400 epochs; this one is a
few-epoch CPU illustration.

Equations (conv layer; realised input X_bar_{k-1} of n_bar images, NCHW)
-----------------------------------------------------------------------
patches     P = im2col(X_bar_{k-1})          (n_bar*H*W, C_in*3*3), rows (image, y, x)
solve       W_full = (A^T A + lam I)^-1 A^T T_conv,  A = [1, P]      (TS-10; paper Eq. 6-7)
            kernel = W_full[1:].T reshaped (C_out, C_in, 3, 3), bias = W_full[0]
realised    S_bar = A W_full  (= conv(X_bar, kernel) + bias, as rows)
backward    dL/dT_conv = A G^-1 dW;   dL/dX_bar = col2im(dL/dA without its bias column)

Run
---
    python tutorials/12_target_space_cnn.py              # full run: 5 epochs, 30-90 s
    python tutorials/12_target_space_cnn.py --quick      # 1000 images, 1 epoch (used by the tests)
    python tutorials/12_target_space_cnn.py --epochs 10 --n-bar 50

Measured (idle 2-core CPU, OPENBLAS_NUM_THREADS=1)
--------------------------------------------------
Full run (seed 0, 5 epochs of 50 minibatches, n_bar = 100), 17 s (the
accuracies are the same on a busy machine; only the times grow):

============  =========  ========  =======
method        train acc  test acc  s/epoch
============  =========  ========  =======
target space  0.819      0.788     1.61
weight space  0.833      0.805     0.48
============  =========  ========  =======

Test accuracy per epoch: TS 0.726, 0.740, 0.764, 0.769, 0.788; WS 0.724,
0.757, 0.797, 0.800, 0.805. On this tiny net and budget target space does
*not* beat weight space, and each epoch costs ~3.3x more (the conv solve has
78,400 rows). Three things to notice in the figures:

* the realisation residual of the conv layer grows to ~0.4 while the dense
  read-out's stays ~1e-2: SGD keeps T in col(A_bar) under SCU (dL/dT lies
  there), but Adam's per-entry scaling does not, so the targets drift off the
  reachable set and only their projection matters;
* the realised kernels come in near-duplicate groups: the projected initial
  targets are a least-squares fit to per-pixel noise (sigma_T = 0.1), so the
  initial kernels are almost zero (norm ~0.01 against ~1.3 for He init) and
  channels whose first Adam steps agree stay alike;
* the dense read-out solve has rank <= n_bar = 100 by construction.
The authors report CNN results on MNIST, Fashion-MNIST and CIFAR after up to
400 epochs with much larger nets; no number from those tables is quoted here.
``--quick`` (1000 images, 1 epoch, n_bar 50): TS test 0.63, WS 0.40 (WS's Adam
0.001 has barely started after 10 steps), ~15 s.
"""

# %% Imports and arguments
import argparse
import json
import time
from pathlib import Path

import numpy as np

from refnets import plotting
from refnets.algorithms.backprop import Backprop
from refnets.algorithms.target_space.algorithm import TargetSpace, tf1_weight_init
from refnets.datasets import load_fashion_mnist_small
from refnets.models import convnet
from refnets.optim import Adam
from refnets.training import train

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--seed", type=int, default=0, help="seed of init, X_bar and minibatches")
parser.add_argument("--quick", action="store_true", help="short run (used by the test suite)")
parser.add_argument("--epochs", type=int, default=None, help="epochs (default 5; 1 quick)")
parser.add_argument("--n-bar", type=int, default=None,
                    help="realisation batch size (default 100, the authors'; 50 quick)")
parser.add_argument("--out-dir", default="tutorials/out/12", help="where the figures go")
args = parser.parse_args()
out_dir = Path(args.out_dir)
out_dir.mkdir(parents=True, exist_ok=True)
t_start = time.perf_counter()

EPOCHS = args.epochs or (1 if args.quick else 5)
N_BAR = args.n_bar or (50 if args.quick else 100)
BATCH = 100

# %% Data: the embedded Fashion-MNIST subset (5000 train / 1000 test), NCHW in [0, 1]
data = load_fashion_mnist_small(n_train=1000 if args.quick else None,
                                n_test=500 if args.quick else None, flatten=False)
print(f"train {data.x_train.shape}, test {data.x_test.shape}")


# %% One run with the shared training loop (evaluation after every epoch)
def run(space):
    rng = np.random.default_rng(args.seed)
    model = convnet((1, 28, 28), [8], 3, 10, rng, activation="relu", pool=2)
    if space == "weight":
        tf1_weight_init(model, rng, "he", truncated=False)      # the authors' CNN baseline init
        algo, lr = Backprop(), 0.001
    else:
        algo, lr = TargetSpace(data.x_train, realisation_batch_size=N_BAR,
                               pseudoinverse_l2_regularisation=0.1, diagnostics=False), 0.01
    h = train(model, algo, Adam(lr=lr), (data.x_train, data.y_train), EPOCHS, BATCH, rng,
              eval_data=(data.x_test, data.y_test), progress=False)
    return model, algo, h


ts_model, ts_algo, ts = run("target")
print(f"target space: test {ts.test_acc[-1]:.3f}, {np.mean(ts.epoch_time):.1f} s/epoch", flush=True)
ws_model, _, ws = run("weight")
print(f"weight space: test {ws.test_acc[-1]:.3f}, {np.mean(ws.epoch_time):.1f} s/epoch")
state = ts.state
print(f"targets: " + ", ".join(f"{k} {v.shape}" for k, v in state["targets"].items()))

# %% Summary table
rows = [{"method": name, "epochs": EPOCHS, "train acc": h.train_acc[-1], "test acc": h.test_acc[-1],
         "s/epoch": float(np.mean(h.epoch_time))}
        for name, h in (("target space", ts), ("weight space", ws))]
print()
print(plotting.format_table(rows))
residual = np.array(ts.info["residual"])                  # (epochs, TS layers)
print("realisation residual ||A W - T|| / ||T|| after the last epoch (conv, dense): "
      + ", ".join(f"{r:.2e}" for r in residual[-1]))

# %% Figures: curves, kernels, residuals
fig, axes = plotting.new_figure(1, 2, width=4.5, height=3.4)
for name, h in (("target space", ts), ("weight space", ws)):
    epochs = np.arange(1, len(h.test_acc) + 1)
    axes[0].plot(epochs, h.test_acc, marker="o", label=name)
    axes[1].plot(np.cumsum(h.epoch_time), h.test_acc, marker="o", label=name)
axes[0].set(xlabel="epoch", ylabel="test accuracy")
axes[1].set(xlabel="training seconds", ylabel="test accuracy")
axes[0].legend(fontsize=7)
plotting.save(fig, out_dir / "learning_curves.png")

fig, axes = plotting.new_figure(2, 8, width=1.0, height=1.1)
for row, (name, model) in enumerate((("TS", ts_model), ("WS", ws_model))):
    if row == 0:
        ts_algo.predict(model, state, data.x_test[:1])      # write the current realised weights
    kernels = model.layers[0].params["W"][:, 0]
    for j in range(8):
        ax = axes[row, j]
        ax.imshow(kernels[j], cmap="RdBu_r", vmin=-np.abs(kernels[j]).max(),
                  vmax=np.abs(kernels[j]).max())
        ax.set(xticks=[], yticks=[])
    axes[row, 0].set_ylabel(name)
plotting.save(fig, out_dir / "conv_kernels.png")

fig, ax = plotting.new_figure(width=4.5, height=3.2)
for j, name in enumerate(("conv", "dense")):
    ax.semilogy(np.arange(1, len(residual) + 1), residual[:, j], marker="o", label=name)
ax.set(xlabel="epoch", ylabel="mean ||A W - T|| / ||T||")
ax.legend(fontsize=7)
plotting.save(fig, out_dir / "residuals.png")
print(f"figures in {out_dir}/")

# %% Headline numbers
summary = {"epochs": EPOCHS, "n_bar": N_BAR, "ts_train_acc": ts.train_acc[-1],
           "ts_test_acc": ts.test_acc[-1], "ws_train_acc": ws.train_acc[-1],
           "ws_test_acc": ws.test_acc[-1], "ts_seconds_per_epoch": float(np.mean(ts.epoch_time)),
           "ws_seconds_per_epoch": float(np.mean(ws.epoch_time)),
           "seconds": round(time.perf_counter() - t_start, 1)}
print("SUMMARY " + json.dumps(summary))
