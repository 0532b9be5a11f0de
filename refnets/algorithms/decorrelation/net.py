"""The network loop shared by decorrelated BP, FA, DFA, NP and WP.

Every method of this family runs the same forward pass, each Dense/Conv2D
layer optionally behind its decorrelator (:mod:`refnets.algorithms.decorrelation.algorithm`),
and differs only in how it gets the weight update. These functions dispatch
between the plain layer and the decorrelated one, so an algorithm's loop reads
the same with ``decorrelate=True`` or ``False``:

* :func:`layer_forward` / :func:`forward_net`: forward of one layer / all layers;
* :func:`backward_params`: dL/dW, dL/db of a weight layer from dL/da;
* :func:`backward_input`: dL/dh through W, or through a feedback matrix B;
* :func:`backward_net`: exact backprop (the reference for ``cosine_to_backprop``);
* :func:`update_decorrelators`: the R rules, after the step's forward/backward;
* :class:`DecorrelatedRule`: the base class that ends every step of the family
  the same way (diagnostics, R update) and predicts in eval mode.

A decorrelated layer's cache carries ``'decorrelated': True``; ``decor`` is a
:class:`~refnets.algorithms.decorrelation.algorithm.Decorrelation` or None.
"""

from __future__ import annotations

import numpy as np

from ...diagnostics import cosine
from ...layers.conv import Conv2D
from ...layers.dense import Dense
from ..base import Algorithm, StepResult

__all__ = ["is_weight_layer", "weight_layer_indices", "layer_forward", "backward_params",
           "backward_input", "forward_net", "backward_net", "cosines_to_backprop",
           "update_decorrelators", "DecorrelatedRule"]


def is_weight_layer(layer):
    """True for the layers that get a decorrelator (Dense, Conv2D)."""
    return isinstance(layer, (Dense, Conv2D))


def weight_layer_indices(model):
    """Indices k of the Dense/Conv2D layers of ``model``, in order."""
    return [k for k, layer in enumerate(model.layers) if is_weight_layer(layer)]


# ---------------------------------------------------------------------------
def layer_forward(layer, h, decor=None, st=None, train=True, params=None, mu=None):
    """Forward of one layer, through its decorrelator when it has one."""
    if decor is None or st is None:
        return layer.forward(h, params)
    return decor.forward(layer, h, st, train, params, mu)


def backward_params(layer, da, cache, decor=None):
    """dL/dW, dL/db of a Dense/Conv2D layer from dL/da (plain or decorrelated)."""
    if cache.get("decorrelated"):
        return decor.backward_params(layer, da, cache)
    if isinstance(layer, Dense):
        return layer.backward_params(da, cache)
    return layer.backward(da, cache)[1]


def backward_input(layer, da, cache, decor=None, W=None):
    """dL/dh of a Dense/Conv2D layer through W, or through ``W`` = B (feedback alignment)."""
    if cache.get("decorrelated"):
        return decor.backward_input(layer, da, cache, W=W)
    if isinstance(layer, Dense):
        return layer.backward_input(da, cache, W=W)
    if W is not None:
        if np.shape(W) != cache["W"].shape:
            raise ValueError(f"backward_input: W must have shape {cache['W'].shape}, "
                             f"got {np.shape(W)}")
        cache = dict(cache, W=W)          # Conv2D.backward sends dy through cache['W']
    return layer.backward(da, cache)[0]


def forward_net(model, decor, dstate, x, train=True, params=None, mus=None):
    """Run every layer, each Dense/Conv2D behind its decorrelator (if ``decor``).

    Parameters
    ----------
    model : Sequential
    decor : Decorrelation or None
    dstate : list (per layer) of decorrelator states, or None
    x : ndarray, the input batch
    train : bool
    params : list of per-layer dicts, optional (other weights)
    mus : list, optional
        Per-layer means to use instead of the batch means (noisy passes).

    Returns
    -------
    out : ndarray
    caches : list of per-layer caches
    """
    caches, h = [], x
    for k, layer in enumerate(model.layers):
        st = None if decor is None or dstate is None else dstate[k]
        p = None if params is None else params[k]
        mu = None if mus is None else mus[k]
        h, cache = layer_forward(layer, h, decor, st, train, p, mu)
        caches.append(cache)
    return h, caches


