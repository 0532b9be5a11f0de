"""60 - Cross-checking a PyTorch implementation against refnets: feedback alignment and DTP.

What you will see
-----------------
1. A PyTorch feedback-alignment network (a custom ``torch.autograd.Function``
   whose backward sends the error through a fixed random B instead of W^T),
   loaded with the weights of a refnets model through ``refnets.interop``, and
   the *same* B given to refnets (``init_state(..., B={"2.B": ...})``).
2. One step compared key by key with ``FeedbackAlignment.trace``: the loss, the
   output error ``e``, the error ``k.delta`` delivered to every Dense layer and
   every gradient. Float64 on both sides, so they agree to ~1e-16.
3. Three SGD steps in PyTorch written to a conformance-vector file in refnets'
   schema and checked by ``refnets vectors check``: exit code 0, every key's
   relative error printed. A deliberately wrong PyTorch variant (the backward
   through W^T, i.e. backprop) fails, and the check names the keys.
4. DTP's targets and local gradients in PyTorch: the first target, the
   difference-corrected targets through the learned inverses g_i and the
   layer-local losses with their autograd gradients, compared with
   ``DifferenceTargetPropagation.trace`` (``k.h``, ``k.h_hat``, ``k.L_local``,
   ``k.dL_local_dh`` and the update directions).
5. A bar chart of every compared key's relative error.

Without PyTorch the script says so in one line and exits 0.

Papers
------
T. Lillicrap, D. Cownden, D. Tweed, C. Akerman (2016), "Random synaptic feedback
weights support error backpropagation for deep learning", Nat. Commun. 7:13276.
D.-H. Lee, S. Zhang, A. Fischer, Y. Bengio (2015), "Difference target
propagation", ECML-PKDD.

Equations (row layout, batch of N rows, z_k = h_{k-1} W_k^T + b_k, h_k = tanh(z_k))
------------------------------------------------------------------------------
FA       delta_L = dL/dz_L = (softmax(z_L) - onehot(y)) / N
         delta_{k-1} = (delta_k B_k) * tanh'(z_{k-1})         B_k fixed, shape of W_k
         dW_k = delta_k^T h_{k-1},  db_k = sum_n delta_k      (as backprop)
DTP      h_hat_{L-1} = h_{L-1} - eta N dL/dh_{L-1}             first target (DTP-3)
         h_hat_{i-1} = h_{i-1} + g_i(h_hat_i) - g_i(h_i)         difference correction (DTP-4)
         L_i = (1/N) sum_n ||h_i - h_hat_i||^2,  dW_i = dL_i/dW_i  (DTP-5), top layer by dL/dW_L
         g_i(h) = tanh(h V_i^T + c_i), the inverses after this step's feedback training
relative error = max|a - b| / max(max|a|, max|b|)

Run
---
    pip install torch                                      # the CPU build is enough
    python tutorials/60_crosscheck_pytorch.py              # a few seconds
    python tutorials/60_crosscheck_pytorch.py --quick      # the run the tests use
    python tutorials/60_crosscheck_pytorch.py --out-dir /tmp/t60 --seed 1

Measured (torch 2.13.0 CPU, OPENBLAS_NUM_THREADS=1, seed 0)
-----------------------------------------------------------
Full run ([2, 32, 32, 2], N = 64, 1.4 s): FA keys within 1.1e-15 of refnets; DTP
targets within 6e-16, local-loss gradients within 1.2e-12 (a difference of nearly
equal numbers, see the printed note); PyTorch's three FA steps pass ``refnets vectors
check`` (51 keys at tolerance 1e-12); the wrong backward fails 44 of them, and in
step 0 exactly the keys below the first layer it reaches. --quick ([2, 8, 8, 2],
N = 16): FA 1.0e-14, DTP 1.2e-12, the same 51 / 44 keys.
"""

# pytest: needs torch

