"""Target Space for dense layers, and the shortcut MLP of the authors' spirals net.

Used by :class:`refnets.algorithms.target_space.algorithm.TargetSpace` for every
:class:`~refnets.layers.dense.Dense` layer (MLP layers, dense layers after a
Flatten, per-step RNN read-outs).

Symbol table
------------
==================  ==============  ==========================================
paper symbol        code name       shape
==================  ==============  ==========================================
X_bar_{k-1}         ``x``           (n_bar, n_in), or (..., n_in): one row per
                                    leading position (e.g. (T_bar, n_bar, H))
A_bar = [1, X_bar]  ``A``           (rows, 1 + n_in)
T_k                 ``T``           (..., n_out)
W_full              ``W_full``      (1 + n_in, n_out), bias row 0
Dense weights       ``params``      'W' = W_full[1:].T (n_out, n_in), 'b' = W_full[0]
S_bar_k             ``S``           A_bar W_full, like T
==================  ==============  ==========================================

Realise (the paper's Eq. 6-7): W_full = ridge_solve(A_bar, T), S_bar = A_bar
W_full; the next layer reads S_bar (SCU) or T (OCU). Backward::

    dW = [db; dW_mb^T] + A_bar^T dS_bar        (TS-6; SCU: later solves read S_bar)
    dT, dA = ridge_solve_vjp(dW)               (TS-7)
    dT += dS_bar                               (TS-8a; OCU: T itself is the next input)
    dX_bar = (dA + dS_bar W_full^T)[:, 1:]     (TS-8; OCU without the second term)

Derivations and deviations: this package's README.md.
"""

from __future__ import annotations

import numpy as np

from ...layers.activations import Activation, get_activation
from ...layers.dense import Dense
from ...models import Sequential
from ..base import NULL_RECORDER
from .solve import design_matrix, ridge_solve, ridge_solve_vjp

__all__ = ["Realiser", "DenseRealiser", "ShortcutMLP", "shortcut_mlp", "split_blocks"]


