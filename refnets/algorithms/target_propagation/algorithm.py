"""Difference Target Propagation (Lee et al. 2015) for dense networks.

Every hidden layer gets a *target* instead of a gradient. The first target is
one small gradient step on the layer below the output; targets travel down
through learned approximate inverses g_i ("feedback maps") with Lee's linear
correction; each layer then regresses its own output onto its target with a
layer-local squared loss; each inverse is trained as the decoder of a
denoising auto-encoder around its layer.

Symbol table
------------
======================  ====================================  ==========================
paper symbol            code name                             shape
======================  ====================================  ==========================
i = 1..L                block ``f[i]``; ``f[i].k`` is its      block i = Dense + activation
                        Dense layer's model index k
h_0 = x                 ``h[0]``                              (B, n_0)
a_i                     pre-activation inside ``f[i]``        (B, n_i)
h_i = f_i(h_{i-1})      ``h[i]``                              (B, n_i); h_L = logits a_L
f_i = s_i(W_i h + b_i)  ``f[i]`` (Block: dense, act)          W_i (n_i, n_{i-1}), b_i (n_i,)
g_i = t_i(V_i h + c_i)  ``state["feedback"]["k.V"]``, ``"k.c"``  V_i (n_{i-1}, n_i), c_i (n_{i-1},)
                        (k = f[i].k, the layer g_i inverts)
ĥ_i                     ``targets[i]``                        (B, n_i)
η̂ (first-target step)   ``target_step``                       scalar
σ (inverse noise)       ``sigma``                             scalar
ε                       ``noise``; given ``eps["k.eps.j"]``    (B, n_{i-1}), N(0, σ²)
L (global loss)         ``loss``                              mean softmax-CE
B                       batch size                            int
======================  ====================================  ==========================

Trace keys and given-value keywords: README section 2.

Equations DTP-1 to DTP-8 (and the conventions: squared losses summed over units
and averaged over the batch; η̂ per example against the summed loss by default),
the switches that follow the authors' codebases (``follow=``), the map
to Lee et al.'s ``conti_dtp.py`` and the Deviations are in this package's
README.md; code lines cite the tags.

Options: ``first_target`` 'penultimate_grad' (Lee, DTP-3), 'output_grad'
(DTP-3a) or 'label' (SDTP, DTP-3b); ``difference`` False gives plain target
propagation (DTP-4a); ``schedule`` 'batch' (per minibatch: ``feedback_iterations``
inverse updates, then targets from the updated inverses and the forward
gradients) or 'epoch' (Lee's alternating sweeps, :func:`train_epoch_alternating`).
Variants with other feedback losses are in
:mod:`refnets.algorithms.target_propagation.variants`.

References
----------
D.-H. Lee, S. Zhang, A. Fischer, Y. Bengio, "Difference Target Propagation",
ECML PKDD 2015 (LNCS 9284), arXiv 1412.7525; code: github.com/donghyunlee/dtp.
S. Bartunov et al., "Assessing the scalability of biologically-motivated deep
learning algorithms and architectures", NeurIPS 2018 (SDTP).
"""

from __future__ import annotations

import numpy as np

from ...diagnostics import cosine
from ...layers.activations import get_activation
from ...layers.dense import Dense
from ...layers.init import get_initializer
from ...losses import mse, one_hot, softmax_cross_entropy
from ...models import param_key
from ...optim import Optimizer, get_optimizer
from ...validation import DivergenceError, check_bool, check_choice, check_input, check_number
from ..base import (Algorithm, StepResult, as_recorder, check_given, check_loss_finite,
                    given_or_draw)
from .blocks import (Block, SoftmaxOutput, apply_block, block_param_grads,
                                        dense_blocks, difference_target, dtp_feedback_loss,
                                        local_loss, reconstruction_error, zeros_init)

__all__ = ["Block", "dense_blocks", "apply_block", "block_param_grads", "local_loss",
           "difference_target", "dtp_feedback_loss", "reconstruction_error",
           "DifferenceTargetPropagation", "train_epoch_alternating", "lee_recipe",
           "LEE_HYPERPARAMETERS", "feedback_key"]

#: Lee et al.'s continuous-DTP hyperparameters (``conti_dtp.py``), converted to
#: refnets conventions (``target_step`` per example = lr0 / 100).
LEE_HYPERPARAMETERS = {"target_step": 0.327736332653 / 100, "forward_lr": 0.0148893490317,
                       "feedback_lr": 0.00501149118237, "sigma": 0.359829566008,
                       "batch_size": 100, "backprop_lr": 0.00080444}

_FIRST_TARGETS = ("penultimate_grad", "output_grad", "label")
_SCHEDULES = ("batch", "epoch")
_REDUCTIONS = ("sum", "mean")
_FEEDBACK_SCALES = ("sum", "half_sum", "mean_over_sigma2")
_LOCAL_SCALES = ("sum", "half_sum")


