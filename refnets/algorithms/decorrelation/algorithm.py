"""Decorrelation before every layer (Ahmad 2024), trained with backprop.

A square matrix R (initialised to I) sits in front of every Dense and Conv2D
layer and feeds the layer a decorrelated input z = R (h - mu) (DEC-1, DEC-2;
conv: patch-wise, DEC-2a); the layer itself is unchanged (DEC-3). R is not
trained by gradients: after the step's forward and backward pass it moves by
a local rule on a sub-batch (DEC-13 to DEC-16, in
:mod:`~refnets.algorithms.decorrelation.rules`). The loss gradient flows
through R and the batch-mean subtraction (DEC-5). FA, DFA, NP and WP reuse
:class:`Decorrelation` through :mod:`~refnets.algorithms.decorrelation.net`.

The derivations, the map to the authors' code and the deviations are in this
package's README.md; the tags (DEC-n) are its equation numbers.

Symbol table
------------
==============  =========================  ==================================
paper            code name                  shape
==============  =========================  ==================================
h               ``h``                       (N, d) dense; (N, C_in, H, W) conv
mu              ``mu``, ``running_mean``    (d,) dense; (C_in,) conv
R               ``state['R']``              (d, d); conv d = D = C_in kh kw
z = R(h - mu)   ``z``                       (N, d); conv (N H_out W_out, D)
S, k_S          first ``k`` rows            k = min(N, max(floor(f N) + 1, d))
C_z             ``C``                       (d, d), second moment over S
s               ``s``                       scalar gain
eta             ``Decorrelation.lr``        scalar
W, b            the layer's params          (n_out, d) / (C_out, C_in, kh, kw)
a = W z + b     ``a``                       (N, n_out) / (N, C_out, H_out, W_out)
==============  =========================  ==================================

References
----------
N. Ahmad (2024), "Correlations Are Ruining Your Gradient Descent",
arXiv:2407.10780. P. Földiák (1990), "Forming sparse representations by local
anti-Hebbian learning", Biol. Cybern. 64.
"""

from __future__ import annotations

import numpy as np

from ...layers.conv import Conv2D, col2im, im2col
from ...layers.dense import Dense
from ...losses import softmax_cross_entropy
from ...selfcheck import register_check
from . import rules
from ...validation import check_bool, check_choice, check_number
from ..base import NULL_RECORDER, check_given, check_loss_finite, given_or_draw
from .net import (NO_RNG_NEEDED, DecorrelatedRule, backward_net, forward_net, is_weight_layer,
                  weight_layer_indices)

__all__ = ["MODES", "SUB_BATCHES", "FOLLOW", "Decorrelation", "as_decorrelation",
           "DecorrelatedBackprop", "weight_layer_indices"]

#: The named update rules of R.
MODES = ("scaled", "offdiag", "whiten", "zca", "foldiak")

#: How many rows the R rule sees (DEC-13): refnets' ``"at-least-d"`` or the authors' ``"fraction"``.
SUB_BATCHES = ("at-least-d", "fraction")

#: Presets that follow a revision of the authors' code (``nasiryahm/CorrelationsRuinGD``)
#: where refnets' default differs by convention (README section 6).
FOLLOW = {
    "crgd-head": {"sub_batch": "fraction", "center": True, "legacy_head_dense": True},
    "crgd-iclr": {"sub_batch": "fraction", "center": False, "legacy_head_dense": False},
}
_DEFAULTS = {"sub_batch": "at-least-d", "center": True, "legacy_head_dense": False}