# ----------------------------------------------------------------------------
# the shortcut MLP of the TF1 spirals experiment
# ----------------------------------------------------------------------------
class ShortcutMLP(Sequential):
    """MLP with shortcut connections: each Dense sees the input and every earlier hidden layer.

    Layers alternate ``Dense, act, Dense, act, ..., Dense``; Dense number j
    (0-based) reads ``concat([x, h_1, ..., h_j])`` (Lang & Witbrock 1988; the
    Target Space TF1 spirals net, 2-5-5-5-2 with shortcuts), so its ``n_in`` is
    ``sizes[0] + ... + sizes[j]``. Column order [x, h_1, h_2, ...] matches the
    authors' ``[1, x_0, x_1, ...]`` rows with the bias removed.

    Parameters
    ----------
    layers : list of Layer
        Alternating Dense and Activation layers, ending with a Dense.
    """

    def __init__(self, layers):
        super().__init__(layers)
        widths = []
        for i, layer in enumerate(self.layers):
            want = Dense if i % 2 == 0 else Activation
            if not isinstance(layer, want):
                raise ValueError(f"ShortcutMLP: layers must alternate Dense and Activation and "
                                 f"end with a Dense; layers[{i}] is {layer!r}")
        if len(self.layers) % 2 == 0:
            raise ValueError("ShortcutMLP: the last layer must be a Dense")
        denses = self.layers[0::2]
        widths = [denses[0].n_in]
        for j, dense in enumerate(denses):
            if dense.n_in != sum(widths):
                raise ValueError(f"ShortcutMLP: Dense {j} must have n_in = {sum(widths)} "
                                 f"(input + earlier hidden widths {widths}), got {dense.n_in}")
            widths.append(dense.n_out)
        #: widths of the blocks [x, h_1, ..., h_{L-1}] a Dense may read
        self.widths = widths[:-1]

    def forward(self, x, params=None):
        """Run the net; Dense j reads ``concat([x, h_1, ..., h_j])`` (last axis).

        Returns
        -------
        y : ndarray of shape (N, n_out), the logits
        caches : list of dict, one per layer
        """
        if params is not None and len(params) != len(self.layers):
            raise ValueError(f"ShortcutMLP.forward: params must have one entry per layer "
                             f"({len(self.layers)}), got {len(params)}")
        feats, caches, h = [x], [], x
        for k, layer in enumerate(self.layers):
            p = None if params is None else params[k]
            if isinstance(layer, Dense):
                h, cache = layer.forward(np.concatenate(feats, axis=-1), p)
            else:
                h, cache = layer.forward(h, p)
                feats.append(h)
            caches.append(cache)
        return h, caches

    def backward(self, dy, caches, input_grad=True):
        """Back-propagate; a hidden layer's gradient sums the blocks of every later Dense.

        Parameters
        ----------
        dy : ndarray, dL/d(output)
        caches : list of dict from :meth:`forward`
        input_grad : bool
            Return dL/dx (False returns None, as :meth:`Sequential.backward`).

        Returns
        -------
        dx : ndarray like the input, or None
        grads : list of dict, one per layer
        """
        if len(caches) != len(self.layers):
            raise ValueError(f"ShortcutMLP.backward: expected {len(self.layers)} caches, "
                             f"got {len(caches)}")
        dfeats = [0.0] * len(self.widths)
        grads = [None] * len(self.layers)
        d = dy
        for k in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[k]
            if isinstance(layer, Dense):
                dx, grads[k] = layer.backward(d, caches[k])
                for j, block in enumerate(split_blocks(dx, self.widths)):
                    dfeats[j] = dfeats[j] + block
            else:                                   # the activation producing h_{k//2 + 1}
                d, grads[k] = layer.backward(dfeats[k // 2 + 1], caches[k])
        return (dfeats[0] if input_grad else None), grads


def split_blocks(x, widths):
    """Split the last axis of ``x`` into consecutive blocks of the given widths (as many as fit)."""
    out, start = [], 0
    for w in widths:
        if start >= x.shape[-1]:
            break
        out.append(x[..., start:start + w])
        start += w
    return out


def shortcut_mlp(sizes, activation="tanh", rng=None, init="glorot_uniform"):
    """Build a :class:`ShortcutMLP` for layer widths ``sizes`` (input, hidden..., output).

    ``shortcut_mlp([2, 5, 5, 5, 2], 'tanh', rng)`` is the TF1 spirals net:
    Dense(2, 5), Dense(7, 5), Dense(12, 5), Dense(17, 2).
    """
    sizes = list(sizes)
    if len(sizes) < 2 or any(not isinstance(s, (int, np.integer)) or s < 1 for s in sizes):
        raise ValueError(f"shortcut_mlp: sizes must be a list of >= 2 positive ints, got {sizes!r}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"shortcut_mlp: rng must be a numpy.random.Generator, "
                         f"got {type(rng).__name__}")
    layers = []
    for j in range(len(sizes) - 1):
        layers.append(Dense(sum(sizes[:j + 1]), sizes[j + 1], rng, init=init))
        if j < len(sizes) - 2:
            layers.append(get_activation(activation) if isinstance(activation, str)
                          else type(activation)(**({"alpha": activation.alpha}
                                                   if hasattr(activation, "alpha") else {})))
    return ShortcutMLP(layers)


# ----------------------------------------------------------------------------
# what every realiser shares, and the Dense realiser (Conv2D and RNN: own modules)
# ----------------------------------------------------------------------------
class Realiser:
    """What the Dense, Conv2D and RNN realisers share: projection and trace records.

    A realiser turns one layer's targets into its weights (``realise``) and
    back-propagates through that (``backward``); ``full_from_grads`` converts
    the layer's refnets-layout gradient to the solve layout (1 + fan_in, n_out).
    """

    def projected_targets(self, params, rec):
        """Initial projection T_k <- S_bar_k (TS-14)."""
        return rec["S"].copy()

    def record_realisation(self, record, prefix, params, rec):
        """Trace keys of the realisation: T, A_bar, W_full, S_bar (README section 2)."""
        solve = rec["solve"]
        record.put(prefix + "T", rec["T"])
        record.put(prefix + "A_bar", solve["A"])
        record.put(prefix + "W_full", solve["W"])
        record.put(prefix + "S_bar", rec["S"])

    def record_minibatch(self, record, prefix, grads, cache):
        """Trace key dW_mb: the minibatch gradient in the solve layout."""
        record.put(prefix + "dW_mb", self.full_from_grads(grads))


class DenseRealiser(Realiser):
    """Target Space for one Dense layer: A_bar = [1, x_bar], one row per example.

    ``x_bar`` may have leading dimensions (e.g. (T_bar, n_bar, H) for a per-step
    read-out); every leading position is one row of the solve.
    """

    kind = "dense"

    def __init__(self, layer):
        if not layer.bias:
            raise ValueError(f"TargetSpace: {layer!r} has no bias; the realisation solve "
                             f"always fits a bias column (use Dense(..., bias=True))")
        self.layer = layer

    def target_shape(self, x_shape):
        """Targets: one row per input row, one column per unit."""
        if len(x_shape) < 2 or x_shape[-1] != self.layer.n_in:
            raise ValueError(f"TargetSpace: the realisation input of {self.layer!r} must have "
                             f"shape (n_bar, {self.layer.n_in}) (or (..., {self.layer.n_in})); "
                             f"got {tuple(x_shape)} (check x_source against the model)")
        return tuple(x_shape[:-1]) + (self.layer.n_out,)

    def realise(self, x, T, lam, scu, zero_lam="min-norm"):
        """Solve W_k from the realised input ``x`` and targets ``T`` (TS-2, TS-4).

        Parameters
        ----------
        x : ndarray of shape (..., n_in), realised input on X_bar
        T : ndarray of shape (..., n_out)
        lam : float
        scu : bool
            Output the realised sums S_bar = A_bar W (SCU) or the targets (OCU).
        zero_lam : {'min-norm', 'cholesky'}
            The solve's branch at lam = 0 (:func:`ridge_solve`).

        Returns
        -------
        params : dict 'W' (n_out, n_in), 'b' (n_out,)
        out : ndarray like T, what the next layer reads
        rec : dict for :meth:`backward` (solve cache, shapes, realised sums ``S``)
        """
        n_in, n_out = self.layer.n_in, self.layer.n_out
        A = design_matrix(x.reshape(-1, n_in))                  # [1, X_bar]       (TS-1)
        W_full, solve = ridge_solve(A, T.reshape(-1, n_out), lam, zero_lam=zero_lam)  # (TS-2)
        S = solve["AW"]                                         # realised sums S_bar = A W
        params = self.params_from_full(W_full)                                   # (TS-3)
        out = S.reshape(T.shape) if scu else T                  # (TS-4) / OCU (TS-4a)
        return params, out, {"solve": solve, "x_shape": x.shape, "T_shape": T.shape, "T": T,
                             "S": S.reshape(T.shape), "scu": scu}

    def backward(self, rec, grads, d_out, need_dx, record=NULL_RECORDER, prefix=""):
        """dL/dT_k and dL/d(realised input) of this layer's solve.

        Parameters
        ----------
        rec : dict from :meth:`realise`
        grads : dict 'W', 'b', the minibatch gradient at the realised weights
        d_out : ndarray like T or None
            Gradient w.r.t. this layer's realised output (read by later
            solves); None if nothing downstream reads it (or the ablation).
        need_dx : bool
            Compute the gradient w.r.t. the realised input.
        record, prefix : Recorder and ``"k."``
            Record dW_hat (total dL/dW_k), dS_bar and dA_bar (README section 2).
        """
        solve = rec["solve"]
        n_out = self.layer.n_out
        dW = self.full_from_grads(grads)                        # dW_mb in the solve layout
        dA_out = None
        if d_out is not None and rec["scu"]:
            dS = d_out.reshape(-1, n_out)
            dW = dW + solve["A"].T @ dS            # S_bar = A_bar W: realised-output path (TS-6)
            dA_out = dS @ solve["W"].T
        dT, dA = ridge_solve_vjp(dW, solve, need_dA=need_dx)     # (TS-7)
        _record_backward(record, prefix, dW, d_out, dA)
        dT = dT.reshape(rec["T_shape"])
        if d_out is not None and not rec["scu"]:
            dT = dT + d_out                        # OCU: T_k is the next layer's input (TS-8a)
        if not need_dx:
            return dT, None
        if dA_out is not None:
            dA = dA + dA_out
        return dT, dA[:, 1:].reshape(rec["x_shape"])  # drop the bias column (TS-8)

    def full_from_grads(self, grads):
        """refnets {'W', 'b'} gradient -> solve layout (1 + n_in, n_out), bias row 0."""
        return np.concatenate([grads["b"][None, :], grads["W"].T], axis=0)

    def params_from_full(self, W_full):
        """Solve-layout (1 + n_in, n_out) weights -> refnets {'W', 'b'} (TS-3)."""
        return {"W": np.ascontiguousarray(W_full[1:].T), "b": W_full[0].copy()}

    def fan(self):
        """(1 + fan_in, fan_out) of the solve-layout weight matrix."""
        return 1 + self.layer.n_in, self.layer.n_out


def _record_backward(record, prefix, dW, d_out, dA):
    """Trace keys of one layer's backward: dW_hat, dS_bar, dA_bar (those computed)."""
    record.put(prefix + "dW_hat", dW)
    if d_out is not None:
        record.put(prefix + "dS_bar", d_out)
    if dA is not None:
        record.put(prefix + "dA_bar", dA)
