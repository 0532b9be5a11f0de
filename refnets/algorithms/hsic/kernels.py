"""Kernel matrices and HSIC estimators with their analytic gradients.

This module holds the maths of the HSIC bottleneck (Ma, Lewis & Kleijn 2020)
as small separate functions, each paired with its derivative, so a reader can
check every line against the paper and the authors' ``source/hsicbt/math/hsic.py``.
The training loop lives in :mod:`refnets.algorithms.hsic.algorithm`.

Symbol table
------------
=====================  ==========================  ==========================
symbol                 code name                   shape
=====================  ==========================  ==========================
m                      ``m``                       batch size
Z (samples as rows)    ``Z``                       (m, d)
D_ij = ||z_i - z_j||^2 ``sq_distances(Z)``         (m, m)
s = 2 sigma^2 d        ``kernel_scale(...)``       scalar (d-scaled width)
K_ij = exp(-D_ij / s)  ``gaussian_kernel(Z, ..)``  (m, m)
H = I - 11^T / m       ``centering_matrix(m)``     (m, m)
HSIC_b                 ``hsic_biased(K, L)``       scalar
HSIC_u                 ``hsic_unbiased(K, L)``     scalar
CKA (``hsic_normalized``)  ``hsic_cka(K, L)``      scalar
R = KH (KH + eps m I)^-1   ``nocco(K, eps)[0]``    (m, m)
M = (KH + eps m I)^-1      ``nocco(K, eps)[1]``    (m, m)
nHSIC = tr(R_K R_L)    ``nhsic(K, L, eps)``        scalar
G = df/dK              ``*_grad_kernel(...)``      (m, m)
df/dZ                  ``gaussian_kernel_backward``  (m, d)
=====================  ==========================  ==========================

Tags: kernel (HSIC-1), centring (HSIC-2), NOCCO projection and nHSIC
(HSIC-3, HSIC-4), the training objective's kernel gradient (HSIC-6) and its
chain through the Gaussian kernel (HSIC-7); the estimators that are not
trained, biased HSIC, the authors' ``hsic_regular``, unbiased HSIC and CKA,
with their gradients (HSIC-16..19), and the linear kernel (HSIC-20). Each
function's docstring states its formula; the short derivations, the map to
the authors' functions and the deviations (float64 and ``np.linalg.solve``
instead of their float32 kernels and ``torch.inverse``; no median-heuristic
sigma) are in this package's README.md. Every gradient is finite-difference
checked (``tests/algorithms/hsic/test_kernels.py``, ``refnets gradcheck
--select hsic``).

References
----------
W.-D. K. Ma, J. P. Lewis, W. B. Kleijn, "The HSIC Bottleneck: Deep Learning
without Back-Propagation", AAAI 2020, arXiv:1908.01580.
A. Gretton et al., "Measuring statistical dependence with Hilbert-Schmidt
norms", ALT 2005. L. Song et al., "Feature selection via dependence
maximization", JMLR 13 (2012). K. Fukumizu et al., "Kernel measures of
conditional dependence", NIPS 2008.
"""

from __future__ import annotations

import numpy as np

from ...layers.base import check_array

__all__ = ["sq_distances", "kernel_scale", "gaussian_kernel", "gaussian_kernel_backward",
           "linear_kernel", "linear_kernel_backward", "centering_matrix", "center",
           "hsic_biased", "hsic_biased_double_sum", "hsic_biased_grad_kernel", "hsic_regular",
           "hsic_unbiased", "hsic_unbiased_grad_kernel", "hsic_cka", "hsic_cka_grad_kernel",
           "nocco", "nhsic", "nhsic_grad_kernel", "NHSIC_EPS"]

#: The ridge factor of the NOCCO operator in the authors' ``hsic_normalized_cca``.
NHSIC_EPS = 1e-5


# ----------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------
def _samples(Z, where, name="Z"):
    """Samples as rows, (m, d); a 1-D array is one feature per sample."""
    Z = check_array(Z, name, ndim=(1, 2), where=where)
    return Z[:, None] if Z.ndim == 1 else Z


def _kernel(K, where, name="K", m=None):
    K = check_array(K, name, ndim=2, where=where)
    if K.shape[0] != K.shape[1]:
        raise ValueError(f"{where}: {name} must be a square (m, m) kernel matrix, got {K.shape}")
    if m is not None and K.shape[0] != m:
        raise ValueError(f"{where}: {name} must have shape ({m}, {m}), got {K.shape}")
    return K


def _pair(K, L, where, min_m=2):
    K = _kernel(K, where, "K")
    L = _kernel(L, where, "L", K.shape[0])
    if K.shape[0] < min_m:
        raise ValueError(f"{where}: needs at least {min_m} samples, got m = {K.shape[0]}")
    return K, L


