"""Feedback alignment (FA), its straight-through variant, and direct feedback alignment (DFA).

All three keep the forward pass and the local weight update of backprop,
``dL/dW_k = delta_k z_k^T``, and change only how the error ``delta_k`` at
layer k's output a_k reaches the hidden layers (column notation, e = dL/da_L
at the output, f' the derivative of the nonlinearity after layer k)::

    BP   delta_{k-1} = f'(a_{k-1}) * J_k^T (W_k^T delta_k)                     (exact)
    FA   delta_{k-1} = f'(a_{k-1}) * J_k^T (B_k^T delta_k)     B_k fixed random, shape of W_k
    FA-straight-through: FA with f' := 1 in the backward pass (the authors' "DFA")
    DFA  delta_k     = f'(a_k) * (D_k e)                       D_k fixed random (n_k, C)

J_k^T is the decorrelator's backward (R_k^T, then the batch-mean subtraction,
DEC-5) when ``decorrelate=True`` and the identity otherwise; it stays exact in
every variant. In row layout the FA line (DEC-6) is
``Dense.backward_input(delta, cache, W=B)`` = ``delta @ B``; straight-through
is DEC-7, DFA is DEC-8. The map to the authors' code (their "DFA" is
:class:`FAStraightThrough`) and the deviations (float64 B, conv bias gradient,
DFA on Dense layers only) are in this package's README.md.

Symbol table
------------
===============  ==========================  ===================================
paper symbol     code name                   shape
===============  ==========================  ===================================
W_k              ``model.layers[k].params``  (n_out, n_in) / (C_out, C_in, kh, kw)
B_k (FA)         ``state['B']['{k}.B']``     shape of W_k
D_k (DFA)        ``state['D']['{k}.D']``     (n_out_k, n_classes)
e                ``e``                       (N, n_classes), dL/d(logits), mean loss
delta_k          ``delta``                   (N, n_out_k) = dL/da_k (FA's version)
z_k              decorrelated input          (N, n_in)
===============  ==========================  ===================================

References
----------
T. Lillicrap, D. Cownden, D. Tweed, C. Akerman (2016), "Random synaptic
feedback weights support error backpropagation for deep learning", Nat.
Commun. 7:13276. A. Nøkland (2016), "Direct feedback alignment provides
learning in deep neural networks", NeurIPS. N. Ahmad (2024), arXiv:2407.10780.
"""

from __future__ import annotations

import numpy as np

from ...diagnostics import angle_degrees
from ...layers.activations import Activation
from ...layers.dense import Dense
from ...layers.init import get_initializer
from ...losses import softmax_cross_entropy
from ...validation import check_bool
from ..base import as_recorder, check_loss_finite, given_or_draw
from .net import (DecorrelatedRule, backward_input, backward_params, forward_net,
                  weight_layer_indices)
from .algorithm import Decorrelation, as_decorrelation

__all__ = ["FeedbackAlignment", "FAStraightThrough", "DirectFeedbackAlignment"]


class _FeedbackBase(DecorrelatedRule):
    """Shared parts: decorrelators, forward, diagnostics, prediction."""

    def __init__(self, decorrelate=False, feedback_init="he_uniform", track_backprop=True,
                 loss=softmax_cross_entropy):
        super().__init__(loss)
        self.decor = as_decorrelation(decorrelate)
        self.feedback_init = get_initializer(feedback_init)
        self.track_backprop = check_bool(track_backprop, "track_backprop", type(self).__name__)

    def __repr__(self):
        return f"{type(self).__name__}(decorrelate={self.decor!r})"

    def _feedback(self, model, state, rng, record, given, name, shapes):
        """Draw (or take as given) the fixed feedback matrices ``{"{k}.<name>": array}``."""
        where, record = f"{type(self).__name__}.init_state", as_recorder(record)
        state[name] = {}
        for k, shape in shapes.items():
            key = f"{k}.{name}"
            state[name][key] = given_or_draw(
                given, name, key, shape,
                lambda r, shape=shape: np.asarray(self.feedback_init(shape, r), dtype=np.float64),
                rng, record, where)
        return state

    def _forward(self, model, state, x, y, record):
        state["step"] += 1
        out, caches = forward_net(model, self.decor, state["decor"], x, train=True, record=record)
        loss, e = self.loss(out, y)
        check_loss_finite(loss, f"{type(self).__name__}.step {state['step']}")
        record.put("e", e)
        return loss, e, caches


