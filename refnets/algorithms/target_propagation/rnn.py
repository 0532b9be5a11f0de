"""Target propagation through time (Manchev & Spratling 2020) for an Elman RNN.

DTP applied along the time axis of a recurrent net: the "layers" are the time
steps of one recurrent layer, so targets travel backwards in time through a
learned inverse of the transition, and every step regresses its state onto its
target from its (constant) previous state.

Network (:func:`refnets.models.rnn_classifier` with ``readout='last'``):
h_t = tanh(W_hh h_{t-1} + W_xh x_t + b), t = 1..T, h_0 = 0, logits = W_hy h_T + b_y.

Equations DTP-14 to DTP-14c (inverse across time reusing the forward W_xh; first
target at the last step; difference targets backwards in time; local losses
summed over time; inverse loss with noise on the previous state), the map to
Manchev's code and the Deviations are in this package's README.md.

Each minibatch: one g-step, then the targets and the f-step (their order).
Both one-step maps F and g are evaluated with the core :class:`~refnets.layers.RNN`
layer run for a single step, with all T*N (x_t, h_{t-1}) pairs as one batch:
F = RNN(W_xh, W_hh, b) from h0 = h_{t-1}; g = RNN(W_xh, V, c) from h0 = h_t.
So every gradient here is the core layer's one-step BPTT.

Symbol table
------------
================  ===============================  ==================
paper symbol      code name                        shape
================  ===============================  ==================
x_t               ``x[t-1]``                       (N, D), x (T, N, D)
h_t               ``hs[t-1]``; h_0 = 0             (N, H), hs (T, N, H)
W_xh, W_hh, b     RNN ``'W_x'``, ``'W_h'``, ``'b'``   (H, D), (H, H), (H,)
W_hy, b_y         Dense ``'W'``, ``'b'``            (C, H), (C,)
V, c              ``state["feedback"]["0.V"]``, ``["0.c"]``  (H, H), (H,)
ĥ_t               ``targets[t-1]``                 (N, H)
η̂                 ``target_step`` (per example)    scalar
================  ===============================  ==================

References
----------
N. Manchev, M. Spratling, "Target Propagation in Recurrent Neural Networks",
JMLR 21(7), 2020; code: github.com/nmanchev/tptt, github.com/nmanchev/MM-TPTT-RNN.
"""

from __future__ import annotations

import numpy as np

from ...diagnostics import cosine
from ...layers.dense import Dense
from ...layers.init import get_initializer
from ...layers.recurrent import RNN, LastStep
from ...losses import mse, softmax_cross_entropy
from ...models import Sequential
from ...optim import Momentum
from ...validation import DivergenceError, check_bool, check_input, check_number
from ..base import (Algorithm, StepResult, as_recorder, check_given, check_loss_finite,
                    given_or_draw)

__all__ = ["one_step", "tptt_local_loss", "tptt_feedback_loss", "TargetPropagationThroughTime"]


def one_step(rnn, x, h_prev, params):
    """tanh(h_prev W_h^T + x W_x^T + b) for every (x_t, h_{t-1}) pair at once.

    Parameters
    ----------
    rnn : RNN (only its shapes are used; the weights are ``params``)
    x : ndarray (M, D); h_prev : ndarray (M, H); params : dict 'W_x', 'W_h', 'b'

    Returns
    -------
    h : ndarray (M, H); cache : the RNN cache of a length-1 sequence
    """
    hs, cache = rnn.forward(x[None], params, h0=h_prev)
    return hs[0], cache


