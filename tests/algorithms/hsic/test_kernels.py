"""Kernel matrices and HSIC estimators: identities, statistics, golden values, gradients.

Equations HSIC-1..7 and HSIC-16..20 of refnets/algorithms/hsic/README.md.
"""

import numpy as np
import pytest

from refnets.algorithms.hsic import kernels as hk
from refnets.gradcheck import assert_close, numerical_gradient


# ----------------------------------------------------------------------------
# fixtures: the golden arrays
# ----------------------------------------------------------------------------
def golden_arrays():
    """X (32, 12), Z (32, 6), Y one-hot (32, 10), i = 0..31.

    X[i, j] = cos(0.37 i (j+1) + 0.5 j), j < 12;  Z[i, j] = sin(0.29 i + 0.71 j) + 0.1 X[i, j],
    j < 6;  y_i = (3 i + 1) mod 10.
    """
    i = np.arange(32)[:, None]
    j12, j6 = np.arange(12)[None, :], np.arange(6)[None, :]
    X = np.cos(0.37 * i * (j12 + 1) + 0.5 * j12)
    Z = np.sin(0.29 * i + 0.71 * j6) + 0.1 * X[:, :6]
    y = (3 * np.arange(32) + 1) % 10
    return X, Z, np.eye(10)[y]


def objective_and_grad(Z, X, Y, sigma, beta, eps=hk.NHSIC_EPS):
    """J = nHSIC(Z, X) - beta nHSIC(Z, Y) and dJ/dZ via the kernel chain rule."""
    K = hk.gaussian_kernel(Z, sigma)
    RZ, M = hk.nocco(K, eps)
    RX, _ = hk.nocco(hk.gaussian_kernel(X, sigma), eps)
    RY, _ = hk.nocco(hk.gaussian_kernel(Y, sigma), eps)
    T = RX - beta * RY
    J = float(np.sum(RZ * T.T))
    G = hk.nhsic_grad_kernel(M, T, eps)
    dZ = hk.gaussian_kernel_backward(G, K, Z, hk.kernel_scale(sigma, Z.shape[1]))
    return J, dZ


# Golden values: the authors' functions (hsic_regular, hsic_normalized_cca,
# hsic_objective with autograd) run in float64 (their float32 cast removed) on
# the arrays above, sigma = 1 and 5, beta = 50. Relative tolerance 1e-8: the
# table has 9-11 significant digits.
GOLDEN = {
    1: dict(regular=2.9735199919e-3, biased=3.1684541849e-3, zx=14.80092612, zy=6.24867428,
            yy=8.98086367, J=-297.63278779, dz00=11.8797169, dz53=-17.8425846, norm=248.346864),
    5: dict(regular=8.2217361212e-6, biased=8.7607261062e-6, zx=3.93099276, zy=2.07389290,
            yy=8.56006984, J=-99.76365201, dz00=-1.24317845, dz53=-2.84596566, norm=112.754816),
}


@pytest.mark.parametrize("sigma", [1, 5])
def test_golden_values(sigma):
    X, Z, Y = golden_arrays()
    g = GOLDEN[sigma]
    KX, KZ, KY = (hk.gaussian_kernel(A, sigma) for A in (X, Z, Y))
    J, dZ = objective_and_grad(Z, X, Y, sigma, beta=50.0)
    got = dict(regular=hk.hsic_regular(KZ, KX), biased=hk.hsic_biased(KZ, KX),
               zx=hk.nhsic(KZ, KX), zy=hk.nhsic(KZ, KY), yy=hk.nhsic(KY, KY), J=J,
               dz00=dZ[0, 0], dz53=dZ[5, 3], norm=np.linalg.norm(dZ))
    for key, expected in g.items():
        # the table rounds to 9 significant digits at worst: relative 1e-8 suffices
        assert got[key] == pytest.approx(expected, rel=1e-8), key