class FeedbackAlignment(_FeedbackBase):
    """Feedback alignment: a fixed random B_k replaces W_k^T on the error path.

    Parameters
    ----------
    decorrelate : bool or Decorrelation
        Put a decorrelator before every weight layer (default False).
    feedback_init : str or callable
        Initialiser of B (default 'he_uniform' = the authors' kaiming_uniform_).
    straight_through : bool
        Treat every activation as the identity in the backward pass (the
        authors' "DFA"); see :class:`FAStraightThrough`.
    track_backprop : bool
        Also compute the exact gradient for ``info['cosine_to_backprop']``.
    loss : callable

    Notes
    -----
    info: 'cosine_to_backprop' (float) and 'cosine_to_backprop_layers',
    'alignment_angle' (degrees between W_k and B_k, per weight layer after the
    first), plus the decorrelators' diagnostics.

    Given values: ``init_state(..., B={"{k}.B": ...}, R=, running_mean=)``,
    ``step(..., rows=)``. Trace keys: ``"e"``, ``"{k}.B"``, ``"{k}.delta"``
    (the error delivered to weight layer k's output) and the decorrelators'.
    """

    name = "fa"
    INIT_GIVEN = ("B",)

    def __init__(self, decorrelate=False, feedback_init="he_uniform", straight_through=False,
                 track_backprop=True, loss=softmax_cross_entropy):
        super().__init__(decorrelate, feedback_init, track_backprop, loss)
        self.straight_through = check_bool(straight_through, "straight_through",
                                           type(self).__name__)

    def init_state(self, model, rng, record=None, **given):
        """B_k ~ feedback_init, shape of W_k, for every weight layer k but the first."""
        state = self._init_common(model, rng, record, given)
        ks = weight_layer_indices(model)
        return self._feedback(model, state, rng, record, given, "B",
                              {k: model.layers[k].params["W"].shape for k in ks[1:]})

    def step(self, model, state, x, y, rng=None, record=None, **given):
        """Forward; error sent down through B_k (and R_k^T); local dW = delta z^T."""
        x, record = self._begin(x, rng, record, given)
        loss, e, caches = self._forward(model, state, x, y, record)
        first = weight_layer_indices(model)[0]
        grads, delta = [{} for _ in model.layers], e
        for k in range(len(model.layers) - 1, first - 1, -1):
            layer = model.layers[k]
            key = f"{k}.B"
            if key in state["B"] or k == first:                     # a weight layer
                record.put(f"{k}.delta", delta)
                grads[k] = backward_params(layer, delta, caches[k], self.decor)   # (DEC-4)
                if k == first:
                    break
                record.put(key, state["B"][key])
                # (DEC-6) the error goes down through B_k instead of W_k
                delta = backward_input(layer, delta, caches[k], self.decor, W=state["B"][key])
            elif self.straight_through and isinstance(layer, Activation):
                continue                                            # (DEC-7) f' := 1
            else:
                delta, grads[k] = layer.backward(delta, caches[k])
        res = self._finish(model, state, loss, e, caches, grads, record=record, given=given)
        res.info["alignment_angle"] = np.array(
            [angle_degrees(model.layers[int(key.split(".")[0])].params["W"], B)
             for key, B in state["B"].items()])
        return res


