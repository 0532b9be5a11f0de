"""Accuracy of an *unformatted* HSIC network and a linear probe (HSIC-12, HSIC-13).

An HSIC-trained net has no softmax head: its last block's C units (ReLU, >= 0)
become class detectors in an arbitrary order. To score it one must map units
to classes. Four ways, all reported side by side:

1. :func:`greedy_unit_accuracy` -- **the authors' metric** (``get_accuracy_hsic``):
   for c = 0..C-1 in order, class c takes the still-free unit with the highest
   mean activation over the class-c samples; the score is the mean over classes
   of the fraction of class-c samples whose arg-max unit is c's unit
   (balanced accuracy), fitted *on the scored set itself*. Taken units are
   masked with -inf (the authors zero them, which loops forever when all
   remaining means are 0).
2. :func:`hungarian_accuracy` -- the best one-to-one unit-class assignment
   (``scipy.optimize.linear_sum_assignment`` on the class-mean matrix), also
   self-fitted, scored as plain accuracy of the mapped arg-max.
3. :func:`mapped_accuracy` with a mapping from :func:`fit_unit_mapping` on
   *training* outputs (no test labels used): the honest held-out number.
4. :func:`linear_probe_accuracy` -- multinomial logistic regression fitted on
   training features (any width), scored on test features.

The greedy and Hungarian numbers coincide on a clean permutation; the greedy
one can fall far below when two classes share a unit while the probe stays
high (``python tutorials/30_hsic_bottleneck.py --quick``: greedy 0.686,
Hungarian 0.772, probe 0.795).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment, minimize

from ...layers.base import check_array
from ...losses import log_softmax, one_hot, softmax

__all__ = ["class_means", "greedy_unit_mapping", "greedy_unit_accuracy", "fit_unit_mapping",
           "mapped_accuracy", "hungarian_accuracy", "linear_probe_accuracy"]


def _outputs_labels(out, y, n_classes, where, need_units=True):
    out = check_array(out, "out", ndim=2, where=where)
    y = check_array(y, "y", ndim=1, where=where, allow_int=True)
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{where}: y must hold integer labels, got dtype {y.dtype}")
    if y.shape[0] != out.shape[0]:
        raise ValueError(f"{where}: y must have one label per row of out ({out.shape[0]}), "
                         f"got {y.shape[0]}")
    if need_units and out.shape[1] < n_classes:
        raise ValueError(f"{where}: out needs at least n_classes = {n_classes} units, "
                         f"got {out.shape[1]}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"{where}: labels must lie in [0, {n_classes}), "
                         f"got [{y.min()}, {y.max()}]")
    return out, y


def class_means(out, y, n_classes):
    """Mean output per class.

    Parameters
    ----------
    out : ndarray of shape (N, U), unit activations
    y : int ndarray of shape (N,)
    n_classes : int

    Returns
    -------
    means : ndarray of shape (n_classes, U); rows of absent classes are NaN.
    """
    out, y = _outputs_labels(out, y, n_classes, "class_means", need_units=False)
    Y = one_hot(y, n_classes)                       # (N, C)
    counts = Y.sum(axis=0)
    sums = Y.T @ out                                 # (C, U)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], np.nan)


def greedy_unit_mapping(means):
    """Authors' greedy assignment: class c = 0, 1, ... takes its best free unit (HSIC-13).

    Parameters
    ----------
    means : ndarray of shape (C, U), U >= C

    Returns
    -------
    units : int ndarray of shape (C,), the unit of each class.
    """
    means = np.array(means, dtype=np.float64)
    units = np.empty(means.shape[0], dtype=int)
    for c in range(means.shape[0]):
        row = np.nan_to_num(means[c], nan=-np.inf)
        row[units[:c]] = -np.inf                     # taken units can never win again
        units[c] = int(np.argmax(row))
    return units


def greedy_unit_accuracy(out, y, n_classes):
    """The authors' unformatted-net accuracy (``get_accuracy_hsic``), made to terminate.

    Self-fitted greedy mapping (:func:`greedy_unit_mapping` on this set's class
    means); score = mean over classes of the fraction of class-c samples whose
    arg-max unit is class c's unit (balanced accuracy). Classes absent from
    ``y`` are skipped.

    Returns
    -------
    accuracy : float in [0, 1]
    units : int ndarray (n_classes,)
    """
    out, y = _outputs_labels(out, y, n_classes, "greedy_unit_accuracy")
    units = greedy_unit_mapping(class_means(out, y, n_classes))
    winner = np.argmax(out, axis=1)
    recalls = [np.mean(winner[y == c] == units[c]) for c in range(n_classes) if np.any(y == c)]
    return float(np.mean(recalls)), units


def fit_unit_mapping(out, y, n_classes):
    """One-to-one unit-class assignment maximising the summed class means (Hungarian, HSIC-12).

    Returns
    -------
    units : int ndarray (n_classes,), ``units[c]`` is class c's unit.
    """
    out, y = _outputs_labels(out, y, n_classes, "fit_unit_mapping")
    means = np.nan_to_num(class_means(out, y, n_classes), nan=0.0)
    rows, cols = linear_sum_assignment(means, maximize=True)
    units = np.empty(n_classes, dtype=int)
    units[rows] = cols
    return units


def mapped_accuracy(out, y, units):
    """Accuracy of argmax_c out[:, units[c]] (the class scores a mapping gives)."""
    units = np.asarray(units)
    out, y = _outputs_labels(out, y, len(units), "mapped_accuracy")
    return float(np.mean(np.argmax(out[:, units], axis=1) == y))


def hungarian_accuracy(out, y, n_classes):
    """Accuracy under the self-fitted Hungarian mapping; returns (accuracy, units)."""
    units = fit_unit_mapping(out, y, n_classes)
    return mapped_accuracy(out, y, units), units


def linear_probe_accuracy(f_train, y_train, f_test, y_test, n_classes, l2=1e-4, max_iter=500):
    """Softmax regression on frozen features, fitted by L-BFGS; returns test accuracy.

    Features are standardised with the training mean/std. Objective: mean
    cross-entropy + (l2 / 2) ||W||^2 (bias not penalised).

    Parameters
    ----------
    f_train : ndarray of shape (N, D); y_train : int ndarray (N,)
    f_test : ndarray of shape (M, D); y_test : int ndarray (M,)
    n_classes : int
    l2 : float >= 0
    max_iter : int

    Returns
    -------
    float in [0, 1]
    """
    where = "linear_probe_accuracy"
    f_train, y_train = _outputs_labels(f_train, y_train, n_classes, where, need_units=False)
    f_test, y_test = _outputs_labels(f_test, y_test, n_classes, where, need_units=False)
    if f_test.shape[1] != f_train.shape[1]:
        raise ValueError(f"{where}: f_test must have {f_train.shape[1]} features, "
                         f"got {f_test.shape[1]}")
    mu, sd = f_train.mean(axis=0), f_train.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    A = np.hstack([(f_train - mu) / sd, np.ones((len(f_train), 1))])
    T = one_hot(y_train, n_classes)
    D = A.shape[1]
    mask = np.ones((D, 1))
    mask[-1] = 0.0                                  # no penalty on the bias row

    def loss_grad(w):
        W = w.reshape(D, n_classes)
        logits = A @ W
        loss = -np.mean(np.sum(T * log_softmax(logits), axis=1)) + 0.5 * l2 * np.sum(mask * W * W)
        grad = A.T @ (softmax(logits) - T) / len(A) + l2 * mask * W
        return loss, grad.ravel()

    res = minimize(loss_grad, np.zeros(D * n_classes), jac=True, method="L-BFGS-B",
                   options={"maxiter": int(max_iter)})
    W = res.x.reshape(D, n_classes)
    B = np.hstack([(f_test - mu) / sd, np.ones((len(f_test), 1))])
    return float(np.mean(np.argmax(B @ W, axis=1) == y_test))