def feedback_key(k, name):
    """State/trace key of a feedback quantity: ``"{k}.{name}"``, k the model index of the
    forward Dense layer the feedback map inverts (or, for direct feedback, feeds)."""
    return f"{k}.{name}"


# ---------------------------------------------------------------------------
# The algorithm
# ---------------------------------------------------------------------------

class DifferenceTargetPropagation(Algorithm):
    """Difference target propagation (Lee et al. 2015) and its target options.

    Parameters
    ----------
    target_step : float > 0, optional
        η̂ of the first target (DTP-3). Against the summed loss (per example)
        with ``target_step_reduction='sum'``, against the mean loss with 'mean'.
        Default: Lee's value in that reduction (0.0032774 per example; 0.32774
        on the mean loss at B = 100).
    sigma : float >= 0
        Standard deviation of the feedback-loss noise ε (Lee: 0.36).
    feedback_lr : float > 0
        Learning rate of the feedback optimiser (Lee: 0.005).
    feedback_optimizer : str, optional
        'lee_rmsprop' (default, Lee's ``util.rms_prop``), 'sgd', 'momentum',
        'rmsprop' or 'adam'.
    feedback_weight_decay : float >= 0
        L2 decay of the feedback parameters (DRL's ``feedback_wd``).
    feedback_iterations : int >= 1
        Feedback updates per minibatch before the forward step ('batch' schedule).
    first_target : {'penultimate_grad', 'output_grad', 'label'}, optional
        DTP-3 (default), DTP-3a or DTP-3b.
    difference : bool
        True: DTP (DTP-4); False: plain target propagation (DTP-4a).
    feedback_activation : str, optional
        t_i of g_i (default 'tanh'; 'identity' gives linear inverses).
    feedback_init : str, optional
        Initialiser of V_i (default 'orthogonal'); c_i = 0.
    schedule : {'batch', 'epoch'}, optional
    compare_to_backprop : bool
        Compute the backprop gradient every step for the cosine diagnostics.
    loss : callable
        Global loss (default mean softmax cross-entropy).

    Conventions (one keyword each; None means refnets' default, or the
    ``follow`` preset's value; README sections 6 and 7):

    target_step_reduction : {'sum', 'mean'}
        'sum' (default): ĥ = h - η̂ ∂L_sum/∂h, η̂ per example; 'mean': ĥ = h -
        η̂ ∂L/∂h with L the (mean) loss, as Lee's lr0 and Meulemans' τ.
    feedback_loss_scale : {'sum', 'half_sum', 'mean_over_sigma2'}
        Factor on every feedback loss and gradient: 1 (default: sum over
        units, batch mean), 1/2 (Shibuya et al.'s code) or
        1 / (max(σ, ``feedback_sigma_floor``)² n) with n the units per example
        of the reconstructed quantity (Meulemans et al.'s code) (DTP-2c).
    feedback_sigma_floor : float >= 0
        The floor on σ in 'mean_over_sigma2' (Meulemans' DTP: 0.02; default 0).
    local_loss_scale : {'sum', 'half_sum'}
        Forward local loss (DTP-5) as ‖·‖² (default; Lee, Meulemans) or ½‖·‖²
        (Ernoult et al.) (DTP-5a).
    feedback_bias : bool
        Whether g_i has a bias c_i (default True; Shibuya et al.'s code has none).
    follow : str, optional
        Preset of the conventions above (and of ``first_target``, ``schedule``,
        ``feedback_activation``, ``feedback_init``, ``feedback_optimizer``) that
        reproduces one authors' codebase; the names a class accepts are the keys
        of its ``FOLLOW`` dict. Explicit keywords override the preset.
    """

    name = "dtp"

    #: refnets' own conventions (what ``None`` resolves to without ``follow``)
    CONVENTIONS = {"first_target": "penultimate_grad", "schedule": "batch",
                   "feedback_activation": "tanh", "feedback_init": "orthogonal",
                   "feedback_optimizer": "lee_rmsprop", "target_step_reduction": "sum",
                   "feedback_loss_scale": "sum", "feedback_sigma_floor": 0.0,
                   "local_loss_scale": "sum", "feedback_bias": True}
    #: presets: codebase name -> conventions it sets (README section 6)
    FOLLOW = {
        # Lee et al.'s Theano code (conti_dtp.py): lr0 on the mean NLL, epoch-alternating
        # sweeps (train_inv, then train_ff_sync), util.rms_prop, rand_ortho.
        "lee-theano": {"first_target": "penultimate_grad", "target_step_reduction": "mean",
                       "schedule": "epoch", "feedback_activation": "tanh",
                       "feedback_init": "orthogonal", "feedback_optimizer": "lee_rmsprop",
                       "feedback_loss_scale": "sum", "local_loss_scale": "sum",
                       "feedback_bias": True},
        # Meulemans et al.'s PyTorch code (DTPNetwork, DTPLayer): first target on the
        # logits with τ on the mean loss, feedback loss element-mean / max(σ, 0.02)².
        "meulemans": {"first_target": "output_grad", "target_step_reduction": "mean",
                      "feedback_loss_scale": "mean_over_sigma2", "feedback_sigma_floor": 0.02,
                      "local_loss_scale": "sum", "feedback_activation": "tanh",
                      "feedback_init": "glorot_normal", "feedback_bias": True},
    }
    #: given-value keywords of init_state and step
    GIVEN_INIT = ("V",)
    GIVEN_STEP = ("eps",)
    #: name of the feedback weight in state and trace keys ("k.V"; direct DTP: "k.Q")
    FEEDBACK_WEIGHT = "V"

    def __init__(self, target_step=None, sigma=LEE_HYPERPARAMETERS["sigma"],
                 feedback_lr=LEE_HYPERPARAMETERS["feedback_lr"], feedback_optimizer=None,
                 feedback_weight_decay=0.0, feedback_iterations=1, first_target=None,
                 difference=True, feedback_activation=None, feedback_init=None, schedule=None,
                 compare_to_backprop=True, loss=softmax_cross_entropy, *,
                 target_step_reduction=None, feedback_loss_scale=None, feedback_sigma_floor=None,
                 local_loss_scale=None, feedback_bias=None, follow=None):
        super().__init__(loss)
        where = type(self).__name__
        if follow is not None:
            check_choice(follow, "follow", tuple(self.FOLLOW), where)
        preset = {**self.CONVENTIONS, **(self.FOLLOW[follow] if follow is not None else {})}
        given = {"first_target": first_target, "schedule": schedule,
                 "feedback_activation": feedback_activation, "feedback_init": feedback_init,
                 "feedback_optimizer": feedback_optimizer,
                 "target_step_reduction": target_step_reduction,
                 "feedback_loss_scale": feedback_loss_scale,
                 "feedback_sigma_floor": feedback_sigma_floor,
                 "local_loss_scale": local_loss_scale, "feedback_bias": feedback_bias}
        conv = {name: preset[name] if value is None else value for name, value in given.items()}
        self.follow = follow
        self.first_target = check_choice(conv["first_target"], "first_target", _FIRST_TARGETS,
                                         where)
        self.schedule = check_choice(conv["schedule"], "schedule", _SCHEDULES, where)
        self.target_step_reduction = check_choice(conv["target_step_reduction"],
                                                  "target_step_reduction", _REDUCTIONS, where)
        self.feedback_loss_scale = check_choice(conv["feedback_loss_scale"],
                                                "feedback_loss_scale", _FEEDBACK_SCALES, where)
        self.local_loss_scale = check_choice(conv["local_loss_scale"], "local_loss_scale",
                                             _LOCAL_SCALES, where)
        self.feedback_sigma_floor = check_number(conv["feedback_sigma_floor"],
                                                 "feedback_sigma_floor", where, low=0)
        self.feedback_bias = check_bool(conv["feedback_bias"], "feedback_bias", where)
        if target_step is None:
            lr0 = LEE_HYPERPARAMETERS["target_step"] * LEE_HYPERPARAMETERS["batch_size"]
            target_step = lr0 if self.target_step_reduction == "mean" \
                else LEE_HYPERPARAMETERS["target_step"]
        self.target_step = check_number(target_step, "target_step", where, low=0, low_open=True)
        self.sigma = check_number(sigma, "sigma", where, low=0)
        self.feedback_lr = check_number(feedback_lr, "feedback_lr", where, low=0, low_open=True)
        self.feedback_weight_decay = check_number(feedback_weight_decay, "feedback_weight_decay",
                                                  where, low=0)
        self.feedback_iterations = check_number(feedback_iterations, "feedback_iterations",
                                                where, low=1, integer=True)
        self.difference = check_bool(difference, "difference", where)
        self.compare_to_backprop = check_bool(compare_to_backprop, "compare_to_backprop", where)
        if self.feedback_loss_scale == "mean_over_sigma2" \
                and max(self.sigma, self.feedback_sigma_floor) == 0:
            raise ValueError(f"{where}: feedback_loss_scale='mean_over_sigma2' divides by "
                             f"max(sigma, feedback_sigma_floor)^2, so one of them must be > 0, "
                             f"got sigma={sigma!r}, feedback_sigma_floor="
                             f"{conv['feedback_sigma_floor']!r}")
        self.feedback_optimizer = conv["feedback_optimizer"]
        self.feedback_activation, self.feedback_init = (conv["feedback_activation"],
                                                        conv["feedback_init"])
        for name, check in (("feedback_optimizer",
                             lambda: get_optimizer(self.feedback_optimizer, lr=1.0)),
                            ("feedback_activation",
                             lambda: get_activation(self.feedback_activation)),
                            ("feedback_init", lambda: get_initializer(self.feedback_init))):
            try:                                          # validate the names now, not mid-run
                check()
            except ValueError as exc:
                raise ValueError(f"{where}: {name}: {exc}") from None
        self._shells = {}                         # parameter-free Dense shells for g_i

    def __repr__(self):
        follow = "" if self.follow is None else f", follow={self.follow!r}"
        return (f"{type(self).__name__}(first_target={self.first_target!r}, "
                f"difference={self.difference}, target_step={self.target_step:g}, "
                f"sigma={self.sigma:g}, schedule={self.schedule!r}{follow})")

    # -- structure --------------------------------------------------------
    def blocks(self, model):
        """f[1..L] of the model; in 'label' mode the top block ends in a softmax."""
        f = dense_blocks(model)
        if self.first_target == "label":
            f[-1] = Block(f[-1].k, f[-1].dense, SoftmaxOutput())
        return f

    def block_to_layer(self, model):
        """{i: k}: block number i (1-based, the papers' layer index) -> model index k of its
        Dense (or Conv2D) layer. Every state, gradient and trace key uses k, never i."""
        f = self.blocks(model)
        return {i: f[i].k for i in range(1, len(f))}

    def top_layer(self, n_blocks):
        """Index of the layer holding the first target: L-1 (Lee) or L."""
        return n_blocks - 1 if self.first_target == "penultimate_grad" else n_blocks

    def feedback_shapes(self, f):
        """{i: (n_in, n_out)} of every learned g_i (layer i -> layer i-1), i = 2..top."""
        top = self.top_layer(len(f) - 1)
        return {i: (f[i].dense.n_out, f[i].dense.n_in) for i in range(2, top + 1)}

    def _make_feedback_optimizer(self):
        return get_optimizer(self.feedback_optimizer, lr=self.feedback_lr,
                             weight_decay=self.feedback_weight_decay)

    def _check_state(self, state, where):
        fb = state.get("feedback") if isinstance(state, dict) else None
        if not isinstance(fb, dict) or not all(isinstance(key, str) for key in fb):
            got = sorted(map(str, fb)) if isinstance(fb, dict) else repr(fb)
            raise ValueError(f"{where}: state['feedback'] must be the dict {{'k.V': array, ...}} "
                             f"of init_state (feedback keyed by the model index k of the layer "
                             f"it inverts); got keys {got}. "
                             f"A state saved before this key scheme (keyed by block number) "
                             f"cannot be used: rebuild it with init_state")

    def init_state(self, model, rng, record=None, **given):
        """Feedback parameters ``{"k.V": V_i, "k.c": c_i}`` and the feedback optimiser's moments.

        k is the model index of the forward Dense layer g_i inverts
        (:meth:`block_to_layer`). The state holds arrays and dicts only (it
        round-trips through :func:`refnets.checkpoint.save_checkpoint`).

        Given values: ``V={"k.V": array (n_{i-1}, n_i)}`` replaces the drawn
        initial V_i (c_i starts at 0, nothing is drawn for it).
        """
        where = f"{type(self).__name__}.init_state"
        check_given(given, self.GIVEN_INIT, where)
        record = as_recorder(record)
        f, w = self.blocks(model), self.FEEDBACK_WEIGHT
        feedback = {}
        for i, (n_in, n_out) in self.feedback_shapes(f).items():
            k = f[i].k
            feedback[feedback_key(k, w)] = given_or_draw(
                given, w, feedback_key(k, w), (n_out, n_in),
                lambda r: Dense(n_in, n_out, r, init=self.feedback_init, bias=False).params["W"],
                rng, record, where)
            if self.feedback_bias:
                feedback[feedback_key(k, "c")] = np.zeros(n_out)
        return {"feedback": feedback, "feedback_optimizer": {"t": 0, "moments": {}}, "steps": 0}

    def feedback_map(self, state, k):
        """(Block, params) of the feedback map keyed by model index k: a Dense run with the
        state's (V, c), then t_i. ``params`` holds the state's arrays (not copies)."""
        fb = state["feedback"]
        params = {"W": fb[feedback_key(k, self.FEEDBACK_WEIGHT)]}
        if feedback_key(k, "c") in fb:
            params["b"] = fb[feedback_key(k, "c")]
        n_out, n_in = params["W"].shape
        key = (n_in, n_out, "b" in params)
        if key not in self._shells:
            self._shells[key] = Dense(n_in, n_out, None, init=zeros_init, bias=key[2])
        act = get_activation(self.feedback_activation)
        return Block(None, self._shells[key], None if act.name == "identity" else act), params

    def g(self, state, k, h):
        """g_i(h) of the feedback map keyed by k (the Dense layer it inverts), (B, n_{i-1})."""
        block, params = self.feedback_map(state, k)
        return apply_block(block, h, params)[0]

    @staticmethod
    def forward(f, x):
        """h[0..L] and the block caches (h[L] = logits, or probabilities in 'label' mode)."""
        h, caches = [x], [None]
        for i in range(1, len(f)):
            hi, ci = apply_block(f[i], h[i - 1])               # (DTP-1)
            h.append(hi)
            caches.append(ci)
        return h, caches

    # -- targets ----------------------------------------------------------
    def _step_scale(self, n):
        """Factor turning ∂L/∂(.) of the mean loss into the first target's step direction."""
        return self.target_step * n if self.target_step_reduction == "sum" else self.target_step

    def first_target_and_top_grads(self, f, h, caches, y):
        """Global loss, the first target and the true gradients of the blocks above it.

        Returns
        -------
        loss : float
        dlogits : ndarray (B, n_L), dL/dlogits (reused for the backprop reference)
        top : int, index of the layer holding the first target
        target : ndarray (B, n_top), ĥ_top
        true_grads : dict {i: {'W', 'b'}} for blocks trained by the true gradient
        """
        L = len(f) - 1
        n = h[0].shape[0]
        logits = caches[L][1]["z"] if self.first_target == "label" else h[L]
        loss, dlogits = self.loss(logits, y)
        if self.first_target == "penultimate_grad":
            # (DTP-3): ĥ_{L-1} = h_{L-1} - η̂ ∂L_sum/∂h_{L-1}, with L_sum = B L_mean;
            # W_L, b_L get the true gradient and backprop stops at h_{L-1}.
            dh_top, top_grads = f[L].dense.backward(dlogits, caches[L][0])
            return loss, dlogits, L - 1, h[L - 1] - self._step_scale(n) * dh_top, {L: top_grads}
        if self.first_target == "output_grad":
            # (DTP-3a): ĥ_L = a_L - η̂ ∂L_sum/∂a_L
            return loss, dlogits, L, h[L] - self._step_scale(n) * dlogits, {}
        # (DTP-3b) 'label' (SDTP): ĥ_L = one-hot label; the output layer gets the CE gradient.
        top_grads = f[L].dense.backward_params(dlogits, caches[L][0])
        y = np.asarray(y)
        target = one_hot(y, h[L].shape[-1]) if np.issubdtype(y.dtype, np.integer) else y
        return loss, dlogits, L, target, {L: top_grads}

    def propagate_targets(self, f, state, h, top, target, record=None):
        """{i: ĥ_i} for i = 1..top by (DTP-4) (or (DTP-4a) when ``difference`` is False).

        Records ``"k.g_h_hat"`` = g_i(ĥ_i) and ``"k.g_h"`` = g_i(h_i), k = f[i].k.
        """
        record = as_recorder(record)
        targets = {top: target}
        for i in range(top, 1, -1):
            k = f[i].k
            g_hat = self.g(state, k, targets[i])
            if self.difference:
                g_h = self.g(state, k, h[i])
                targets[i - 1] = h[i - 1] + g_hat - g_h              # (DTP-4)
                record.put(feedback_key(k, "g_h"), g_h)
            else:
                targets[i - 1] = g_hat                                  # (DTP-4a)
            record.put(feedback_key(k, "g_h_hat"), g_hat)
        return targets

    # -- inverses ---------------------------------------------------------
    def _noise(self, given, name, key, shape, rng, record, where):
        """ε (or η) ~ N(0, σ²) of one feedback loss: given, or drawn from ``rng``."""
        sigma = self.sigma
        return given_or_draw(given, name, key, shape,
                             lambda r: sigma * r.standard_normal(shape), rng, record, where)

    def feedback_loss(self, f, state, h, i, rng, given=None, record=None, it=0, where=""):
        """Loss and gradient ``{"k.V", "k.c"}`` of g_i's parameters: Lee's (DTP-2), unscaled.

        ε is the given ``eps["k.eps.{it}"]`` or drawn; k = f[i].k.
        """
        k = f[i].k
        g, params = self.feedback_map(state, k)
        noise = self._noise(given or {}, "eps", feedback_key(k, f"eps.{it}"), h[i - 1].shape,
                            rng, as_recorder(record), where)
        loss, grads = dtp_feedback_loss(f[i], g, h[i - 1], noise, params)
        return loss, self._state_keys(k, grads), noise[0].size

    def _state_keys(self, k, grads, weight=None):
        """{'W': .., 'b': ..} of a feedback Dense -> {"k.V": .., "k.c": ..}."""
        out = {feedback_key(k, weight or self.FEEDBACK_WEIGHT): grads["W"]}
        if "b" in grads:
            out[feedback_key(k, "c")] = grads["b"]
        return out

    def feedback_scale(self, n_units):
        """(DTP-2c) factor on a feedback loss and its gradient (``feedback_loss_scale``).

        n_units : units per example of the reconstructed quantity (ε's size per example).
        """
        if self.feedback_loss_scale == "sum":
            return 1.0
        if self.feedback_loss_scale == "half_sum":
            return 0.5
        return 1.0 / (max(self.sigma, self.feedback_sigma_floor) ** 2 * n_units)

    def reconstruction_errors(self, f, state, h):
        """Noise-free (1/B) Σ ‖g_i(f_i(h_{i-1})) - h_{i-1}‖² per feedback map, in block order."""
        # = reconstruction_error(f[i], g_i, h[i-1]), with f_i(h_{i-1}) = h_i already computed
        return np.array([mse(self.g(state, f[i].k, h[i]), h[i - 1])[0]
                         for i in sorted(self.feedback_shapes(f))])

    def feedback_params(self, state):
        """The flat ``{"k.V": V_i, "k.c": c_i}`` feedback arrays (updated in place)."""
        return state["feedback"]

    def _apply_feedback_update(self, state, grads):
        """One optimiser step on the feedback parameters; its moments live in the state."""
        opt = self._make_feedback_optimizer()
        opt.state, opt.t = state["feedback_optimizer"]["moments"], state["feedback_optimizer"]["t"]
        opt.update(self.feedback_params(state), grads)
        state["feedback_optimizer"]["t"] = opt.t

    def _feedback_round(self, f, state, h, rng, update, given=None, record=None, it=0, where=""):
        """Feedback losses of every map on the activations h; one optimiser step if ``update``.

        Records ``"k.L_inv.{it}"`` and the gradients ``"k.dV.{it}"``, ``"k.dc.{it}"``
        (after the ``feedback_loss_scale`` factor).
        """
        record = as_recorder(record)
        losses, grads = [], {}
        for i in sorted(self.feedback_shapes(f)):
            loss_i, grads_i, n_units = self.feedback_loss(f, state, h, i, rng, given, record, it,
                                                          where)
            scale = self.feedback_scale(n_units)
            if scale != 1.0:                                       # (DTP-2c)
                loss_i = loss_i * scale
                grads_i = {key: value * scale for key, value in grads_i.items()}
            if not np.isfinite(loss_i):
                raise DivergenceError(f"{type(self).__name__}: feedback loss of the map keyed "
                                      f"{f[i].k} is {loss_i} at step {state['steps']} (diverged); "
                                      f"try a smaller feedback_lr or sigma",
                                      quantity="feedback loss")
            k = f[i].k
            record.put(feedback_key(k, f"L_inv.{it}"), loss_i)
            for key, value in grads_i.items():
                record.put(feedback_key(k, f"d{key.split('.', 1)[1]}.{it}"), value)
            losses.append(loss_i)
            grads.update(grads_i)
        if update and grads:
            self._apply_feedback_update(state, grads)
        return np.array(losses)

    def train_feedback(self, model, state, x, rng, update=True, record=None, **given):
        """One update of every g_i on the batch x (forward weights fixed).

        ``given`` as in :meth:`step` (``eps={"k.eps.0": ...}``).

        Returns
        -------
        losses : ndarray (number of feedback maps,), feedback losses before the
            update, in block order.
        """
        where = f"{type(self).__name__}.train_feedback"
        check_given(given, self.GIVEN_STEP, where)
        self._check_state(state, where)
        x = check_input(x, "x", where)
        f = self.blocks(model)
        return self._feedback_round(f, state, self.forward(f, x)[0], rng, update, given,
                                    record, 0, where)

    # -- one minibatch ----------------------------------------------------
    def step(self, model, state, x, y, rng, record=None, **given):
        """Feedback update(s) (schedule 'batch'), then targets and forward gradients.

        Given values (README section 2): ``eps={"k.eps.j": ε}`` (the noise of
        feedback map k in feedback iteration j, shape (B, n_{i-1})); variants
        add their own (``GIVEN_STEP``).

        Returns
        -------
        StepResult with ``grads`` keyed like ``model.params()`` and ``info``:
        ``forward_loss`` (per block with a local loss (DTP-5)), ``feedback_loss``
        (per feedback map, before its update) and ``reconstruction_error``
        (per feedback map, after it), ``cosine_per_layer`` and
        ``angle_per_layer`` (per block, vs backprop), ``cosine_to_backprop``
        (all parameters) and ``cosine_to_backprop_propagated`` (the blocks
        whose target came through at least one feedback map).

        ``cosine_to_backprop`` compares the raw update vectors: the blocks
        trained by (DTP-5) move by ~2η̂ x their gradient while a block trained by
        the true gradient moves by 1 x, so it stays low (~0.2 on Fashion-MNIST)
        even when every per-layer angle is small. Read the per-layer angles.
        """
        where = f"{type(self).__name__}.step"
        check_given(given, self.GIVEN_STEP, where)
        self._check_state(state, where)
        x = check_input(x, "x", where)
        where = f"{where} (step {state['steps']})"
        record = as_recorder(record)
        f = self.blocks(model)
        h, caches = self.forward(f, x)
        for i in range(1, len(f)):
            k = f[i].k
            record.put(f"{k}.a", caches[i][1]["z"] if caches[i][1] is not None else h[i])
            record.put(f"{k}.h", h[i])
        if self.schedule == "batch":        # inverses first, then targets from the new inverses
            for it in range(self.feedback_iterations):
                fb_losses = self._feedback_round(f, state, h, rng, True, given, record, it, where)
        else:                               # 'epoch': inverses are trained in their own sweep
            fb_losses = self._feedback_round(f, state, h, rng, False, given, record, 0, where)
        loss, dlogits, top, target, true_grads = self.first_target_and_top_grads(f, h, caches, y)
        check_loss_finite(loss, where)
        record.put(f"{f[-1].k}.dL_da", dlogits)
        targets = self.propagate_targets(f, state, h, top, target, record)
        for i, t in targets.items():
            if not np.all(np.isfinite(t)):
                raise DivergenceError(f"{where}: the target of layer {f[i].k} contains NaN/inf "
                                      f"(diverged); try a smaller target_step", quantity="target")
            record.put(f"{f[i].k}.h_hat", t)

        per_block, fw_losses = dict(true_grads), []
        for i in range(1, len(f)):
            if i not in per_block:
                # (DTP-5) = local_loss(f[i], h[i-1], targets[i]), reusing this forward pass's caches
                fw_loss, dh = mse(h[i], targets[i])
                if self.local_loss_scale == "half_sum":                # (DTP-5a)
                    fw_loss, dh = 0.5 * fw_loss, 0.5 * dh
                per_block[i] = block_param_grads(f[i], caches[i], dh)
                fw_losses.append(fw_loss)
                record.put(f"{f[i].k}.L_local", fw_loss)
                record.put(f"{f[i].k}.dL_local_dh", dh)
        grads = {param_key(f[i].k, name): value
                 for i in sorted(per_block) for name, value in per_block[i].items()}
        state["steps"] += 1

        info = {"forward_loss": np.array(fw_losses), "feedback_loss": fb_losses}
        recon = self.reconstruction_errors(f, state, h)
        if recon.size:
            info["reconstruction_error"] = recon
        if self.compare_to_backprop:
            info.update(self._compare(model, f, caches, dlogits, grads, top))
        return StepResult(loss=loss, grads=grads, info=info)

    def predict(self, model, state, x):
        """Network output (logits) for ``x``."""
        x = check_input(x, "x", f"{type(self).__name__}.predict")
        return model.forward(x)[0]

    def _compare(self, model, f, caches, dlogits, grads, top):
        """Cosine/angle between this update and the backprop gradient, per block and overall.

        Backprop reuses this step's forward caches: ``model.backward(dL/dlogits)``
        is exactly :func:`refnets.algorithms.base.backprop_gradients`.
        """
        model_caches = []
        for i in range(1, len(f)):
            model_caches.append(caches[i][0])
            if f[i].act is not None and not isinstance(f[i].act, SoftmaxOutput):
                model_caches.append(caches[i][1])
        bp = model.flatten(model.backward(dlogits, model_caches)[1])
        keys = [[param_key(f[i].k, n) for n in f[i].dense.params] for i in range(1, len(f))]
        cos = np.array([cosine(grads, bp, k) for k in keys])
        out = {"cosine_per_layer": cos,
               "angle_per_layer": np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))),
               "cosine_to_backprop": cosine(grads, bp)}
        propagated = [k for i, ks in enumerate(keys, 1) if i < top for k in ks]
        if propagated:
            out["cosine_to_backprop_propagated"] = cosine(grads, bp, propagated)
        return out