# %% Imports and arguments
import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--seed", type=int, default=0, help="seed of the weights, B and the data")
parser.add_argument("--quick", action="store_true", help="smaller network (used by the test suite)")
parser.add_argument("--out-dir", default="tutorials/out/60", help="where the figure goes")
args = parser.parse_args()

try:
    import torch
except ImportError:
    if os.environ.get("REFNETS_REQUIRE_TORCH", "") not in ("", "0"):
        raise
    print("tutorial 60 needs PyTorch (pip install torch); skipped without it.")
    sys.exit(0)

from refnets import interop, plotting, vectors  # noqa: E402
from refnets.algorithms.decorrelation import FeedbackAlignment  # noqa: E402
from refnets.algorithms.target_propagation import DifferenceTargetPropagation  # noqa: E402
from refnets.datasets import two_spirals  # noqa: E402
from refnets.gradcheck import rel_error  # noqa: E402
from refnets.models import mlp  # noqa: E402

torch.set_default_dtype(torch.float64)
out_dir = Path(args.out_dir)
out_dir.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(args.seed)
t_start = time.perf_counter()
HIDDEN = [8, 8] if args.quick else [32, 32]
N = 16 if args.quick else 64
data = two_spirals()
sizes = [2, *HIDDEN, 2]
errors = {}        # "part: key" -> relative error, for the figure and the summary


def batch(step):
    """Minibatch ``step`` of the spirals training set (a fixed slice: nothing random)."""
    idx = (np.arange(N) * 7 + step * N) % len(data.y_train)
    return data.x_train[idx], data.y_train[idx]


def report(part, key, ours, theirs):
    """Print and keep the relative error of one key (refnets vs PyTorch)."""
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    err = rel_error(np.asarray(ours, dtype=np.float64), theirs)
    errors[f"{part}: {key}"] = err
    print(f"  {key:16s} {err:9.2e}")
    return err


# %% PyTorch feedback alignment: a custom autograd function
class FALinearFunction(torch.autograd.Function):
    """z = x W^T + b forward; backward sends dz through B (not W) to x."""

    @staticmethod
    def forward(ctx, x, W, b, B):
        ctx.save_for_backward(x, B)
        return x @ W.T + b

    @staticmethod
    def backward(ctx, dz):
        x, B = ctx.saved_tensors
        return dz @ B, dz.T @ x, dz.sum(0), None       # dx through B; dW, db as backprop


class FALinear(torch.nn.Linear):
    """nn.Linear whose input gradient goes through a fixed B (None: ordinary backprop)."""

    B = None

    def forward(self, x):
        if self.B is None:
            return super().forward(x)
        return FALinearFunction.apply(x, self.weight, self.bias, self.B)


def torch_mlp(sizes):
    """Linear, Tanh, ..., Linear: the module names 0, 1, 2, ... match refnets' layer indices."""
    layers = []
    for j, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(FALinear(n_in, n_out))
        if j < len(sizes) - 2:
            layers.append(torch.nn.Tanh())
    return torch.nn.Sequential(*layers)


def torch_fa_step(net, x, y):
    """Forward, loss, FA backward; returns loss, dL/dz of every Linear, the output error."""
    zs, h = {}, torch.from_numpy(x)
    for k, module in enumerate(net):
        h = module(h)
        if isinstance(module, torch.nn.Linear):
            h.retain_grad()                  # keep dL/dz_k: FA's delta_k
            zs[k] = h
    loss = torch.nn.functional.cross_entropy(h, torch.from_numpy(y))
    net.zero_grad()
    loss.backward()
    return loss, {k: z.grad for k, z in zs.items()}, zs[max(zs)].grad


# %% The same weights and the same B in both
model = mlp(sizes, "tanh", rng)
for key, value in model.params().items():        # non-zero biases, so a bias bug would show
    if key.endswith(".b"):
        value[...] = 0.1 * rng.standard_normal(value.shape)
