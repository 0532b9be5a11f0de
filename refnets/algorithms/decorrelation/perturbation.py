"""Node perturbation (NP) and weight perturbation (WP): gradients from loss differences.

No backward pass at all: a second, noisy forward pass and the change of the
loss it causes give a stochastic estimate of the gradient.

**Node perturbation** (all weight layers at once, DEC-9, DEC-10). The clean pass
gives a_k = W_k z_k + b_k and per-sample losses L_n; the noisy pass adds
eps_k ~ N(0, sigma^2 I) to every a_k (propagating through the layers above)
and gives L~_n. With dL_n = L~_n - L_n::

    g^_{a_k,n} = dL_n eps_{k,n} / sigma^2                 -> dL_n/da_{k,n} as sigma -> 0
    g^_{W_k}   = (1/N) sum_n g^_{a_k,n} z_{k,n}^T,   g^_{b_k} = (1/N) sum_n g^_{a_k,n}

since dL_n = sum_k <dL_n/da_k, eps_k> + O(sigma^2) and E[eps eps^T] = sigma^2 I
(first-order unbiased, DEC-11). ``z_k`` is the clean pass's (decorrelated)
input of layer k.

**Weight perturbation** (DEC-12): perturb every parameter, theta~ = theta + eps,
eps ~ N(0, sigma^2 I), on the batch-mean loss L::

    g^_theta = (L(theta~) - L(theta)) eps / sigma^2       E[g^] = grad L + O(sigma^2)

averaged over ``n_draws`` independent draws. Its variance grows with the
number of parameters, far beyond NP's (which grows with the number of units).

Symbol table
------------
==============  ========================  ==================================
paper symbol     code name                 shape
==============  ========================  ==================================
sigma            ``sigma``                 scalar noise standard deviation
eps_k            ``eps[k]``                shape of a_k, e.g. (N, n_out_k)
L_n, L~_n        ``loss_clean``, ``loss_noisy``   (N,) per-sample losses
dL_n             ``dL``                    (N,)
z_k              clean decorrelated input  (N, n_in_k)
==============  ========================  ==================================

The map to the authors' code (their one-pass doubled batch) and the
deviations (float64, sigma, the centring of the noisy pass, WP being a
baseline outside the paper) are in this package's README.md.

References
----------
N. Ahmad (2024), arXiv:2407.10780, and S. Dalm, M. van Gerven, N. Ahmad
(2023), "Effective learning with node perturbation in deep neural networks",
arXiv:2310.00965. M. Jabri, B. Flower (1992), "Weight perturbation: an optimal
architecture and learning technique for analog VLSI feedforward and recurrent
multilayer networks", IEEE Trans. Neural Netw. 3(1).
"""

from __future__ import annotations

import numpy as np

from ...losses import log_softmax, mse, one_hot, softmax_cross_entropy
from ...validation import check_bool, check_choice, check_number
from ..base import NULL_RECORDER, check_loss_finite, given_or_draw
from .net import (DecorrelatedRule, backward_params, forward_net, is_weight_layer,
                  layer_forward, layer_state)
from .algorithm import FOLLOW, Decorrelation, as_decorrelation

__all__ = ["sample_losses", "NodePerturbation", "WeightPerturbation", "NOISY_MEANS", "NP_FOLLOW"]

#: Which batch mean the decorrelators use when node perturbation runs its noisy pass
#: (README section 6): refnets' ``"clean"`` pass mean, or the authors' ``"doubled"``
#: batch [clean; noisy] pushed through the network at once.
NOISY_MEANS = ("clean", "doubled")

#: ``follow=`` presets of :class:`NodePerturbation` (the authors' NP always runs the doubled batch).
NP_FOLLOW = {name: {"noisy_mean": "doubled"} for name in FOLLOW}


