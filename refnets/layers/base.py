"""The functional layer contract shared by every layer in refnets.

A layer is a pair of pure functions around a parameter dict::

    y, cache = layer.forward(x, params=None)
    dx, grads = layer.backward(dy, cache)

* ``params=None`` means "use ``layer.params``"; an explicit dict runs the layer
  with other weights (solved, perturbed, feedback, ...) without mutating it.
* ``cache`` is a plain dict holding everything backward needs, *including the
  parameters actually used*, so ``backward`` never looks at ``layer.params``.
* ``grads`` has exactly the keys of ``params``. Gradients are *sums* over the
  batch of per-example contributions; the 1/N of the mean loss arrives through
  ``dy`` (losses average over the batch).
* Nothing is stored on the layer between calls; calling ``backward`` twice
  with the same cache gives identical results.
* Every ``forward``/``backward`` a user may call validates its array
  arguments with :func:`refnets.validation.check_input` (float64 out, NaN/inf
  and empty batches rejected naming the argument); between layers
  (``Sequential``, ``train``) the NaN/inf scan is skipped, see
  :func:`refnets.validation.trusted`.
* Outputs may *be* cached arrays (Tanh caches its y, the RNN its states,
  Identity returns x itself): treat ``y`` as read-only, or copy it before
  modifying it in place, or the next ``backward`` sees the change.
"""

from __future__ import annotations

import numpy as np

from ..validation import check_input

__all__ = ["Layer", "check_array", "as_float_array"]


def _shape_str(shape):
    return "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"


def check_array(x, name, ndim=None, shape=None, where="", allow_int=False):
    """Validate an array argument and return it as an ndarray.

    Parameters
    ----------
    x : array_like
        The value to check.
    name : str
        Argument name used in the error message.
    ndim : int or tuple of int, optional
        Accepted numbers of dimensions.
    shape : tuple, optional
        Expected shape; ``None`` entries are free. Its length fixes ``ndim``.
    where : str
        Prefix naming the function, e.g. ``"Dense.forward"``.
    allow_int : bool
        Accept integer dtypes (labels); otherwise a floating dtype is required.

    Raises
    ------
    ValueError
        Naming the argument, what was expected and what was received.
    """
    prefix = f"{where}: " if where else ""
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except Exception as exc:  # pragma: no cover - exotic inputs
            raise ValueError(f"{prefix}{name} must be array-like, got {type(x).__name__}") from exc
    if x.dtype == object:
        raise ValueError(f"{prefix}{name} must be a numeric array, got dtype object")
    if not allow_int and not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{prefix}{name} must have a floating dtype, got {x.dtype}")
    if shape is not None:
        ndim = len(shape)
    if ndim is not None:
        accepted = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in accepted:
            exp = " or ".join(str(a) for a in accepted)
            extra = f" {_shape_str(shape)}" if shape is not None else ""
            raise ValueError(
                f"{prefix}{name} must have {exp} dimensions{extra}, got shape {x.shape}")
    if shape is not None:
        for got, exp in zip(x.shape, shape):
            if exp is not None and got != exp:
                raise ValueError(
                    f"{prefix}{name} must have shape {_shape_str(shape)}, got {x.shape}")
    return x


def as_float_array(x, name, where=""):
    """Return ``x`` as a floating ndarray (ints are converted to float64)."""
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.integer) or x.dtype == bool:
        x = x.astype(np.float64)
    return check_array(x, name, where=where)


class Layer:
    """Base class: a named bag of parameters plus pure forward/backward.

    Subclasses set ``self.params`` (possibly empty) in ``__init__`` and
    implement :meth:`forward` and :meth:`backward`.
    """

    #: True for layers whose parameters an optimiser may update.
    params: dict

    def __init__(self):
        self.params = {}

    # -- helpers used by subclasses -------------------------------------
    def _params(self, params):
        """Resolve ``params=None`` to the layer's own parameters, and check keys/shapes."""
        if params is None:
            return self.params
        if not isinstance(params, dict):
            raise ValueError(
                f"{type(self).__name__}.forward: params must be a dict or None, "
                f"got {type(params).__name__}")
        missing = set(self.params) - set(params)
        if missing:
            raise ValueError(
                f"{type(self).__name__}.forward: params is missing keys {sorted(missing)}; "
                f"expected keys {sorted(self.params)}")
        for key, ref in self.params.items():
            value = np.asarray(params[key])
            if value.shape != ref.shape:
                raise ValueError(
                    f"{type(self).__name__}.forward: params[{key!r}] must have shape "
                    f"{ref.shape}, got {value.shape}")
        return params

    @staticmethod
    def _check_dy(dy, y_shape, where, name="dy"):
        dy = check_input(dy, name, where=where, allow_empty=True)
        if dy.shape != tuple(y_shape):
            raise ValueError(f"{where}: {name} must have the output's shape {tuple(y_shape)}, "
                             f"got {dy.shape}")
        return dy

    # -- the contract ----------------------------------------------------
    def forward(self, x, params=None):  # pragma: no cover - interface
        """Return ``(y, cache)``."""
        raise NotImplementedError

    def backward(self, dy, cache):  # pragma: no cover - interface
        """Return ``(dx, grads)``; ``grads`` has the keys of ``params``."""
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}()"