net = torch_mlp(sizes)
net.load_state_dict({k: torch.from_numpy(v) for k, v in interop.to_state_dict(model).items()})
dense = [k for k, layer in enumerate(model.layers) if "W" in layer.params]
gen = torch.Generator().manual_seed(args.seed)
B = {k: torch.rand(net[k].weight.shape, generator=gen) - 0.5 for k in dense[1:]}  # PyTorch draws B
for k, Bk in B.items():
    net[k].B = Bk
fa = FeedbackAlignment(track_backprop=False)
state = fa.init_state(model, None, B={f"{k}.B": Bk.numpy() for k, Bk in B.items()})  # refnets is given it

# %% One step, key by key against trace
x, y = batch(0)
tr = fa.trace(model, state, x, y)                 # model and state are not changed
loss_t, deltas, e_t = torch_fa_step(net, x, y)
print(f"FA, one step, {sizes} tanh, N = {N}: relative error refnets vs PyTorch")
report("FA", "loss", tr["loss"], loss_t.item())
report("FA", "e", tr["values"]["e"], e_t)
for k in dense:
    report("FA", f"{k}.delta", tr["values"][f"{k}.delta"], deltas[k])
for k in dense:
    report("FA", f"{k}.W", tr["grads"][f"{k}.W"], net[k].weight.grad)
    report("FA", f"{k}.b", tr["grads"][f"{k}.b"], net[k].bias.grad)
fa_max = max(v for k, v in errors.items() if k.startswith("FA"))


# %% Three SGD steps in PyTorch, written as conformance vectors, checked by refnets
def torch_vectors(path, use_B=True, lr=0.1):
    """Run three SGD steps in PyTorch (from the refnets weights above) and write them in
    refnets' vector schema: only PyTorch's numbers go into the file."""
    tnet = torch_mlp(sizes)
    tnet.load_state_dict(net.state_dict())
    for k, Bk in B.items():
        tnet[k].B = Bk if use_B else None
    params0, _ = interop.from_state_dict(model, tnet.state_dict())
    arrays = {f"param/{k}": v for k, v in params0.items()}
    arrays.update({f"init/B/{k}.B": Bk.numpy() for k, Bk in B.items()})
    for s in range(3):
        xs, ys = batch(s)
        loss, dz, e = torch_fa_step(tnet, xs, ys)
        arrays.update({f"step{s}/x": xs, f"step{s}/y": ys, f"step{s}/loss": np.array(loss.item()),
                       f"step{s}/trace/e": e.numpy()})
        arrays.update({f"step{s}/trace/{k}.delta": d.numpy() for k, d in dz.items()})
        for k in dense:
            arrays[f"step{s}/grad/{k}.W"] = tnet[k].weight.grad.numpy().copy()
            arrays[f"step{s}/grad/{k}.b"] = tnet[k].bias.grad.numpy().copy()
        with torch.no_grad():
            for p in tnet.parameters():
                p -= lr * p.grad
        after, _ = interop.from_state_dict(model, tnet.state_dict())
        arrays.update({f"step{s}/after/param/{k}": v for k, v in after.items()})

    def role(name):
        parts = name.split("/")
        if parts[0] in ("param", "init"):
            return {"param": "param", "init": "given"}[parts[0]]
        return {"x": "input", "y": "input", "loss": "trace"}.get(parts[1], parts[1])

    keys = {f"fa/{k}": {"role": role(k), "meaning": k, "shape": list(np.shape(v)),
                        "dtype": "float64" if np.asarray(v).dtype.kind == "f" else "int64",
                        "layout": "", "tol": 1e-12} for k, v in arrays.items()}
    manifest = {"schema": vectors.SCHEMA, "schema_version": vectors.SCHEMA_VERSION,
                "producer": f"PyTorch {torch.__version__} (tutorial 60)", "method": "fa",
                "relative_error": vectors.RELATIVE_ERROR, "keys": keys,
                "cases": {"fa": {"model": vectors.model_config(model),
                                 "algorithm": {"class": "decorrelation:FeedbackAlignment",
                                               "kwargs": {"track_backprop": False}},
                                 "loss": "softmax_cross_entropy",
                                 "optimizer": {"name": "sgd", "lr": lr}, "steps": 3}}}
    np.savez(path, manifest=np.array(json.dumps(manifest)),
             **{f"fa/{k}": np.asarray(v) for k, v in arrays.items()})


