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

Cross-checking: ``init_state(model, rng, record=None, realisation_rows=...,
targets=...)`` takes the initial draws instead of drawing them; ``step``
draws nothing; ``trace`` records the keys listed in the README's section 2
(A_bar, W_full, S_bar, dW_mb, dW_hat, dT per layer; the RNN's
pre-activations); ``follow='dlts-tf2'`` / ``'dlts-tf1'`` switch the
conventions of the authors' codebases (:data:`FOLLOW`, README section 6).

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
from ...layers.dense import Dense
from ...layers.recurrent import RNN
from ...losses import softmax_cross_entropy
from ...models import Sequential
from ...validation import DivergenceError, check_bool, check_choice, check_input, check_number
from ..base import (NULL_RECORDER, Algorithm, StepResult, as_recorder, check_given,
                    check_loss_finite, given_or_draw)
from .conv import ConvRealiser
from .dense import DenseRealiser, ShortcutMLP, shortcut_mlp, split_blocks
from .init import make_realiser, tf1_weight_init, truncated_normal
from .conventions import FOLLOW, INIT_GIVEN, _check_std, _Default
from .rnn import RNNRealiser
from .solve import RidgeSolveWarning

__all__ = ["TargetSpace", "FOLLOW", "INIT_GIVEN", "ShortcutMLP", "shortcut_mlp",
           "tf1_weight_init", "truncated_normal", "make_realiser", "DenseRealiser", "ConvRealiser",
           "RNNRealiser"]


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
        lambda of the ridge solve (authors' ``--prc``/``--pic``), absolute
        (default 1e-3, the authors' TF1 spirals value).
    realisation : {'scu', 'ocu'}
        SCU (default; later solves read realised activations) or OCU (they
        read g(T)). For RNN models the recurrent layer is always OCU in time
        and 'scu' means the *hybrid* output layer (realised hidden states).
    projection : {'layer', 'simultaneous', None}
        Initial target projection T_k <- S_bar_k (TS-14), default 'layer'
        (the authors' TF2 form); 'simultaneous' is their TF1 form. For an RNN
        layer T_h <- the pre-activations of a run of the network on X_bar.
    target_init_std : float, dict or None
        sigma_T of the truncated-normal initial targets (TS-13). None
        (default): 0.1 for every layer of a model containing a Conv2D (TF1
        CNN ``--ti 0.1``), 1.0 otherwise (TF1 spirals and bit RNNs). A dict
        ``{"dense": s, "conv": s, "rnn": s}`` sets it per layer kind (the
        authors' TF2 layers: 1.0, 0.1, 1.0); missing kinds get the default.
    realisation_selection : {'random', 'first'}
        How X_bar is picked from ``x_source`` (once, in :meth:`init_state`):
        n_bar rows drawn without replacement (default) or the first n_bar
        (the authors' choice).
    shared_initial_targets : bool
        False (default): every layer's initial targets are drawn
        independently. True: layers of the same kind and target shape start
        from one draw, like the authors' Keras layers, which share one
        initialiser object.
    zero_lam_solver : {'min-norm', 'cholesky'}
        The solve at lambda = 0: the SVD minimum-norm solution (default,
        TS-2b) or, like TF's ``lstsq(fast=True)``, Cholesky of the
        unregularised normal (r >= c) or kernel (r < c) Gram (TS-2, TS-2a);
        a singular Gram then falls back to min-norm with a warning.
    follow : {'refnets', 'dlts-tf2', 'dlts-tf1'}
        Preset of the convention keywords above (:data:`FOLLOW`): 'dlts-tf2'
        = the authors' TF2/Keras ``ts_layers.py``, 'dlts-tf1' = their TF1
        scripts (which produced the paper's results). Explicit keywords win.
        Under 'dlts-tf1' with OCU the projection is None (TF1's OCU "sums"
        are the targets themselves, so its projection changes nothing).
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

    Notes
    -----
    Given values (cross-checking): ``init_state(model, rng, record=None,
    realisation_rows={"rows": idx}, targets={"k.T": T_k})`` takes the indices
    of X_bar's rows in ``x_source`` (along its batch axis) and the raw
    initial targets (before projection) instead of drawing them; ``step``
    draws nothing. Trace keys (:meth:`step` with a recorder): see the
    README's section 2.
    """

    name = "target-space"

    def __init__(self, x_source, realisation_batch_size=None, pseudoinverse_l2_regularisation=1e-3,
                 realisation="scu", projection=_Default("layer"),
                 target_init_std=_Default(None),
                 realisation_selection=_Default("random"),
                 shared_initial_targets=_Default(False),
                 zero_lam_solver=_Default("min-norm"), follow="refnets",
                 through_inputs=True, realisation_sequence_length=None, diagnostics=True,
                 diagnostics_every=1, cond_warn=1e10, loss=softmax_cross_entropy):
        super().__init__(loss)
        where = "TargetSpace"
        self.x_source = check_input(x_source, "x_source", where)
        if self.x_source.ndim < 2:
            raise ValueError(f"{where}: x_source must have a batch axis, got shape "
                             f"{self.x_source.shape}")
        self.follow = check_choice(follow, "follow", tuple(FOLLOW), where)
        preset = FOLLOW[follow]
        conv = {"projection": projection, "target_init_std": target_init_std,
                "realisation_selection": realisation_selection,
                "shared_initial_targets": shared_initial_targets,
                "zero_lam_solver": zero_lam_solver}
        for key, value in conv.items():
            if isinstance(value, _Default):
                conv[key] = preset.get(key, value.value)
        if (follow == "dlts-tf1" and realisation == "ocu"
                and isinstance(projection, _Default)):
            conv["projection"] = None
        if realisation_batch_size is not None:
            realisation_batch_size = check_number(realisation_batch_size,
                                                  "realisation_batch_size", where, low=1,
                                                  integer=True)
        self.realisation_batch_size = realisation_batch_size
        self.lam = check_number(pseudoinverse_l2_regularisation,
                                "pseudoinverse_l2_regularisation", where, low=0.0)
        self.realisation = check_choice(realisation, "realisation", ("scu", "ocu"), where)
        self.projection = None if conv["projection"] is None else check_choice(
            conv["projection"], "projection", ("layer", "simultaneous", None), where)
        self.target_init_std = _check_std(conv["target_init_std"], where)
        self.realisation_selection = check_choice(conv["realisation_selection"],
                                                  "realisation_selection", ("random", "first"),
                                                  where)
        self.shared_initial_targets = check_bool(conv["shared_initial_targets"],
                                                 "shared_initial_targets", where)
        self.zero_lam_solver = check_choice(conv["zero_lam_solver"], "zero_lam_solver",
                                            ("min-norm", "cholesky"), where)
        self.through_inputs = check_bool(through_inputs, "through_inputs", where)
        if realisation_sequence_length is not None:
            realisation_sequence_length = check_number(
                realisation_sequence_length, "realisation_sequence_length", where, low=1,
                integer=True)
        self.realisation_sequence_length = realisation_sequence_length
        self.diagnostics = check_bool(diagnostics, "diagnostics", where)
        self.diagnostics_every = check_number(diagnostics_every, "diagnostics_every", where,
                                              low=1, integer=True)
        self.cond_warn = check_number(cond_warn, "cond_warn", where, low=1.0)

    def __repr__(self):
        return (f"TargetSpace(realisation_batch_size={self.realisation_batch_size}, "
                f"pseudoinverse_l2_regularisation={self.lam}, realisation={self.realisation!r}, "
                f"projection={self.projection!r}, follow={self.follow!r})")

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

    def _select_xbar(self, model, rng, given, record):
        """The realisation batch X_bar, chosen once and never reshuffled (TS-12)."""
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
        fixed = self.realisation_selection == "first" or n_bar == n_avail
        if fixed and "rows" not in given.get("realisation_rows", {}):
            idx = np.arange(n_bar)                      # nothing random: no draw needed
            record.draw("realisation_rows", "rows", idx)
        else:
            idx = given_or_draw(given, "realisation_rows", "rows", (n_bar,),
                                lambda g: np.sort(g.choice(n_avail, size=n_bar, replace=False)),
                                rng, record, where, dtype=np.int64)
            if idx.min() < 0 or idx.max() >= n_avail or len(np.unique(idx)) != n_bar:
                raise ValueError(f"{where}: given realisation_rows['rows'] must be {n_bar} "
                                 f"distinct indices in [0, {n_avail}), got {idx}")
        return np.ascontiguousarray(np.take(x, idx, axis=axis))

    def _target_std(self, realiser, realisers):
        """sigma_T of one layer's initial targets (TS-13)."""
        auto = 0.1 if any(isinstance(r, ConvRealiser) for r in realisers) else 1.0
        std = self.target_init_std
        if isinstance(std, dict):
            return std.get(realiser.kind, auto)
        return auto if std is None else std

    def init_state(self, model, rng, record=None, **given):
        """Pick X_bar (TS-12), draw truncated-normal targets (TS-13), project them (TS-14).

        Parameters
        ----------
        model : Sequential or ShortcutMLP
        rng : numpy.random.Generator or None
            None works when every draw is given.
        record : Recorder, optional
            Collects the draws (``record.draws`` can be passed back as ``given``).
        realisation_rows : dict, optional
            ``{"rows": int array (n_bar,)}``: indices of X_bar in ``x_source``.
        targets : dict, optional
            ``{"k.T": array}``: raw initial targets of model layer k, before projection.

        Returns
        -------
        dict with 'xbar', 'targets' (``{"k.T": array}``, what the optimiser
        updates), 'step' (counter), 'cache' (realised weights for
        :meth:`predict`) and 'cond_warned': plain arrays and scalars, so
        :func:`refnets.checkpoint.save_checkpoint` can store it.
        """
        where = "TargetSpace.init_state"
        check_given(given, INIT_GIVEN, where)
        if rng is not None and not isinstance(rng, np.random.Generator):
            raise ValueError(f"{where}: rng must be a numpy.random.Generator or None, "
                             f"got {type(rng).__name__}")
        record = as_recorder(record)
        realisers = self._realisers(model)
        xbar = self._select_xbar(model, rng, given, record)
        scu = self.realisation == "scu"
        targets, h, feats, shared = {}, xbar, [xbar], {}
        shortcuts = isinstance(model, ShortcutMLP)
        for k, (layer, r) in enumerate(zip(model.layers, realisers)):
            if r is None:
                h, _ = layer.forward(h)
                feats.append(h)
                continue
            x_in = np.concatenate(feats, axis=-1) if shortcuts else h
            shape = r.target_shape(x_in.shape)
            key, std = f"{k}.T", self._target_std(r, realisers)
            same = shared.get((r.kind, shape))
            if self.shared_initial_targets and same is not None and \
                    key not in given.get("targets", {}):
                T = same.copy()                                              # one shared draw
                record.draw("targets", key, T)
            else:
                T = given_or_draw(given, "targets", key, shape,
                                  lambda g: truncated_normal(shape, std, g), rng, record,
                                  where)                                     # (TS-13)
            shared.setdefault((r.kind, shape), T.copy())
            params, h, rec = r.realise(x_in, T, self.lam, scu, self.zero_lam_solver)
            if self.projection == "layer":                                   # TF2: per layer
                T = r.projected_targets(params, rec)                         # (TS-14)
                _, h, _ = r.realise(x_in, T, self.lam, scu, self.zero_lam_solver)   # re-solve
            targets[key] = T
        extra = set(given.get("targets", {})) - set(targets)
        if extra:
            raise ValueError(f"{where}: given targets for {sorted(extra)}, but the targets of "
                             f"this model are {sorted(targets)}")
        state = {"xbar": xbar, "targets": targets, "step": 0, "cache": None,
                 "cond_warned": False}
        if self.projection == "simultaneous":                                # TF1: all at once
            params, recs = self.realise(model, state)
            for key in targets:
                k = int(key.split(".")[0])
                targets[key][...] = realisers[k].projected_targets(params[k], recs[k])
        return state

    def variables(self, model, state):
        """The targets ``{"k.T": T_k}``: what the optimiser updates (in place, TS-9)."""
        return state["targets"]

    # -- realisation pass -----------------------------------------------------
    def realise(self, model, state, targets=None, record=None):
        """Turn targets into weights layer by layer on X_bar (SCU or OCU).

        Parameters
        ----------
        model : Sequential or ShortcutMLP
        state : dict from :meth:`init_state`
        targets : dict, optional
            Targets to realise instead of ``state["targets"]``.
        record : Recorder, optional
            Records ``k.A_bar``, ``k.W_full``, ``k.S_bar`` (and an RNN's
            ``k.a_bar``, ``k.h_bar``) of every realised layer.

        Returns
        -------
        params : list of (dict or None), one per layer, the realised weights
        recs : list of dict, per-layer records for the backward pass
        """
        targets = state["targets"] if targets is None else targets
        record = as_recorder(record)
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
            params[k], h, recs[k] = r.realise(x_in, T, self.lam, scu,
                                              self.zero_lam_solver)      # (TS-1)-(TS-4)
            if record.active:
                r.record_realisation(record, f"{k}.", params[k], recs[k])
        return params, recs

    def _target_gradients(self, model, state, recs, grads, record=NULL_RECORDER):
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
            dT[f"{k}.T"], dx = r.backward(recs[k], grads[k], d_out, need_dx,
                                          record=record, prefix=f"{k}.")
            record.put(f"{k}.dT", dT[f"{k}.T"])
            if shortcuts and dx is not None:
                for j, block in enumerate(split_blocks(dx, model.widths)):
                    dfeats[j] = block if dfeats[j] is None else dfeats[j] + block
            d = dx
        return dT

    # -- the step -------------------------------------------------------------
    def step(self, model, state, x, y, rng, record=None, **given):
        """Realise, run the minibatch, back-propagate into the targets.

        Parameters
        ----------
        model, state : as from :meth:`init_state`
        x : ndarray, the minibatch ((N, ...) or (T, N, D) time-major for an RNN)
        y : labels for ``self.loss``
        rng : numpy.random.Generator or None (a step draws nothing)
        record : Recorder, optional
            Collects the trace keys of the README's section 2.

        Returns
        -------
        StepResult
            ``grads`` = dL/dT_k (keys of :meth:`variables`); ``info`` holds
            ``residual`` (per layer ||A_bar W - T|| / ||T||), ``cond_max``
            (largest Gram condition estimate) and, with ``diagnostics`` (every
            ``diagnostics_every``-th step), ``cosine_to_backprop``.
        """
        check_given(given, (), "TargetSpace.step")
        record = as_recorder(record)
        recurrent = isinstance(model, Sequential) and bool(model.layers) and \
            isinstance(model.layers[0], RNN)
        x = check_input(x, "x", "TargetSpace.step", batch_axis=1 if recurrent else 0)
        state["step"] += 1
        where = f"TargetSpace.step {state['step']}"
        for key, T in state["targets"].items():
            if not np.all(np.isfinite(T)):
                raise DivergenceError(f"{where}: targets {key!r} contain NaN or inf "
                                      f"(diverged); try a smaller learning rate",
                                      quantity=f"targets {key}")
        record.put("xbar", state["xbar"])
        params, recs = self.realise(model, state, record=record)
        for k, p in enumerate(params):
            if p is not None and not all(np.all(np.isfinite(v)) for v in p.values()):
                raise DivergenceError(f"{where}: the weights realised from targets '{k}.T' "
                                      f"contain NaN or inf (diverged); try a smaller learning "
                                      f"rate", quantity=f"realised weights of layer {k}")
        solved = [recs[k] for k, p in enumerate(params) if p is not None]  # the solved layers
        cond_max = max(float(rec["solve"]["cond"]) for rec in solved)
        self._check_conditioning(state, cond_max, where)
        out, caches = model.forward(x, params)                  # minibatch, realised weights
        loss, dout = self.loss(out, y)                          # (TS-5)
        check_loss_finite(loss, where)
        _, grads = model.backward(dout, caches, input_grad=False)   # dW_mb: ordinary backprop
        if record.active:
            record.put("output", out)
            for k, r in enumerate(self._realisers(model)):
                if r is not None:
                    r.record_minibatch(record, f"{k}.", grads[k], caches[k])
        dT = self._target_gradients(model, state, recs, grads, record)
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
        recurrent = isinstance(model, Sequential) and bool(model.layers) and \
            isinstance(model.layers[0], RNN)
        x = check_input(x, "x", "TargetSpace.predict", batch_axis=1 if recurrent else 0)
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
    """Registry factory: an MLP (``mlp(sizes, activation)``) trained in target space.

    Defaults: Adam, lr 0.01 (the authors' TF1 target-space rate); SCU
    realisation; X_bar = all training points for small sets (<= 200: the
    spirals, as the authors), else 100 random ones (the authors' CNN/RNN
    ``rbs``; on the Fashion-MNIST subset n_bar = 100 generalised better than
    256: test 0.80 vs 0.75 after 3 epochs, measured here); lam
    (``pseudoinverse_l2_regularisation``) = 0.1, the authors' Keras default;
    targets truncated N(0, 1) with the layer-by-layer projection; the
    backprop cosine every 10th step (it costs one realisation pass). Measured
    with these defaults: ``refnets compare`` on the Fashion-MNIST subset
    (784-128-128-10 tanh, 3 epochs) test 0.804 (backprop 0.814); on the
    spirals (2-32-32-2, 2000 epochs) train 1.000, test 0.979 (README of the
    package, section 8).
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
