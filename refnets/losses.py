"""Losses, each returning ``(loss, dpred)`` with ``dpred = dLoss/dpred``.

Reduction: every loss is a **mean over the batch** and a **sum over features**.
``softmax_cross_entropy`` treats every position before the class axis as a
batch entry (so (T, N, C) per-time-step logits average over all T*N steps);
``mse`` averages over the first axis only and sums over all the others (pass
``reduction='elements'`` for PyTorch's element-wise mean).

Bad input and divergence are told apart: NaN/inf in the *targets* is bad data
(``ValueError`` naming ``y``/``target``); NaN/inf in the *logits* means the
network diverged (:class:`refnets.validation.DivergenceError`, a
``FloatingPointError``); an empty batch is a ``ValueError`` naming the argument
(never a division by zero). ``mse`` returns the NaN/inf loss of a non-finite
``pred`` instead of raising: the methods that use it for layer-local losses
check it themselves and name the layer and step.
"""

from __future__ import annotations

import numpy as np

from .validation import DivergenceError, check_choice, check_input, check_int, trusted

__all__ = ["softmax", "log_softmax", "softmax_cross_entropy", "masked_softmax_cross_entropy",
           "mse", "one_hot", "accuracy"]


def log_softmax(logits, axis=-1):
    """log softmax, stable: (z - max z) - log sum exp(z - max z).

    Shifting by the max first (entries <= 0, the largest exactly 0) avoids
    overflow *and* the cancellation of ``z - logsumexp(z)``, whose absolute
    error grows like |z| * eps (at |z| ~ 1e4 that costs 4 of the ~16
    significant digits of a log-probability of order 1).
    """
    with trusted():     # float64 and numeric; NaN/inf pass through (the losses judge them)
        logits = check_input(logits, "logits", "log_softmax", allow_empty=True)
    shifted = logits - np.max(logits, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def softmax(logits, axis=-1):
    """softmax(z) = exp(log_softmax(z))."""
    return np.exp(log_softmax(logits, axis=axis))


def one_hot(y, n_classes):
    """Integer labels (...,) -> one-hot float64 (..., n_classes)."""
    n_classes = check_int(n_classes, "n_classes", "one_hot", low=1)
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"one_hot: y must hold integer labels, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"one_hot: labels must lie in [0, {n_classes}), "
                         f"got range [{y.min()}, {y.max()}]")
    return np.eye(n_classes)[y]


def _targets_as_probs(logits, y, where):
    n_classes = logits.shape[-1]
    y = np.asarray(y)
    if np.issubdtype(y.dtype, np.integer):
        if y.shape != logits.shape[:-1]:
            raise ValueError(f"{where}: integer labels y must have shape {logits.shape[:-1]} "
                             f"(logits without the class axis), got {y.shape}")
        return one_hot(y, n_classes)
    y = check_input(y, "y", where=where, allow_empty=True)
    if y.shape != logits.shape:
        raise ValueError(f"{where}: one-hot/probability targets y must have the logits' shape "
                         f"{logits.shape}, got {y.shape}")
    return y


def _check_prediction(pred, name, where, finite=True):
    """A network output as float64, non-empty; NaN/inf (if ``finite``) means divergence."""
    with trusted():     # the finiteness test below reports divergence, not bad data
        pred = check_input(pred, name, where=where)
    if pred.ndim and pred.shape[-1] == 0:
        raise ValueError(f"{where}: {name} must have at least one class/feature, "
                         f"got shape {pred.shape}")
    if finite and not np.isfinite(pred).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(pred))[0])
        raise DivergenceError(f"{where}: {name} has the value {pred[bad]} at index {bad} (the "
                              f"network diverged; try a smaller learning rate)", quantity=name)
    return pred


