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
from ..base import check_loss_finite
from .net import (DecorrelatedRule, backward_params, forward_net, is_weight_layer,
                               layer_forward, weight_layer_indices)
from .algorithm import Decorrelation, as_decorrelation

__all__ = ["sample_losses", "NodePerturbation", "WeightPerturbation"]


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


def _check_sigma(sigma, where):
    if not (isinstance(sigma, (int, float, np.floating)) and np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"{where}: sigma must be a positive finite number, got {sigma!r}")
    return float(sigma)


def _check_rng(rng, where):
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"{where}: rng must be a numpy.random.Generator (the noise source), "
                         f"got {type(rng).__name__}")


class _PerturbationBase(DecorrelatedRule):
    def __init__(self, sigma, decorrelate, track_backprop, loss):
        super().__init__(loss)
        self.sigma = _check_sigma(sigma, type(self).__name__)
        self.decor = as_decorrelation(decorrelate)
        self.track_backprop = bool(track_backprop)

    def __repr__(self):
        return f"{type(self).__name__}(sigma={self.sigma}, decorrelate={self.decor!r})"

    def init_state(self, model, rng=None):
        """{'decor': per-layer decorrelator states (or None), 'step': 0}."""
        if not weight_layer_indices(model):
            raise ValueError(f"{type(self).__name__}.init_state: model has no Dense/Conv2D layer")
        return {"decor": None if self.decor is None else self.decor.init_state(model), "step": 0}

    def _clean(self, model, state, x, y, rng):
        _check_rng(rng, f"{type(self).__name__}.step")
        state["step"] += 1
        out, caches = forward_net(model, self.decor, state["decor"], x, train=True)
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

    Notes
    -----
    info: 'cosine_to_backprop', 'cosine_to_backprop_layers', 'loss_change'
    (mean dL_n), plus the decorrelators' diagnostics.
    """

    name = "np"

    def __init__(self, sigma=1e-4, decorrelate=False, track_backprop=True,
                 loss=softmax_cross_entropy, per_sample_loss=None):
        super().__init__(sigma, decorrelate, track_backprop, loss)
        if per_sample_loss is not None and not callable(per_sample_loss):
            raise ValueError(f"NodePerturbation: per_sample_loss must be callable, got {per_sample_loss!r}")
        self.per_sample_loss = per_sample_loss

    def _losses(self, out, y):
        if self.per_sample_loss is not None:
            return np.asarray(self.per_sample_loss(out, y), dtype=np.float64)
        return sample_losses(self.loss, out, y)

    def noisy_forward(self, model, state, x, mus, rng):
        """Forward with eps_k ~ N(0, sigma^2) added to every weight layer's output a_k.

        Returns
        -------
        out : ndarray, the noisy output
        eps : dict k -> noise added after weight layer k
        """
        h, eps = x, {}
        for k, layer in enumerate(model.layers):
            if is_weight_layer(layer):
                st = None if state["decor"] is None else state["decor"][k]
                h, _ = layer_forward(layer, h, self.decor, st, train=False, mu=mus[k])
                eps[k] = self.sigma * rng.standard_normal(h.shape)
                h = h + eps[k]                                   # (DEC-9)
            else:
                h, _ = layer.forward(h)
        return h, eps

    def step(self, model, state, x, y, rng):
        """Clean pass, noisy pass, g^_W = (1/N) sum_n (dL_n / sigma^2) eps_n z_n^T."""
        out, loss, dout, caches, mus = self._clean(model, state, x, y, rng)
        out_noisy, eps = self.noisy_forward(model, state, x, mus, rng)
        dL = self._losses(out_noisy, y) - self._losses(out, y)           # (DEC-10) (N,)
        if not np.all(np.isfinite(dL)):
            raise FloatingPointError(f"NodePerturbation.step {state['step']}: the noisy pass "
                                     f"diverged (non-finite loss change)")
        n = dL.shape[0]
        grads = [{} for _ in model.layers]
        for k, e_k in eps.items():
            coef = (dL / (self.sigma ** 2 * n)).reshape((n,) + (1,) * (e_k.ndim - 1))
            g_a = coef * e_k                                             # (DEC-10) g^_a / N
            grads[k] = backward_params(model.layers[k], g_a, caches[k], self.decor)
        return self._finish(model, state, loss, dout, caches, grads,
                            {"loss_change": float(np.mean(dL))})


class WeightPerturbation(_PerturbationBase):
    """Weight perturbation: g^ = (L(theta + eps) - L(theta)) eps / sigma^2.

    Parameters
    ----------
    sigma : float
        Standard deviation of the parameter noise (default 1e-4).
    n_draws : int
        Independent perturbations averaged per step (default 1).
    decorrelate, track_backprop, loss : as :class:`NodePerturbation`
    """

    name = "wp"

    def __init__(self, sigma=1e-4, n_draws=1, decorrelate=False, track_backprop=True,
                 loss=softmax_cross_entropy):
        super().__init__(sigma, decorrelate, track_backprop, loss)
        if isinstance(n_draws, bool) or not isinstance(n_draws, (int, np.integer)) or n_draws < 1:
            raise ValueError(f"WeightPerturbation: n_draws must be an int >= 1, got {n_draws!r}")
        self.n_draws = int(n_draws)

    def step(self, model, state, x, y, rng):
        """Clean loss, then n_draws perturbed losses; average dL eps / sigma^2."""
        out, loss, dout, caches, mus = self._clean(model, state, x, y, rng)
        params = model.params()
        g = {key: np.zeros_like(p) for key, p in params.items()}
        for _ in range(self.n_draws):
            eps = {key: self.sigma * rng.standard_normal(p.shape) for key, p in params.items()}
            perturbed = model.unflatten({key: params[key] + eps[key] for key in params})
            out_p, _ = forward_net(model, self.decor, state["decor"], x, train=True,
                                   params=perturbed, mus=mus)
            dL = self.loss(out_p, y)[0] - loss
            if not np.isfinite(dL):
                raise FloatingPointError(f"WeightPerturbation.step {state['step']}: the perturbed "
                                         f"pass diverged (non-finite loss)")
            for key in g:
                g[key] += dL / (self.sigma ** 2 * self.n_draws) * eps[key]   # (DEC-12)
        return self._finish(model, state, loss, dout, caches, model.unflatten(g), {})


def _build_decor_np(sizes, activation, rng, x_train=None, y_train=None):
    """Registry factory: NP (sigma 1e-4) with the scaled decorrelation rule, Adam(3e-4).

    Decorrelation rate 1e-4: on the Fashion-MNIST subset NP gained from it
    (test accuracy after 3 epochs 0.50 -> 0.68) but lost with 1e-3 (0.43),
    where R moves faster than NP's noisy updates can follow (tutorial 40).
    """
    from ...models import mlp
    from ...optim import Adam
    from .. import Setup
    return Setup(mlp(sizes, activation, rng),
                 NodePerturbation(sigma=1e-4, decorrelate=Decorrelation(lr=1e-4)),
                 Adam(lr=3e-4, beta2=0.9999))


def _register():
    from .. import Method, register
    register(Method("decor-np", _build_decor_np,
                    "node perturbation (noisy 2nd forward pass) after decorrelating R",
                    "Ahmad 2024; Dalm et al. 2023"))


_register()