class FAStraightThrough(FeedbackAlignment):
    """FA with the activation derivatives replaced by 1 (what the authors' code calls "DFA").

    The forward pass keeps the nonlinearity; the error path is
    B_{k+1}^T ... B_L^T e interleaved with the decorrelators' backward only
    (DEC-7). Not direct feedback alignment: see
    :class:`DirectFeedbackAlignment`.
    """

    name = "fa-straight-through"

    def __init__(self, decorrelate=False, feedback_init="he_uniform", track_backprop=True,
                 loss=softmax_cross_entropy):
        super().__init__(decorrelate, feedback_init, True, track_backprop, loss)


class DirectFeedbackAlignment(_FeedbackBase):
    """Direct feedback alignment (Nøkland 2016): delta_k = f'(a_k) * (D_k e).

    The output error e reaches every hidden layer directly through a fixed
    random D_k (n_out_k, C); the last layer gets e itself. Dense layers only.
    With decorrelation the direct path skips the decorrelators above layer k
    (there is no chain to send the error through); they only change z_k.

    Parameters
    ----------
    decorrelate, feedback_init, track_backprop, loss : as :class:`FeedbackAlignment`
    """

    name = "dfa"
    INIT_GIVEN = ("D",)

    def init_state(self, model, rng, record=None, **given):
        """D_k ~ feedback_init of shape (n_out_k, n_classes) for every weight layer but the last."""
        ks = weight_layer_indices(model)
        for k in ks:
            if not isinstance(model.layers[k], Dense):
                raise ValueError(f"DirectFeedbackAlignment.init_state: supports Dense layers only, "
                                 f"got {model.layers[k]!r} at layer {k}")
        state = self._init_common(model, rng, record, given)
        n_classes = model.layers[ks[-1]].n_out
        return self._feedback(model, state, rng, record, given, "D",
                              {k: (model.layers[k].n_out, n_classes) for k in ks[:-1]})

    def step(self, model, state, x, y, rng=None, record=None, **given):
        """Forward; delta_k = f'(a_k) * (e D_k^T) for hidden layers, e for the last.

        Trace keys: ``"e"``, ``"{k}.D"``, ``"{k}.delta"`` and the decorrelators'.
        """
        x, record = self._begin(x, rng, record, given)
        loss, e, caches = self._forward(model, state, x, y, record)
        ks = weight_layer_indices(model)
        grads = [{} for _ in model.layers]
        for k in ks:
            if k == ks[-1]:
                delta = e
            else:
                D = state["D"][f"{k}.D"]
                record.put(f"{k}.D", D)
                delta = e @ D.T                                     # (DEC-8) D_k e, (N, n_out_k)
                nxt = model.layers[k + 1] if k + 1 < len(model.layers) else None
                if isinstance(nxt, Activation):
                    delta, _ = nxt.backward(delta, caches[k + 1])   # * f'(a_k)
            record.put(f"{k}.delta", delta)
            grads[k] = backward_params(model.layers[k], delta, caches[k], self.decor)   # (DEC-4)
        return self._finish(model, state, loss, e, caches, grads, record=record, given=given)


# ---------------------------------------------------------------------------
# Registry entries (``refnets compare``). Defaults measured on the embedded
# Fashion-MNIST subset with compare's defaults (784-128-128-10, tanh, batch 50),
# seeds 0-2, test accuracy after epochs 1 / 3 / 10 (README section 8):
#   fa 0.670 / 0.800 / 0.828;  decor-fa: decorrelation rate 1e-3 0.757 / 0.796 / 0.805,
#   3e-4 0.756 / 0.817 / 0.822, 1e-4 0.754 / 0.812 / 0.832 (chosen: the early gain
#   without the late loss).
# ---------------------------------------------------------------------------
#: Decorrelation rate of the FA-family registry entries (see the table above).
FA_DECOR_LR = 1e-4


def _setup(sizes, activation, rng, algorithm, lr=1e-3):
    from ...models import mlp
    from ...optim import Adam
    from .. import Setup
    return Setup(mlp(sizes, activation, rng), algorithm, Adam(lr=lr, beta2=0.9999))