def softmax_cross_entropy(logits, y):
    """Fused softmax + cross-entropy, mean over the batch.

    Parameters
    ----------
    logits : ndarray of shape (N, C) or (..., C)
    y : int ndarray of shape (N,) / (...) or float ndarray like ``logits``
        Class labels, or one-hot (any probability) targets.

    Returns
    -------
    loss : float
        -(1/N) sum_n sum_c y_nc log softmax(z_n)_c, N = number of positions.
    dlogits : ndarray like ``logits``
        (softmax(z) - y) / N.

    Notes
    -----
    log softmax is computed as (z - max z) - log sum exp(z - max z), so large
    logits neither overflow nor lose precision.
    """
    where = "softmax_cross_entropy"
    logits = _check_prediction(logits, "logits", where)
    if logits.ndim < 2:
        raise ValueError(f"{where}: logits must have shape (N, C), got {logits.shape}")
    t = _targets_as_probs(logits, y, where)
    n = int(np.prod(logits.shape[:-1]))
    if n == 0:
        raise ValueError(f"{where}: logits is an empty batch (shape {logits.shape}); expected at "
                         f"least one position")
    logp = log_softmax(logits)
    loss = -float(np.sum(t * logp)) / n
    dlogits = (np.exp(logp) * t.sum(axis=-1, keepdims=True) - t) / n
    return loss, dlogits


def masked_softmax_cross_entropy(logits, y):
    """Softmax cross-entropy over the *labelled* positions only (labels < 0 are ignored).

    For sequence tasks whose early steps have no target, e.g.
    :func:`refnets.datasets.bit_sequences` (label -1 before the delay).

    Parameters
    ----------
    logits : ndarray of shape (..., C)
    y : int ndarray of shape (...); entries < 0 mean "no label"

    Returns
    -------
    loss : float
        Mean over the M labelled positions of -log softmax(z)[y] (0.0 if M = 0).
    dlogits : ndarray like ``logits``
        (softmax(z) - onehot(y)) / M at labelled positions, 0 elsewhere.
    """
    where = "masked_softmax_cross_entropy"
    logits = _check_prediction(logits, "logits", where)
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{where}: y must hold integer labels (negative = no label), "
                         f"got dtype {y.dtype}")
    if logits.ndim < 2 or y.shape != logits.shape[:-1]:
        raise ValueError(f"{where}: y must have shape {logits.shape[:-1]} (logits without the "
                         f"class axis), got {y.shape}")
    labelled = (y >= 0)[..., None]                              # (..., 1)
    m = int(labelled.sum())
    t = one_hot(np.where(y >= 0, y, 0), logits.shape[-1]) * labelled
    if m == 0:
        return 0.0, np.zeros_like(logits)
    logp = log_softmax(logits)
    return -float(np.sum(t * logp)) / m, (np.exp(logp) * labelled - t) / m


def mse(pred, target, reduction="batch"):
    """Squared error.

    Parameters
    ----------
    pred, target : ndarray of the same shape (N, ...)
    reduction : {'batch', 'elements'}
        ``'batch'`` (default): sum over features, mean over the batch,
        L = (1/N) sum_n ||pred_n - target_n||^2 (the refnets convention, used by
        DTP's local losses). ``'elements'``: mean over all elements (PyTorch's
        ``MSELoss``); equals the first divided by the number of features.

    Returns
    -------
    loss : float
    dpred : ndarray like ``pred``
    """
    pred = _check_prediction(pred, "pred", "mse", finite=False)
    target = check_input(target, "target", where="mse", allow_empty=True)
    if pred.shape != target.shape:
        raise ValueError(f"mse: target must have pred's shape {pred.shape}, got {target.shape}")
    if pred.ndim == 0:
        raise ValueError("mse: pred must have a batch dimension, got a scalar")
    check_choice(reduction, "reduction", ("batch", "elements"), "mse")
    if reduction == "batch":
        denom = pred.shape[0]
    elif reduction == "elements":
        denom = pred.size
    else:
        raise ValueError(f"mse: reduction must be 'batch' or 'elements', got {reduction!r}")
    diff = pred - target
    return float(np.sum(diff * diff)) / denom, 2.0 * diff / denom


def accuracy(logits, y):
    """Fraction of positions whose argmax matches the label (int or one-hot)."""
    logits = check_input(logits, "logits", "accuracy")
    if logits.ndim < 1 or logits.shape[-1] == 0 or logits.size == 0:
        raise ValueError(f"accuracy: logits must have shape (N, C) with N, C >= 1, "
                         f"got {logits.shape}")
    pred = np.argmax(logits, axis=-1)
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer):
        y = np.argmax(y, axis=-1)
    return float(np.mean(pred == y))
