"""Update rules of the decorrelating matrix R, and the whiteness diagnostics.

Pure functions on arrays, no layers: one function per line of the package
README's equations DEC-14 to DEC-21, written so each line can be checked by
hand. :mod:`refnets.algorithms.decorrelation.algorithm` applies them to every
layer; the README has the derivations (fixed points, the C R product) and the
deviations.

Conventions (row layout, like :class:`~refnets.layers.Dense`)
---------------------------------------------------------------
A batch of decorrelated inputs is a matrix ``Z`` of shape (k, d) whose rows
are samples; in column notation ``z = R h_c``, in rows ``Z = H_c @ R.T``. The
sub-batch second moment (not a covariance: no mean is removed here, the
caller centred h already)::

    C = (1/k) Z^T Z                                  (d, d)          (DEC-14)

Rules (eta = ``lr``)::

    scaled   R <- s (I - eta C) R,                             (DEC-16)
             s = mean_i ||h_i|| / sqrt(||z_i||^2 + 1e-8)       (DEC-15)
    offdiag  R <- R - eta (C - diag C) R                       (DEC-16a, COPI)
    whiten   R <- R - eta (C - I) R                            (DEC-16b)
    foldiak  M <- M + eta (C - diag C),  R = (I + M)^-1        (DEC-16c, Földiák 1990)
    zca      R = U (Lambda + eps)^-1/2 U^T,  C_h = U Lambda U^T  (DEC-16d, oracle)

``C R`` is computed as ``Z^T (Z R) / k`` when k < d: O(k d^2) instead of the
O(d^3) of forming C first (DEC-17).
"""

from __future__ import annotations

import numpy as np

__all__ = ["GAIN_EPS", "second_moment", "c_times_r", "norm_gain", "scaled_update",
           "offdiag_update", "whiten_update", "foldiak_update", "zca_matrix",
           "whiteness", "offdiag_power", "diag_power", "suggest_decor_lr"]

#: The 1e-8 inside the square root of the gain s (the authors' HEAD code).
GAIN_EPS = 1e-8


def _check_z(Z, where):
    Z = np.asarray(Z)
    if Z.ndim != 2 or Z.shape[0] < 1:
        raise ValueError(f"{where}: Z must have shape (k, d) with k >= 1, got {Z.shape}")
    return Z


def second_moment(Z):
    """C = (1/k) Z^T Z, the full second moment of the rows of ``Z`` (DEC-14).

    Parameters
    ----------
    Z : ndarray of shape (k, d)

    Returns
    -------
    C : ndarray of shape (d, d), symmetric, diagonal included.
    """
    Z = _check_z(Z, "second_moment")
    return Z.T @ Z / Z.shape[0]


def c_times_r(Z, R, C=None):
    """C R with C = Z^T Z / k, without forming C when that is cheaper.

    ``Z^T (Z R) / k`` costs 2 k d^2 flops, ``(Z^T Z) R / k`` costs k d^2 + d^3;
    the first wins when k < d (DEC-17: both are the same matrix).

    Parameters
    ----------
    Z : ndarray of shape (k, d)
    R : ndarray of shape (d, d)
    C : ndarray of shape (d, d), optional
        ``second_moment(Z)`` if the caller has it already (then C @ R).

    Returns
    -------
    ndarray of shape (d, d)
    """
    Z = _check_z(Z, "c_times_r")
    k, d = Z.shape
    if C is not None:
        return C @ R
    if k < d:
        return Z.T @ (Z @ R) / k
    return (Z.T @ Z / k) @ R


def norm_gain(H_raw, Z):
    """The gain s = mean_i ||h_i|| / sqrt(||z_i||^2 + 1e-8)  (DEC-15).

    ``H_raw`` holds the **raw, un-centred** inputs of the same sub-batch rows
    as ``Z`` (as the authors' code does). After ``R <- s R`` the mean norm
    ratio ||h_i|| / ||z_i|| over the sub-batch is 1 (up to the 1e-8).

    Parameters
    ----------
    H_raw, Z : ndarrays of shape (k, d)

    Returns
    -------
    float
    """
    h_norm = np.sqrt(np.einsum("ij,ij->i", H_raw, H_raw))
    z_norm = np.sqrt(np.einsum("ij,ij->i", Z, Z) + GAIN_EPS)
    return float(np.mean(h_norm / z_norm))


def scaled_update(R, Z, H_raw, lr, C=None):
    """The paper's norm-preserving rule: R <- s (I - eta C) R  (DEC-16).

    Written as ``s * (R - eta * C R)``: the authors' ``s R - eta C (s R)``.
    Fixed point: C = c I with s = 1 / (1 - eta c), i.e. white up to the
    scalar c that norm matching selects (DEC-18).

    Parameters
    ----------
    R : ndarray of shape (d, d)
    Z : ndarray of shape (k, d)
        Decorrelated sub-batch, ``Z = H_c @ R.T``.
    H_raw : ndarray of shape (k, d)
        The same rows of the raw (un-centred) input, for the gain s.
    lr : float
    C : ndarray of shape (d, d), optional
        ``second_moment(Z)``, if already computed.

    Returns
    -------
    R_new : ndarray of shape (d, d)
    s : float
    """
    s = norm_gain(H_raw, Z)
    R_new = c_times_r(Z, R, C)
    R_new *= -lr
    R_new += R
    R_new *= s                                   # s (R - eta C R), in place: d x d arrays
    return R_new, s