def tptt_local_loss(rnn, x, hs, targets, params=None):
    """(DTP-14b): Σ_t (1/B) ‖F(x_t, h_{t-1}) - ĥ_t‖², and its gradient for W_x, W_h, b.

    Parameters
    ----------
    x : ndarray (T, N, D); hs : ndarray (T, N, H), the forward states (h_{t-1} constant)
    targets : ndarray (T, N, H)
    params : dict 'W_x', 'W_h', 'b' (default the layer's)
    """
    T, N, H = hs.shape
    params = rnn.params if params is None else params
    h_prev = np.concatenate([np.zeros((1, N, H)), hs[:-1]]).reshape(T * N, H)
    h, cache = one_step(rnn, x.reshape(T * N, -1), h_prev, params)
    diff = h - targets.reshape(T * N, H)
    loss = float(np.sum(diff * diff)) / N                  # summed over t, mean over the batch
    _, grads = rnn.backward((2.0 * diff / N)[None], cache)
    return loss, grads


def tptt_feedback_loss(rnn, x, hs, noise, W_x, V, c, params=None):
    """(DTP-14c) over t = 2..T with noise on h_{t-1}; gradient for V and c.

    Parameters
    ----------
    x : ndarray (T, N, D); hs : ndarray (T, N, H); noise : ndarray (T-1, N, H), ε
    W_x : forward input weights (H, D), shared by g, not trained here
    V, c : the inverse's recurrent weights (H, H) and bias (H,)
    params : dict with 'V', 'c' overriding V, c (for gradient checks)

    Returns
    -------
    loss : float; grads : dict {'V': (H, H), 'c': (H,)}
    """
    if params is not None:
        V, c = params["V"], params["c"]
    T, N, H = hs.shape
    M = (T - 1) * N
    x_t = x[1:].reshape(M, -1)
    corrupted = (hs[:-1] + noise).reshape(M, H)                          # h_{t-1} + ε, t = 2..T
    u, _ = one_step(rnn, x_t, corrupted, rnn.params)                      # F(x_t, h_{t-1} + ε)
    r, cache = one_step(rnn, x_t, u, {"W_x": W_x, "W_h": V, "b": c})     # g(x_t, ·)
    loss, dr = mse(r, corrupted)
    _, grads = rnn.backward(dr[None], cache)
    return loss, {"V": grads["W_h"], "c": grads["b"]}