def _positive(value, name, where):
    if not (isinstance(value, (int, float, np.integer, np.floating)) and np.isfinite(value)
            and value > 0):
        raise ValueError(f"{where}: {name} must be a positive finite number, got {value!r}")
    return float(value)


# ----------------------------------------------------------------------------
# kernels
# ----------------------------------------------------------------------------
def sq_distances(Z):
    """Squared Euclidean distances between the rows of ``Z`` (D in HSIC-1).

    Parameters
    ----------
    Z : ndarray of shape (m, d)

    Returns
    -------
    D : ndarray of shape (m, m), D_ij = ||z_i||^2 + ||z_j||^2 - 2 z_i.z_j,
        clipped at 0, with an exactly zero diagonal.
    """
    Z = _samples(Z, "sq_distances")
    r = np.einsum("ij,ij->i", Z, Z)
    D = r[:, None] + r[None, :] - 2.0 * (Z @ Z.T)
    np.maximum(D, 0.0, out=D)
    np.fill_diagonal(D, 0.0)
    return D


def kernel_scale(sigma, d, scale_by_dim=True):
    """The width s in K_ij = exp(-D_ij / s).

    Parameters
    ----------
    sigma : float > 0
        The paper's "kernel scale factor".
    d : int
        Number of columns of the kernel's argument (784 for Fashion-MNIST
        pixels, 10 for one-hot labels, the width or C*H*W for a layer output).
    scale_by_dim : bool
        True (authors' code ``kernelmat``): s = 2 sigma^2 d. False (the paper's
        formula): s = 2 sigma^2.
    """
    sigma = _positive(sigma, "sigma", "kernel_scale")
    return 2.0 * sigma * sigma * (int(d) if scale_by_dim else 1)


def gaussian_kernel(Z, sigma, scale_by_dim=True):
    """Gaussian kernel matrix K_ij = exp(-||z_i - z_j||^2 / s) (not centred; HSIC-1).

    Parameters
    ----------
    Z : ndarray of shape (m, d)
        Samples as rows (flatten NCHW maps to (m, C*H*W) first).
    sigma : float > 0
    scale_by_dim : bool
        s = 2 sigma^2 d (authors' code, default) or 2 sigma^2 (paper).

    Returns
    -------
    K : ndarray of shape (m, m), symmetric, unit diagonal.

    Notes
    -----
    The authors' ``kernelmat`` returns K H (right-centred); here centring is a
    separate step (:func:`center`, or inside :func:`nocco`).
    """
    Z = _samples(Z, "gaussian_kernel")
    s = kernel_scale(sigma, Z.shape[1], scale_by_dim)
    return np.exp(-sq_distances(Z) / s)


def gaussian_kernel_backward(G, K, Z, s):
    """df/dZ given G = df/dK for the Gaussian kernel K = exp(-D / s).

    Parameters
    ----------
    G : ndarray of shape (m, m)
        Gradient of a scalar f with respect to K (need not be symmetric).
    K : ndarray of shape (m, m)
        The kernel matrix computed from ``Z`` with width ``s``.
    Z : ndarray of shape (m, d)
    s : float
        The width used, ``kernel_scale(sigma, d, scale_by_dim)``.

    Returns
    -------
    dZ : ndarray of shape (m, d)

    Notes
    -----
    dK_ij = -(K_ij / s) dD_ij and dD_ij = 2 (z_i - z_j).(dz_i - dz_j), so
    df/dz_i = -(2/s) sum_j P_ij (z_i - z_j) with P = (G + G^T) o K::

        df/dZ = -(2/s) (Diag(P 1) - P) Z          (HSIC-7)

    The Laplacian annihilates constant columns, (Diag(P1) - P) 1 = 0, so Z is
    replaced by its column-centred copy: same value, less cancellation, and an
    exactly zero gradient for a constant Z.
    """
    where = "gaussian_kernel_backward"
    Z = _samples(Z, where)
    m = Z.shape[0]
    K = _kernel(K, where, "K", m)
    G = _kernel(G, where, "G", m)
    s = _positive(s, "s", where)
    P = (G + G.T) * K                                       # (HSIC-7)
    Zc = Z - Z.mean(axis=0)
    return -(2.0 / s) * (P.sum(axis=1)[:, None] * Zc - P @ Zc)


def linear_kernel(Z):
    """Linear kernel K = Z Z^T (HSIC-20).

    Parameters
    ----------
    Z : ndarray of shape (m, d)

    Returns
    -------
    K : ndarray of shape (m, m)
    """
    Z = _samples(Z, "linear_kernel")
    return Z @ Z.T


def linear_kernel_backward(G, Z):
    """df/dZ = (G + G^T) Z for K = Z Z^T, given G = df/dK (shape (m, m))."""
    Z = _samples(Z, "linear_kernel_backward")
    G = _kernel(G, "linear_kernel_backward", "G", Z.shape[0])
    return (G + G.T) @ Z