def offdiag_update(R, Z, lr, C=None):
    """Decorrelation only (COPI / DBP): R <- R - eta (C - diag C) R  (DEC-16a).

    Stationary when C is diagonal; the variances are left to drift.
    """
    c_diag = np.einsum("ij,ij->j", Z, Z) / Z.shape[0]                 # diag C, (d,)
    return R - lr * (c_times_r(Z, R, C) - c_diag[:, None] * R)


def whiten_update(R, Z, lr, C=None):
    """Simple whitening: R <- R - eta (C - I) R  (DEC-16b); stationary at C = I."""
    return R - lr * (c_times_r(Z, R, C) - R)


def foldiak_update(M, Z, lr, C=None):
    """Földiák's anti-Hebbian lateral weights: M <- M + eta (C - diag C)  (DEC-16c).

    The decorrelated output is the fixed point of z = h - M z, i.e.
    z = (I + M)^-1 h, so ``R = inv(I + M)`` (O(d^3) per step: the reason the
    authors dropped it as too slow). Stationary when C is diagonal.

    Returns
    -------
    M_new, R_new : ndarrays of shape (d, d)
    """
    C = second_moment(Z) if C is None else C
    M_new = M + lr * (C - np.diag(np.diag(C)))
    d = M.shape[0]
    return M_new, np.linalg.inv(np.eye(d) + M_new)


def zca_matrix(C, eps=1e-5):
    """ZCA whitening matrix U (Lambda + eps mean(Lambda))^-1/2 U^T of a covariance (DEC-16d).

    The closed-form reference: ``R C R^T = I`` exactly when eps = 0 and C is
    full rank. The floor ``eps * mean(Lambda)`` (relative, so scale-free)
    bounds the gain along zero-variance directions.

    Parameters
    ----------
    C : ndarray of shape (d, d), symmetric positive semi-definite
    eps : float >= 0

    Returns
    -------
    R : ndarray of shape (d, d), symmetric
    """
    lam, U = np.linalg.eigh(C)
    lam = np.maximum(lam, 0.0)                        # round-off can give -1e-17
    floor = eps * max(float(lam.mean()), np.finfo(float).tiny)
    return (U / np.sqrt(lam + floor)) @ U.T


def whiteness(C):
    """||C - c I||_F / ||c I||_F with c = tr(C)/d: 0 iff C is white up to a scalar."""
    d = C.shape[0]
    c = np.trace(C) / d
    if c == 0:
        return float("nan")
    return float(np.linalg.norm(C - c * np.eye(d)) / (abs(c) * np.sqrt(d)))


def offdiag_power(C):
    """Mean of the squared off-diagonal entries of C (0 for d = 1)."""
    d = C.shape[0]
    if d < 2:
        return 0.0
    total = float(np.sum(C * C))
    diag = float(np.sum(np.diag(C) ** 2))
    return (total - diag) / (d * (d - 1))


def diag_power(C):
    """Mean of the squared diagonal entries of C."""
    return float(np.mean(np.diag(C) ** 2))


def suggest_decor_lr(h, target=0.002, center=True, n_iter=50):
    """A decorrelation rate with eta * lambda_max(C_h) = ``target``  (DEC-21).

    The rules are stable only while eta * lambda_max(C_z) << 1, and C_z
    starts as C_h (R = I), so eta does not transfer across input scales or
    widths. lambda_max comes from ``n_iter`` power iterations from a fixed
    start vector (deterministic, no rng).

    Stability is not the whole story: a rate well inside the stable range can
    still move R faster than the weights can follow. The default target is the
    one measured best for the feedback-alignment rules on the embedded
    Fashion-MNIST subset (lambda_max(C_x) = 20.6 on raw pixels; README section
    8): decor-fa after 10 epochs reached 0.832 at eta = 1e-4 (target 0.002),
    0.822 at target 0.01 and 0.775 at target 0.1, against 0.828 without
    decorrelation. Backprop tolerates larger rates (tutorial 40 uses 1e-3).

    Parameters
    ----------
    h : ndarray of shape (N, d), a batch of layer inputs
    target : float in (0, 1), default 0.002
    center : bool
        Remove the batch mean first (as the decorrelator does with center=True).

    Returns
    -------
    float
    """
    h = np.asarray(h, dtype=np.float64)
    if h.ndim != 2 or h.shape[0] < 2:
        raise ValueError(f"suggest_decor_lr: h must have shape (N >= 2, d), got {h.shape}")
    if not 0 < target < 1:
        raise ValueError(f"suggest_decor_lr: target must lie in (0, 1), got {target!r}")
    hc = h - h.mean(axis=0) if center else h
    v = np.linspace(1.0, 2.0, h.shape[1])
    v /= np.linalg.norm(v)
    lam = 0.0
    for _ in range(n_iter):
        w = hc.T @ (hc @ v) / h.shape[0]
        lam = float(np.linalg.norm(w))
        if lam == 0.0:
            raise ValueError("suggest_decor_lr: h has zero variance, no rate to suggest")
        v = w / lam
    return target / lam