def train_epoch_alternating(model, algorithm, state, optimizer, x, y, batch_size, rng):
    """One epoch of Lee et al.'s schedule: an inverse sweep, then a forward sweep.

    As in ``conti_dtp.py``: the minibatches are fixed consecutive slices (never
    shuffled; a final partial slice is dropped); first ``train_inv`` on every
    slice (only the g_i change), then ``train_ff_sync`` on every slice with
    targets from the current inverses (only the forward weights change).

    Parameters
    ----------
    algorithm : DifferenceTargetPropagation with ``schedule='epoch'``
    optimizer : Optimizer over ``algorithm.variables(model, state)``
    x : ndarray (N, n_0); y : labels (N,)
    batch_size : int
    rng : numpy.random.Generator (inverse noise)

    Returns
    -------
    dict with 'loss' (mean training loss of the forward sweep), 'feedback_loss'
    (per-layer mean of the inverse sweep) and 'info' (last step's info).
    """
    where = "train_epoch_alternating"
    if not isinstance(algorithm, DifferenceTargetPropagation) or algorithm.schedule != "epoch":
        raise ValueError(f"{where}: algorithm must be a DifferenceTargetPropagation with "
                         f"schedule='epoch', got {algorithm!r}")
    if not isinstance(optimizer, Optimizer):
        raise ValueError(f"{where}: optimizer must be a refnets Optimizer, "
                         f"got {type(optimizer).__name__}")
    n = len(x)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or not 1 <= batch_size <= n:
        raise ValueError(f"{where}: batch_size must be an int in [1, {n}], got {batch_size!r}")
    slices = [slice(s, s + batch_size) for s in range(0, n - batch_size + 1, batch_size)]
    fb = np.mean([algorithm.train_feedback(model, state, x[s], rng) for s in slices], axis=0)
    losses, res = [], None
    for s in slices:
        res = algorithm.step(model, state, x[s], y[s], rng)
        optimizer.update(algorithm.variables(model, state), res.grads)
        losses.append(res.loss)
    return {"loss": float(np.mean(losses)), "feedback_loss": fb, "info": res.info}


