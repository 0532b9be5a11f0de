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
  the same way (diagnostics, R update), checks given values and predicts in
  eval mode.

A decorrelated layer's cache carries ``'decorrelated': True``; ``decor`` is a
:class:`~refnets.algorithms.decorrelation.algorithm.Decorrelation` or None.
The decorrelators' state is one flat dict keyed ``"{k}.R"``,
``"{k}.running_mean"``, ``"{k}.updates"`` (k the model layer index);
:func:`layer_state` shows layer k's entries as a ``{name: value}`` mapping.
"""

from __future__ import annotations

import numpy as np

from collections.abc import MutableMapping

from ...diagnostics import cosine
from ...layers.conv import Conv2D
from ...layers.dense import Dense
from ...validation import check_input
from ..base import NULL_RECORDER, Algorithm, StepResult, as_recorder, check_given, given_or_draw

__all__ = ["is_weight_layer", "weight_layer_indices", "layer_state", "layer_forward",
           "backward_params", "backward_input", "forward_net", "backward_net",
           "cosines_to_backprop", "update_decorrelators", "DecorrelatedRule"]

#: Passed as the rng of :func:`~refnets.algorithms.base.given_or_draw` for values whose
#: default is not random (R = I, running mean 0, the first sub-batch rows): they need none.
NO_RNG_NEEDED = object()


class _LayerState(MutableMapping):
    """Layer k's ``"{k}.{name}"`` entries of a flat state dict, seen as ``{name: value}``."""

    def __init__(self, flat, k):
        self._flat, self._prefix = flat, f"{k}."

    def __getitem__(self, name):
        return self._flat[self._prefix + name]

    def __setitem__(self, name, value):
        self._flat[self._prefix + name] = value

    def __delitem__(self, name):
        del self._flat[self._prefix + name]

    def __iter__(self):
        n = len(self._prefix)
        return (key[n:] for key in list(self._flat) if key.startswith(self._prefix))

    def __len__(self):
        return sum(1 for _ in self)


def layer_state(dstate, k):
    """Layer k's decorrelator state (a view of ``dstate``), or None if it has none."""
    if dstate is None or f"{k}.R" not in dstate:
        return None
    return _LayerState(dstate, k)


def is_weight_layer(layer):
    """True for the layers that get a decorrelator (Dense, Conv2D)."""
    return isinstance(layer, (Dense, Conv2D))


def weight_layer_indices(model):
    """Indices k of the Dense/Conv2D layers of ``model``, in order."""
    return [k for k, layer in enumerate(model.layers) if is_weight_layer(layer)]


# ---------------------------------------------------------------------------
def layer_forward(layer, h, decor=None, st=None, train=True, params=None, mu=None,
                  record=NULL_RECORDER, k=None):
    """Forward of one layer, through its decorrelator when it has one."""
    if decor is None or st is None:
        return layer.forward(h, params)
    return decor.forward(layer, h, st, train, params, mu, record=record, k=k)


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


def forward_net(model, decor, dstate, x, train=True, params=None, mus=None, record=NULL_RECORDER):
    """Run every layer, each Dense/Conv2D behind its decorrelator (if ``decor``).

    Parameters
    ----------
    model : Sequential
    decor : Decorrelation or None
    dstate : dict ``{"{k}.R": ..., "{k}.running_mean": ...}``, or None
    x : ndarray, the input batch
    train : bool
    params : list of per-layer dicts, optional (other weights)
    mus : list, optional
        Per-layer means to use instead of the batch means (noisy passes).
    record : Recorder
        Collects ``"{k}.h"``, ``"{k}.mu"``, ``"{k}.R"``, ``"{k}.z"`` of every
        decorrelated layer.

    Returns
    -------
    out : ndarray
    caches : list of per-layer caches
    """
    caches, h = [], x
    for k, layer in enumerate(model.layers):
        st = None if decor is None else layer_state(dstate, k)
        p = None if params is None else params[k]
        mu = None if mus is None else mus[k]
        h, cache = layer_forward(layer, h, decor, st, train, p, mu, record, k)
        caches.append(cache)
    return h, caches


def backward_net(model, decor, dout, caches, input_grad=False, record=NULL_RECORDER):
    """Exact backprop through the (decorrelated) network (DEC-4, DEC-5).

    Parameters
    ----------
    input_grad : bool
        Also return dL/dx; otherwise the first layer's input gradient (a
        d x d product through R for a decorrelated first layer) is skipped.
    record : Recorder
        Collects ``"{k}.delta"`` = dL/da_k at every weight layer k.

    Returns
    -------
    dx : gradient w.r.t. the input (None unless ``input_grad``)
    grads : list of per-layer dicts (empty for parameter-free layers)
    """
    grads, dh = [{} for _ in model.layers], dout
    for k in range(len(model.layers) - 1, -1, -1):
        layer = model.layers[k]
        if is_weight_layer(layer):
            record.put(f"{k}.delta", dh)
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


