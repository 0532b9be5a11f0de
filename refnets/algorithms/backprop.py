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

Trace (:meth:`Algorithm.trace`, keys ``"{k}.name"`` with k the model layer index)
-----------------------------------------------------------------------------
=============  ==========================================  =====================
key            value                                       shape
=============  ==========================================  =====================
``k.y``        output of layer k on the minibatch          the layer's output
``k.dy``       dL/d(output of layer k)                     like ``k.y``
=============  ==========================================  =====================

``k.dy`` is recorded for every layer the backward pass visits: the last layer
down to the first layer with parameters (dL/dx of the data is not computed).
A model with its own wiring (a Sequential subclass overriding forward/backward,
such as Target Space's shortcut net) records ``out`` and ``dout`` instead.
Backprop draws nothing: ``init_state`` and ``step`` accept no given values.

Deviations
----------
None: this is exact reverse-mode differentiation of the mean loss.

References
----------
Rumelhart, Hinton & Williams (1986), "Learning representations by
back-propagating errors", Nature 323.
"""

from __future__ import annotations

from ..models import Sequential
from .base import Algorithm, StepResult, as_recorder, check_given, check_loss_finite

__all__ = ["Backprop"]


class Backprop(Algorithm):
    """Exact gradient of the mean loss w.r.t. every model parameter."""

    name = "backprop"

    def init_state(self, model, rng, record=None, **given):
        """No state: backprop draws nothing (``given`` must be empty)."""
        check_given(given, (), "Backprop.init_state")
        return {}

    def step(self, model, state, x, y, rng, record=None, **given):
        """Forward, loss, backward; info reports the gradient norm.

        For a plain :class:`~refnets.models.Sequential` the chain rule is written
        out layer by layer here (the same operations as ``model.backward(...,
        input_grad=False)``) so that ``record`` sees every layer's output and
        output gradient. A model with its own wiring (a subclass that overrides
        ``forward``/``backward``, e.g. a shortcut net) runs its own chain rule
        and records ``out`` and ``dout`` (model output and dL/d output) only.
        """
        check_given(given, (), "Backprop.step")
        record = as_recorder(record)
        if not _plain_chain(model):
            out, caches = model.forward(x)
            loss, dout = self.loss(out, y)
            check_loss_finite(loss, "Backprop.step")
            record.put("out", out)
            record.put("dout", dout)
            _, per_layer = model.backward(dout, caches, input_grad=False)
            return self._result(loss, model.flatten(per_layer))

        h, caches = x, []
        for k, layer in enumerate(model.layers):
            h, cache = layer.forward(h)
            caches.append(cache)
            record.put(f"{k}.y", h)
        loss, dy = self.loss(h, y)
        check_loss_finite(loss, "Backprop.step")

        # the chain rule, last layer first; stop at the first layer with parameters
        first = next((k for k, layer in enumerate(model.layers) if layer.params), len(model.layers))
        per_layer = [{} for _ in model.layers]
        for k in range(len(model.layers) - 1, first - 1, -1):
            layer = model.layers[k]
            record.put(f"{k}.dy", dy)
            if k == first and hasattr(layer, "backward_params"):   # dL/dx of the data not needed
                per_layer[k] = layer.backward_params(dy, caches[k])
            else:
                dy, per_layer[k] = layer.backward(dy, caches[k])
        return self._result(loss, model.flatten(per_layer))

    @staticmethod
    def _result(loss, grads):
        gnorm = float(sum(float((g * g).sum()) for g in grads.values())) ** 0.5
        return StepResult(loss=loss, grads=grads, info={"grad_norm": gnorm})


def _plain_chain(model):
    """True for a Sequential whose forward/backward are Sequential's own."""
    return (isinstance(model, Sequential) and type(model).forward is Sequential.forward
            and type(model).backward is Sequential.backward)


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