def centering_matrix(m):
    """H = I_m - 11^T / m, shape (m, m) (HSIC-2)."""
    if not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"centering_matrix: m must be a positive int, got {m!r}")
    return np.eye(m) - np.full((m, m), 1.0 / m)


def center(K, two_sided=False):
    """Centre a kernel matrix: K H (authors' ``kernelmat``) or H K H (HSIC-2).

    Parameters
    ----------
    K : ndarray of shape (m, m)
    two_sided : bool
        False: right-centring K H (subtract row means). True: H K H.

    Returns
    -------
    ndarray of shape (m, m)
    """
    K = _kernel(K, "center")
    Kc = K - K.mean(axis=1, keepdims=True)                 # K H
    if two_sided:
        Kc = Kc - Kc.mean(axis=0, keepdims=True)            # H (K H)
    return Kc


# ----------------------------------------------------------------------------
# biased, unbiased and CKA estimators
# ----------------------------------------------------------------------------
def hsic_biased(K, L):
    """Biased HSIC, trace form: tr(K H L H) / (m-1)^2 (HSIC-16).

    Parameters
    ----------
    K, L : ndarray of shape (m, m)
        Kernel matrices of the two samples (uncentred).

    Returns
    -------
    float
    """
    K, L = _pair(K, L, "hsic_biased")
    m = K.shape[0]
    return float(np.sum(center(K) * center(L).T)) / (m - 1) ** 2   # tr(KH LH)


def hsic_biased_double_sum(K, L):
    """Biased HSIC written out as sums over sample pairs (equals :func:`hsic_biased`).

    [sum_ij K_ij L_ji - (2/m) sum_i (K1)_i (L^T 1)_i + (1^T K 1)(1^T L 1)/m^2] / (m-1)^2
    """
    K, L = _pair(K, L, "hsic_biased_double_sum")
    m = K.shape[0]
    term1 = np.sum(K * L.T)
    term2 = (2.0 / m) * np.dot(K.sum(axis=1), L.sum(axis=0))
    term3 = K.sum() * L.sum() / m ** 2
    return float(term1 - term2 + term3) / (m - 1) ** 2


def hsic_biased_grad_kernel(K, L):
    """d HSIC_b / dK = H L^T H / (m-1)^2, shape (m, m) (HSIC-16a)."""
    K, L = _pair(K, L, "hsic_biased_grad_kernel")
    m = K.shape[0]
    return center(L.T, two_sided=True) / (m - 1) ** 2


def hsic_regular(K, L):
    """The authors' ``hsic_regular``: mean((KH) o (LH)^T) = tr(KHLH) / m^2 (HSIC-17)."""
    K, L = _pair(K, L, "hsic_regular")
    return float(np.mean(center(K) * center(L).T))


def hsic_unbiased(K, L):
    """Unbiased HSIC (Song et al. 2012; HSIC-18); needs m >= 4.

    Parameters
    ----------
    K, L : ndarray of shape (m, m)

    Returns
    -------
    float
    """
    K, L = _pair(K, L, "hsic_unbiased", min_m=4)
    m = K.shape[0]
    Kt, Lt = _zero_diag(K), _zero_diag(L)
    a = Lt.sum() / ((m - 1) * (m - 2))
    value = (np.sum(Kt * Lt.T) + a * Kt.sum()
             - (2.0 / (m - 2)) * np.dot(Kt.sum(axis=0), Lt.sum(axis=1)))   # 1^T K~ L~ 1
    return float(value) / (m * (m - 3))


def hsic_unbiased_grad_kernel(K, L):
    """d HSIC_u / dK, shape (m, m), zero diagonal (HSIC-18a).

    With a = 1^T L~ 1 / ((m-1)(m-2)), b = 2/(m-2), on the off-diagonal::

        dHSIC_u/dK = [L~^T + a 11^T - b 1 (L~ 1)^T] / (m (m-3))
    """
    K, L = _pair(K, L, "hsic_unbiased_grad_kernel", min_m=4)
    m = K.shape[0]
    Lt = _zero_diag(L)
    a = Lt.sum() / ((m - 1) * (m - 2))
    G = Lt.T + a - (2.0 / (m - 2)) * Lt.sum(axis=1)[None, :]
    return _zero_diag(G) / (m * (m - 3))


def _zero_diag(A):
    A = A.copy()
    np.fill_diagonal(A, 0.0)
    return A


def hsic_cka(K, L):
    """CKA, the authors' ``hsic_normalized``: r(K,L) / sqrt(r(K,K) r(L,L)), r = hsic_regular (HSIC-19).

    Returns 0.0 when either kernel is constant (r = 0).
    """
    K, L = _pair(K, L, "hsic_cka")
    rkk, rll = hsic_regular(K, K), hsic_regular(L, L)
    if rkk <= 0.0 or rll <= 0.0:
        return 0.0
    return hsic_regular(K, L) / np.sqrt(rkk * rll)