def update_decorrelators(model, decor, dstate, caches, step, record=NULL_RECORDER, given=None,
                         where="update_decorrelators"):
    """Run ``decor.update`` on every decorrelated layer; per-layer info arrays.

    The sub-batch rows of layer k (DEC-13) are ``given["rows"]["{k}.rows"]`` when
    given (int indices into the batch; conv: into the images), else the first
    ``k_S``; either way they are recorded under ``"{k}.rows"``.

    Returns
    -------
    info : dict of 1-D arrays indexed by weight layer: 'decor_offdiag_power',
        'decor_diag_power', 'decor_whiteness', 'decor_R_norm', 'decor_gain',
        'decor_dead_inputs'.
    """
    if decor is None:
        return {}
    given = {} if given is None else given
    rows = []
    for k in weight_layer_indices(model):
        layer, cache = model.layers[k], caches[k]
        default = decor.sub_batch_rows(layer, cache)
        n = cache["h"].shape[0]
        idx = given_or_draw(given, "rows", f"{k}.rows", default.shape, lambda _: default,
                            NO_RNG_NEEDED, record, where, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise ValueError(f"{where}: given rows['{k}.rows'] must index the batch of {n} samples "
                             f"(0 <= row < {n}), got values from {idx.min()} to {idx.max()}")
        record.put(f"{k}.rows", idx)
        chosen = None if np.array_equal(idx, default) else idx
        rows.append(decor.update(layer, layer_state(dstate, k), cache,
                                 where=f"decorrelation update of layer {k} at step {step}",
                                 rows=chosen, record=record, k=k))
    keys = ("offdiag_power", "diag_power", "whiteness", "R_norm", "gain", "dead_inputs")
    return {f"decor_{key}": np.array([r[key] for r in rows]) for key in keys}


class DecorrelatedRule(Algorithm):
    """Base of decorrelated BP, FA, DFA, NP and WP: shared checks, step ending, prediction.

    Subclasses set ``self.decor`` (a Decorrelation or None) and
    ``self.track_backprop``, keep the decorrelator states in ``state["decor"]``
    (flat, ``"{k}.R"`` ...) and the step count in ``state["step"]``, and list
    their own given-value keywords in ``INIT_GIVEN`` / ``STEP_GIVEN``.
    """

    #: given-value keywords of ``init_state`` / ``step`` besides the decorrelators'
    INIT_GIVEN = ()
    STEP_GIVEN = ()
    track_backprop = False

    def init_given(self):
        """The keywords ``init_state`` accepts (``R``, ``running_mean`` when decorrelating)."""
        return tuple(self.INIT_GIVEN) + (("R", "running_mean") if self.decor is not None else ())

    def step_given(self):
        """The keywords ``step`` accepts (``rows`` when decorrelating)."""
        return tuple(self.STEP_GIVEN) + (("rows",) if self.decor is not None else ())

    def _init_common(self, model, rng, record, given):
        """Check model, rng and keywords; the decorrelators' state and the step count."""
        where = f"{type(self).__name__}.init_state"
        check_given(given, self.init_given(), where)
        if rng is not None and not isinstance(rng, np.random.Generator):
            raise ValueError(f"{where}: rng must be a numpy.random.Generator or None, "
                             f"got {type(rng).__name__}")
        if not weight_layer_indices(model):
            raise ValueError(f"{where}: model has no Dense/Conv2D layer")
        mine = {name: v for name, v in given.items() if name in ("R", "running_mean")}
        dstate = None if self.decor is None else self.decor.init_state(model, record=record, **mine)
        return {"decor": dstate, "step": 0}

    def _begin(self, x, rng, record, given):
        """Validate the step's x, rng and keywords; the Recorder to use."""
        where = f"{type(self).__name__}.step"
        x = check_input(x, "x", where)
        check_given(given, self.step_given(), where)
        if rng is not None and not isinstance(rng, np.random.Generator):
            raise ValueError(f"{where}: rng must be a numpy.random.Generator or None, "
                             f"got {type(rng).__name__}")
        return x, as_recorder(record)

    def _finish(self, model, state, loss, dout, caches, grads, info=None, record=NULL_RECORDER,
                given=None):
        """Backprop diagnostics, then the R update (after forward/backward, as in
        the authors' code), then the StepResult with flat ``grads``."""
        info = {} if info is None else info
        if self.track_backprop:
            _, bp = backward_net(model, self.decor, dout, caches)
            info.update(cosines_to_backprop(model, grads, bp))
        info.update(update_decorrelators(model, self.decor, state["decor"], caches, state["step"],
                                         record, given, f"{type(self).__name__}.step"))
        return StepResult(loss=loss, grads=model.flatten(grads), info=info)

    def predict(self, model, state, x):
        """Eval mode: decorrelators use their running means."""
        x = check_input(x, "x", f"{type(self).__name__}.predict")
        return forward_net(model, self.decor, state["decor"], x, train=False)[0]
