"""Time one backprop training step of refnets against PyTorch (CPU, float64).

One step = forward, softmax cross-entropy, backward, plain SGD update, on
fixed sizes:

* ``mlp``:  784-256-256-10 tanh MLP, batch 128;
* ``conv``: 1x28x28 -> Conv 8ch 3x3 'same' -> ReLU -> MaxPool 2 -> Conv 16ch 3x3
  'same' -> ReLU -> MaxPool 2 -> Flatten -> Dense 10, batch 64;
* ``rnn``:  Elman tanh RNN, T=50, N=32, D=16, H=64, last state -> Dense 10.

Both libraries run in float64 with one thread (``OPENBLAS_NUM_THREADS=1``,
``torch.set_num_threads(1)``) on the same weights and data; the script first
checks that both compute the same loss and gradients. Repetitions alternate
between refnets and torch and the medians are reported, so background load
affects both sides alike. Targets (refnets / torch): mlp <= 1.3, conv <= 3,
rnn <= 2.

Run::

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_backprop.py [--reps 30] [--only conv]
        [--profile]

``--profile`` also prints where refnets spends its time, layer by layer.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from refnets.algorithms.base import backprop_gradients  # noqa: E402
from refnets.gradcheck import rel_error  # noqa: E402
from refnets.models import convnet, mlp, rnn_classifier  # noqa: E402
from refnets.optim import SGD  # noqa: E402

try:  # torch is optional
    import torch
    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - depends on the machine
    torch = None

TARGETS = {"mlp": 1.3, "conv": 3.0, "rnn": 2.0}
LR = 0.01


# ----------------------------------------------------------------------------
# the three cases: refnets model, data, and (optionally) the same torch model
# ----------------------------------------------------------------------------
def make_case(name, rng):
    """Return (model, x, y, description)."""
    if name == "mlp":
        model = mlp([784, 256, 256, 10], "tanh", rng)
        x, y = rng.standard_normal((128, 784)), rng.integers(0, 10, 128)
        desc = "MLP 784-256-256-10 tanh, batch 128"
    elif name == "conv":
        model = convnet((1, 28, 28), [8, 16], 3, 10, rng)
        x, y = rng.standard_normal((64, 1, 28, 28)), rng.integers(0, 10, 64)
        desc = "conv 1x28x28 -> 8c3 -> pool -> 16c3 -> pool -> dense 10, batch 64"
    elif name == "rnn":
        model = rnn_classifier(16, 64, 10, rng)
        x, y = rng.standard_normal((50, 32, 16)), rng.integers(0, 10, 32)
        desc = "RNN T=50 N=32 D=16 H=64 -> dense 10"
    else:
        raise ValueError(f"unknown case {name!r}")
    return model, x, y, desc


def torch_model(name, model):
    """The same network in torch, float64, initialised with refnets' weights.

    Returns the torch module and a dict mapping each refnets parameter key
    (``"k.name"``) to the torch parameter holding the same numbers.
    """
    nn = torch.nn
    if name == "mlp":
        net = nn.Sequential(nn.Linear(784, 256), nn.Tanh(), nn.Linear(256, 256), nn.Tanh(),
                            nn.Linear(256, 10))
        linear = {0: net[0], 2: net[2], 4: net[4]}
    elif name == "conv":
        net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Flatten(), nn.Linear(784, 10))
        linear = {0: net[0], 3: net[3], 7: net[7]}
    else:
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn = nn.RNN(16, 64, nonlinearity="tanh")
                self.out = nn.Linear(64, 10)

            def forward(self, x):
                return self.out(self.rnn(x)[0][-1])

        net = Net()
        linear = {2: net.out}
    net = net.double()
    mapping = {}
    for k, layer in linear.items():
        mapping[f"{k}.W"], mapping[f"{k}.b"] = layer.weight, layer.bias
    if name == "rnn":  # torch's b_ih + b_hh is refnets' b: put b in b_ih, keep b_hh = 0
        mapping.update({"0.W_x": net.rnn.weight_ih_l0, "0.W_h": net.rnn.weight_hh_l0,
                        "0.b": net.rnn.bias_ih_l0})
        with torch.no_grad():
            net.rnn.bias_hh_l0.zero_()
    with torch.no_grad():
        for key, value in model.params().items():
            mapping[key].copy_(torch.from_numpy(value))
    return net, mapping


# ----------------------------------------------------------------------------
# one training step on each side
# ----------------------------------------------------------------------------
def refnets_step(model, opt, x, y):
    loss, grads, _ = backprop_gradients(model, x, y)
    opt.update(model.params(), grads)
    return loss


def torch_step(net, opt, x, y):
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(net(x), y)
    loss.backward()
    opt.step()
    return loss


def check_same(model, net, mapping, x, y):
    """Largest relative difference between refnets' and torch's loss and gradients."""
    loss, grads, _ = backprop_gradients(model, x, y)
    net.zero_grad(set_to_none=True)
    tloss = torch.nn.functional.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y))
    tloss.backward()
    errs = [rel_error(g, mapping[key].grad.numpy()) for key, g in grads.items()]
    return max([abs(loss - float(tloss.detach())) / abs(loss)] + errs)


def time_case(name, reps, rng):
    model, x, y, desc = make_case(name, rng)
    opt = SGD(lr=LR)
    times = {"refnets": []}
    net = None
    if torch is not None:
        net, mapping = torch_model(name, model)
        err = check_same(model, net, mapping, x, y)
        if not err < 1e-10:
            raise RuntimeError(f"{name}: refnets and torch disagree (relative error {err:.2e} "
                               f"in the loss or a gradient); timing them would be meaningless")
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        topt = torch.optim.SGD(net.parameters(), lr=LR)
        times["torch"] = []
    for _ in range(3):  # warm-up
        refnets_step(model, opt, x, y)
        if net is not None:
            torch_step(net, topt, tx, ty)
    for _ in range(reps):
        t0 = time.perf_counter()
        refnets_step(model, opt, x, y)
        times["refnets"].append(time.perf_counter() - t0)
        if net is not None:
            t0 = time.perf_counter()
            torch_step(net, topt, tx, ty)
            times["torch"].append(time.perf_counter() - t0)
    return desc, {k: float(np.median(v)) for k, v in times.items()}, model, x, y


def profile(model, x, y, reps=20):
    """Median forward and backward time of every layer of a refnets model."""
    from refnets.losses import softmax_cross_entropy
    fw = np.zeros((reps, len(model.layers)))
    bw = np.zeros_like(fw)
    for r in range(reps):
        h, caches = x, []
        for k, layer in enumerate(model.layers):
            t0 = time.perf_counter()
            h, c = layer.forward(h)
            fw[r, k] = time.perf_counter() - t0
            caches.append(c)
        _, d = softmax_cross_entropy(h, y)
        for k in range(len(model.layers) - 1, -1, -1):
            t0 = time.perf_counter()
            d, _ = model.layers[k].backward(d, caches[k])
            bw[r, k] = time.perf_counter() - t0
    fw, bw = np.median(fw, axis=0), np.median(bw, axis=0)
    for k, layer in enumerate(model.layers):
        print(f"    {k:2d} {layer!r:36s} forward {1e3 * fw[k]:7.3f} ms  "
              f"backward {1e3 * bw[k]:7.3f} ms")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=30, help="timed repetitions per side")
    parser.add_argument("--only", choices=sorted(TARGETS), action="append",
                        help="run only this case (repeatable)")
    parser.add_argument("--profile", action="store_true", help="per-layer refnets times")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    print(f"numpy {np.__version__}, torch {torch.__version__ if torch else 'not installed'}, "
          f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}, "
          f"torch threads {torch.get_num_threads() if torch else '-'}, float64, "
          f"median of {args.reps} interleaved steps")
    print(f"{'case':5s} {'refnets ms':>11s} {'torch ms':>9s} {'ratio':>6s} {'target':>7s}  sizes")
    for name in args.only or ["mlp", "conv", "rnn"]:
        desc, t, model, x, y = time_case(name, args.reps, rng)
        ours = 1e3 * t["refnets"]
        if "torch" in t:
            theirs, ratio = 1e3 * t["torch"], t["refnets"] / t["torch"]
            verdict = "ok" if ratio <= TARGETS[name] else "MISSED"
            print(f"{name:5s} {ours:11.3f} {theirs:9.3f} {ratio:6.2f} {TARGETS[name]:6.1f}x  "
                  f"{desc}  [{verdict}]")
        else:
            print(f"{name:5s} {ours:11.3f} {'-':>9s} {'-':>6s} {TARGETS[name]:6.1f}x  {desc}")
        if args.profile:
            profile(model, x, y)


if __name__ == "__main__":
    main()
