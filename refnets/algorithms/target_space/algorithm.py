"""Learning in target space (Fairbank, Samothrakis & Citi 2022): the algorithm.

The trainable variables are not weights but *targets*: for every layer k a
matrix T_k of desired pre-activation sums on a fixed realisation batch X_bar.
Each step turns the targets into weights by one ridge solve per layer
(:mod:`~refnets.algorithms.target_space.solve`), runs the ordinary minibatch
with those weights, and back-propagates the minibatch loss through every
solve to dL/dT_k. Any optimiser then updates the targets like weights.
The derivation, the equation tags (TS-n) cited in the comments, the map to
the authors' code, the deviations and the measured numbers are in this
package's README.md.

Symbol table
------------
==========================  =====================  ==========================================
paper symbol                code name              shape
==========================  =====================  ==========================================
X_bar (realisation batch)   ``state["xbar"]``      (n_bar, d_0); conv (n_bar, C, H, W);
                                                   RNN (T_bar, n_bar, D) time-major
n_bar                       ``realisation_batch_size``
T_k (targets of layer k)    ``state["targets"]["k.T"]``  dense (n_bar, n_k); conv
                                                   (n_bar*H*W, C_out); RNN (T_bar, n_bar, H)
A_bar_{k-1} = [1, X_bar_{k-1}]  ``A`` in the solve cache   (rows, 1 + fan_in)
W_k (solve layout)          ``W_full``             (1 + fan_in, n_k), bias in row 0
W_k (refnets layout)        ``params[k]``          Dense 'W' (n_k, fan_in), 'b' (n_k,)
S_bar_k = A_bar W_k         ``S`` / ``out``        realised sums on X_bar
lambda                      ``pseudoinverse_l2_regularisation``  absolute, >= 0
g                           activation layers      element-wise
SCU / OCU                   ``realisation='scu'|'ocu'``
==========================  =====================  ==========================================

One step (SCU; the paper's Algorithm 3 and Eq. 6-7)::

    A_bar = [1, X_bar]                                            (TS-1)
    for k = 1..L:  W_k = ridge_solve(A_bar, T_k, lam)             (TS-2)
                   S_bar_k = A_bar W_k;  A_bar = [1, g(S_bar_k)]  (TS-4; OCU TS-4a: g(T_k))
    loss, dW_mb = backprop(W, X, y)       # the ordinary minibatch    (TS-5)
    for k = L..1:  dW_k  = dW_mb_k + A_bar_{k-1}^T dS_bar_k       (TS-6)
                   dT_k, dA = ridge_solve_vjp(dW_k)               (TS-7)
                   dS_bar_{k-1} = (dA + dS_bar_k W_k^T)[:, 1:] * g'(S_bar_{k-1})   (TS-8)

The A-path ``dA`` (later solves reacting to this layer's realised output) is
what the paper calls *cascade untangling*; ``through_inputs=False`` drops it
(an ablation, off by default).

The loop over ``model.layers`` is generic: each layer with parameters has a
*realiser* that forms A_bar from its realised input, solves, and produces the
realised output (Dense in :mod:`~refnets.algorithms.target_space.dense`;
Conv2D in :mod:`~refnets.algorithms.target_space.conv`; the Elman RNN in
:mod:`~refnets.algorithms.target_space.rnn`); parameter-free layers
(activations, pooling, Flatten, LastStep) just run forward/backward on X_bar.

Where the realised weights live: :meth:`TargetSpace.step` writes the weights
realised from the targets *before* the update into the model's parameters
(``model.params()``), and :meth:`TargetSpace.predict` re-realises them from
the *current* targets (cached until the targets change) and writes them into
the model too, so evaluation always uses the current targets and
``model.forward`` afterwards reproduces ``predict``.

References
----------
M. Fairbank, S. Samothrakis, L. Citi (2022), "Deep Learning in Target Space",
JMLR 23(8):1-46; arXiv 2006.01578. Authors' code: github.com/mikefairbank/
dlts_paper_code (``TF1 version/`` produced the paper's results).
"""

from __future__ import annotations

import warnings

import numpy as np

from ...diagnostics import cosine
from ...layers.base import as_float_array
from ...layers.dense import Dense
from ...layers.recurrent import RNN
from ...losses import softmax_cross_entropy
from ...models import Sequential
from ..base import Algorithm, StepResult, check_loss_finite
from .conv import ConvRealiser
from .dense import DenseRealiser, ShortcutMLP, shortcut_mlp, split_blocks
from .init import make_realiser, tf1_weight_init, truncated_normal
from .rnn import RNNRealiser
from .solve import RidgeSolveWarning

