"""Backpropagation: the baseline every other method is measured against.

Symbol table
------------
=================  ===============  ===========================
paper symbol       code name        shape
=================  ===============  ===========================
x                  ``x``            (N, ...) model input
y                  ``y``            (N,) labels or (N, C)
L                  ``loss``         scalar, mean over the batch
dL/dtheta          ``grads``        flat dict like model.params()
=================  ===============  ===========================

Works unchanged for dense, conv and recurrent models: the chain rule lives in
each layer's ``backward`` (BPTT inside the RNN layer).

Deviations
----------
None: this is exact reverse-mode differentiation of the mean loss.

References
----------
Rumelhart, Hinton & Williams (1986), "Learning representations by
back-propagating errors", Nature 323.
"""

from __future__ import annotations

from .base import Algorithm, StepResult, backprop_gradients, check_loss_finite

__all__ = ["Backprop"]


class Backprop(Algorithm):
    """Exact gradient of the mean loss w.r.t. every model parameter."""

    name = "backprop"

    def step(self, model, state, x, y, rng):
        """Forward, loss, backward; info reports the gradient norm."""
        loss, grads, _ = backprop_gradients(model, x, y, self.loss)
        check_loss_finite(loss, "Backprop.step")
        gnorm = float(sum(float((g * g).sum()) for g in grads.values())) ** 0.5
        return StepResult(loss=loss, grads=grads, info={"grad_norm": gnorm})


def _build(sizes, activation, rng, x_train=None, y_train=None):
    """Registry factory: an MLP trained by backprop with Adam (lr 1e-3)."""
    from ..models import mlp
    from ..optim import Adam
    from . import Setup
    return Setup(mlp(sizes, activation, rng), Backprop(), Adam(lr=1e-3))


def _register():
    from . import Method, register
    register(Method("backprop", _build, "exact gradient (baseline)",
                    "Rumelhart, Hinton & Williams 1986", exact_gradient=True))


_register()
