"""The ridge solve of Target Space (the paper's Eq. 6-7; TS-2) and its VJP (TS-7)."""

import warnings

import numpy as np
import pytest

from refnets.algorithms.target_space.solve import (RidgeSolveWarning, design_matrix, ridge_solve,
                                                   ridge_solve_vjp)
from refnets.gradcheck import numerical_gradient, rel_error

SHAPES = [(9, 4), (4, 9), (5, 5)]      # r > c, r < c, r = c


def _problem(rng, r, c, k=3):
    return rng.standard_normal((r, c)), rng.standard_normal((r, k)), rng.standard_normal((c, k))


# --------------------------------------------------------------------------- hand-worked
def test_hand_worked_solve_and_vjp():
    """A = [[1, 0], [1, 1]] (bias column, x = 0 and 1), T = [1, 3]^T, lam = 1.

    G = A^T A + I = [[3, 1], [1, 2]], det 5, G^-1 = [[2, -1], [-1, 3]] / 5,
    A^T T = [4, 3]^T  ->  W = G^-1 A^T T = [(8 - 3)/5, (-4 + 9)/5] = [1, 1]
    (lam = 0 would interpolate: W = [1, 2]). Residual R = T - A W = [0, 1]^T.
    VJP with dW = [1, 0]^T: Z = G^-1 dW = [2, -1]/5, dT = A Z = [2, 1]/5,
    dA = R Z^T - (A Z) W^T = [[0, 0], [2, -1]]/5 - [[2, 2], [1, 1]]/5
       = [[-2, -2], [1, -2]] / 5.
    """
    A = np.array([[1.0, 0.0], [1.0, 1.0]])
    T = np.array([[1.0], [3.0]])
    W, cache = ridge_solve(A, T, 1.0, branch="normal")
    np.testing.assert_allclose(W, [[1.0], [1.0]], atol=1e-15)
    np.testing.assert_allclose(cache["R"], [[0.0], [1.0]], atol=1e-15)
    dT, dA = ridge_solve_vjp(np.array([[1.0], [0.0]]), cache)
    np.testing.assert_allclose(dT, [[0.4], [0.2]], atol=1e-15)
    np.testing.assert_allclose(dA, [[-0.4, -0.4], [0.2, -0.4]], atol=1e-15)
    W0, cache0 = ridge_solve(A, T, 0.0)
    assert cache0["branch"] == "min-norm"
    np.testing.assert_allclose(W0, [[1.0], [2.0]], atol=1e-14)


# --------------------------------------------------------------------------- invariants
@pytest.mark.parametrize("r,c", SHAPES)
@pytest.mark.parametrize("lam", [1e-3, 0.1])
def test_normal_equations_hold(rng, r, c, lam):
    """(TS-2): (A^T A + lam I) W = A^T T for r > c, r < c, r = c."""
    A, T, _ = _problem(rng, r, c)
    W, cache = ridge_solve(A, T, lam)
    assert cache["branch"] == ("normal" if r >= c else "kernel")
    lhs = (A.T @ A + lam * np.eye(c)) @ W
    assert rel_error(lhs, A.T @ T) < 1e-12


@pytest.mark.parametrize("r,c", SHAPES)
def test_branches_agree(rng, r, c):
    """(TS-2a), (TS-7a): for lam > 0 kernel and normal forms give the same W and VJPs (~1e-12)."""
    A, T, dW = _problem(rng, r, c)
    Wn, cn = ridge_solve(A, T, 0.1, branch="normal")
    Wk, ck = ridge_solve(A, T, 0.1, branch="kernel")
    assert rel_error(Wn, Wk) < 1e-12
    for a, b in zip(ridge_solve_vjp(dW, cn), ridge_solve_vjp(dW, ck)):
        assert rel_error(a, b) < 1e-12


@pytest.mark.parametrize("r,c", SHAPES)
def test_min_norm_agrees_with_cholesky_branch_at_full_rank(rng, r, c):
    """lam = 0: the pseudoinverse path equals the unregularised Cholesky branch of full rank."""
    A, T, dW = _problem(rng, r, c)
    Wm, cm = ridge_solve(A, T, 0.0)
    Wc, cc = ridge_solve(A, T, 0.0, branch="normal" if r >= c else "kernel")
    assert cm["branch"] == "min-norm" and cc["branch"] != "min-norm"
    assert rel_error(Wm, Wc) < 1e-10
    for a, b in zip(ridge_solve_vjp(dW, cm), ridge_solve_vjp(dW, cc)):
        assert rel_error(a, b) < 1e-10


def test_exact_recovery_at_lam_zero(rng):
    """(TS-2b), (TS-14a) at the solve level: T = A W* with r >= c gives back W* at lam = 0;
    lam > 0 biases."""
    A = rng.standard_normal((12, 5))
    W_star = rng.standard_normal((5, 3))
    W, cache = ridge_solve(A, A @ W_star, 0.0)
    assert rel_error(W, W_star) < 1e-13
    assert np.linalg.norm(cache["R"]) < 1e-12
    W1, cache1 = ridge_solve(A, A @ W_star, 0.1)
    assert np.linalg.norm(cache1["R"]) > 1e-4 * np.linalg.norm(A @ W_star)


def test_kernel_branch_at_lam_zero_is_minimum_norm(rng):
    """r < c, lam = 0: interpolates (A W = T) with the smallest ||W|| (W in the row space of A)."""
    A, T, _ = _problem(rng, 4, 9)
    W, cache = ridge_solve(A, T, 0.0)
    assert np.linalg.norm(A @ W - T) < 1e-12
    P_row = np.linalg.pinv(A) @ A                       # projector onto row(A)
    assert rel_error(P_row @ W, W) < 1e-12