__all__ = ["TargetSpace", "ShortcutMLP", "shortcut_mlp", "tf1_weight_init", "truncated_normal",
           "make_realiser", "DenseRealiser", "ConvRealiser", "RNNRealiser"]


# ----------------------------------------------------------------------------
# the algorithm
# ----------------------------------------------------------------------------
class TargetSpace(Algorithm):
    """Learning in target space: the optimiser updates per-layer targets, not weights.

    Parameters
    ----------
    x_source : ndarray
        Inputs the realisation batch X_bar is drawn from, usually the training
        inputs: (N, d) for MLPs, (N, C, H, W) for conv nets, (T, N, D)
        time-major for RNN models.
    realisation_batch_size : int, optional
        n_bar (authors' ``realisation_batch_size``/``rbs``); default all of
        ``x_source``. Must be at least the number of output units.
    pseudoinverse_l2_regularisation : float >= 0
        lambda of the ridge solve (authors' ``--prc``/``--pic``), absolute.
    realisation : {'scu', 'ocu'}
        SCU (default; later solves read realised activations) or OCU (they
        read g(T)). For RNN models the recurrent layer is always OCU in time
        and 'scu' means the *hybrid* output layer (realised hidden states).
    projection : {'layer', 'simultaneous', None}
        Initial target projection T_k <- S_bar_k (TS-14), default 'layer'.
    target_init_std : float, optional
        sigma_T of the truncated-normal initial targets; default (None) 0.1 for
        every layer of a model containing a Conv2D (TF1 CNN ``--ti 0.1``), 1.0
        otherwise (TF1 spirals and bit RNNs). (The authors' Keras layers keep
        1.0 for dense layers after convs; measured on the Fashion-MNIST CNN of
        tutorial 12 it made no difference, and 0.1 learned a toy conv task faster.)
    realisation_selection : {'random', 'first'}
        How X_bar is picked from ``x_source`` (once, in :meth:`init_state`).
    through_inputs : bool
        Back-propagate through the solves' inputs A_bar (cascade untangling,
        default True). False is an *ablation* that treats A_bar as constant.
    realisation_sequence_length : int, optional
        RNN only: use the first T_bar steps of ``x_source`` (default all).
    diagnostics : bool
        Report ``info['cosine_to_backprop']`` (one extra realisation pass).
    diagnostics_every : int >= 1
        Compute that cosine only every this many steps (default every step).
    cond_warn : float
        Warn (once per run) when a solve's Gram condition estimate exceeds it.
    loss : callable
        ``loss(output, y) -> (loss, doutput)``, mean over the batch.
    """

    name = "target-space"

    def __init__(self, x_source, realisation_batch_size=None, pseudoinverse_l2_regularisation=1e-3,
                 realisation="scu", projection="layer", target_init_std=None,
                 realisation_selection="random", through_inputs=True,
                 realisation_sequence_length=None, diagnostics=True, diagnostics_every=1,
                 cond_warn=1e10,
                 loss=softmax_cross_entropy):
        super().__init__(loss)
        where = "TargetSpace"
        self.x_source = as_float_array(x_source, "x_source", where=where)
        if self.x_source.ndim < 2:
            raise ValueError(f"{where}: x_source must have a batch axis, got shape "
                             f"{self.x_source.shape}")
        if realisation_batch_size is not None and (
                not isinstance(realisation_batch_size, (int, np.integer))
                or realisation_batch_size < 1):
            raise ValueError(f"{where}: realisation_batch_size must be a positive int or None, "
                             f"got {realisation_batch_size!r}")
        lam = pseudoinverse_l2_regularisation
        if not (isinstance(lam, (int, float, np.floating, np.integer)) and np.isfinite(lam)
                and lam >= 0):
            raise ValueError(f"{where}: pseudoinverse_l2_regularisation must be a finite "
                             f"number >= 0, got {lam!r}")
        if realisation not in ("scu", "ocu"):
            raise ValueError(f"{where}: realisation must be 'scu' or 'ocu', got {realisation!r}")
        if projection not in ("layer", "simultaneous", None):
            raise ValueError(f"{where}: projection must be 'layer', 'simultaneous' or None, "
                             f"got {projection!r}")
        if target_init_std is not None and not (np.isfinite(target_init_std)
                                                and target_init_std > 0):
            raise ValueError(f"{where}: target_init_std must be a positive number or None, "
                             f"got {target_init_std!r}")
        if realisation_selection not in ("random", "first"):
            raise ValueError(f"{where}: realisation_selection must be 'random' or 'first', "
                             f"got {realisation_selection!r}")
        if realisation_sequence_length is not None and (
                not isinstance(realisation_sequence_length, (int, np.integer))
                or realisation_sequence_length < 1):
            raise ValueError(f"{where}: realisation_sequence_length must be a positive int or "
                             f"None, got {realisation_sequence_length!r}")
        self.realisation_batch_size = realisation_batch_size
        self.lam = float(lam)
        self.realisation = realisation
        self.projection = projection
        self.target_init_std = target_init_std
        self.realisation_selection = realisation_selection
        self.through_inputs = bool(through_inputs)
        self.realisation_sequence_length = realisation_sequence_length
        if not isinstance(diagnostics_every, (int, np.integer)) or diagnostics_every < 1:
            raise ValueError(f"{where}: diagnostics_every must be a positive int, got "
                             f"{diagnostics_every!r}")
        self.diagnostics = bool(diagnostics)
        self.diagnostics_every = int(diagnostics_every)
        self.cond_warn = float(cond_warn)

    def __repr__(self):
        return (f"TargetSpace(realisation_batch_size={self.realisation_batch_size}, "
                f"pseudoinverse_l2_regularisation={self.lam}, realisation={self.realisation!r}, "
                f"projection={self.projection!r})")

    # -- set-up ---------------------------------------------------------------
    def _realisers(self, model):
        """One realiser per layer with parameters (None for parameter-free layers)."""
        if not isinstance(model, Sequential):
            raise ValueError(f"TargetSpace: model must be a refnets Sequential (or ShortcutMLP), "
                             f"got {type(model).__name__}")
        realisers = [make_realiser(layer, k) for k, layer in enumerate(model.layers)]
        if not any(r is not None for r in realisers):
            raise ValueError("TargetSpace: the model has no Dense, Conv2D or RNN layer to realise")
        return realisers

    def _select_xbar(self, model, rng):
        """Draw the realisation batch X_bar once (never reshuffled)."""
        where = "TargetSpace.init_state"
        recurrent = isinstance(model.layers[0], RNN)
        axis = 1 if recurrent else 0
        x = self.x_source
        if recurrent:
            if x.ndim != 3:
                raise ValueError(f"{where}: an RNN model needs x_source of shape (T, N, D) "
                                 f"(time-major), got {x.shape}")
            if self.realisation_sequence_length is not None:
                if self.realisation_sequence_length > x.shape[0]:
                    raise ValueError(f"{where}: realisation_sequence_length must be <= the "
                                     f"length of x_source ({x.shape[0]}), got "
                                     f"{self.realisation_sequence_length}")
                x = x[:self.realisation_sequence_length]
        n_avail = x.shape[axis]
        n_bar = n_avail if self.realisation_batch_size is None else self.realisation_batch_size
        if n_bar > n_avail:
            raise ValueError(f"{where}: realisation_batch_size must be <= the number of "
                             f"examples in x_source ({n_avail}), got {n_bar}")
        denses = [layer for layer in model.layers if isinstance(layer, Dense)]
        n_classes = denses[-1].n_out if denses else 1
        if n_bar < n_classes:
            raise ValueError(f"{where}: realisation_batch_size must be at least the number of "
                             f"output units ({n_classes}): realised weights have rank <= "
                             f"n_bar; got {n_bar}")
        if self.realisation_selection == "first" or n_bar == n_avail:
            idx = np.arange(n_bar)
        else:
            idx = np.sort(rng.choice(n_avail, size=n_bar, replace=False))
        return np.ascontiguousarray(np.take(x, idx, axis=axis))

    def init_state(self, model, rng):
        """Pick X_bar (TS-12), draw truncated-normal targets (TS-13), project them (TS-14).

        Returns
        -------
        dict with 'xbar', 'targets' (``{"k.T": array}``, what the optimiser
        updates), 'step' (counter), 'cache' (realised weights for
        :meth:`predict`) and 'cond_warned': plain arrays and scalars, so
        :func:`refnets.checkpoint.save_checkpoint` can store it.
        """
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"TargetSpace.init_state: rng must be a numpy.random.Generator, "
                             f"got {type(rng).__name__}")
        realisers = self._realisers(model)
        xbar = self._select_xbar(model, rng)
        std = self.target_init_std
        if std is None:
            std = 0.1 if any(isinstance(r, ConvRealiser) for r in realisers) else 1.0
        scu = self.realisation == "scu"
        targets, h, feats = {}, xbar, [xbar]
        shortcuts = isinstance(model, ShortcutMLP)
        for k, (layer, r) in enumerate(zip(model.layers, realisers)):
            if r is None:
                h, _ = layer.forward(h)
                feats.append(h)
                continue
            x_in = np.concatenate(feats, axis=-1) if shortcuts else h
            T = truncated_normal(r.target_shape(x_in.shape), std, rng)       # (TS-13)
            _, h, rec = r.realise(x_in, T, self.lam, scu)
            if self.projection == "layer":                                   # TF2: per layer
                T = rec["S"].copy()                                     # T_k <- S_bar_k  (TS-14)
                _, h, _ = r.realise(x_in, T, self.lam, scu)                  # re-solve, propagate
            targets[f"{k}.T"] = T
        state = {"xbar": xbar, "targets": targets, "step": 0, "cache": None,
                 "cond_warned": False}
        if self.projection == "simultaneous":                                # TF1: all at once
            _, recs = self.realise(model, state)
            for key in targets:
                targets[key][...] = recs[int(key.split(".")[0])]["S"]
        return state

    def variables(self, model, state):
        """The targets ``{"k.T": T_k}``: what the optimiser updates (in place, TS-9)."""
        return state["targets"]

    # -- realisation pass -----------------------------------------------------
    def realise(self, model, state, targets=None):
        """Turn targets into weights layer by layer on X_bar (SCU or OCU).

        Parameters
        ----------
        model : Sequential or ShortcutMLP
        state : dict from :meth:`init_state`
        targets : dict, optional
            Targets to realise instead of ``state["targets"]``.

        Returns
        -------
        params : list of (dict or None), one per layer, the realised weights
        recs : list of dict, per-layer records for the backward pass
        """
        targets = state["targets"] if targets is None else targets
        scu = self.realisation == "scu"
        shortcuts = isinstance(model, ShortcutMLP)
        h = state["xbar"]
        feats = [h]                                     # shortcut nets: [x, h_1, h_2, ...]
        params, recs = [None] * len(model.layers), [None] * len(model.layers)
        for k, (layer, r) in enumerate(zip(model.layers, self._realisers(model))):
            if r is None:                               # activation, pooling, Flatten, ...
                h, recs[k] = layer.forward(h)
                feats.append(h)
                continue
            x_in = np.concatenate(feats, axis=-1) if shortcuts else h
            T = targets[f"{k}.T"]
            params[k], h, recs[k] = r.realise(x_in, T, self.lam, scu)   # (TS-1)-(TS-4)
        return params, recs

    def _target_gradients(self, model, state, recs, grads):
        """Reverse pass through the realisation network: dL/dT_k for every layer (TS-6)-(TS-8)."""
        shortcuts = isinstance(model, ShortcutMLP)
        realisers = self._realisers(model)
        first = next(k for k, r in enumerate(realisers) if r is not None)
        dT = {}
        d = None                                        # dL/d(realised output of layer k)
        dfeats = [None] * (len(model.layers) + 1)       # shortcut nets: per feature block
        for k in range(len(model.layers) - 1, -1, -1):
            layer, r = model.layers[k], realisers[k]
            if r is None:
                if shortcuts:
                    d = dfeats[k // 2 + 1]
                d = None if d is None else layer.backward(d, recs[k])[0]
                continue
            d_out = d if self.through_inputs else None
            need_dx = self.through_inputs and k > first
            dT[f"{k}.T"], dx = r.backward(recs[k], grads[k], d_out, need_dx)
            if shortcuts and dx is not None:
                for j, block in enumerate(split_blocks(dx, model.widths)):
                    dfeats[j] = block if dfeats[j] is None else dfeats[j] + block
            d = dx
        return dT

    # -- the step -------------------------------------------------------------
    def step(self, model, state, x, y, rng):
        """Realise, run the minibatch, back-propagate into the targets.

        Returns
        -------
        StepResult
            ``grads`` = dL/dT_k (keys of :meth:`variables`); ``info`` holds
            ``residual`` (per layer ||A_bar W - T|| / ||T||), ``cond_max``
            (largest Gram condition estimate) and, with ``diagnostics`` (every
            ``diagnostics_every``-th step), ``cosine_to_backprop``.
        """
        state["step"] += 1
        where = f"TargetSpace.step {state['step']}"
        for key, T in state["targets"].items():
            if not np.all(np.isfinite(T)):
                raise FloatingPointError(f"{where}: targets {key!r} contain NaN or inf "
                                         f"(diverged); try a smaller learning rate")
        params, recs = self.realise(model, state)
        solved = [recs[k] for k, p in enumerate(params) if p is not None]  # the solved layers
        cond_max = max(float(rec["solve"]["cond"]) for rec in solved)
        self._check_conditioning(state, cond_max, where)
        out, caches = model.forward(x, params)                  # minibatch, realised weights
        loss, dout = self.loss(out, y)                          # (TS-5)
        check_loss_finite(loss, where)
        _, grads = model.backward(dout, caches, input_grad=False)   # dW_mb: ordinary backprop
        dT = self._target_gradients(model, state, recs, grads)
        self._write(model, params)
        info = {"residual": np.array([_residual(rec) for rec in solved]), "cond_max": cond_max}
        if self.diagnostics and state["step"] % self.diagnostics_every == 0:
            info["cosine_to_backprop"] = self._implied_cosine(model, state, params, grads, dT)
        state["cache"] = None
        return StepResult(loss=float(loss), grads=dT, info=info)

    def _implied_cosine(self, model, state, params, grads, dT):
        """cos(J dT, dL/dW): the weight change SGD on T implies vs the backprop gradient (TS-17)."""
        tnorm = np.sqrt(sum(float(np.vdot(t, t)) for t in state["targets"].values()))
        gnorm = np.sqrt(sum(float(np.vdot(g, g)) for g in dT.values()))
        if gnorm == 0.0:
            return float("nan")
        eps = 1e-6 * max(tnorm, 1.0) / gnorm
        moved = {key: T - eps * dT[key] for key, T in state["targets"].items()}
        params_eps, _ = self.realise(model, state, moved)
        ts = [k for k, p in enumerate(params) if p is not None]
        delta = {f"{k}.{n}": (params[k][n] - params_eps[k][n]) / eps for k in ts for n in params[k]}
        ref = {f"{k}.{n}": grads[k][n] for k in ts for n in params[k]}
        return cosine(delta, ref)

    def _check_conditioning(self, state, cond, where):
        """Warn once per run when a solve's Gram condition estimate exceeds ``cond_warn``."""
        if cond > self.cond_warn and not state["cond_warned"]:
            state["cond_warned"] = True
            warnings.warn(f"{where}: a realisation solve is ill-conditioned (Gram condition "
                          f"estimate {cond:.3g} > {self.cond_warn:g}); consider a larger "
                          f"pseudoinverse_l2_regularisation or realisation batch",
                          RidgeSolveWarning, stacklevel=3)

    @staticmethod
    def _write(model, params):
        for layer, p in zip(model.layers, params):
            if p is not None:
                for name, value in p.items():
                    layer.params[name][...] = value

    def predict(self, model, state, x):
        """Output with the weights realised from the *current* targets.

        The realised weights are cached until the targets change and are
        written into the model's parameters, so ``model.forward`` afterwards
        gives the same output.
        """
        cache = state.get("cache")
        targets = state["targets"]
        if cache is None or any(not np.array_equal(cache[0][k], targets[k]) for k in targets):
            params, _ = self.realise(model, state)
            cache = ({k: v.copy() for k, v in targets.items()}, params)
            state["cache"] = cache
        self._write(model, cache[1])
        return model.forward(x, cache[1])[0]


def _residual(rec):
    """||A_bar W - T||_F / ||T||_F of one layer's solve (0 for all-zero targets) (TS-17)."""
    solve = rec["solve"]
    tn = np.linalg.norm(solve["T"])
    return float(np.linalg.norm(solve["R"]) / tn) if tn > 0 else 0.0


# ----------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------
def _build(sizes, activation, rng, x_train=None, y_train=None):
    """Registry factory: an MLP trained in target space (SCU) with Adam 0.01.

    X_bar: all training points for small sets (<= 200: the spirals, as the
    authors), else 100 random ones (the authors' CNN/RNN ``rbs``; on the
    Fashion-MNIST subset n_bar = 100 generalised better than 256: test 0.80
    vs 0.75 after 3 epochs, measured). lam = 0.1 (the authors' Keras
    default); the backprop cosine is computed every 10th step (it costs one
    realisation pass).
    """
    from ...models import mlp
    from ...optim import Adam
    from .. import Setup
    if x_train is None:
        raise ValueError("target-space build: x_train is required (the realisation batch is "
                         "drawn from it)")
    model = mlp(sizes, activation, rng)
    n_bar = len(x_train) if len(x_train) <= 200 else 100
    algo = TargetSpace(x_train, realisation_batch_size=n_bar,
                       pseudoinverse_l2_regularisation=0.1, diagnostics_every=10)
    return Setup(model, algo, Adam(lr=0.01))


def _register():
    from .. import Method, register
    register(Method("target-space", _build,
                    "targets T_k on a fixed batch; weights by ridge solves (SCU)",
                    "Fairbank, Samothrakis & Citi 2022 (JMLR 23(8))"))


_register()


# ----------------------------------------------------------------------------
# self-checks: dL/dT of the whole pipeline (run by ``refnets gradcheck``)
# ----------------------------------------------------------------------------
def pipeline_gradient_error(model, algo, x, y, rng):
    """Largest relative error between :meth:`TargetSpace.step`'s dL/dT_k and centred
    differences of L(T) = minibatch loss with the weights realised from T.

    Parameters
    ----------
    model : refnets model
    algo : TargetSpace
    x, y : a minibatch
    rng : numpy.random.Generator (initialises the targets)
    """
    from ...gradcheck import numerical_gradient, rel_error

    state = algo.init_state(model, rng)
    res = algo.step(model, state, x, y, rng)

    def loss_of_targets(_):                      # reads state["targets"], perturbed in place
        params, _ = algo.realise(model, state)
        return algo.loss(model.forward(x, params)[0], y)[0]

    return max(rel_error(res.grads[key], numerical_gradient(loss_of_targets, T))
               for key, T in state["targets"].items())


def _register_checks():
    from ...models import convnet, mlp, rnn_classifier
    from ...selfcheck import register_check

    @register_check("target-space/dense dL/dT (SCU, shortcuts)", group="target_space")
    def _dense_scu(rng):
        xs, x, y = rng.standard_normal((8, 3)), rng.standard_normal((6, 3)), rng.integers(0, 2, 6)
        algo = TargetSpace(xs, pseudoinverse_l2_regularisation=0.1, diagnostics=False)
        return pipeline_gradient_error(shortcut_mlp([3, 4, 3, 2], "tanh", rng), algo, x, y, rng)

    @register_check("target-space/dense dL/dT (OCU)", group="target_space")
    def _dense_ocu(rng):
        xs, x, y = rng.standard_normal((8, 3)), rng.standard_normal((6, 3)), rng.integers(0, 2, 6)
        algo = TargetSpace(xs, pseudoinverse_l2_regularisation=0.1, realisation="ocu",
                           diagnostics=False)
        return pipeline_gradient_error(mlp([3, 4, 3, 2], "tanh", rng), algo, x, y, rng)

    @register_check("target-space/conv dL/dT (SCU, im2col/col2im)", group="target_space")
    def _conv(rng):
        xs, x = rng.standard_normal((3, 1, 4, 4)), rng.standard_normal((2, 1, 4, 4))
        y = rng.integers(0, 3, 2)
        model = convnet((1, 4, 4), [2], 3, 3, rng, activation="tanh", pool=None)
        algo = TargetSpace(xs, pseudoinverse_l2_regularisation=0.1, target_init_std=1.0,
                           projection=None, diagnostics=False)
        return pipeline_gradient_error(model, algo, x, y, rng)

    @register_check("target-space/RNN dL/dT (OCU in time, hybrid read-out)", group="target_space")
    def _rnn(rng):
        xs, x = rng.standard_normal((5, 3, 2)), rng.standard_normal((5, 2, 2))
        y = rng.integers(0, 2, (5, 2))
        algo = TargetSpace(xs, pseudoinverse_l2_regularisation=0.1, diagnostics=False)
        return pipeline_gradient_error(rnn_classifier(2, 3, 2, rng, readout="all"), algo, x, y,
                                       rng)


_register_checks()