def sample_losses(loss_fn, out, y):
    """Per-sample losses L_n whose mean is ``loss_fn(out, y)[0]``.

    Parameters
    ----------
    loss_fn : softmax_cross_entropy or mse
    out : ndarray of shape (N, C) (or (N, ...) for mse)
    y : labels (N,) or targets like ``out``

    Returns
    -------
    ndarray of shape (N,)
    """
    if loss_fn is softmax_cross_entropy:
        logp = log_softmax(out)
        y = np.asarray(y)
        t = one_hot(y, out.shape[-1]) if np.issubdtype(y.dtype, np.integer) else y
        return -np.sum(t * logp, axis=-1)
    if loss_fn is mse:
        diff = out - y
        return np.sum(diff * diff, axis=tuple(range(1, out.ndim)))
    raise ValueError(f"sample_losses: per-sample losses are known for softmax_cross_entropy and "
                     f"mse only, got {loss_fn!r}; pass per_sample_loss=")


class _PerturbationBase(DecorrelatedRule):
    STEP_GIVEN = ("eps",)

    def __init__(self, sigma, decorrelate, track_backprop, loss):
        super().__init__(loss)
        where = type(self).__name__
        self.sigma = check_number(sigma, "sigma", where, low=0, low_open=True)
        self.decor = as_decorrelation(decorrelate)
        self.track_backprop = check_bool(track_backprop, "track_backprop", where)

    def __repr__(self):
        return f"{type(self).__name__}(sigma={self.sigma}, decorrelate={self.decor!r})"

    def init_state(self, model, rng=None, record=None, **given):
        """{'decor': the decorrelators' flat state (or None), 'step': 0}."""
        return self._init_common(model, rng, record, given)

    def _noise(self, given, key, shape, rng, record):
        """sigma * N(0, 1) of ``shape``, or the given ``eps[key]``."""
        return given_or_draw(given, "eps", key, shape,
                             lambda r: self.sigma * r.standard_normal(shape), rng, record,
                             f"{type(self).__name__}.step")

    def _clean(self, model, state, x, y, record):
        state["step"] += 1
        out, caches = forward_net(model, self.decor, state["decor"], x, train=True, record=record)
        loss, dout = self.loss(out, y)
        check_loss_finite(loss, f"{type(self).__name__}.step {state['step']}")
        mus = [c.get("mu") if c.get("decorrelated") else None for c in caches]
        return out, loss, dout, caches, mus