# ----------------------------------------------------------------------------
# kernels
# ----------------------------------------------------------------------------
def test_gaussian_kernel_hand_example():
    # two points at squared distance 4, d = 2, sigma = 1: s = 2*1*2 = 4 -> K_01 = e^-1
    Z = np.array([[0.0, 0.0], [2.0, 0.0]])
    K = hk.gaussian_kernel(Z, 1.0)
    np.testing.assert_allclose(K, [[1.0, np.exp(-1.0)], [np.exp(-1.0), 1.0]], rtol=0, atol=1e-15)
    # paper form (no d-scaling): s = 2 -> K_01 = e^-2
    assert hk.gaussian_kernel(Z, 1.0, scale_by_dim=False)[0, 1] == pytest.approx(np.exp(-2.0))
    assert hk.kernel_scale(5.0, 784) == 2 * 25 * 784


def test_sq_distances_match_direct_differences(rng):
    Z = rng.standard_normal((7, 3))
    direct = ((Z[:, None, :] - Z[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(hk.sq_distances(Z), direct, rtol=1e-12, atol=1e-13)
    assert np.all(np.diag(hk.sq_distances(Z)) == 0.0)


def test_centering_matrix_and_center(rng):
    H = hk.centering_matrix(4)
    np.testing.assert_allclose(H @ np.ones(4), 0.0, atol=1e-15)
    np.testing.assert_allclose(H @ H, H, atol=1e-15)            # idempotent projector
    K = rng.standard_normal((4, 4))
    np.testing.assert_allclose(hk.center(K), K @ H, atol=1e-14)
    np.testing.assert_allclose(hk.center(K, two_sided=True), H @ K @ H, atol=1e-14)


def test_label_kernel_is_scaled_linear_kernel():
    """One-hot distances are 0 or 2: L = c 11^T + (1 - c) Y Y^T, c = exp(-1/(10 sigma^2))."""
    _, _, Y = golden_arrays()
    for sigma in (1.0, 5.0):
        c = np.exp(-1.0 / (10 * sigma ** 2))
        L = hk.gaussian_kernel(Y, sigma)
        np.testing.assert_allclose(L, c + (1 - c) * (Y @ Y.T), rtol=0, atol=1e-15)
        np.testing.assert_allclose(hk.center(L), (1 - c) * hk.center(Y @ Y.T), atol=1e-15)


# ----------------------------------------------------------------------------
# biased / unbiased / CKA
# ----------------------------------------------------------------------------
def kernels(rng, m=20, sigma=1.0, dependent=True):
    X = rng.standard_normal((m, 3))
    Y = X[:, :2] ** 2 + 0.3 * rng.standard_normal((m, 2)) if dependent else rng.standard_normal((m, 2))
    return (hk.gaussian_kernel(X, sigma, scale_by_dim=False),
            hk.gaussian_kernel(Y, sigma, scale_by_dim=False), X, Y)


def test_hsic_biased_forms_agree(rng):
    K, L, _, _ = kernels(rng)
    m = K.shape[0]
    b = hk.hsic_biased(K, L)
    assert hk.hsic_biased_double_sum(K, L) == pytest.approx(b, rel=1e-12)
    assert hk.hsic_regular(K, L) == pytest.approx(((m - 1) / m) ** 2 * b, rel=1e-12)
    H = hk.centering_matrix(m)
    assert b == pytest.approx(np.trace(K @ H @ L @ H) / (m - 1) ** 2, rel=1e-12)


def test_hsic_biased_hand_example():
    # m = 2: H = [[1/2, -1/2], [-1/2, 1/2]]; K = [[1, a], [a, 1]] -> HKH = (1-a)/2 [[1,-1],[-1,1]]
    # tr(HKH HLH) = (1-a)(1-b)/4 * tr([[2,-2],[-2,2]]) = (1-a)(1-b); (m-1)^2 = 1
    a, b = 0.25, 0.5
    K = np.array([[1.0, a], [a, 1.0]])
    L = np.array([[1.0, b], [b, 1.0]])
    assert hk.hsic_biased(K, L) == pytest.approx((1 - a) * (1 - b), rel=1e-15)
    assert hk.hsic_regular(K, L) == pytest.approx((1 - a) * (1 - b) / 4, rel=1e-15)


def test_hsic_symmetry_and_invariances(rng):
    K, L, X, Y = kernels(rng)
    b = hk.hsic_biased(K, L)
    assert hk.hsic_biased(L, K) == pytest.approx(b, rel=1e-14)
    perm = rng.permutation(K.shape[0])
    assert hk.hsic_biased(K[np.ix_(perm, perm)], L[np.ix_(perm, perm)]) == pytest.approx(b, rel=1e-14)
    Q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    K2 = hk.gaussian_kernel(X @ Q.T + 5.0, 1.0, scale_by_dim=False)   # rotate + translate
    # distances via the Gram form lose ~|x|^2 eps to cancellation after the shift
    assert hk.hsic_biased(K2, L) == pytest.approx(b, rel=1e-12)


def test_permuting_one_side_breaks_dependence(rng):
    K, L, _, _ = kernels(rng, m=64)
    dep = hk.hsic_biased(K, L)
    perm = rng.permutation(64)
    indep = hk.hsic_biased(K, L[np.ix_(perm, perm)])
    assert indep < 0.6 * dep
    assert hk.hsic_biased(K, K) > 2.0 * hk.hsic_biased(K, K[np.ix_(perm, perm)])


def test_independent_bias_is_order_one_over_m():
    """Independent N(0, I_4) samples, sigma = 1, no d-scaling.

    E[K] = (1-a) I + a 11^T with a = E exp(-||x-x'||^2/2) = 3^(-d/2), so
    E[HSIC_b] = tr((1-a)H (1-a)H) / (m-1)^2 = (1-a)^2 / (m-1): the bias is O(1/m).
    HSIC_u is unbiased: its mean is 0 within 3 standard errors.
    """
    rng = np.random.default_rng(7)
    d, trials = 4, 100
    a = 3.0 ** (-d / 2)
    for m in (32, 64, 128):
        b, u = np.empty(trials), np.empty(trials)
        for t in range(trials):
            K = hk.gaussian_kernel(rng.standard_normal((m, d)), 1.0, scale_by_dim=False)
            L = hk.gaussian_kernel(rng.standard_normal((m, d)), 1.0, scale_by_dim=False)
            b[t], u[t] = hk.hsic_biased(K, L), hk.hsic_unbiased(K, L)
        se_b = b.std(ddof=1) / np.sqrt(trials)
        assert abs(b.mean() - (1 - a) ** 2 / (m - 1)) < 3 * se_b, m
        assert abs(u.mean()) < 3 * u.std(ddof=1) / np.sqrt(trials), m


def test_hsic_unbiased_matches_definition_by_loops():
    """HSIC_u (HSIC-18) against an explicit quadruple-index U-statistic (m = 5)."""
    rng = np.random.default_rng(3)
    m = 5
    K, L, _, _ = kernels(rng, m=m)
    # U-statistic of h(i,j,q,r) = K_ij L_ij + K_ij L_qr - 2 K_ij L_iq over distinct tuples
    total, count = 0.0, 0
    for i in range(m):
        for j in range(m):
            for q in range(m):
                for r in range(m):
                    if len({i, j, q, r}) < 4:
                        continue
                    count += 1
                    total += K[i, j] * L[i, j] + K[i, j] * L[q, r] - 2 * K[i, j] * L[i, q]
    assert hk.hsic_unbiased(K, L) == pytest.approx(total / count, rel=1e-12)


def test_cka_bounds_and_self(rng):
    K, L, _, _ = kernels(rng)
    assert hk.hsic_cka(K, K) == pytest.approx(1.0, rel=1e-14)
    assert 0.0 < hk.hsic_cka(K, L) < 1.0
    assert hk.hsic_cka(np.ones((5, 5)), np.eye(5)) == 0.0


# ----------------------------------------------------------------------------
# nHSIC
# ----------------------------------------------------------------------------
def test_nhsic_one_sided_equals_two_sided(rng):
    K, L, _, _ = kernels(rng, m=30)
    one = hk.nhsic(K, L)
    assert hk.nhsic(K, L, two_sided=True) == pytest.approx(one, rel=1e-9)
    R1, _ = hk.nocco(K)
    R2, _ = hk.nocco(K, two_sided=True)
    H = hk.centering_matrix(30)
    np.testing.assert_allclose(R2, H @ R1, atol=1e-10)      # R(HKH) = H R(KH)
    np.testing.assert_allclose(R1 @ np.ones(30), 0.0, atol=1e-10)   # R(KH) 1 = 0


def test_nocco_identity_and_definition(rng):
    K, _, _, _ = kernels(rng, m=12)
    R, M = hk.nocco(K, eps=1e-3)
    C = hk.center(K)
    np.testing.assert_allclose(R, C @ np.linalg.inv(C + 1e-3 * 12 * np.eye(12)), atol=1e-12)
    np.testing.assert_allclose(M, np.linalg.inv(C + 1e-3 * 12 * np.eye(12)), rtol=1e-12)


def test_nhsic_hand_example():
    # m = 2, K = [[1,a],[a,1]]: KH = (1-a) H, and H has eigenvalues {0, 1}, so
    # R = (1-a)/((1-a) + 2 eps) H and nHSIC(K, K) = ((1-a)/((1-a) + 2 eps))^2.
    a, eps = 0.5, 0.01
    K = np.array([[1.0, a], [a, 1.0]])
    r = (1 - a) / ((1 - a) + 2 * eps)
    assert hk.nhsic(K, K, eps=eps) == pytest.approx(r * r, rel=1e-14)


def test_nhsic_bounds(rng):
    K, L, _, _ = kernels(rng, m=40)
    rank = min(np.linalg.matrix_rank(hk.center(K)), np.linalg.matrix_rank(hk.center(L)))
    v = hk.nhsic(K, L)
    assert 0.0 <= v <= rank
    assert hk.nhsic(K, K) <= 40 - 1
    # a linear kernel of d = 2 features has rank 2 after centring: nHSIC <= 2
    Z = rng.standard_normal((40, 2))
    KZ = hk.linear_kernel(Z)
    assert 1.9 < hk.nhsic(KZ, KZ) <= 2.0


@pytest.mark.parametrize("sigma, lo, hi", [(1.0, 8.9, 9.0), (5.0, 8.0, 9.0), (6.0, 8.0, 9.0)])
def test_nhsic_label_self_bound(sigma, lo, hi):
    """nHSIC(Y, Y) ~ (C-1) (lam / (lam + eps m))^2 with lam = (1-c) m / C, for balanced classes."""
    m, C = 100, 10
    Y = np.eye(C)[np.arange(m) % C]
    L = hk.gaussian_kernel(Y, sigma)
    v = hk.nhsic(L, L)
    assert lo < v < hi
    lam = (1 - np.exp(-1 / (10 * sigma ** 2))) * m / C
    assert v == pytest.approx((C - 1) * (lam / (lam + 1e-5 * m)) ** 2, rel=1e-9)


def test_constant_input_gives_zero(rng):
    Z = np.ones((8, 3))
    K = hk.gaussian_kernel(Z, 2.0)
    np.testing.assert_array_equal(hk.center(K), 0.0)
    L = hk.gaussian_kernel(rng.standard_normal((8, 2)), 2.0)
    assert abs(hk.nhsic(K, L)) < 1e-14           # R_K = I - eps m (eps m)^-1 I: round-off only
    R_L, _ = hk.nocco(L)
    _, M = hk.nocco(K)
    dZ = hk.gaussian_kernel_backward(hk.nhsic_grad_kernel(M, R_L), K, Z, hk.kernel_scale(2.0, 3))
    np.testing.assert_allclose(dZ, 0.0, atol=1e-15)


# ----------------------------------------------------------------------------
# gradients (finite differences)
# ----------------------------------------------------------------------------
def test_gaussian_kernel_backward_fd(rng):
    Z = rng.standard_normal((6, 3))
    G = rng.standard_normal((6, 6))                     # deliberately not symmetric
    sigma = 0.8
    s = hk.kernel_scale(sigma, 3)
    ana = hk.gaussian_kernel_backward(G, hk.gaussian_kernel(Z, sigma), Z, s)
    num = numerical_gradient(lambda z: np.sum(G * hk.gaussian_kernel(z, sigma)), Z)
    assert_close(ana, num, "d<G, K(Z)>/dZ", tol=1e-7)


def test_linear_kernel_backward_fd(rng):
    Z = rng.standard_normal((5, 3))
    G = rng.standard_normal((5, 5))
    num = numerical_gradient(lambda z: np.sum(G * hk.linear_kernel(z)), Z)
    assert_close(hk.linear_kernel_backward(G, Z), num, "d<G, ZZ^T>/dZ", tol=1e-7)


@pytest.mark.parametrize("name", ["biased", "unbiased", "cka"])
def test_estimator_kernel_gradients_fd(rng, name):
    K, L, _, _ = kernels(rng, m=7)
    f = {"biased": hk.hsic_biased, "unbiased": hk.hsic_unbiased, "cka": hk.hsic_cka}[name]
    g = {"biased": hk.hsic_biased_grad_kernel, "unbiased": hk.hsic_unbiased_grad_kernel,
         "cka": hk.hsic_cka_grad_kernel}[name]
    K = K + 0.1 * rng.standard_normal(K.shape)          # a general (non-symmetric) matrix
    num = numerical_gradient(lambda k: f(k, L), K.copy())
    assert_close(g(K, L), num, f"d hsic_{name}/dK", tol=1e-7)


def test_nhsic_kernel_gradient_fd(rng):
    K, L, _, _ = kernels(rng, m=7)
    eps = 1e-2                         # a well-conditioned ridge keeps differences exact
    R_L, _ = hk.nocco(L, eps)
    _, M = hk.nocco(K, eps)
    num = numerical_gradient(lambda k: hk.nhsic(k, L, eps), K.copy())
    assert_close(hk.nhsic_grad_kernel(M, R_L, eps), num, "d nHSIC/dK", tol=1e-7)


def test_hsic_biased_z_gradient_fd(rng):
    Z, X = rng.standard_normal((8, 3)), rng.standard_normal((8, 4))
    L = hk.gaussian_kernel(X, 1.0)
    K = hk.gaussian_kernel(Z, 1.0)
    ana = hk.gaussian_kernel_backward(hk.hsic_biased_grad_kernel(K, L), K, Z, hk.kernel_scale(1.0, 3))
    num = numerical_gradient(lambda z: hk.hsic_biased(hk.gaussian_kernel(z, 1.0), L), Z)
    assert_close(ana, num, "d HSIC_b/dZ", tol=1e-7)


@pytest.mark.parametrize("sigma", [1.0, 5.0])
def test_objective_z_gradient_fd_well_conditioned(sigma):
    """dJ/dZ on the golden arrays with a ridge eps = 1e-2: the refnets bound 1e-7 holds."""
    X, Z, Y = golden_arrays()
    _, ana = objective_and_grad(Z, X, Y, sigma, beta=50.0, eps=1e-2)
    num = numerical_gradient(lambda z: objective_and_grad(z, X, Y, sigma, 50.0, 1e-2)[0], Z.copy())
    assert_close(ana, num, f"dJ/dZ sigma={sigma} eps=1e-2", tol=1e-7)


@pytest.mark.parametrize("sigma", [1.0, 5.0])
def test_objective_z_gradient_fd_default_eps(sigma):
    """dJ/dZ at the training ridge eps = 1e-5 (m = 32): documented bound 1e-4.

    cond(KH + eps m I) ~ 1e4-1e5, so each J evaluation carries ~1e-10 absolute
    round-off and the difference quotient inherits ~1e-10 / h. Measured: the
    error *grows* as h shrinks (sigma = 5: 1.2e-4 at h = 1e-6, 1.0e-5 at 1e-5,
    7e-7 at 1e-4), the signature of round-off, not of a wrong derivative; with
    eps = 1e-2 (test above) it is 1e-9. The golden values fix the analytic
    gradient at eps = 1e-5 to 8 digits independently.
    """
    X, Z, Y = golden_arrays()
    _, ana = objective_and_grad(Z, X, Y, sigma, beta=50.0)
    num = numerical_gradient(lambda z: objective_and_grad(z, X, Y, sigma, 50.0)[0], Z.copy())
    assert_close(ana, num, f"dJ/dZ sigma={sigma}", tol=1e-4)


# ----------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------
def test_bad_input_raises():
    with pytest.raises(ValueError, match="sigma"):
        hk.gaussian_kernel(np.ones((3, 2)), 0.0)
    with pytest.raises(ValueError, match="square"):
        hk.nhsic(np.ones((3, 2)), np.ones((3, 3)))
    with pytest.raises(ValueError, match=r"L must have shape \(3, 3\)"):
        hk.hsic_biased(np.ones((3, 3)), np.ones((4, 4)))
    with pytest.raises(ValueError, match="at least 4"):
        hk.hsic_unbiased(np.ones((3, 3)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="eps"):
        hk.nocco(np.ones((3, 3)), eps=-1.0)
    with pytest.raises(ValueError, match="floating"):
        hk.gaussian_kernel(np.ones((3, 2), dtype=int), 1.0)


def test_near_linear_regime_on_images():
    """At sigma = 5 the Gaussian nHSIC is within 2% of the linear-kernel one (HSIC-20).

    exp(-D/s) = 1 - D/s + ..., and the centred 1 - D/s is (2/s) x the centred
    Gram matrix, so K H ~ (2/s) X X^T H when D/s is small (Fashion-MNIST pixels:
    D/s ~ 0.17/50 per coordinate pair at sigma = 5).
    """
    from refnets.datasets import load_fashion_mnist_small
    data = load_fashion_mnist_small()
    x, y = data.x_train[:128], data.y_train[:128]
    gaps = []
    for sigma in (1.0, 5.0, 10.0):
        L = hk.gaussian_kernel(np.eye(10)[y], sigma)
        s = hk.kernel_scale(sigma, x.shape[1])
        gauss = hk.nhsic(hk.gaussian_kernel(x, sigma), L)
        linear = hk.nhsic(hk.linear_kernel(x) * 2.0 / s, L)
        gaps.append(abs(gauss - linear) / gauss)
    assert gaps[1] < 0.02                      # sigma = 5 (measured 0.1%)
    assert gaps[0] > gaps[1] > gaps[2]         # the higher-order terms fade like 1/s


@pytest.mark.parametrize("sigma, low", [(1.0, 1e-4), (5.0, 5e-5)])
def test_float32_nocco_loses_digits(sigma, low):
    """Why refnets keeps float64 (README section 7): the authors cast the centred kernel to
    float32 and invert it there. cond(KH + eps m I) is 5.6e3-6.9e5 on the golden arrays, so
    float32 round-off (6e-8) moves nHSIC(Z, X) in the 4th-5th digit (measured 7.0e-4 at
    sigma = 1, 1.5e-4 at sigma = 5), while float64 with a solve matches the golden values
    to 1e-8."""
    X, Z, _ = golden_arrays()

    def r32(K):
        C = hk.center(K).astype(np.float32)
        m = len(K)
        return C @ np.linalg.inv(C + np.float32(1e-5 * m) * np.eye(m, dtype=np.float32))

    KZ, KX = hk.gaussian_kernel(Z, sigma), hk.gaussian_kernel(X, sigma)
    m = len(KZ)
    conds = [np.linalg.cond(hk.center(K) + 1e-5 * m * np.eye(m)) for K in (KZ, KX)]
    assert min(conds) > 5e3
    golden = GOLDEN[int(sigma)]["zx"]
    assert hk.nhsic(KZ, KX) == pytest.approx(golden, rel=1e-8)
    err32 = abs(float(np.sum(r32(KZ) * r32(KX).T)) - golden) / golden
    assert low < err32 < 1e-2
