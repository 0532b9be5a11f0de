"""Ridge least squares and its exact vector-Jacobian product (Target Space; paper Eq. 6-7).

Target Space (Fairbank, Samothrakis & Citi 2022) turns each layer's targets T
into weights by a regularised least-squares fit on the layer's realised
inputs. This module holds that one linear-algebra primitive and its backward;
:mod:`refnets.algorithms.target_space.algorithm` chains it through a network.
The derivations of the backward formulas and the deviations from the authors'
solver are in this package's README.md (tags TS-2, TS-7).

Symbol table
------------
==================  ============  =====================================================
paper symbol        code          shape
==================  ============  =====================================================
A_bar = [1, X_bar]  ``A``         (r, c): r realisation rows, c = 1 + fan_in columns
T                   ``T``         (r, k): targets (desired pre-activation sums)
W                   ``W``         (c, k): bias in row 0 (the authors' layout)
lambda              ``lam``       scalar >= 0, absolute (``pseudoinverse_l2_regularisation``)
R = T - A W         ``R``         (r, k): residual of the fit
W_hat = dL/dW       ``dW``        (c, k): the *total* derivative of the loss w.r.t. W
G = A^T A + lam I   (factor)      (c, c): normal-form Gram, used when r >= c
H = A A^T + lam I   (factor)      (r, r): kernel-form Gram, used when r < c
==================  ============  =====================================================

Forward (the paper's Eq. 6-7)::

    W = argmin_W ||A W - T||_F^2 + lam ||W||_F^2
      = G^{-1} A^T T        (normal form, r >= c)                          (TS-2)
      = A^T H^{-1} T        (kernel form, r < c; equal for lam > 0)        (TS-2a)
      = A+ T                (lam = 0: minimum-norm solution)               (TS-2b)

Backward::

    normal:   Z = G^{-1} dW;            dT = A Z;   dA = R Z^T - (A Z) W^T       (TS-7)
    kernel:   Y = H^{-1} T,  V = H^{-1} A dW;
              dT = V;                   dA = Y (dW - A^T V)^T - V W^T            (TS-7a)
    min-norm: Q = A+^T dW,  Z = A+ Q,  Y = A+^T W;
              dT = Q;                   dA = R Z^T - Q W^T + Y (dW - A^T Q)^T    (TS-7b)

The Cholesky factor of the smaller Gram is computed once (LAPACK potrf) and
reused by the backward. ``cond`` is a cheap estimate of the Gram's 2-norm
condition number, (max L_ii / min L_ii)^2 from the Cholesky factor (a lower
bound), or (s_max / s_min)^2 from the singular values on the min-norm path;
callers decide whether to warn (TargetSpace warns once per run).

References
----------
M. Fairbank, S. Samothrakis, L. Citi (2022), "Deep Learning in Target Space",
JMLR 23(8), Eq. 6-7; arXiv 2006.01578.
G. H. Golub & V. Pereyra (1973), "The differentiation of pseudo-inverses and
nonlinear least squares problems whose variables separate", SIAM J. Numer.
Anal. 10(2) (the derivative of A+ used by the min-norm branch).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.linalg import lapack

from ...gradcheck import numerical_gradient, rel_error
from ...layers.base import check_array
from ...selfcheck import register_check

__all__ = ["RidgeSolveWarning", "design_matrix", "ridge_solve", "ridge_solve_vjp"]

BRANCHES = ("normal", "kernel", "min-norm")


class RidgeSolveWarning(UserWarning):
    """A ridge solve fell back to the min-norm path or is badly conditioned."""


_warned = set()


def warn_once(message, key=None):
    """Issue ``message`` as a :class:`RidgeSolveWarning` the first time ``key`` is seen."""
    key = message if key is None else key
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RidgeSolveWarning, stacklevel=3)


def design_matrix(x):
    """Prepend the bias column: A = [1, x] (TS-1).

    Parameters
    ----------
    x : ndarray of shape (r, n_in)

    Returns
    -------
    A : ndarray of shape (r, 1 + n_in)
    """
    x = check_array(x, "x", ndim=2, where="design_matrix")
    return np.concatenate([np.ones((x.shape[0], 1), dtype=x.dtype), x], axis=1)


def _check_lam(lam, where):
    if not (isinstance(lam, (int, float, np.floating, np.integer)) and np.isfinite(lam)
            and lam >= 0):
        raise ValueError(f"{where}: lam (pseudoinverse_l2_regularisation) must be a finite "
                         f"number >= 0, got {lam!r}")
    return float(lam)


def _cholesky(G):
    """Lower Cholesky factor of the SPD matrix G (LAPACK potrf); None if G is not
    numerically positive definite. Called directly: scipy's ``cho_factor``
    wrapper costs 4x the factorisation itself on the small Grams of a dense net."""
    potrf, = lapack.get_lapack_funcs(("potrf",), (G,))
    L, info = potrf(G, lower=1, clean=1)
    return L if info == 0 else None


def _cho_solve(L, B):
    """Solve (L L^T) X = B with the factor from :func:`_cholesky` (LAPACK potrs)."""
    potrs, = lapack.get_lapack_funcs(("potrs",), (L,))
    X, info = potrs(L, B, lower=1)
    if info != 0:  # pragma: no cover - only for malformed arguments
        raise ValueError(f"potrs failed with info = {info}")
    return X


def _cond_from_cholesky(L):
    d = np.abs(np.diag(L))
    return float((d.max() / d.min()) ** 2) if d.min() > 0 else float("inf")


def ridge_solve(A, T, lam, branch=None, zero_lam="min-norm"):
    """Solve W = argmin ||A W - T||^2 + lam ||W||^2 (the paper's Eq. 6-7; TS-2).

    Parameters
    ----------
    A : ndarray of shape (r, c)
        Realised layer inputs with the bias column first, ``[1, X_bar]``.
    T : ndarray of shape (r, k)
        Targets, one row per realisation example (or pixel / time step).
    lam : float >= 0
        Absolute L2 regularisation (not scaled by r); it penalises the bias
        row too, as in the authors' code.
    branch : {None, 'normal', 'kernel', 'min-norm'}
        Force a branch (tests compare them); default: 'min-norm' at lam = 0
        (see ``zero_lam``), otherwise 'normal' when r >= c and 'kernel' when r < c.
    zero_lam : {'min-norm', 'cholesky'}
        The default branch at lam = 0: the SVD minimum-norm solution (TS-2b),
        or 'normal'/'kernel' by shape like TF's ``lstsq(fast=True)`` (Cholesky
        of the unregularised Gram; a singular Gram falls back to min-norm
        with a :class:`RidgeSolveWarning`).

    Returns
    -------
    W : ndarray of shape (c, k)
        Row 0 is the bias: a refnets Dense has ``b = W[0]``, ``W = W[1:].T``.
    cache : dict
        ``A, T, W, AW`` (the fit), ``R`` (residual T - A W), ``lam``, ``branch``, the factor
        or pseudoinverse the backward reuses, and ``cond`` (Gram condition
        estimate).

    Notes
    -----
    The Cholesky factor of the *smaller* Gram (c x c or r x r) is computed
    once and kept in the cache, so :func:`ridge_solve_vjp` costs only
    triangular solves.
    """
    where = "ridge_solve"
    A = check_array(A, "A", ndim=2, where=where)
    T = check_array(T, "T", ndim=2, where=where)
    if T.shape[0] != A.shape[0]:
        raise ValueError(f"{where}: T must have one row per row of A ({A.shape[0]}), "
                         f"got T of shape {T.shape}")
    lam = _check_lam(lam, where)
    r, c = A.shape
    if r == 0 or c == 0 or T.shape[1] == 0:
        raise ValueError(f"{where}: A and T must be non-empty, got A {A.shape}, T {T.shape}")
    if zero_lam not in ("min-norm", "cholesky"):
        raise ValueError(f"{where}: zero_lam must be 'min-norm' or 'cholesky', got {zero_lam!r}")
    forced = branch is not None
    if branch is None:
        by_shape = "normal" if r >= c else "kernel"
        branch = "min-norm" if lam == 0.0 and zero_lam == "min-norm" else by_shape
    if branch not in BRANCHES:
        raise ValueError(f"{where}: branch must be None or one of {BRANCHES}, got {branch!r}")
    if branch != "min-norm" and lam == 0.0 and not _full_rank_for(A, branch):
        if not forced:
            warn_once(f"{where}: at lam = 0 the {branch}-form Gram of A {A.shape} is singular "
                      f"(Cholesky would fail); using the minimum-norm solution instead")
        branch = "min-norm"       # an unregularised Gram that is singular: no Cholesky

    cache = {"A": A, "T": T, "lam": lam}
    if branch in ("normal", "kernel"):
        G = A.T @ A if branch == "normal" else A @ A.T          # (c, c) or (r, r)
        G[np.diag_indices_from(G)] += lam
        factor = _cholesky(G)
        if factor is None:
            warn_once(f"{where}: Cholesky factorisation of the {G.shape[0]}x{G.shape[0]} "
                      f"{branch}-form Gram failed (lam = {lam:g} is negligible against "
                      f"||A||^2 = {np.linalg.norm(A) ** 2:.3g}); using the minimum-norm "
                      f"least-squares solution instead")
            branch = "min-norm"
        else:
            cache["factor"] = factor
            cache["cond"] = _cond_from_cholesky(factor)
            if branch == "normal":
                W = _cho_solve(factor, A.T @ T)                  # G^-1 A^T T     (TS-2)
            else:
                Y = _cho_solve(factor, T)                        # H^-1 T         (TS-2a)
                W = A.T @ Y
                cache["Y"] = Y
    if branch == "min-norm":
        U, s, Vt = np.linalg.svd(A, full_matrices=False)
        keep = s > s[0] * max(r, c) * np.finfo(A.dtype).eps        # numerical rank
        pinv = (Vt[keep].T / s[keep]) @ U[:, keep].T                # A+ (c, r)
        W = pinv @ T                                                # (TS-2b)
        cache["pinv"] = pinv
        cache["rank"] = int(keep.sum())
        cache["cond"] = float((s[0] / s[keep][-1]) ** 2) if keep.any() else float("inf")
    cache["branch"] = branch
    cache["W"] = W
    cache["AW"] = A @ W                 # the realised sums S_bar (callers reuse them)
    cache["R"] = T - cache["AW"]
    return W, cache


def _full_rank_for(A, branch):
    """Does the unregularised Gram of this branch have full rank (numerically)?"""
    s = np.linalg.svd(A, compute_uv=False)
    need = A.shape[1] if branch == "normal" else A.shape[0]
    return s.size >= need and s[need - 1] > s[0] * max(A.shape) * np.finfo(A.dtype).eps


def ridge_solve_vjp(dW, cache, need_dA=True):
    """Vector-Jacobian product of :func:`ridge_solve`: dL/dT and dL/dA (TS-7).

    Parameters
    ----------
    dW : ndarray of shape (c, k)
        Total derivative of the loss w.r.t. the solved W (minibatch term plus,
        under SCU, the term from later solves that read this layer's realised
        output).
    cache : dict from :func:`ridge_solve`
    need_dA : bool
        False skips dL/dA (when A is data, e.g. the first layer's [1, X_bar]).

    Returns
    -------
    dT : ndarray of shape (r, k)
    dA : ndarray of shape (r, c), or None if not ``need_dA``
        Includes the bias column (callers drop column 0).

    Notes
    -----
    normal (r >= c): Z = G^-1 dW, dT = A Z, dA = R Z^T - (A Z) W^T.
    kernel (r < c):  Y = H^-1 T, V = H^-1 A dW, dT = V, dA = Y (dW - A^T V)^T - V W^T.
    min-norm:        Q = A+^T dW, Z = A+ Q, Y = A+^T W,
                     dT = Q, dA = R Z^T - Q W^T + Y (dW - A^T Q)^T.
    The min-norm form is the derivative along perturbations that keep rank(A)
    (the pseudoinverse is not differentiable where the rank changes).
    """
    A, W, R = cache["A"], cache["W"], cache["R"]
    dW = check_array(dW, "dW", shape=W.shape, where="ridge_solve_vjp")
    branch = cache["branch"]
    if branch == "normal":
        Z = _cho_solve(cache["factor"], dW)            # G^-1 dW         (TS-7)
        dT = A @ Z
        if need_dA:
            dA = R @ Z.T - dT @ W.T
    elif branch == "kernel":
        V = _cho_solve(cache["factor"], A @ dW)        # H^-1 A dW       (TS-7a)
        dT = V
        if need_dA:
            dA = cache["Y"] @ (dW - A.T @ V).T - V @ W.T
    else:
        pinv = cache["pinv"]
        Q = pinv.T @ dW                        # A+^T dW  (r, k)  (TS-7b)
        dT = Q
        if need_dA:
            Z = pinv @ Q                       # A+ A+^T dW     (c, k)
            Y = pinv.T @ W                     # A+^T W         (r, k)
            dA = R @ Z.T - Q @ W.T + Y @ (dW - A.T @ Q).T
    return dT, (dA if need_dA else None)


# ----------------------------------------------------------------------------
# self-checks (run by ``refnets gradcheck`` and tests/test_selfcheck.py)
# ----------------------------------------------------------------------------
def _solve_check(rng, r, c, lam, branch=None):
    A = rng.standard_normal((r, c))
    T = rng.standard_normal((r, 2))
    dW = rng.standard_normal((c, 2))
    W, cache = ridge_solve(A, T, lam, branch)
    dT, dA = ridge_solve_vjp(dW, cache)
    num_T = numerical_gradient(lambda t: np.sum(dW * ridge_solve(A, t, lam, branch)[0]),
                               T.copy())
    num_A = numerical_gradient(lambda a: np.sum(dW * ridge_solve(a, T, lam, branch)[0]),
                               A.copy())
    return max(rel_error(dT, num_T), rel_error(dA, num_A))


@register_check("target-space/ridge_solve dT, dA (normal form, r > c)", group="target_space")
def _check_normal(rng):
    return _solve_check(rng, 7, 4, 0.1)


@register_check("target-space/ridge_solve dT, dA (kernel form, r < c)", group="target_space")
def _check_kernel(rng):
    return _solve_check(rng, 4, 7, 0.1)


@register_check("target-space/ridge_solve dT, dA (min-norm, lam = 0)", group="target_space")
def _check_min_norm(rng):
    return max(_solve_check(rng, 7, 4, 0.0), _solve_check(rng, 4, 7, 0.0))