class NodePerturbation(_PerturbationBase):
    """Node perturbation: noisy second forward pass, update dL eps z^T / sigma^2.

    Parameters
    ----------
    sigma : float
        Standard deviation of the noise on every pre-activation (default 1e-4).
    decorrelate : bool or Decorrelation
    track_backprop : bool
        Compute the exact gradient for ``info['cosine_to_backprop']`` (one
        backward pass; NP itself needs none).
    loss : callable
    per_sample_loss : callable, optional
        ``per_sample_loss(out, y) -> (N,)``; default :func:`sample_losses`.
    noisy_mean : {'clean', 'doubled'}, default 'clean'
        'clean': the noisy pass reuses the clean pass's batch means (DEC-9).
        'doubled': as the authors' code, one pass over the batch [clean; noisy],
        so every decorrelator's batch mean (and running mean) includes the noisy
        half, for the clean rows too; the R rule's sub-batch is taken from the
        doubled batch (its first rows are clean).
    follow : {'crgd-head', 'crgd-iclr'}, optional
        Set ``noisy_mean`` as the authors' code (see :data:`NP_FOLLOW`), and
        with ``decorrelate=True`` build ``Decorrelation(follow=follow)``.

    Notes
    -----
    info: 'cosine_to_backprop', 'cosine_to_backprop_layers', 'loss_change'
    (mean dL_n), plus the decorrelators' diagnostics.

    Given values: ``init_state(..., R=, running_mean=)``; ``step(..., eps={"{k}.eps":
    (N, n_out_k)}, rows=)``. Trace keys: ``"loss_clean"``, ``"loss_noisy"``,
    ``"dL"`` (N,), ``"{k}.eps"``, ``"{k}.delta"`` (g^_a / N, the signal used for
    DEC-4) and the decorrelators'.
    """

    name = "np"

    def __init__(self, sigma=1e-4, decorrelate=False, track_backprop=True,
                 loss=softmax_cross_entropy, per_sample_loss=None, noisy_mean=None, follow=None):
        where = "NodePerturbation"
        if follow is not None:
            check_choice(follow, "follow", tuple(NP_FOLLOW), where)
            if decorrelate is True:
                decorrelate = Decorrelation(follow=follow)
        super().__init__(sigma, decorrelate, track_backprop, loss)
        if per_sample_loss is not None and not callable(per_sample_loss):
            raise ValueError(f"{where}: per_sample_loss must be callable, got {per_sample_loss!r}")
        self.per_sample_loss = per_sample_loss
        self.follow = follow
        if noisy_mean is None:
            noisy_mean = NP_FOLLOW[follow]["noisy_mean"] if follow is not None else "clean"
        self.noisy_mean = check_choice(noisy_mean, "noisy_mean", NOISY_MEANS, where)

    def _losses(self, out, y):
        if self.per_sample_loss is not None:
            return np.asarray(self.per_sample_loss(out, y), dtype=np.float64)
        return sample_losses(self.loss, out, y)

    def noisy_forward(self, model, state, x, mus, rng, given=None, record=NULL_RECORDER):
        """Forward with eps_k ~ N(0, sigma^2) added to every weight layer's output a_k.

        ``given["eps"]["{k}.eps"]`` replaces layer k's draw.

        Returns
        -------
        out : ndarray, the noisy output
        eps : dict k -> noise added after weight layer k
        """
        given = {} if given is None else given
        h, eps = x, {}
        for k, layer in enumerate(model.layers):
            if is_weight_layer(layer):
                st = None if self.decor is None else layer_state(state["decor"], k)
                h, _ = layer_forward(layer, h, self.decor, st, train=False, mu=mus[k])
                eps[k] = self._noise(given, f"{k}.eps", h.shape, rng, record)
                h = h + eps[k]                                   # (DEC-9)
            else:
                h, _ = layer.forward(h)
        return h, eps

    def _doubled_forward(self, model, state, x, y, rng, given, record):
        """The authors' form: one training pass over [x; x], noise added to the second half.

        Returns the clean half's output and loss, the noisy output, the noise and
        the caches of the doubled batch (decorrelators centred on its mean).
        """
        state["step"] += 1
        n, caches, eps = x.shape[0], [], {}
        h = np.concatenate([x, x])
        for k, layer in enumerate(model.layers):
            st = None if self.decor is None else layer_state(state["decor"], k)
            h, cache = layer_forward(layer, h, self.decor, st, True, None, None, record, k)
            caches.append(cache)
            if is_weight_layer(layer):
                eps[k] = self._noise(given, f"{k}.eps", (n,) + h.shape[1:], rng, record)
                h = np.concatenate([h[:n], h[n:] + eps[k]])     # (DEC-9), the noisy half
        out, out_noisy = h[:n], h[n:]
        loss, dout = self.loss(out, y)
        check_loss_finite(loss, f"{type(self).__name__}.step {state['step']}")
        return out, out_noisy, loss, dout, eps, caches

    def step(self, model, state, x, y, rng, record=None, **given):
        """Clean pass, noisy pass, g^_W = (1/N) sum_n (dL_n / sigma^2) eps_n z_n^T."""
        x, record = self._begin(x, rng, record, given)
        doubled = self.noisy_mean == "doubled" and self.decor is not None and self.decor.center
        if doubled:
            out, out_noisy, loss, dout, eps, caches = self._doubled_forward(
                model, state, x, y, rng, given, record)
        else:
            out, loss, dout, caches, mus = self._clean(model, state, x, y, record)
            out_noisy, eps = self.noisy_forward(model, state, x, mus, rng, given, record)
        loss_clean, loss_noisy = self._losses(out, y), self._losses(out_noisy, y)
        dL = loss_noisy - loss_clean                                     # (DEC-10) (N,)
        record.put("loss_clean", loss_clean)
        record.put("loss_noisy", loss_noisy)
        record.put("dL", dL)
        if not np.all(np.isfinite(dL)):
            raise FloatingPointError(f"NodePerturbation.step {state['step']}: the noisy pass "
                                     f"diverged (non-finite loss change)")
        n = dL.shape[0]
        grads = [{} for _ in model.layers]
        for k, e_k in eps.items():
            record.put(f"{k}.eps", e_k)
            coef = (dL / (self.sigma ** 2 * n)).reshape((n,) + (1,) * (e_k.ndim - 1))
            g_a = coef * e_k                                             # (DEC-10) g^_a / N
            record.put(f"{k}.delta", g_a)
            if doubled:                                  # the noisy rows contribute nothing
                g_a = np.concatenate([g_a, np.zeros_like(g_a)])
            grads[k] = backward_params(model.layers[k], g_a, caches[k], self.decor)   # (DEC-4)
        if doubled:                                      # backprop of the clean loss, same pass
            dout = np.concatenate([dout, np.zeros_like(dout)])
        return self._finish(model, state, loss, dout, caches, grads,
                            {"loss_change": float(np.mean(dL))}, record, given)