def _build_fa(sizes, activation, rng, x_train=None, y_train=None):
    """FA, Adam(1e-3, betas 0.9/0.9999).

    Fashion-MNIST subset, seeds 0-2, test accuracy after 1 / 3 / 10 epochs:
    0.670 / 0.800 / 0.828.
    """
    return _setup(sizes, activation, rng, FeedbackAlignment())


def _build_decor_fa(sizes, activation, rng, x_train=None, y_train=None):
    """FA after the scaled decorrelation rule (rate 1e-4), Adam(1e-3).

    Fashion-MNIST subset, seeds 0-2, after 1 / 3 / 10 epochs: 0.754 / 0.812 /
    0.832 (plain FA 0.670 / 0.800 / 0.828). Rate 1e-3 helps as much after one
    epoch (0.757) but ends below plain FA (0.805 after 10).
    """
    return _setup(sizes, activation, rng,
                  FeedbackAlignment(decorrelate=Decorrelation(lr=FA_DECOR_LR)))


def _build_fa_st(sizes, activation, rng, x_train=None, y_train=None):
    """FA with straight-through activations (the authors' "DFA"), Adam(1e-3).

    Fashion-MNIST subset, seeds 0-2, after 1 / 3 / 10 epochs: 0.570 / 0.712 / 0.737.
    """
    return _setup(sizes, activation, rng, FAStraightThrough())


def _build_decor_fa_st(sizes, activation, rng, x_train=None, y_train=None):
    """Straight-through FA after decorrelation (rate 1e-4), Adam(1e-3).

    Fashion-MNIST subset, seeds 0-2, after 1 / 3 / 10 epochs: 0.684 / 0.779 /
    0.814 (rate 1e-3: 0.711 / 0.782 / 0.797).
    """
    return _setup(sizes, activation, rng,
                  FAStraightThrough(decorrelate=Decorrelation(lr=FA_DECOR_LR)))


def _build_dfa(sizes, activation, rng, x_train=None, y_train=None):
    """Direct feedback alignment (Nøkland), Adam(1e-3).

    Fashion-MNIST subset, seeds 0-2, after 1 / 3 / 10 epochs: 0.684 / 0.803 / 0.823.
    """
    return _setup(sizes, activation, rng, DirectFeedbackAlignment())


def _build_decor_dfa(sizes, activation, rng, x_train=None, y_train=None):
    """DFA after the scaled decorrelation rule (rate 1e-4), Adam(1e-3).

    Fashion-MNIST subset, seeds 0-2, after 1 / 3 / 10 epochs: 0.755 / 0.811 /
    0.835 (rate 1e-3: 0.758 / 0.800 / 0.803; the whiten rule at 1e-4:
    0.742 / 0.803 / 0.833).
    """
    return _setup(sizes, activation, rng,
                  DirectFeedbackAlignment(decorrelate=Decorrelation(lr=FA_DECOR_LR)))


def _register():
    from .. import Method, register
    register(Method("fa", _build_fa, "feedback alignment: fixed random B replaces W^T",
                    "Lillicrap et al. 2016"))
    register(Method("decor-fa", _build_decor_fa, "feedback alignment after decorrelating R",
                    "Ahmad 2024, arXiv:2407.10780"))
    register(Method("fa-st", _build_fa_st,
                    "feedback alignment with straight-through activations (f' := 1)",
                    "Ahmad 2024 (its code's \"DFA\"); Lillicrap et al. 2016"))
    register(Method("decor-fa-st", _build_decor_fa_st,
                    "straight-through feedback alignment after decorrelating R",
                    "Ahmad 2024, arXiv:2407.10780"))
    register(Method("dfa", _build_dfa, "direct feedback alignment: output error through fixed D_k",
                    "Nøkland 2016"))
    register(Method("decor-dfa", _build_decor_dfa,
                    "direct feedback alignment after decorrelating R",
                    "Ahmad 2024; Nøkland 2016"))


_register()
