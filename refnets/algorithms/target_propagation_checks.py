"""Finite-difference self-checks of every local loss in the DTP family.

Registered for ``refnets gradcheck`` (listed in ``CHECK_MODULES``). Each check
builds a small float64 problem, differentiates the loss numerically
(:func:`refnets.gradcheck.numerical_gradient`, centred, h = 1e-5) with the noise
held fixed, and returns the worst relative error over all parameter gradients.
"""

from __future__ import annotations

import numpy as np

from ..gradcheck import numerical_gradient, rel_error
from ..layers.activations import Tanh
from ..layers.dense import Dense
from ..selfcheck import register_check
from .target_propagation import Block, dtp_feedback_loss, local_loss


def _param_errors(loss_fn, params, analytic):
    """max over keys of rel_error(analytic[key], d loss_fn / d params[key])."""
    errors = []
    for key in params:
        def scalar(v, key=key):
            return loss_fn({**params, key: v})
        errors.append(rel_error(analytic[key], numerical_gradient(scalar, params[key].copy())))
    return max(errors)


def _tanh_block(n_in, n_out, rng):
    return Block(None, Dense(n_in, n_out, rng), Tanh())


@register_check("dtp/forward local loss dW, db", group="dtp")
def _check_local_loss(rng):
    f = _tanh_block(5, 4, rng)
    h_prev, target = rng.standard_normal((3, 5)), 0.8 * np.tanh(rng.standard_normal((3, 4)))
    params = {k: v.copy() for k, v in f.dense.params.items()}
    _, grads = local_loss(f, h_prev, target, params)
    return _param_errors(lambda p: local_loss(f, h_prev, target, p)[0], params, grads)


@register_check("dtp/inverse (denoising) loss dV, dc", group="dtp")
def _check_dtp_feedback(rng):
    f, g = _tanh_block(5, 4, rng), _tanh_block(4, 5, rng)
    h_prev = np.tanh(rng.standard_normal((3, 5)))
    noise = 0.3 * rng.standard_normal((3, 5))
    params = {k: v.copy() for k, v in g.dense.params.items()}
    _, grads = dtp_feedback_loss(f, g, h_prev, noise, params)
    return _param_errors(lambda p: dtp_feedback_loss(f, g, h_prev, noise, p)[0], params, grads)