class WeightPerturbation(_PerturbationBase):
    """Weight perturbation: g^ = (L(theta + eps) - L(theta)) eps / sigma^2.

    Parameters
    ----------
    sigma : float
        Standard deviation of the parameter noise (default 1e-4).
    n_draws : int
        Independent perturbations averaged per step (default 1).
    decorrelate, track_backprop, loss : as :class:`NodePerturbation`

    Notes
    -----
    The perturbed passes reuse the clean pass's batch means, like NP's default.
    Given values: ``init_state(..., R=, running_mean=)``; ``step(..., eps=
    {"{k}.eps_{name}.{m}": shape of parameter "{k}.{name}"}, rows=)`` for draw
    m = 0 .. n_draws - 1 (e.g. ``"0.eps_W.0"``). Trace keys: ``"loss_clean"``
    (scalar), ``"loss_perturbed"`` and ``"dL"`` (n_draws,), ``"{k}.eps_{name}.{m}"``
    and the decorrelators'.
    """

    name = "wp"

    def __init__(self, sigma=1e-4, n_draws=1, decorrelate=False, track_backprop=True,
                 loss=softmax_cross_entropy):
        super().__init__(sigma, decorrelate, track_backprop, loss)
        self.n_draws = check_number(n_draws, "n_draws", "WeightPerturbation", low=1, integer=True)

    def step(self, model, state, x, y, rng, record=None, **given):
        """Clean loss, then n_draws perturbed losses; average dL eps / sigma^2."""
        x, record = self._begin(x, rng, record, given)
        out, loss, dout, caches, mus = self._clean(model, state, x, y, record)
        params = model.params()
        g = {key: np.zeros_like(p) for key, p in params.items()}
        losses, changes = [], []
        for m in range(self.n_draws):
            eps = {}
            for key, p in params.items():
                k, name = key.split(".", 1)
                eps[key] = self._noise(given, f"{k}.eps_{name}.{m}", p.shape, rng, record)
                record.put(f"{k}.eps_{name}.{m}", eps[key])
            perturbed = model.unflatten({key: params[key] + eps[key] for key in params})
            out_p, _ = forward_net(model, self.decor, state["decor"], x, train=True,
                                   params=perturbed, mus=mus)
            loss_p = self.loss(out_p, y)[0]
            dL = loss_p - loss
            losses.append(loss_p)
            changes.append(dL)
            if not np.isfinite(dL):
                raise FloatingPointError(f"WeightPerturbation.step {state['step']}: the perturbed "
                                         f"pass diverged (non-finite loss)")
            for key in g:
                g[key] += dL / (self.sigma ** 2 * self.n_draws) * eps[key]   # (DEC-12)
        record.put("loss_clean", loss)
        record.put("loss_perturbed", np.array(losses))
        record.put("dL", np.array(changes))
        return self._finish(model, state, loss, dout, caches, model.unflatten(g), {}, record, given)