def hsic_cka_grad_kernel(K, L):
    """d CKA / dK, shape (m, m) (HSIC-19a).

    With r(A, B) = tr(AHBH)/m^2, dr(K,L)/dK = H L^T H / m^2 and
    dr(K,K)/dK = 2 H K^T H / m^2::

        dCKA/dK = dr(K,L)/dK / sqrt(r_KK r_LL) - (CKA / (2 r_KK)) dr(K,K)/dK
    """
    K, L = _pair(K, L, "hsic_cka_grad_kernel")
    m = K.shape[0]
    rkk, rll = hsic_regular(K, K), hsic_regular(L, L)
    if rkk <= 0.0 or rll <= 0.0:
        return np.zeros_like(K)
    cka = hsic_regular(K, L) / np.sqrt(rkk * rll)
    d_kl = center(L.T, two_sided=True) / m ** 2
    d_kk = 2.0 * center(K.T, two_sided=True) / m ** 2
    return d_kl / np.sqrt(rkk * rll) - (cka / (2.0 * rkk)) * d_kk


# ----------------------------------------------------------------------------
# normalised HSIC (NOCCO), the training objective
# ----------------------------------------------------------------------------
def nocco(K, eps=NHSIC_EPS, two_sided=False):
    """The regularised normalised cross-covariance operator of one kernel (HSIC-3).

    Parameters
    ----------
    K : ndarray of shape (m, m)
        Uncentred kernel matrix.
    eps : float > 0
        Ridge factor; the ridge is eps * m with m = K.shape[0] (the *current*
        batch size, as in the authors' code).
    two_sided : bool
        False (authors' code): centre as K H. True: H K H; gives R_two =
        H R_one and the same nHSIC (tested).

    Returns
    -------
    R : ndarray of shape (m, m)
        R = K H (K H + eps m I)^-1 = I - eps m M.
    M : ndarray of shape (m, m)
        M = (K H + eps m I)^-1 (needed by :func:`nhsic_grad_kernel`).

    Notes
    -----
    M is obtained with ``np.linalg.solve`` against the identity, and R from
    the identity R = (C + eps m I - eps m I) M = I - eps m M, C = K H.
    """
    where = "nocco"
    K = _kernel(K, where)
    eps = _positive(eps, "eps", where)
    m = K.shape[0]
    ridge = eps * m
    A = center(K, two_sided)
    A[np.diag_indices(m)] += ridge                          # (HSIC-3) K H + eps m I
    M = np.linalg.solve(A, np.eye(m))
    R = -ridge * M
    R[np.diag_indices(m)] += 1.0                            # (HSIC-3) R = I - eps m M
    return R, M


def nhsic(K, L, eps=NHSIC_EPS, two_sided=False):
    """Normalised HSIC nHSIC(K, L) = tr(R_K R_L) (authors' ``hsic_normalized_cca``; HSIC-4).

    Parameters
    ----------
    K, L : ndarray of shape (m, m)
        Uncentred kernel matrices.
    eps : float > 0
    two_sided : bool
        Centre both kernels as H K H instead of K H (same value).

    Returns
    -------
    float in [0, min(rank K H, rank L H)] (up to round-off).
    """
    K, L = _pair(K, L, "nhsic")
    RK, _ = nocco(K, eps, two_sided)
    RL, _ = nocco(L, eps, two_sided)
    return float(np.sum(RK * RL.T))                         # (HSIC-4) tr(R_K R_L)


def nhsic_grad_kernel(M, T, eps=NHSIC_EPS):
    """d tr(R_K T) / dK for R_K = K H (K H + eps m I)^-1 (HSIC-6).

    Parameters
    ----------
    M : ndarray of shape (m, m)
        (K H + eps m I)^-1, the second output of :func:`nocco` for K.
    T : ndarray of shape (m, m)
        The fixed matrix contracted with R_K: R_L for nHSIC(K, L), or
        R_X - beta R_Y for the training objective J (linear in T).
    eps : float

    Returns
    -------
    G : ndarray of shape (m, m), G = eps m (H M T M)^T.

    Notes
    -----
    R_K = I - eps m M and dM = -M dC M with dC = dK H, so
    d tr(R_K T) = eps m tr(M dK H M T) = eps m tr(dK H M T M).
    """
    where = "nhsic_grad_kernel"
    M = _kernel(M, where, "M")
    m = M.shape[0]
    T = _kernel(T, where, "T", m)
    eps = _positive(eps, "eps", where)
    HMTM = M @ T @ M
    HMTM -= HMTM.mean(axis=0, keepdims=True)                # (HSIC-6) H (M T M)
    return eps * m * HMTM.T