class TargetPropagationThroughTime(Algorithm):
    """TPTT for ``[RNN, LastStep, Dense]`` models (one label per sequence).

    Parameters
    ----------
    target_step : float > 0
        η̂ per example (against the summed loss).
    sigma : float >= 0
        Noise of the inverse loss (Manchev: 0).
    feedback_lr : float > 0
        Nesterov-SGD learning rate of V, c (Manchev's glr = 0.001).
    feedback_momentum : float in [0, 1)
    feedback_init : str
        Initialiser of V (Manchev: orthogonal); c = 0.
    compare_to_backprop : bool
        Report cosines to the BPTT gradient.
    loss : callable (default mean softmax cross-entropy)

    State ``feedback``: ``{"0.V": V, "0.c": c}`` (0 is the RNN's model index).
    Given values: ``V={"0.V": (H, H)}`` at ``init_state``;
    ``eps={"0.eps": (T-1, N, H)}`` (noise on h_1..h_{T-1}) per step.
    """

    name = "tptt"
    GIVEN_INIT = ("V",)
    GIVEN_STEP = ("eps",)

    def __init__(self, target_step=0.01, sigma=0.0, feedback_lr=0.001, feedback_momentum=0.9,
                 feedback_init="orthogonal", compare_to_backprop=True, loss=softmax_cross_entropy):
        super().__init__(loss)
        where = "TargetPropagationThroughTime"
        self.target_step = check_number(target_step, "target_step", where, low=0, low_open=True)
        self.sigma = check_number(sigma, "sigma", where, low=0)
        self.feedback_lr = check_number(feedback_lr, "feedback_lr", where, low=0, low_open=True)
        self.feedback_momentum = check_number(feedback_momentum, "feedback_momentum", where,
                                              low=0, high=1, high_open=True)
        try:
            get_initializer(feedback_init)
        except ValueError as exc:
            raise ValueError(f"{where}: feedback_init: {exc}") from None
        self.feedback_init = feedback_init
        self.compare_to_backprop = check_bool(compare_to_backprop, "compare_to_backprop", where)

    @staticmethod
    def layers(model):
        """(RNN, Dense) of a ``[RNN, LastStep, Dense]`` model."""
        ok = (isinstance(model, Sequential) and len(model) == 3 and isinstance(model[0], RNN)
              and isinstance(model[1], LastStep) and isinstance(model[2], Dense))
        if not ok:
            raise ValueError("TargetPropagationThroughTime: model must be [RNN, LastStep, Dense] "
                             "(rnn_classifier(..., readout='last')), got "
                             f"{getattr(model, 'layers', model)!r}")
        return model[0], model[2]

    def init_state(self, model, rng, record=None, **given):
        where = "TargetPropagationThroughTime.init_state"
        check_given(given, self.GIVEN_INIT, where)
        rnn, _ = self.layers(model)
        H = rnn.n_hidden
        V = given_or_draw(given, "V", "0.V", (H, H), lambda r: np.asarray(
            get_initializer(self.feedback_init)((H, H), r), dtype=np.float64), rng,
            as_recorder(record), where)
        return {"feedback": {"0.V": V, "0.c": np.zeros(H)},
                "feedback_optimizer": {"t": 0, "moments": {}}, "steps": 0}

    def g(self, rnn, state, x_t, h_t):
        """(DTP-14) g(x_t, h_t) = tanh(V h_t + W_xh x_t + c), (N, H)."""
        fb = state["feedback"]
        return one_step(rnn, x_t, h_t, {"W_x": rnn.params["W_x"], "W_h": fb["0.V"],
                                        "b": fb["0.c"]})[0]

    def propagate_targets(self, rnn, state, x, hs, target_T, record=None):
        """ĥ_T given; (DTP-14a) backwards in time. Returns targets (T, N, H).

        Records ``"0.g_h"`` and ``"0.g_h_hat"`` (T-1, N, H): g(x_t, h_t) and
        g(x_t, ĥ_t) for t = 2..T (array index t-2).
        """
        targets = np.empty_like(hs)
        targets[-1] = target_T
        g_h, g_hat = np.empty_like(hs[1:]), np.empty_like(hs[1:])
        for t in range(hs.shape[0] - 1, 0, -1):           # array index t holds h_{t+1}
            g_h[t - 1] = self.g(rnn, state, x[t], hs[t])
            g_hat[t - 1] = self.g(rnn, state, x[t], targets[t])
            targets[t - 1] = hs[t - 1] - g_h[t - 1] + g_hat[t - 1]
        record = as_recorder(record)
        record.put("0.g_h", g_h)
        record.put("0.g_h_hat", g_hat)
        return targets

    def train_feedback(self, rnn, state, x, hs, rng, given=None, record=None, where=""):
        """One Nesterov-SGD step of (DTP-14c); returns the loss before it."""
        record = as_recorder(record)
        sigma, shape = self.sigma, hs[:-1].shape
        noise = given_or_draw(given or {}, "eps", "0.eps", shape,
                              lambda r: sigma * r.standard_normal(shape), rng, record, where)
        fb = state["feedback"]
        loss, grads = tptt_feedback_loss(rnn, x, hs, noise, rnn.params["W_x"], fb["0.V"],
                                         fb["0.c"])
        if not np.isfinite(loss):
            raise DivergenceError(f"TargetPropagationThroughTime: inverse loss is {loss} at "
                                  f"step {state['steps']} (diverged); try a smaller feedback_lr",
                                  quantity="feedback loss")
        grads = {"0.V": grads["V"], "0.c": grads["c"]}
        record.put("0.L_inv", loss)
        record.put("0.dV", grads["0.V"])
        record.put("0.dc", grads["0.c"])
        opt = Momentum(lr=self.feedback_lr, momentum=self.feedback_momentum, nesterov=True)
        opt.state, opt.t = state["feedback_optimizer"]["moments"], state["feedback_optimizer"]["t"]
        opt.update(fb, grads)
        state["feedback_optimizer"]["t"] = opt.t
        return loss

    def step(self, model, state, x, y, rng, record=None, **given):
        """g-step, then targets (DTP-14a) and the forward gradients (DTP-14b).

        info: ``forward_loss``, ``feedback_loss``, ``reconstruction_error`` (noise-free
        mean over t of ‖g(x_t, h_t) - h_{t-1}‖²), ``cosine_per_layer`` / ``angle_per_layer``
        ([RNN, read-out] vs BPTT) and ``cosine_to_backprop``. Trace keys: README section 2.
        """
        where = "TargetPropagationThroughTime.step"
        check_given(given, self.GIVEN_STEP, where)
        fb = state.get("feedback") if isinstance(state, dict) else None
        if not isinstance(fb, dict) or set(fb) != {"0.V", "0.c"}:
            raise ValueError(f"{where}: state['feedback'] must be {{'0.V', '0.c'}} as made by "
                             f"init_state, got {sorted(fb) if isinstance(fb, dict) else fb!r}; a "
                             f"state saved before this key scheme must be rebuilt with init_state")
        if np.ndim(x) != 3:
            raise ValueError(f"{where}: x must be time-major (T, N, D), got shape {np.shape(x)}")
        x = check_input(x, "x", where, ndim=3, batch_axis=1)
        where = f"{where} (step {state['steps']})"
        record = as_recorder(record)
        rnn, head = self.layers(model)
        hs, rnn_cache = rnn.forward(x)
        record.put("0.h", hs)
        fb_loss = self.train_feedback(rnn, state, x, hs, rng, given, record, where) \
            if hs.shape[0] > 1 else 0.0
        logits, head_cache = head.forward(hs[-1])
        loss, dlogits = self.loss(logits, y)
        check_loss_finite(loss, where)
        record.put("2.dL_da", dlogits)
        dh_T, head_grads = head.backward(dlogits, head_cache)
        target_T = hs[-1] - self.target_step * len(y) * dh_T                 # (DTP-14a)
        targets = self.propagate_targets(rnn, state, x, hs, target_T, record)
        if not np.all(np.isfinite(targets)):
            raise DivergenceError(f"{where}: targets contain NaN/inf (diverged)", quantity="target")
        record.put("0.h_hat", targets)
        fw_loss, rnn_grads = tptt_local_loss(rnn, x, hs, targets)          # (DTP-14b)
        record.put("0.L_local", fw_loss)
        grads = {f"0.{k}": v for k, v in rnn_grads.items()}
        grads.update({f"2.{k}": v for k, v in head_grads.items()})
        state["steps"] += 1
        T, N, H = hs.shape
        recon = 0.0                  # mean over t = 2..T and the batch of ‖g(x_t, h_t) - h_{t-1}‖²
        if T > 1:
            recon = mse(self.g(rnn, state, x[1:].reshape((T - 1) * N, -1), hs[1:].reshape(-1, H)),
                        hs[:-1].reshape(-1, H))[0]
        info = {"forward_loss": fw_loss, "feedback_loss": float(fb_loss),
                "reconstruction_error": float(recon)}
        if self.compare_to_backprop:
            dhs = np.zeros_like(hs)
            dhs[-1] = dh_T
            _, bptt = rnn.backward(dhs, rnn_cache)
            bp = {f"0.{k}": v for k, v in bptt.items()}
            bp.update({f"2.{k}": v for k, v in head_grads.items()})
            cos = np.array([cosine(grads, bp, [f"0.{k}" for k in bptt]),
                            cosine(grads, bp, [f"2.{k}" for k in head_grads])])
            info.update({"cosine_per_layer": cos,
                         "angle_per_layer": np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))),
                         "cosine_to_backprop": cosine(grads, bp)})
        return StepResult(loss=loss, grads=grads, info=info)

    def predict(self, model, state, x):
        """Logits for time-major sequences x (T, N, D)."""
        x = check_input(x, "x", "TargetPropagationThroughTime.predict", ndim=3, batch_axis=1)
        return model.forward(x)[0]