def backward_net(model, decor, dout, caches, input_grad=False):
    """Exact backprop through the (decorrelated) network.

    Parameters
    ----------
    input_grad : bool
        Also return dL/dx; otherwise the first layer's input gradient (a
        d x d product through R for a decorrelated first layer) is skipped.

    Returns
    -------
    dx : gradient w.r.t. the input (None unless ``input_grad``)
    grads : list of per-layer dicts (empty for parameter-free layers)
    """
    grads, dh = [{} for _ in model.layers], dout
    for k in range(len(model.layers) - 1, -1, -1):
        layer = model.layers[k]
        if is_weight_layer(layer):
            grads[k] = backward_params(layer, dh, caches[k], decor)
            if k == 0 and not input_grad:
                return None, grads
            dh = backward_input(layer, dh, caches[k], decor)
        else:
            dh, grads[k] = layer.backward(dh, caches[k])
    return dh, grads


def cosines_to_backprop(model, grads, bp_grads):
    """Cosine of an update to backprop's, overall and per weight layer.

    Parameters
    ----------
    grads, bp_grads : lists of per-layer dicts (as from :func:`backward_net`)

    Returns
    -------
    info : {'cosine_to_backprop': float, 'cosine_to_backprop_layers': array
        indexed by weight layer}
    """
    ks = weight_layer_indices(model)
    flat = model.flatten(grads)
    bp = model.flatten(bp_grads)
    per_layer = np.array([cosine(grads[k], bp_grads[k]) for k in ks])
    return {"cosine_to_backprop": cosine(flat, bp), "cosine_to_backprop_layers": per_layer}


def update_decorrelators(model, decor, dstate, caches, step):
    """Run ``decor.update`` on every decorrelated layer; per-layer info arrays.

    Returns
    -------
    info : dict of 1-D arrays indexed by weight layer: 'decor_offdiag_power',
        'decor_diag_power', 'decor_whiteness', 'decor_R_norm', 'decor_gain',
        'decor_dead_inputs'.
    """
    if decor is None:
        return {}
    rows = []
    for k in weight_layer_indices(model):
        rows.append(decor.update(model.layers[k], dstate[k], caches[k],
                                 where=f"decorrelation update of layer {k} at step {step}"))
    keys = ("offdiag_power", "diag_power", "whiteness", "R_norm", "gain", "dead_inputs")
    return {f"decor_{key}": np.array([r[key] for r in rows]) for key in keys}


class DecorrelatedRule(Algorithm):
    """Base of FA/DFA/NP/WP: their steps end, and they predict, the same way.

    Subclasses set ``self.decor`` (a Decorrelation or None) and
    ``self.track_backprop``, and keep the decorrelator states in
    ``state["decor"]`` and the step count in ``state["step"]``.
    """

    def _finish(self, model, state, loss, dout, caches, grads, info=None):
        """Backprop diagnostics, then the R update (after forward/backward, as in
        the authors' code), then the StepResult with flat ``grads``."""
        info = {} if info is None else info
        if self.track_backprop:
            _, bp = backward_net(model, self.decor, dout, caches)
            info.update(cosines_to_backprop(model, grads, bp))
        info.update(update_decorrelators(model, self.decor, state["decor"], caches, state["step"]))
        return StepResult(loss=loss, grads=model.flatten(grads), info=info)

    def predict(self, model, state, x):
        """Eval mode: decorrelators use their running means."""
        return forward_net(model, self.decor, state["decor"], x, train=False)[0]