class Decorrelation:
    """Configuration and per-layer maths of the decorrelators.

    Parameters
    ----------
    mode : {'scaled', 'offdiag', 'whiten', 'zca', 'foldiak'}
        Update rule of R (see :mod:`~refnets.algorithms.decorrelation.rules`);
        'scaled' is the paper's.
    lr : float >= 0
        eta. Stable only while eta * lambda_max(C_z) << 1: scale it with the
        input power (``suggest_decor_lr``). 0 freezes R.
    center : bool, default True
        Subtract the batch mean (train) / running mean (eval) before R. The
        authors' latest code always centres; their paper-era 'scaled' did not.
    sample_frac : float in (0, 1]
        f: the first floor(f N) + 1 rows form the sub-batch (authors'
        ``perc_samples``); with ``sub_batch='at-least-d'`` at least ``min(N, d)``.
    sub_batch : {'at-least-d', 'fraction'}, default 'at-least-d'
        'fraction': exactly the authors' k_S = min(N, floor(f N) + 1) rows (conv:
        images), even when that leaves C_z rank-deficient (DEC-13).
    mean_momentum : float in (0, 1]
        m of the running mean (and of zca's running covariance).
    guard : bool
        Freeze R's columns along inputs with zero variance in the sub-batch.
    var_tol : float
        An input is dead when its sub-batch mean square (after centring) is
        <= var_tol times the largest one.
    max_norm : float, optional
        ||R||_F above this raises FloatingPointError (default 1e6 sqrt(d)).
    zca_eps : float
        Relative eigenvalue floor of mode 'zca'.
    legacy_head_dense : bool, default False
        Dense layers use the authors' HEAD orientation z = R^T (h - mu).
    follow : {'crgd-head', 'crgd-iclr'}, optional
        Set ``sub_batch``, ``center`` and ``legacy_head_dense`` as that revision of
        the authors' code does (see :data:`FOLLOW`); keywords passed explicitly win.
    """

    def __init__(self, mode="scaled", lr=1e-3, center=None, sample_frac=0.1, mean_momentum=0.1,
                 guard=True, var_tol=1e-12, max_norm=None, zca_eps=1e-5, legacy_head_dense=None,
                 sub_batch=None, follow=None):
        where = "Decorrelation"
        self.mode = check_choice(mode, "mode", MODES, where)
        self.lr = check_number(lr, "lr", where, low=0)
        self.sample_frac = check_number(sample_frac, "sample_frac", where, low=0, high=1,
                                        low_open=True)
        self.mean_momentum = check_number(mean_momentum, "mean_momentum", where, low=0, high=1,
                                          low_open=True)
        self.guard = check_bool(guard, "guard", where)
        self.var_tol = check_number(var_tol, "var_tol", where, low=0)
        self.max_norm = (None if max_norm is None
                         else check_number(max_norm, "max_norm", where, low=0, low_open=True))
        self.zca_eps = check_number(zca_eps, "zca_eps", where, low=0)
        self.follow = (None if follow is None
                       else check_choice(follow, "follow", tuple(FOLLOW), where))
        switches = dict(_DEFAULTS, **(FOLLOW[follow] if follow is not None else {}))
        given = {"sub_batch": sub_batch, "center": center, "legacy_head_dense": legacy_head_dense}
        switches.update({key: v for key, v in given.items() if v is not None})
        self.sub_batch = check_choice(switches["sub_batch"], "sub_batch", SUB_BATCHES, where)
        self.center = check_bool(switches["center"], "center", where)
        self.legacy_head_dense = check_bool(switches["legacy_head_dense"], "legacy_head_dense",
                                            where)

    def __repr__(self):
        extra = "" if self.follow is None else f", follow={self.follow!r}"
        return (f"Decorrelation(mode={self.mode!r}, lr={self.lr}, center={self.center}, "
                f"sample_frac={self.sample_frac}, sub_batch={self.sub_batch!r}{extra})")

    # ------------------------------------------------------------------ state
    def init_layer(self, layer):
        """State of one decorrelator: R = I, running mean 0."""
        if isinstance(layer, Dense):
            d, n_mean = layer.n_in, layer.n_in
        elif isinstance(layer, Conv2D):
            d, n_mean = layer.c_in * layer.kernel_size[0] * layer.kernel_size[1], layer.c_in
        else:
            raise ValueError(f"Decorrelation.init_layer: layer must be Dense or Conv2D, "
                             f"got {type(layer).__name__}")
        st = {"R": np.eye(d), "running_mean": np.zeros(n_mean), "updates": 0}
        if self.mode == "foldiak":
            st["M"] = np.zeros((d, d))
        return st

    def init_state(self, model, rng=None, record=None, **given):
        """The decorrelators of every Dense/Conv2D layer k, one flat dict.

        Keys ``"{k}.R"`` (default I), ``"{k}.running_mean"`` (default 0),
        ``"{k}.updates"`` (0) and, for mode 'foldiak', ``"{k}.M"`` (0).

        Parameters
        ----------
        model : Sequential
        rng : ignored (nothing here is random); accepted for the common signature
        record : Recorder, optional
        R, running_mean : dict, optional
            Given initial values ``{"{k}.R": (d, d)}``, ``{"{k}.running_mean": (d,)}``
            (conv: ``(C_in,)``), e.g. another implementation's state.
        """
        from ..base import as_recorder
        where = "Decorrelation.init_state"
        check_given(given, ("R", "running_mean"), where)
        record = as_recorder(record)
        state = {}
        for k, layer in enumerate(model.layers):
            if not is_weight_layer(layer):
                continue
            st = self.init_layer(layer)
            for name in ("R", "running_mean"):
                default = st[name]
                st[name] = given_or_draw(given, name, f"{k}.{name}", default.shape,
                                         lambda _, v=default: v, NO_RNG_NEEDED, record, where)
            state.update({f"{k}.{name}": value for name, value in st.items()})
        return state

    # ---------------------------------------------------------------- forward
    def _mean(self, h, st, train, mu, axes):
        """(mu used, whether the gradient flows through it)."""
        if not self.center:
            return np.zeros(st["running_mean"].shape), False
        if mu is not None:
            return np.asarray(mu), False
        if train:
            return h.mean(axis=axes), True
        return st["running_mean"], False

    def forward(self, layer, h, st, train=True, params=None, mu=None, record=NULL_RECORDER, k=None):
        """a = W R (h - mu) + b for one Dense or Conv2D layer.

        Parameters
        ----------
        layer : Dense or Conv2D
        h : ndarray of shape (N, d) or (N, C_in, H, W)
        st : dict, this layer's decorrelator state (see :meth:`init_layer`)
        train : bool
            Batch mean (gradient flows through it) and a running-mean update;
            otherwise the running mean, no state change.
        params : dict, optional
            The layer's W, b to use (default its own).
        mu : ndarray, optional
            Use this mean instead (no gradient through it, no running-mean
            update): the noisy passes of perturbation methods.

        Returns
        -------
        a : the layer output
        cache : dict with h, the centred input, z, R, mu and the layer's cache.
        """
        where = f"Decorrelation.forward ({layer!r})"
        R = st["R"]
        if isinstance(layer, Dense):
            if np.ndim(h) != 2 or np.shape(h)[1] != layer.n_in:
                raise ValueError(f"{where}: h must have shape (N, {layer.n_in}), got {np.shape(h)}")
            mu_used, through = self._mean(h, st, train, mu, 0)
            hc = h - mu_used
            z = hc @ R if self.legacy_head_dense else hc @ R.T           # (DEC-2) z = R (h - mu)
            a, lcache = layer.forward(z, params)
            cache = {"layer": lcache}
        elif isinstance(layer, Conv2D):
            if np.ndim(h) != 4 or np.shape(h)[1] != layer.c_in:
                raise ValueError(f"{where}: h must have shape (N, {layer.c_in}, H, W), "
                                 f"got {np.shape(h)}")
            p = layer.params if params is None else params
            mu_used, through = self._mean(h, st, train, mu, (0, 2, 3))
            hc = h - mu_used[:, None, None]                     # (DEC-1) per channel, pre-padding
            kh, kw = layer.kernel_size
            cols = im2col(hc, kh, kw, layer.stride, layer.padding)   # (N*P, D) patches
            z = cols @ R.T                                      # (DEC-2a) z = R patch
            W = p["W"]
            A = z @ W.reshape(layer.c_out, -1).T                # (DEC-3) a 1x1 conv on z
            if layer.bias:
                A = A + p["b"]
            n, (ho, wo) = h.shape[0], layer.output_shape(h.shape)[1:]
            a = np.ascontiguousarray(A.reshape(n, ho, wo, layer.c_out).transpose(0, 3, 1, 2))
            cache = {"cols": cols, "W": W, "x_shape": h.shape, "a_shape": a.shape}
        else:
            raise ValueError(f"{where}: layer must be Dense or Conv2D, got {type(layer).__name__}")
        if train and through:
            m = self.mean_momentum
            st["running_mean"] = (1 - m) * st["running_mean"] + m * mu_used     # (DEC-1)
        cache.update({"decorrelated": True, "h": h, "hc": hc, "z": z, "R": R, "mu": mu_used,
                      "mean_grad": through})
        if record.active and k is not None:
            for name in ("h", "mu", "R", "z"):
                record.put(f"{k}.{name}", cache[name])
        return a, cache

    # --------------------------------------------------------------- backward
    def backward_params(self, layer, da, cache):
        """dL/dW = da^T z (sum over the batch / positions), dL/db = sum of da (DEC-4)."""
        if isinstance(layer, Dense):
            return layer.backward_params(da, cache["layer"])
        dA = da.transpose(0, 2, 3, 1).reshape(-1, layer.c_out)          # (N*P, C_out)
        grads = {"W": (dA.T @ cache["z"]).reshape(cache["W"].shape)}
        if layer.bias:
            grads["b"] = dA.sum(axis=0)
        return grads

    def backward_input(self, layer, da, cache, W=None):
        """dL/dh through W (or a feedback matrix ``W``), R and the mean subtraction.

        dz = da W (or da B);  d(h - mu) = dz R;  dh = d(h - mu) - batch mean
        of it when the batch mean was subtracted (DEC-5, DEC-5a).
        """
        R = cache["R"]
        if isinstance(layer, Dense):
            dz = layer.backward_input(da, cache["layer"], W=W)
            dhc = dz @ R.T if self.legacy_head_dense else dz @ R         # (DEC-5) g R
            axes = 0
        else:
            W = cache["W"] if W is None else W
            if np.shape(W) != cache["W"].shape:
                raise ValueError(f"Decorrelation.backward_input: W must have shape "
                                 f"{cache['W'].shape}, got {np.shape(W)}")
            dA = da.transpose(0, 2, 3, 1).reshape(-1, layer.c_out)
            dz = dA @ W.reshape(layer.c_out, -1)                         # (N*P, D)
            kh, kw = layer.kernel_size
            dhc = col2im(dz @ R, cache["x_shape"], kh, kw, layer.stride, layer.padding)  # (DEC-5a)
            axes = (0, 2, 3)
        if cache["mean_grad"]:
            dhc = dhc - dhc.mean(axis=axes, keepdims=True)               # - mean_batch (DEC-5)
        return dhc

    # ----------------------------------------------------------------- update
    def sub_batch_size(self, layer, cache):
        """k_S of DEC-13: samples (dense) or images (conv) the rule sees by default."""
        n, d = cache["h"].shape[0], cache["z"].shape[1]
        k = int(self.sample_frac * n) + 1
        if self.sub_batch == "at-least-d":
            positions = cache["z"].shape[0] // n
            k = max(k, -(-d // positions))          # dense: positions = 1, so k >= d
        return min(n, k)

    def sub_batch_rows(self, layer, cache):
        """The default sub-batch: indices 0 .. k_S - 1 of the samples (conv: images)."""
        return np.arange(self.sub_batch_size(layer, cache))

    def _sub_batch(self, layer, cache, rows=None):
        """(Z_s, H_raw_s, Hc_s): z, raw h and centred h on the sub-batch (DEC-13).

        ``rows`` (int indices of samples, conv: of images) replaces the first k_S.
        """
        h, z = cache["h"], cache["z"]
        n, d = h.shape[0], z.shape[1]
        sel = slice(0, self.sub_batch_size(layer, cache)) if rows is None else np.asarray(rows)
        if isinstance(layer, Dense):
            return z[sel], h[sel], cache["hc"][sel]
        positions = z.shape[0] // n
        kh, kw = layer.kernel_size
        raw = im2col(h[sel], kh, kw, layer.stride, layer.padding)    # un-centred, zero-padded
        if rows is None:
            m = sel.stop * positions
            return z[:m], raw, cache["cols"][:m]
        return (z.reshape(n, positions, d)[sel].reshape(-1, d), raw,
                cache["cols"].reshape(n, positions, d)[sel].reshape(-1, d))

    def update(self, layer, st, cache, where="Decorrelation.update", rows=None,
               record=NULL_RECORDER, k=None):
        """Apply the rule of ``mode`` to ``st['R']`` from one training forward's cache.

        ``rows`` (int indices) replaces the default sub-batch (DEC-13). With a
        ``record`` and the layer index ``k`` it records ``"{k}.C_z"``, ``"{k}.s"``
        (mode 'scaled') and ``"{k}.R_after"``.

        Returns
        -------
        info : dict of floats: 'offdiag_power', 'diag_power' and 'whiteness' of
            C_z on the sub-batch (before the update), 'R_norm' (after),
            'dead_inputs', 'gain' (s, 1.0 for rules without a gain).

        Raises
        ------
        FloatingPointError
            R became non-finite or ||R||_F exceeds ``max_norm``.
        """
        R = st["R"]
        d = R.shape[0]
        Z, H_raw, Hc = self._sub_batch(layer, cache, rows)
        # C_z itself when d is not much larger than k (then C R = C @ R reuses it)
        C = rules.second_moment(Z) if d <= Z.shape[0] else None               # (DEC-14)
        tracing = record.active and k is not None
        if tracing:
            record.put(f"{k}.C_z", rules.second_moment(Z) if C is None else C)
        info = {"gain": 1.0}
        if C is not None:
            info.update(offdiag_power=rules.offdiag_power(C), diag_power=rules.diag_power(C),
                        whiteness=rules.whiteness(C))
        else:                       # d > k: the powers from the k x k Gram matrix (cheaper)
            G = Z @ Z.T / Z.shape[0]
            c_diag = np.einsum("ij,ij->j", Z, Z) / Z.shape[0]
            total = float(np.sum(G * G))                     # ||C||_F^2 = ||Z Z^T||_F^2 / k^2
            diag_sq = float(np.sum(c_diag ** 2))
            c = c_diag.mean()
            info.update(offdiag_power=(total - diag_sq) / (d * (d - 1)),
                        diag_power=diag_sq / d,
                        whiteness=float(np.sqrt(max(total - 2 * c * c_diag.sum() + d * c * c, 0.0))
                                        / (abs(c) * np.sqrt(d))) if c else float("nan"))
        v = np.einsum("ij,ij->j", Hc, Hc) / Hc.shape[0]      # per-input mean square
        dead = v <= self.var_tol * v.max() if v.max() > 0 else np.ones(d, dtype=bool)  # (DEC-20)
        info["dead_inputs"] = float(dead.sum())
        if (self.lr == 0 and self.mode != "zca") or (self.guard and dead.all()):
            info["R_norm"] = float(np.linalg.norm(R))
            if tracing:
                record.put(f"{k}.R_after", R)
            return info

        if self.mode == "scaled":
            R_new, s = rules.scaled_update(R, Z, H_raw, self.lr, C)          # (DEC-16)
            info["gain"] = s
            if tracing:
                record.put(f"{k}.s", s)
        elif self.mode == "offdiag":
            R_new = rules.offdiag_update(R, Z, self.lr, C)                   # (DEC-16a)
        elif self.mode == "whiten":
            R_new = rules.whiten_update(R, Z, self.lr, C)                    # (DEC-16b)
        elif self.mode == "foldiak":
            st["M"], R_new = rules.foldiak_update(st["M"], Z, self.lr, C)    # (DEC-16c)
        else:  # (DEC-16d) zca: running covariance of the centred inputs of the whole batch
            hc = cache["cols"] if isinstance(layer, Conv2D) else cache["hc"]
            C_b = hc.T @ hc / hc.shape[0]
            m = self.mean_momentum
            st["cov"] = C_b if "cov" not in st else (1 - m) * st["cov"] + m * C_b
            R_new = rules.zca_matrix(st["cov"], self.zca_eps)

        if self.guard and dead.any() and self.mode in ("scaled", "offdiag", "whiten"):
            if self.legacy_head_dense and isinstance(layer, Dense):
                R_new[dead, :] = R[dead, :]      # z = R^T hc: input j is row j of R
            else:
                R_new[:, dead] = R[:, dead]      # z = R hc: input j is column j of R
        norm = float(np.linalg.norm(R_new))
        limit = self.max_norm if self.max_norm is not None else 1e6 * np.sqrt(d)
        if not np.isfinite(norm) or norm > limit:
            raise FloatingPointError(
                f"{where}: the decorrelation matrix R diverged (||R||_F = {norm:.3g}, limit "
                f"{limit:.3g}; mode {self.mode!r}, lr {self.lr}, {int(dead.sum())} dead inputs, "
                f"largest C_z diagonal {float(np.max(np.einsum('ij,ij->j', Z, Z)) / Z.shape[0]):.3g}). "
                f"Lower lr so that lr * lambda_max(C_z) << 1 (suggest_decor_lr), or keep guard=True")
        st["R"] = R_new
        st["updates"] += 1
        info["R_norm"] = norm
        if tracing:
            record.put(f"{k}.R_after", R_new)
        return info


def as_decorrelation(decorrelate):
    """``False``/None -> None, ``True`` -> Decorrelation(), a Decorrelation -> itself."""
    if decorrelate is None or decorrelate is False:
        return None
    if decorrelate is True:
        return Decorrelation()
    if isinstance(decorrelate, Decorrelation):
        return decorrelate
    raise ValueError(f"decorrelate must be True, False or a Decorrelation, got {decorrelate!r}")


# ---------------------------------------------------------------------------
# Backprop through decorrelated layers
# ---------------------------------------------------------------------------
class DecorrelatedBackprop(DecorrelatedRule):
    """Backprop on a network with a decorrelator before every Dense/Conv2D layer.

    Parameters
    ----------
    decorrelate : bool or Decorrelation
        True: ``Decorrelation()`` defaults; False: plain backprop through the
        same loop (the reference of the degenerate-case tests).
    loss : callable, default softmax cross-entropy (mean over the batch)

    Given values (README section 2): ``init_state(..., R=, running_mean=)``,
    ``step(..., rows=)``. Trace keys: ``"e"``, ``"{k}.delta"`` and the
    decorrelators' ``"{k}.h"``, ``"{k}.mu"``, ``"{k}.R"``, ``"{k}.z"``,
    ``"{k}.rows"``, ``"{k}.C_z"``, ``"{k}.s"``, ``"{k}.R_after"``.
    """

    name = "decor-bp"

    def __init__(self, decorrelate=True, loss=softmax_cross_entropy):
        super().__init__(loss)
        self.decor = as_decorrelation(decorrelate)

    def __repr__(self):
        return f"DecorrelatedBackprop(decorrelate={self.decor!r})"

    def init_state(self, model, rng=None, record=None, **given):
        """{'decor': the decorrelators' flat state (or None), 'step': 0}."""
        return self._init_common(model, rng, record, given)

    def step(self, model, state, x, y, rng=None, record=None, **given):
        """Forward (batch mean), backward through W, R and the mean; then R's rule."""
        x, record = self._begin(x, rng, record, given)
        state["step"] += 1
        out, caches = forward_net(model, self.decor, state["decor"], x, train=True, record=record)
        loss, dout = self.loss(out, y)
        check_loss_finite(loss, f"{type(self).__name__}.step {state['step']}")
        record.put("e", dout)
        _, grads = backward_net(model, self.decor, dout, caches, record=record)   # (DEC-4, DEC-5)
        return self._finish(model, state, loss, dout, caches, grads, record=record, given=given)


# ---------------------------------------------------------------------------
# Self-checks (``refnets gradcheck``): the backward through R and the batch mean
# ---------------------------------------------------------------------------
def _check_decorrelated(layer, h, R, rng):
    """Worst relative error of dL/dh, dL/dW, dL/db of a decorrelated layer (train mode)."""
    from ...gradcheck import numerical_vjp, rel_error
    dec = Decorrelation()
    st = dec.init_layer(layer)
    st["R"] = R

    def run(v, p=None):
        return dec.forward(layer, v, dict(st), params=p)[0]

    a, cache = dec.forward(layer, h, dict(st))
    da = rng.standard_normal(a.shape)
    errs = [rel_error(dec.backward_input(layer, da, cache), numerical_vjp(run, h.copy(), da))]
    grads = dec.backward_params(layer, da, cache)
    for key in layer.params:
        def f(v, key=key):
            return run(h, dict(layer.params, **{key: v}))
        errs.append(rel_error(grads[key], numerical_vjp(f, layer.params[key].copy(), da)))
    return max(errs)


@register_check("decorrelation/Dense: dL/dh through R and the batch mean, dW, db",
                group="decorrelation")
def _check_dense(rng):
    layer = Dense(4, 3, rng)
    return _check_decorrelated(layer, rng.standard_normal((5, 4)) + 2.0,
                               np.eye(4) + 0.3 * rng.standard_normal((4, 4)), rng)


@register_check("decorrelation/Conv2D (patch-wise R, stride 2, pad 1): dL/dh, dW, db",
                group="decorrelation")
def _check_conv(rng):
    layer = Conv2D(2, 2, 3, stride=2, padding=1, rng=rng)
    return _check_decorrelated(layer, rng.standard_normal((2, 2, 5, 5)) + 1.0,
                               np.eye(18) + 0.2 * rng.standard_normal((18, 18)), rng)


def _build(sizes, activation, rng, x_train=None, y_train=None):
    """Registry factory: decorrelated MLP, backprop, Adam(1e-3, betas 0.9/0.9999)."""
    from ...models import mlp
    from ...optim import Adam
    from .. import Setup
    return Setup(mlp(sizes, activation, rng), DecorrelatedBackprop(Decorrelation(lr=1e-3)),
                 Adam(lr=1e-3, beta2=0.9999))


def _register():
    from .. import Method, register
    register(Method("decor-bp", _build, "backprop with a decorrelating R before every layer",
                    "Ahmad 2024, arXiv:2407.10780"))


_register()
