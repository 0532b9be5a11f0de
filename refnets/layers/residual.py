"""Residual block: y = g(F(x) + x), F a chain of layers (identity shortcut).

Notes
-----
Forward, with the branch F = f_n o ... o f_1 (e.g. Conv2D, BatchNorm, ReLU,
Conv2D, BatchNorm as in the HSIC authors' ``BasicResidualBlockConv``) and the
output nonlinearity g::

    u = F(x) + x,    y = g(u)

Backward::

    du = dy * g'(u)
    dx = dF^T(du) + du           (branch path + identity shortcut)
    grads = the branch layers' gradients for du

Parameters are exposed like :class:`refnets.models.Sequential` does, flat
``"i.name"`` for branch layer i, so a model holding this block at position k
shows them as ``"k.i.name"``.

Running statistics: if branch layers carry batch-norm statistics, the block
follows the same explicit protocol as :class:`refnets.layers.normalization.BatchNorm`:
``forward(x, params=None, running_stats=None)`` (None: training mode, batch
statistics), ``init_running_stats()`` -> ``{i: stats}`` and
``update_running_stats(stats, cache)`` -> a new dict. Nothing is stored on the layer.
"""

from __future__ import annotations

from .activations import Activation, get_activation
from ..validation import check_input, trusted
from .base import Layer

__all__ = ["Residual"]


def _uses_stats(layer):
    return hasattr(layer, "init_running_stats")


class Residual(Layer):
    """y = activation(branch(x) + x).

    Parameters
    ----------
    branch : list of Layer
        The residual branch F; its output must have the input's shape.
    activation : str or Activation, default 'relu'
        The nonlinearity g applied after the sum.
    """

    def __init__(self, branch, activation="relu"):
        super().__init__()
        branch = list(branch)
        if not branch or not all(isinstance(layer, Layer) for layer in branch):
            raise ValueError(f"Residual: branch must be a non-empty list of refnets Layers, "
                             f"got {branch!r}")
        self.branch = branch
        self.activation = get_activation(activation) if isinstance(activation, str) else activation
        if not isinstance(self.activation, Activation):
            raise ValueError(f"Residual: activation must be a name or an Activation, "
                             f"got {activation!r}")
        # the branch layers' own arrays, under flat keys "i.name"
        self.params = {f"{i}.{name}": value for i, layer in enumerate(branch)
                       for name, value in layer.params.items()}

    def __repr__(self):
        inner = ", ".join(repr(layer) for layer in self.branch)
        return f"Residual([{inner}], {self.activation!r})"

    def _split(self, params):
        """Flat ``{"i.name": v}`` -> per-branch-layer dicts."""
        per = [dict() for _ in self.branch]
        for key, value in params.items():
            i, _, name = key.partition(".")
            per[int(i)][name] = value
        return per

    def init_running_stats(self):
        """``{i: stats}`` for every branch layer with running statistics."""
        return {i: layer.init_running_stats() for i, layer in enumerate(self.branch)
                if _uses_stats(layer)}

    def _check_stats(self, running_stats, where):
        """``running_stats`` must have one entry per branch layer with statistics."""
        needed = sorted(i for i, layer in enumerate(self.branch) if _uses_stats(layer))
        if not isinstance(running_stats, dict) or sorted(running_stats, key=str) != needed:
            got = sorted(running_stats, key=str) if isinstance(running_stats, dict) else \
                type(running_stats).__name__
            raise ValueError(f"{where}: running_stats must be a dict with one entry per branch "
                             f"layer that has running statistics, keys {needed} (see "
                             f"init_running_stats()), got {got}")
        return running_stats

    def update_running_stats(self, running_stats, cache, momentum=None):
        """New ``{i: stats}`` after a training-mode forward (see BatchNorm)."""
        running_stats = self._check_stats(running_stats, "Residual.update_running_stats")
        return {i: self.branch[i].update_running_stats(running_stats[i], cache["branch"][i],
                                                       momentum)
                for i in running_stats}

    def forward(self, x, params=None, running_stats=None):
        """y = g(F(x) + x).

        Parameters
        ----------
        x : ndarray of shape (N, ...), e.g. (N, C, H, W)
        params : dict with flat keys "i.name", optional
        running_stats : dict {i: stats}, optional
            None: the branch's batch norms use batch statistics (training mode).

        Returns
        -------
        y : ndarray like ``x``
        cache : dict with the branch caches and the activation cache.
        """
        where = "Residual.forward"
        per = self._split(self._params(params))
        x = check_input(x, "x", where=where)
        if running_stats is not None:
            running_stats = self._check_stats(running_stats, where)
        h, caches = x, []
        with trusted():                     # x was checked; the rest are hidden values
            for i, layer in enumerate(self.branch):
                if _uses_stats(layer):
                    stats = None if running_stats is None else running_stats[i]
                    h, c = layer.forward(h, per[i] or None, running_stats=stats)
                else:
                    h, c = layer.forward(h, per[i] or None)
                caches.append(c)
            if h.shape != x.shape:
                raise ValueError(f"{where}: the branch must keep the input's shape {x.shape} "
                                 f"(identity shortcut), got {h.shape}")
            y, act_cache = self.activation.forward(h + x)
        return y, {"branch": caches, "act": act_cache, "y_shape": y.shape}

    def backward(self, dy, cache):
        """Return ``(dx, grads)`` with flat "i.name" keys; dx = dF^T(du) + du."""
        dy = self._check_dy(dy, cache["y_shape"], "Residual.backward")
        with trusted():
            du, _ = self.activation.backward(dy, cache["act"])
            d, grads = du, {}
            for i in range(len(self.branch) - 1, -1, -1):
                d, g = self.branch[i].backward(d, cache["branch"][i])
                grads.update({f"{i}.{name}": value for name, value in g.items()})
        return d + du, grads
