"""Difference Target Propagation (Lee et al. 2015) for dense networks.

Every hidden layer gets a *target* instead of a gradient. The first target is
one small gradient step on the layer below the output; targets travel down
through learned approximate inverses g_i ("feedback maps") with Lee's linear
correction; each layer then regresses its own output onto its target with a
layer-local squared loss; each inverse is trained as the decoder of a
denoising auto-encoder around its layer.

Symbol table
------------
======================  ================================  ==========================
paper symbol            code name                         shape
======================  ================================  ==========================
i = 1..L                ``i`` (block index, 1-based)      block i = Dense + activation
h_0 = x                 ``h[0]``                          (B, n_0)
a_i                     pre-activation inside ``f[i]``    (B, n_i)
h_i = f_i(h_{i-1})      ``h[i]``                          (B, n_i); h_L = logits a_L
f_i = s_i(W_i h + b_i)  ``f[i]`` (Block: dense, act)      W_i (n_i, n_{i-1}), b_i (n_i,)
g_i = t_i(V_i h + c_i)  ``state["feedback"][i]``          V_i = ["W"] (n_{i-1}, n_i),
                                                          c_i = ["b"] (n_{i-1},)
ĥ_i                     ``targets[i]``                    (B, n_i)
η̂ (first-target step)   ``target_step`` (per example,     scalar
                        against the *summed* loss)
σ (inverse noise)       ``sigma``                         scalar
ε                       ``noise``                         (B, n_{i-1}), N(0, σ²)
L (global loss)         ``loss``                          mean softmax-CE
B                       batch size                        int
======================  ================================  ==========================

Equations DTP-1 to DTP-8 (and the conventions: squared losses summed over units
and averaged over the batch; η̂ per example against the summed loss), the map
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
from ..base import Algorithm, StepResult, check_loss_finite
from .blocks import (Block, SoftmaxOutput, apply_block, block_param_grads,
                                        dense_blocks, difference_target, dtp_feedback_loss,
                                        local_loss, reconstruction_error, zeros_init)

__all__ = ["Block", "dense_blocks", "apply_block", "block_param_grads", "local_loss",
           "difference_target", "dtp_feedback_loss", "reconstruction_error",
           "DifferenceTargetPropagation", "train_epoch_alternating", "lee_recipe",
           "LEE_HYPERPARAMETERS"]

#: Lee et al.'s continuous-DTP hyperparameters (``conti_dtp.py``), converted to
#: refnets conventions (``target_step`` per example = lr0 / 100).
LEE_HYPERPARAMETERS = {"target_step": 0.327736332653 / 100, "forward_lr": 0.0148893490317,
                       "feedback_lr": 0.00501149118237, "sigma": 0.359829566008,
                       "batch_size": 100, "backprop_lr": 0.00080444}

_FIRST_TARGETS = ("penultimate_grad", "output_grad", "label")
_SCHEDULES = ("batch", "epoch")


# ---------------------------------------------------------------------------
# The algorithm
# ---------------------------------------------------------------------------

class DifferenceTargetPropagation(Algorithm):
    """Difference target propagation (Lee et al. 2015) and its target options.

    Parameters
    ----------
    target_step : float > 0
        η̂ per example against the summed loss (Lee: 0.0032774).
    sigma : float >= 0
        Standard deviation of the inverse-loss noise ε (Lee: 0.36).
    feedback_lr : float > 0
        Learning rate of the feedback optimiser (Lee: 0.005).
    feedback_optimizer : str
        'lee_rmsprop' (default, Lee's ``util.rms_prop``), 'sgd', 'momentum',
        'rmsprop' or 'adam'.
    feedback_weight_decay : float >= 0
        L2 decay of the feedback parameters (DRL's ``feedback_wd``).
    feedback_iterations : int >= 1
        Inverse updates per minibatch before the forward step ('batch' schedule).
    first_target : {'penultimate_grad', 'output_grad', 'label'}
    difference : bool
        True: DTP (DTP-4); False: plain target propagation (DTP-4a).
    feedback_activation : str
        t_i of g_i (Lee: 'tanh'; 'identity' gives linear inverses).
    feedback_init : str
        Initialiser of V_i (Lee: orthogonal); c_i = 0.
    schedule : {'batch', 'epoch'}
    compare_to_backprop : bool
        Compute the backprop gradient every step for the cosine diagnostics
        (one extra forward/backward pass).
    loss : callable
        Global loss (default mean softmax cross-entropy).
    """

    name = "dtp"

    def __init__(self, target_step=LEE_HYPERPARAMETERS["target_step"],
                 sigma=LEE_HYPERPARAMETERS["sigma"], feedback_lr=LEE_HYPERPARAMETERS["feedback_lr"],
                 feedback_optimizer="lee_rmsprop", feedback_weight_decay=0.0,
                 feedback_iterations=1, first_target="penultimate_grad", difference=True,
                 feedback_activation="tanh", feedback_init="orthogonal", schedule="batch",
                 compare_to_backprop=True, loss=softmax_cross_entropy):
        super().__init__(loss)
        where = type(self).__name__
        for name, value, low in (("target_step", target_step, "> 0"), ("sigma", sigma, ">= 0"),
                                 ("feedback_lr", feedback_lr, "> 0"),
                                 ("feedback_weight_decay", feedback_weight_decay, ">= 0")):
            ok = isinstance(value, (int, float, np.floating, np.integer)) and np.isfinite(value)
            if not ok or (value <= 0 if low == "> 0" else value < 0):
                raise ValueError(f"{where}: {name} must be a finite number {low}, got {value!r}")
        if isinstance(feedback_iterations, bool) or not isinstance(
                feedback_iterations, (int, np.integer)) or feedback_iterations < 1:
            raise ValueError(f"{where}: feedback_iterations must be an int >= 1, "
                             f"got {feedback_iterations!r}")
        if first_target not in _FIRST_TARGETS:
            raise ValueError(f"{where}: first_target must be one of {_FIRST_TARGETS}, "
                             f"got {first_target!r}")
        if schedule not in _SCHEDULES:
            raise ValueError(f"{where}: schedule must be one of {_SCHEDULES}, got {schedule!r}")
        for name, check in (("feedback_optimizer",
                             lambda: get_optimizer(feedback_optimizer, lr=1.0)),
                            ("feedback_activation", lambda: get_activation(feedback_activation)),
                            ("feedback_init", lambda: get_initializer(feedback_init))):
            try:                                          # validate the names now, not mid-run
                check()
            except ValueError as exc:
                raise ValueError(f"{where}: {name}: {exc}") from None
        self.target_step, self.sigma = float(target_step), float(sigma)
        self.feedback_lr, self.feedback_optimizer = float(feedback_lr), feedback_optimizer
        self.feedback_weight_decay = float(feedback_weight_decay)
        self.feedback_iterations = int(feedback_iterations)
        self.first_target, self.difference = first_target, bool(difference)
        self.feedback_activation, self.feedback_init = feedback_activation, feedback_init
        self.schedule, self.compare_to_backprop = schedule, bool(compare_to_backprop)
        self._shells = {}                         # parameter-free Dense shells for g_i

    def __repr__(self):
        return (f"{type(self).__name__}(first_target={self.first_target!r}, "
                f"difference={self.difference}, target_step={self.target_step:g}, "
                f"sigma={self.sigma:g}, schedule={self.schedule!r})")

    # -- structure --------------------------------------------------------
    def blocks(self, model):
        """f[1..L] of the model; in 'label' mode the top block ends in a softmax."""
        f = dense_blocks(model)
        if self.first_target == "label":
            f[-1] = Block(f[-1].k, f[-1].dense, SoftmaxOutput())
        return f

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

    def init_state(self, model, rng):
        """Feedback parameters {i: {'W': V_i, 'b': c_i}} and the feedback optimiser's moments.

        The state holds arrays and dicts only (it round-trips through
        :func:`refnets.checkpoint.save_checkpoint`).
        """
        f = self.blocks(model)
        feedback = {}
        for i, (n_in, n_out) in self.feedback_shapes(f).items():
            feedback[i] = Dense(n_in, n_out, rng, init=self.feedback_init).params
        return {"feedback": feedback, "feedback_optimizer": {"t": 0, "moments": {}}, "steps": 0}

    def feedback_map(self, state, i):
        """(Block, params) of g_i: a Dense run with the state's (V_i, c_i), then t_i."""
        params = state["feedback"][i]
        n_out, n_in = params["W"].shape
        key = (n_in, n_out, "b" in params)
        if key not in self._shells:
            self._shells[key] = Dense(n_in, n_out, None, init=zeros_init, bias=key[2])
        act = get_activation(self.feedback_activation)
        return Block(None, self._shells[key], None if act.name == "identity" else act), params

    def g(self, state, i, h):
        """g_i(h), shape (B, n_{i-1})."""
        block, params = self.feedback_map(state, i)
        return apply_block(block, h, params)[0]

    @staticmethod
    def forward(f, x):
        """h[0..L] and the block caches (h[L] = logits, or probabilities in 'label' mode)."""
        h, caches = [x], [None]
        for i in range(1, len(f)):
            hi, ci = apply_block(f[i], h[i - 1])
            h.append(hi)
            caches.append(ci)
        return h, caches

    # -- targets ----------------------------------------------------------
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
            return loss, dlogits, L - 1, h[L - 1] - self.target_step * n * dh_top, {L: top_grads}
        if self.first_target == "output_grad":
            # (DTP-3a): ĥ_L = a_L - η̂ ∂L_sum/∂a_L
            return loss, dlogits, L, h[L] - self.target_step * n * dlogits, {}
        # (DTP-3b) 'label' (SDTP): ĥ_L = one-hot label; the output layer gets the CE gradient.
        top_grads = f[L].dense.backward_params(dlogits, caches[L][0])
        y = np.asarray(y)
        target = one_hot(y, h[L].shape[-1]) if np.issubdtype(y.dtype, np.integer) else y
        return loss, dlogits, L, target, {L: top_grads}

    def propagate_targets(self, f, state, h, top, target):
        """{i: ĥ_i} for i = 1..top by (DTP-4) (or (DTP-4a) when ``difference`` is False)."""
        targets = {top: target}
        for i in range(top, 1, -1):
            targets[i - 1] = difference_target(lambda v, i=i: self.g(state, i, v), h[i - 1], h[i],
                                               targets[i], self.difference)
        return targets

    # -- inverses ---------------------------------------------------------
    def feedback_loss(self, f, state, h, i, rng):
        """Loss and gradient {'W', 'b'} of g_i's parameters: Lee's inverse loss (DTP-2)."""
        g, params = self.feedback_map(state, i)
        noise = self.sigma * rng.standard_normal(h[i - 1].shape)
        return dtp_feedback_loss(f[i], g, h[i - 1], noise, params)

    def reconstruction_errors(self, f, state, h):
        """Noise-free (1/B) Σ ‖g_i(f_i(h_{i-1})) - h_{i-1}‖² for every feedback map."""
        # = reconstruction_error(f[i], g_i, h[i-1]), with f_i(h_{i-1}) = h_i already computed
        return np.array([mse(self.g(state, i, h[i]), h[i - 1])[0]
                         for i in sorted(state["feedback"])])

    def feedback_params(self, state):
        """Flat {'i.V': V_i, 'i.c': c_i} view of the feedback arrays (updated in place)."""
        out = {}
        for i, p in state["feedback"].items():
            out[f"{i}.V"] = p["W"]
            if "b" in p:
                out[f"{i}.c"] = p["b"]
        return out

    def _apply_feedback_update(self, state, grads):
        """One optimiser step on the feedback parameters; its moments live in the state."""
        opt = self._make_feedback_optimizer()
        opt.state, opt.t = state["feedback_optimizer"]["moments"], state["feedback_optimizer"]["t"]
        flat = {}
        for i, gi in grads.items():
            flat[f"{i}.V"] = gi["W"]
            if "b" in gi:
                flat[f"{i}.c"] = gi["b"]
        opt.update(self.feedback_params(state), flat)
        state["feedback_optimizer"]["t"] = opt.t

    def _feedback_round(self, f, state, h, rng, update):
        """Inverse losses of every g_i on the activations h; one optimiser step if ``update``."""
        losses, grads = [], {}
        for i in sorted(state["feedback"]):
            loss_i, grads[i] = self.feedback_loss(f, state, h, i, rng)
            if not np.isfinite(loss_i):
                raise FloatingPointError(f"{type(self).__name__}: feedback loss of g_{i} is "
                                         f"{loss_i} at step {state['steps']} (diverged); try a "
                                         f"smaller feedback_lr or sigma")
            losses.append(loss_i)
        if update and grads:
            self._apply_feedback_update(state, grads)
        return np.array(losses)

    def train_feedback(self, model, state, x, rng, update=True):
        """One update of every g_i on the batch x (forward weights fixed).

        Returns
        -------
        losses : ndarray (number of feedback maps,), inverse losses before the
            update, in the order of ``sorted(state["feedback"])``.
        """
        f = self.blocks(model)
        return self._feedback_round(f, state, self.forward(f, x)[0], rng, update)

    # -- one minibatch ----------------------------------------------------
    def step(self, model, state, x, y, rng):
        """Inverse update(s) (schedule 'batch'), then targets and forward gradients.

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
        where = f"{type(self).__name__}.step (step {state['steps']})"
        f = self.blocks(model)
        h, caches = self.forward(f, x)
        if self.schedule == "batch":        # inverses first, then targets from the new inverses
            for _ in range(self.feedback_iterations):
                fb_losses = self._feedback_round(f, state, h, rng, update=True)
        else:                               # 'epoch': inverses are trained in their own sweep
            fb_losses = self._feedback_round(f, state, h, rng, update=False)
        loss, dlogits, top, target, true_grads = self.first_target_and_top_grads(f, h, caches, y)
        check_loss_finite(loss, where)
        targets = self.propagate_targets(f, state, h, top, target)
        for i, t in targets.items():
            if not np.all(np.isfinite(t)):
                raise FloatingPointError(f"{where}: the target of layer {i} contains NaN/inf "
                                         f"(diverged); try a smaller target_step")

        per_block, fw_losses = dict(true_grads), []
        for i in range(1, len(f)):
            if i not in per_block:
                # (DTP-5) = local_loss(f[i], h[i-1], targets[i]), reusing this forward pass's caches
                fw_loss, dh = mse(h[i], targets[i])
                per_block[i] = block_param_grads(f[i], caches[i], dh)
                fw_losses.append(fw_loss)
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
    steps, so the default uses Adam (lr 3e-3 for W and V), η̂ = 0.01 and σ = 0.2
    (measured after the compare defaults, seed 0: spirals 0.81, Fashion-MNIST
    subset 0.82 test accuracy).
    """
    from ...models import mlp
    from ...optim import Adam
    from .. import Setup
    model = mlp(sizes, activation, rng, init="orthogonal")
    algo = DifferenceTargetPropagation(target_step=0.01, sigma=0.2, feedback_optimizer="adam",
                                       feedback_lr=3e-3)
    return Setup(model, algo, Adam(lr=3e-3))


def _register():
    from .. import Method, register
    register(Method("dtp", _build, "difference target propagation (learned inverses)",
                    "Lee, Zhang, Fischer & Bengio 2015"))


_register()