with tempfile.TemporaryDirectory() as tmp:
    good, wrong = Path(tmp) / "torch_fa.npz", Path(tmp) / "torch_wrong.npz"
    torch_vectors(good)
    print(f"\n$ refnets vectors check {good.name} --quiet     (PyTorch's three FA steps)")
    failed_good = vectors.check_vectors(good, verbose=False)
    manifest = json.loads(str(np.load(good)["manifest"][()]))
    vec_keys = [k for k, m in manifest["keys"].items() if m["role"] in vectors.OUTPUT_ROLES]
    torch_vectors(wrong, use_B=False)
    print(f"\n$ refnets vectors check {wrong.name} --quiet   (PyTorch sends the error through W^T)")
    failed_wrong = vectors.check_vectors(wrong, stream=io.StringIO(), verbose=False)
    step0 = [k for k in vec_keys if k.startswith("fa/step0/") and "/after/" not in k]
    print(f"{len(failed_wrong)} of {len(vec_keys)} output keys outside tolerance; in step 0")
    print(f"  agree: {', '.join(k[9:] for k in step0 if k not in failed_wrong)}")
    print(f"  fail:  {', '.join(k[9:] for k in step0 if k in failed_wrong)}")
    print("(the error differs from the first layer it reaches through W^T instead of B)")

# %% DTP in PyTorch: targets through the learned inverses, local losses, local gradients
def torch_dtp(x, W, V, c, y, eta):
    """Targets and local gradients of one DTP step (Lee et al.'s penultimate first target).

    ``W`` {k: (W_k, b_k)} forward weights, ``V``, ``c`` {k: ...} the inverses g_k (k the
    Dense layer each inverts). PyTorch recomputes every activation itself. Returns
    activations, targets, local losses, dL_local/dh and the update directions.
    """
    ks = sorted(W)
    x = torch.from_numpy(x)
    hs, h = {}, x
    params = {k: (torch.tensor(W[k][0], requires_grad=True), torch.tensor(W[k][1], requires_grad=True))
              for k in ks}
    for j, k in enumerate(ks):
        z = h @ params[k][0].T + params[k][1]
        h = z if j == len(ks) - 1 else torch.tanh(z)
        hs[k] = h
    loss = torch.nn.functional.cross_entropy(hs[ks[-1]], torch.from_numpy(y))
    pen = hs[ks[-2]]
    dpen, dW_top, db_top = torch.autograd.grad(loss, (pen, *params[ks[-1]]))
    targets = {ks[-2]: (pen - eta * len(y) * dpen).detach()}           # (DTP-3), summed loss

    def g(k, hk):
        return torch.tanh(hk @ torch.from_numpy(V[k]).T + torch.from_numpy(c[k]))

    for j in range(len(ks) - 2, 0, -1):                                  # (DTP-4)
        k, k_below = ks[j], ks[j - 1]
        targets[k_below] = (hs[k_below] + g(k, targets[k]) - g(k, hs[k])).detach()
    grads = {f"{ks[-1]}.W": dW_top, f"{ks[-1]}.b": db_top}
    local, dlocal = {}, {}
    for k in ks[:-1]:                                                    # (DTP-5)
        hk = hs[k]
        L_k = ((hk - targets[k]) ** 2).sum(1).mean()
        dh, dW, db = torch.autograd.grad(L_k, (hk, *params[k]), retain_graph=True)
        local[k], dlocal[k] = L_k, dh
        grads[f"{k}.W"], grads[f"{k}.b"] = dW, db
    return hs, targets, local, dlocal, grads


dtp_model = mlp(sizes, "tanh", rng, init="orthogonal")
dtp = DifferenceTargetPropagation(       # the conventions the PyTorch code below implements
    target_step=0.01, sigma=0.2, first_target="penultimate_grad", target_step_reduction="sum",
    feedback_activation="tanh", feedback_bias=True, local_loss_scale="sum", schedule="batch",
    feedback_optimizer="sgd", feedback_lr=0.01)