@pytest.mark.parametrize("r,c", SHAPES)
@pytest.mark.parametrize("lam,branch", [(0.1, None), (1e-3, None), (0.1, "normal"),
                                        (0.1, "kernel"), (0.0, None)])
def test_vjp_matches_finite_differences(rng, r, c, lam, branch):
    """dL/dT and dL/dA of L = <dW, W(A, T)> against centred differences, every branch."""
    A, T, dW = _problem(rng, r, c)
    _, cache = ridge_solve(A, T, lam, branch)
    dT, dA = ridge_solve_vjp(dW, cache)
    num_T = numerical_gradient(lambda t: np.sum(dW * ridge_solve(A, t, lam, branch)[0]), T.copy())
    num_A = numerical_gradient(lambda a: np.sum(dW * ridge_solve(a, T, lam, branch)[0]), A.copy())
    assert rel_error(dT, num_T) < 1e-7
    assert rel_error(dA, num_A) < 1e-7


def test_rank_deficient_min_norm_vjp(rng):
    """Duplicate rows (rank 3 < min(r, c)): the min-norm VJP still matches differences
    along rank-preserving perturbations (the pseudoinverse is differentiable there)."""
    B = rng.standard_normal((3, 4))
    A = np.vstack([B, B[:2]])                           # 5 x 4, rank 3
    T = rng.standard_normal((5, 2))
    dW = rng.standard_normal((4, 2))
    W, cache = ridge_solve(A, T, 0.0)
    assert cache["rank"] == 3
    dT, _ = ridge_solve_vjp(dW, cache)
    num_T = numerical_gradient(lambda t: np.sum(dW * ridge_solve(A, t, 0.0)[0]), T.copy())
    assert rel_error(dT, num_T) < 1e-7
    # perturb A within its row structure (duplicate rows stay duplicates): rank stays 3
    dB = rng.standard_normal(B.shape)
    _, dA = ridge_solve_vjp(dW, cache)
    h = 1e-5
    f = [np.sum(dW * ridge_solve(np.vstack([B + s * h * dB, (B + s * h * dB)[:2]]), T, 0.0)[0])
         for s in (1, -1)]
    directional = (f[0] - f[1]) / (2 * h)
    analytic = np.sum(dA * np.vstack([dB, dB[:2]]))
    assert abs(directional - analytic) < 1e-7 * max(1.0, abs(analytic))


def test_design_matrix_prepends_ones():
    x = np.array([[2.0, 3.0], [4.0, 5.0]])
    np.testing.assert_array_equal(design_matrix(x), [[1, 2, 3], [1, 4, 5]])


def test_cholesky_failure_falls_back_with_warning(rng):
    """lam > 0 but negligible against ||A||^2 on a rank-deficient A: Cholesky fails ->
    minimum-norm solution and a RidgeSolveWarning."""
    B = rng.standard_normal((6, 3)) * 1e8
    A = np.hstack([B, B])                               # 6 x 6, rank 3
    T = rng.standard_normal((6, 2))
    with pytest.warns(RidgeSolveWarning, match="Cholesky"):
        W, cache = ridge_solve(A, T, 1e-300, branch="normal")
    assert cache["branch"] == "min-norm"
    np.testing.assert_allclose(W, np.linalg.pinv(A) @ T, atol=1e-20, rtol=1e-8)


def test_cond_estimate_grows_with_collinearity(rng):
    x = rng.standard_normal((20, 1))
    _, c_good = ridge_solve(design_matrix(np.hstack([x, rng.standard_normal((20, 1))])),
                            rng.standard_normal((20, 1)), 1e-12)
    _, c_bad = ridge_solve(design_matrix(np.hstack([x, x + 1e-7 * rng.standard_normal((20, 1))])),
                           rng.standard_normal((20, 1)), 1e-12)
    assert c_good["cond"] < 1e3 < 1e10 < c_bad["cond"]


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("lam", [-1e-3, float("nan"), "0.1"])
def test_bad_lambda(rng, lam):
    A, T, _ = _problem(rng, 5, 3)
    with pytest.raises(ValueError, match="lam"):
        ridge_solve(A, T, lam)


def test_bad_shapes(rng):
    A, T, dW = _problem(rng, 5, 3)
    with pytest.raises(ValueError, match="one row per row of A"):
        ridge_solve(A, T[:4], 0.1)
    with pytest.raises(ValueError, match="branch"):
        ridge_solve(A, T, 0.1, branch="qr")
    _, cache = ridge_solve(A, T, 0.1)
    with pytest.raises(ValueError, match="dW"):
        ridge_solve_vjp(dW[:2], cache)


def test_no_warning_on_a_regular_solve(rng):
    A, T, _ = _problem(rng, 8, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ridge_solve(A, T, 1e-3)


@pytest.mark.parametrize("r,c,lam", [(9, 4, 0.1), (4, 9, 0.1), (9, 4, 0.0)])
def test_vjp_without_dA_gives_the_same_dT(rng, r, c, lam):
    A, T, dW = _problem(rng, r, c)
    W, cache = ridge_solve(A, T, lam)
    np.testing.assert_array_equal(cache["AW"], A @ W)
    dT, dA = ridge_solve_vjp(dW, cache)
    dT2, none = ridge_solve_vjp(dW, cache, need_dA=False)
    assert none is None
    np.testing.assert_array_equal(dT, dT2)