def lee_recipe(sizes, activation, rng, schedule="batch"):
    """Lee et al.'s continuous-DTP setup for an MLP of the given sizes.

    Orthogonal init (all singular values 1), η̂ = 0.0032774 per example
    (lr0 = 0.32774 on the mean loss at B = 100), σ = 0.36, tanh inverses trained
    with ``lee_rmsprop`` at lr_b = 0.0050, forward weights with ``lee_rmsprop``
    at lr_f = 0.0149. Use batch size 100 (``LEE_HYPERPARAMETERS["batch_size"]``)
    and, for the faithful schedule, ``schedule='epoch'`` with
    :func:`train_epoch_alternating`.

    Returns
    -------
    Setup(model, algorithm, optimizer)
    """
    from ...models import mlp
    from ...optim import LeeRMSprop
    from .. import Setup
    hp = LEE_HYPERPARAMETERS
    model = mlp(sizes, activation, rng, init="orthogonal")
    algo = DifferenceTargetPropagation(target_step=hp["target_step"], sigma=hp["sigma"],
                                       feedback_lr=hp["feedback_lr"],
                                       feedback_optimizer="lee_rmsprop", schedule=schedule)
    return Setup(model, algo, LeeRMSprop(lr=hp["forward_lr"]))


def _build(sizes, activation, rng, x_train=None, y_train=None):
    """Registry factory: DTP with Adam, tuned to learn within the ``refnets compare`` budget.

    Lee's own recipe (:func:`lee_recipe`: ``lee_rmsprop``, η̂ = 0.0033) learns
    Fashion-MNIST as fast but stalls near chance on two-spirals in 2000 full-batch
    steps, so the default uses Adam (lr 3e-3 for W and V), η̂ = 0.01 and σ = 0.2.
    Measured with the compare defaults: Fashion-MNIST subset test accuracy
    0.802 +- 0.012 (seeds 0-2, ``refnets compare --methods dtp --seeds 3``);
    two spirals 0.763 (seed 0, ``refnets compare --dataset spirals --methods dtp``).
    """
    from ...models import mlp
    from ...optim import Adam
    from .. import Setup
    model = mlp(sizes, activation, rng, init="orthogonal")
    algo = DifferenceTargetPropagation(target_step=0.01, sigma=0.2, feedback_optimizer="adam",
                                       feedback_lr=3e-3)
    return Setup(model, algo, Adam(lr=3e-3))


def _build_tp(sizes, activation, rng, x_train=None, y_train=None):
    """Registry factory: plain target propagation (DTP-4a), the ablation of DTP's difference.

    Exactly the ``dtp`` setup with ``difference=False`` (Adam lr 3e-3 for W and V,
    η̂ = 0.01, σ = 0.2), so the two rows differ only by the difference correction.
    Measured: see the package README, section 8.
    """
    from ...models import mlp
    from ...optim import Adam
    from .. import Setup
    model = mlp(sizes, activation, rng, init="orthogonal")
    algo = DifferenceTargetPropagation(target_step=0.01, sigma=0.2, feedback_optimizer="adam",
                                       feedback_lr=3e-3, difference=False)
    return Setup(model, algo, Adam(lr=3e-3))


def _register():
    from .. import Method, register
    register(Method("dtp", _build, "difference target propagation (learned inverses)",
                    "Lee, Zhang, Fischer & Bengio 2015"))
    register(Method("tp", _build_tp, "plain target propagation: DTP without the difference "
                    "correction (ablation)", "Lee, Zhang, Fischer & Bengio 2015"))


_register()