dtp_state = dtp.init_state(dtp_model, rng)
x, y = batch(1)
dtr = dtp.trace(dtp_model, dtp_state, x, y, rng)          # draws the inverse-training noise
fb = dtr["after"]["feedback"]                               # g_i after this step's training
ks = [k for k, layer in enumerate(dtp_model.layers) if "W" in layer.params]
W = {k: (dtp_model.layers[k].params["W"], dtp_model.layers[k].params["b"]) for k in ks}
V = {k: fb[f"{k}.V"] for k in ks[1:-1]}
c = {k: fb[f"{k}.c"] if f"{k}.c" in fb else np.zeros(fb[f"{k}.V"].shape[0]) for k in ks[1:-1]}
hs, targets, local, dlocal, dgrads = torch_dtp(x, W, V, c, y, dtp.target_step)
print(f"\nDTP, one step, {sizes} tanh, N = {N}: relative error refnets vs PyTorch")
values = dtr["values"]
for k in ks:
    report("DTP", f"{k}.h", values[f"{k}.h"], hs[k])
for k in ks[:-1]:
    report("DTP", f"{k}.h_hat", values[f"{k}.h_hat"], targets[k])
    report("DTP", f"{k}.L_local", values[f"{k}.L_local"], local[k].item())
    report("DTP", f"{k}.dL_local_dh", values[f"{k}.dL_local_dh"], dlocal[k])
for key in sorted(dgrads):
    report("DTP", key, dtr["grads"][key], dgrads[key])
dtp_max = max(v for k, v in errors.items() if k.startswith("DTP"))
print("(dL_local/dh = 2 (h - h_hat) / N is a difference of nearly equal numbers, h_hat - h being\n"
      " of order eta: rounding in h is magnified by |h| / |h - h_hat|, so those keys and the\n"
      " gradients computed from them sit above 1e-16 without any disagreement in the maths)")

# %% Figure: every compared key's relative error
fig, ax = plotting.new_figure(1, 1, width=9, height=4)
names = list(errors)
vals = [max(errors[n], 1e-18) for n in names]
ax.bar(range(len(names)), vals, color=["C0" if n.startswith("FA") else "C1" for n in names])
ax.set_yscale("log")
ax.set_ylim(1e-18, 1e-6)
ax.axhline(vectors.TOL, color="k", lw=0.8, ls="--", label=f"vectors' default tol {vectors.TOL:g}")
ax.set_xticks(range(len(names)))
ax.set_xticklabels(names, rotation=90, fontsize=6)
ax.set_ylabel("relative error (0 drawn at 1e-18)")
ax.set_title("refnets trace vs PyTorch, float64 (FA blue, DTP orange)")
ax.legend(fontsize=8)
path = plotting.save(fig, out_dir / "crosscheck_errors.png")

# %% Summary
print(f"\n{'part':28s} {'max rel error':>14s}")
print(f"{'FA trace vs PyTorch':28s} {fa_max:14.2e}")
print(f"{'DTP trace vs PyTorch':28s} {dtp_max:14.2e}")
print(f"{'vectors check (PyTorch FA)':28s} {'pass' if not failed_good else 'FAIL':>14s}")
print(f"{'vectors check (wrong FA)':28s} {len(failed_wrong):>9d} keys named")
print(f"figure: {path}; {time.perf_counter() - t_start:.1f} s")
summary = {"fa_max_rel_error": fa_max, "dtp_max_rel_error": dtp_max,
           "vectors_torch_fa_failed": len(failed_good), "vectors_wrong_fa_failed": len(failed_wrong),
           "vector_keys_checked": len(vec_keys)}
print("SUMMARY " + json.dumps(summary))
if failed_good or not failed_wrong or fa_max > 1e-12 or dtp_max > 1e-10:
    sys.exit(1)
