"""11 - Target Space on a recurrent net: recalling a bit from 40 steps back.

What you will see
-----------------
1. The bit-recall task of the paper's RNN experiments: a stream of random bits,
   one per step; from step d on, the net must output the bit it saw d steps
   earlier (delay d = 40 in the full run). An Elman tanh net with d + 3 hidden
   units and a per-step read-out, the authors' sizes.
2. The same net trained in **target space** (targets for the hidden sums of
   every realisation sequence and step; one ridge solve over all of them,
   "OCU in time"; read-out solved from the realised hidden states, the
   authors' hybrid mode) and in **weight space** (backprop through time,
   the authors' baseline initialisation and learning rate).
3. Test accuracy against iterations and against seconds (target-space steps
   cost more), and one test sequence with the input bits, the wanted outputs
   and both nets' outputs.

Paper
-----
M. Fairbank, S. Samothrakis, L. Citi (2022), "Deep Learning in Target Space",
JMLR 23(8); arXiv 2006.01578 (the RNN section: recall / XOR / adder bit tasks,
"LSTM-level performance without gates"). Configuration from the authors' TF1
``rnn_bitsequences_target_space_tf1.py``: hidden width d + 3, length d + 50,
``--pic 0.1``, ``--scu`` (hybrid), TS Adam 0.01, WS Adam 0.001.

Equations (time-major; realisation sequences X_bar, n_bar of them, T_bar steps)
------------------------------------------------------------------------------
recurrent solve   A_h = stack_t [1, x_bar_t, tanh(T_h[t-1])]   (T_h[-1] -> h_0 = 0)
                  W_h = (A_h^T A_h + lam I)^-1 A_h^T stack_t T_h[t]        (TS-11; paper Eq. 6-7)
hybrid read-out   h_bar = RNN(X_bar; W_h);  W_o = ridge_solve([1, h_bar_t], T_o[t])
loss              masked CE over the steps t >= d of the minibatch, with W_h, W_o
gradient          dL/dT_h, dL/dT_o through both solves and BPTT (TS-11b in
                  refnets/algorithms/target_space/README.md)

Run
---
    python tutorials/11_target_space_rnn.py              # full run, d = 40: ~4-6 minutes
    python tutorials/11_target_space_rnn.py --quick      # d = 5, a few seconds (used by the tests)
    python tutorials/11_target_space_rnn.py --delay 20 --its 400

Measured (2-core CPU, OPENBLAS_NUM_THREADS=1, machine shared with other jobs)
-----------------------------------------------------------------------------
Full run (seed 0: delay 40, length 90, 43 hidden units, 400 training and 400
test sequences, minibatch = realisation batch = 100 sequences), 4.3 minutes:

=====================  ====  ======  =========  ========  ===============
method                 its   s/it    train acc  test acc  its to 95% test
=====================  ====  ======  =========  ========  ===============
target space (hybrid)   800  0.19    1.000      1.000     380
weight space (BPTT)    2400  0.040   0.515      0.496     never
=====================  ====  ======  =========  ========  ===============

(target space test accuracy 0.99985.) Weight space stays at chance for all
2400 steps (97 s of training; target space used 150 s). The paper's RNN experiments go to longer delays and
compare with LSTM baselines; no number from them is quoted here.
One seed only: a feasibility demonstration, not a benchmark.
``--quick`` (delay 5, 60 TS / 180 WS its): TS test 0.999, WS 0.881, ~3 s.
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
from refnets.datasets import bit_sequences
from refnets.losses import masked_softmax_cross_entropy
from refnets.models import rnn_classifier
from refnets.optim import Adam
from refnets.training import masked_accuracy

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--seed", type=int, default=0, help="seed of data, init and minibatches")
parser.add_argument("--quick", action="store_true", help="short run (used by the test suite)")
parser.add_argument("--delay", type=int, default=None, help="recall delay d (default 40; 5 quick)")
parser.add_argument("--its", type=int, default=None,
                    help="target-space iterations (default 800; 60 quick); weight space gets 3x")
parser.add_argument("--out-dir", default="tutorials/out/11", help="where the figures go")
args = parser.parse_args()
out_dir = Path(args.out_dir)
out_dir.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(args.seed)
t_start = time.perf_counter()

DELAY = args.delay or (5 if args.quick else 40)
LENGTH = DELAY + (15 if args.quick else 50)        # authors: d + 50
HIDDEN = DELAY + 3                                 # authors: d + 3
N_TRAIN, N_TEST = (100, 100) if args.quick else (400, 400)
BATCH = N_BAR = 50 if args.quick else 100          # minibatch and realisation batch
TS_ITS = args.its or (60 if args.quick else 800)
WS_ITS = 3 * TS_ITS                                # roughly equal wall time
N_EVAL = 10 if args.quick else 40                  # evaluation points per run

# %% Data: random bit streams, label = the bit d steps back (-1 before step d)
x_train, y_train = bit_sequences("recall", DELAY, LENGTH, N_TRAIN, rng)
x_test, y_test = bit_sequences("recall", DELAY, LENGTH, N_TEST, rng)
print(f"delay {DELAY}, length {LENGTH}, hidden {HIDDEN}; train x {x_train.shape} (time-major), "
      f"labelled steps {int((y_train[:, 0] >= 0).sum())} of {LENGTH}")


# %% One run: random minibatches of sequences, masked CE, accuracy on the test set
def run(space, its, lr):
    run_rng = np.random.default_rng(args.seed + 1)
    model = rnn_classifier(1, HIDDEN, 2, run_rng, readout="all")
    if space == "weight":
        tf1_weight_init(model, run_rng, "glorot6")     # the authors' WS baseline init
        algo = Backprop(loss=masked_softmax_cross_entropy)
    else:
        algo = TargetSpace(x_train, realisation_batch_size=N_BAR,
                           pseudoinverse_l2_regularisation=0.1, realisation="scu",
                           loss=masked_softmax_cross_entropy, diagnostics=False)
    state = algo.init_state(model, run_rng)
    opt = Adam(lr=lr)
    curve, seconds = [], 0.0
    every = max(1, its // N_EVAL)
    for it in range(1, its + 1):
        idx = run_rng.choice(N_TRAIN, BATCH, replace=False)
        t0 = time.perf_counter()
        res = algo.step(model, state, x_train[:, idx], y_train[:, idx], run_rng)
        opt.update(algo.variables(model, state), res.grads)
        seconds += time.perf_counter() - t0
        if it % every == 0 or it == its:
            acc = masked_accuracy(algo.predict(model, state, x_test), y_test)
            curve.append((it, seconds, res.loss, acc))
    out = algo.predict(model, state, x_test)
    return {"curve": np.array(curve), "test": curve[-1][3], "seconds": seconds, "out": out,
            "train": masked_accuracy(algo.predict(model, state, x_train), y_train)}


ts = run("target", TS_ITS, 0.01)
print(f"target space: test accuracy {ts['test']:.3f} after {TS_ITS} its ({ts['seconds']:.0f} s)",
      flush=True)
ws = run("weight", WS_ITS, 0.001)
print(f"weight space: test accuracy {ws['test']:.3f} after {WS_ITS} its ({ws['seconds']:.0f} s)")

# %% Summary table
rows = []
for name, r, its in (("target space (hybrid)", ts, TS_ITS), ("weight space (BPTT)", ws, WS_ITS)):
    c = r["curve"]
    reached = c[c[:, 3] >= 0.95]
    rows.append({"method": name, "its": its, "s/it": r["seconds"] / its, "train acc": r["train"],
                 "test acc": r["test"],
                 "its to 95% test": int(reached[0, 0]) if len(reached) else None})
print()
print(plotting.format_table(rows))

# %% Figures: learning curves, and one test sequence
fig, axes = plotting.new_figure(1, 2, width=4.5, height=3.4)
for name, r in (("target space", ts), ("weight space", ws)):
    axes[0].plot(r["curve"][:, 0], r["curve"][:, 3], label=name)
    axes[1].plot(r["curve"][:, 1], r["curve"][:, 3], label=name)
for ax, xl in zip(axes, ("Adam step", "seconds")):
    ax.axhline(0.5, color="grey", lw=0.5, ls=":")
    ax.set(xlabel=xl, ylabel=f"test accuracy (t >= {DELAY})", ylim=(0.4, 1.02))
axes[0].legend(fontsize=7)
fig.suptitle(f"bit recall, delay {DELAY}")
plotting.save(fig, out_dir / "learning_curves.png")

fig, ax = plotting.new_figure(width=9, height=3.0)
t = np.arange(LENGTH)
ax.step(t, x_test[:, 0, 0] + 3.0, where="mid", color="k", lw=0.8, label="input bit (+3)")
ax.step(t, np.where(y_test[:, 0] >= 0, y_test[:, 0], np.nan) + 1.5, where="mid", color="C2",
        lw=1.2, label="wanted output (+1.5)")
for name, r, off, c in (("target space", ts, 0.0, "C0"), ("weight space", ws, -1.5, "C1")):
    pred = np.argmax(r["out"][:, 0], axis=-1).astype(float)
    pred[y_test[:, 0] < 0] = np.nan
    ax.step(t, pred + off, where="mid", color=c, lw=1.0, label=f"{name} output ({off:+g})")
ax.axvline(DELAY - 0.5, color="grey", ls=":", lw=0.8)
ax.set(xlabel="time step", yticks=[])
ax.legend(fontsize=6, loc="upper right", ncol=2)
plotting.save(fig, out_dir / "example_sequence.png")
print(f"figures in {out_dir}/")

# %% Headline numbers
summary = {"delay": DELAY, "ts_iterations": TS_ITS, "ws_iterations": WS_ITS,
           "ts_test_acc": float(ts["test"]), "ws_test_acc": float(ws["test"]),
           "ts_train_acc": float(ts["train"]), "ws_train_acc": float(ws["train"]),
           "ts_seconds_per_it": ts["seconds"] / TS_ITS, "ws_seconds_per_it": ws["seconds"] / WS_ITS,
           "seconds": round(time.perf_counter() - t_start, 1)}
print("SUMMARY " + json.dumps(summary))