# ---------------------------------------------------------------------------
# Registry entries (``refnets compare``). Defaults measured on the embedded
# Fashion-MNIST subset with compare's defaults (784-128-128-10, tanh, batch 50),
# seeds 0-2, test accuracy after epochs 1 / 3 / 10 (README section 8).
# ---------------------------------------------------------------------------
def _setup(sizes, activation, rng, algorithm, lr):
    from ...models import mlp
    from ...optim import Adam
    from .. import Setup
    return Setup(mlp(sizes, activation, rng), algorithm, Adam(lr=lr, beta2=0.9999))


def _build_np(sizes, activation, rng, x_train=None, y_train=None):
    """Node perturbation (sigma 1e-4), Adam(3e-4, betas 0.9/0.9999).

    Fashion-MNIST subset, seeds 0-2, after 1 / 3 / 10 epochs: 0.472 / 0.625 / 0.730.
    """
    return _setup(sizes, activation, rng, NodePerturbation(sigma=1e-4), 3e-4)


def _build_decor_np(sizes, activation, rng, x_train=None, y_train=None):
    """NP (sigma 1e-4) after the scaled decorrelation rule (rate 1e-4), Adam(3e-4).

    Fashion-MNIST subset, seeds 0-2, after 1 / 3 / 10 epochs: 0.596 / 0.727 /
    0.784 (plain NP 0.472 / 0.625 / 0.730). With rate 1e-3, R moves faster than
    NP's noisy updates follow (tutorial 40's setup: 0.43 vs 0.68 after 3 epochs).
    """
    return _setup(sizes, activation, rng,
                  NodePerturbation(sigma=1e-4, decorrelate=Decorrelation(lr=1e-4)), 3e-4)


def _build_wp(sizes, activation, rng, x_train=None, y_train=None):
    """Weight perturbation (sigma 1e-4, one draw per step), Adam(3e-3).

    Fashion-MNIST subset, seeds 0-2, after 1 / 3 / 10 epochs: 0.279 / 0.454 /
    0.626 (Adam 1e-3: 0.195 / 0.344 / 0.569; 1e-2: 0.281 / 0.373 / 0.355).
    """
    return _setup(sizes, activation, rng, WeightPerturbation(sigma=1e-4), 3e-3)


def _build_decor_wp(sizes, activation, rng, x_train=None, y_train=None):
    """WP (sigma 1e-4) after the scaled decorrelation rule (rate 1e-4), Adam(3e-3).

    Fashion-MNIST subset, seeds 0-2, after 1 / 3 / 10 epochs: 0.329 / 0.476 /
    0.558: ahead of plain WP (0.279 / 0.454 / 0.626) early, behind after 10
    epochs; rate 1e-3 with Adam 1e-3 stalls (0.218 after 10).
    """
    return _setup(sizes, activation, rng,
                  WeightPerturbation(sigma=1e-4, decorrelate=Decorrelation(lr=1e-4)), 3e-3)


def _register():
    from .. import Method, register
    register(Method("np", _build_np, "node perturbation: noisy 2nd forward pass, dL eps z^T",
                    "Dalm, van Gerven & Ahmad 2023"))
    register(Method("decor-np", _build_decor_np,
                    "node perturbation (noisy 2nd forward pass) after decorrelating R",
                    "Ahmad 2024; Dalm et al. 2023"))
    register(Method("wp", _build_wp, "weight perturbation: loss change under parameter noise",
                    "Jabri & Flower 1992"))
    register(Method("decor-wp", _build_decor_wp,
                    "weight perturbation after decorrelating R", "Ahmad 2024; Jabri & Flower 1992"))


_register()
