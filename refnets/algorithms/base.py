"""The contract every training algorithm implements (see DESIGN.md).

An algorithm owns the training loop body for one minibatch::

    state = algo.init_state(model, rng)             # B matrices, inverses, targets, R ...
    res = algo.step(model, state, x, y, rng)        # -> StepResult(loss, grads, info)
    optimizer.update(algo.variables(model, state), res.grads)

``grads`` holds *update directions* with the keys of ``variables``: the
optimiser subtracts ``lr * grads`` (for SGD), so a gradient-descent algorithm
returns the gradient. Updates that are not gradient descent on ``variables``
(decorrelation's R rule, DTP's inverse training) run inside ``step`` and are
documented there with their equations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..losses import softmax_cross_entropy

__all__ = ["StepResult", "Algorithm", "backprop_gradients", "check_loss_finite"]


@dataclass
class StepResult:
    """What one training step returns.

    Attributes
    ----------
    loss : float
        Training loss on the minibatch (before the update).
    grads : dict of ndarray
        Update directions, same keys as ``algorithm.variables(model, state)``.
    info : dict
        Diagnostics: floats, or 1-D arrays indexed by layer (cosine to
        backprop, alignment angles, HSIC terms, ...).
    """

    loss: float
    grads: dict
    info: dict = field(default_factory=dict)


def check_loss_finite(loss, where):
    """Raise FloatingPointError if ``loss`` is NaN or inf."""
    if not np.isfinite(loss):
        raise FloatingPointError(f"{where}: loss is {loss} (diverged); try a smaller learning rate")
    return loss


def backprop_gradients(model, x, y, loss_fn=softmax_cross_entropy, params=None):
    """Loss and exact gradient of the model's parameters by backprop.

    Every algorithm uses this as its reference ("cosine to backprop").

    Returns
    -------
    loss : float
    grads : dict, flat ``{"k.name": array}`` like ``model.params()``
    out : ndarray, the model output
    """
    out, caches = model.forward(x, params)
    loss, dout = loss_fn(out, y)
    _, grads = model.backward(dout, caches, input_grad=False)  # dL/dx of the data is not needed
    return loss, model.flatten(grads), out


class Algorithm:
    """Base class with the defaults most algorithms share.

    Parameters
    ----------
    loss : callable
        ``loss(output, y) -> (loss, doutput)``, mean over the batch
        (default :func:`refnets.losses.softmax_cross_entropy`).
    """

    #: short name used by the registry and in tables
    name = "algorithm"

    def __init__(self, loss=softmax_cross_entropy):
        if not callable(loss):
            raise ValueError(f"{type(self).__name__}: loss must be callable, got {loss!r}")
        self.loss = loss

    def init_state(self, model, rng):
        """Extra per-run state (feedback matrices, inverses, targets, ...)."""
        return {}

    def variables(self, model, state):
        """The arrays the optimiser updates (default: the model's parameters)."""
        return model.params()

    def step(self, model, state, x, y, rng):  # pragma: no cover - interface
        """One minibatch: return a :class:`StepResult`."""
        raise NotImplementedError

    def predict(self, model, state, x):
        """Network output used for evaluation (default: ``model.forward``)."""
        return model.forward(x)[0]

    def __repr__(self):
        return f"{type(self).__name__}()"
