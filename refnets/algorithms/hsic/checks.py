"""Finite-difference self-checks of the HSIC bottleneck's derivatives (``refnets gradcheck``).

One small check per analytic derivative: the Gaussian-kernel backward, the
kernel-level gradients of HSIC_b, HSIC_u, CKA and nHSIC, the objective J
w.r.t. Z, the block gradients of a dense and a conv HSIC net, and the layers
this part adds (BatchNorm in both modes, the residual block). The nHSIC
checks use a ridge eps = 1e-2 (block checks 0.1): at the training ridge 1e-5 the NOCCO solve's
condition number (~1e4-1e5) turns round-off into ~1e-5 relative
finite-difference error (see tests/algorithms/hsic/test_kernels.py).
"""

from __future__ import annotations

import numpy as np

from ...gradcheck import check_layer, numerical_gradient, rel_error
from ...layers.activations import Tanh
from ...layers.conv import Conv2D
from ...layers.normalization import BatchNorm
from ...layers.residual import Residual
from ...selfcheck import register_check
from . import kernels as hk
from .algorithm import HSICBottleneck
from .models import forward_layers, hsic_mlp, hsic_resconv, split_blocks


def _kernels(rng, m=6):
    K = hk.gaussian_kernel(rng.standard_normal((m, 3)), 1.0)
    L = hk.gaussian_kernel(rng.standard_normal((m, 2)), 1.0)
    return K + 0.1 * rng.standard_normal((m, m)), L        # K: a general matrix


@register_check("hsic: Gaussian kernel backward dZ", group="hsic")
def _check_kernel_backward(rng):
    Z, G = rng.standard_normal((5, 3)), rng.standard_normal((5, 5))
    ana = hk.gaussian_kernel_backward(G, hk.gaussian_kernel(Z, 0.7), Z, hk.kernel_scale(0.7, 3))
    return rel_error(ana, numerical_gradient(lambda z: np.sum(G * hk.gaussian_kernel(z, 0.7)), Z))


def _kernel_check(f, g):
    def check(rng):
        K, L = _kernels(rng)
        return rel_error(g(K, L), numerical_gradient(lambda k: f(k, L), K.copy()))
    return check


register_check("hsic: HSIC_b dK", group="hsic")(
    _kernel_check(hk.hsic_biased, hk.hsic_biased_grad_kernel))
register_check("hsic: HSIC_u dK", group="hsic")(
    _kernel_check(hk.hsic_unbiased, hk.hsic_unbiased_grad_kernel))
register_check("hsic: CKA dK", group="hsic")(
    _kernel_check(hk.hsic_cka, hk.hsic_cka_grad_kernel))


@register_check("hsic: nHSIC dK (eps 1e-2)", group="hsic")
def _check_nhsic_kernel(rng):
    # a kernel matrix (PSD) here: an arbitrary K may put an eigenvalue of KH near
    # -eps m and make the solve singular
    K = hk.gaussian_kernel(rng.standard_normal((6, 3)), 1.0)
    L = hk.gaussian_kernel(rng.standard_normal((6, 2)), 1.0)
    eps = 1e-2
    ana = hk.nhsic_grad_kernel(hk.nocco(K, eps)[1], hk.nocco(L, eps)[0], eps)
    return rel_error(ana, numerical_gradient(lambda k: hk.nhsic(k, L, eps), K.copy()))


@register_check("hsic: J = nHSIC(Z,X) - beta nHSIC(Z,Y), dJ/dZ (eps 1e-2)", group="hsic")
def _check_objective(rng):
    m = 10
    x, y = rng.standard_normal((m, 4)), np.arange(m) % 3
    algo = HSICBottleneck(n_classes=3, sigma=1.0, beta=5.0, eps=1e-2)
    RX, RY = algo._nocco_of(x), algo._nocco_of(np.eye(3)[y])
    z = rng.standard_normal((m, 3))
    ana = algo.block_objective(z, RX, RY)[3]
    return rel_error(ana, numerical_gradient(lambda v: algo.block_objective(v, RX, RY)[0], z))


def _block_check(model, x, y, n_classes, rng):
    """Worst relative error of every block's parallel-mode gradient vs differences of J_b."""
    # BN makes J invariant to the scale of each weight row, so its k-th derivatives
    # grow like |w|^-k: the small PyTorch-default rows (|w| ~ 0.3) put the h^2
    # truncation error near 1e-7; scaled rows keep it ~1e-9 (same J, same maths).
    for value in model.params().values():
        value *= 4.0
    algo = HSICBottleneck(n_classes=n_classes, sigma=1.0, beta=5.0, eps=0.1, parallel=True)
    grads = algo.step(model, algo.init_state(model, rng), x, y, rng).grads
    RX, RY = algo._nocco_of(x), algo._nocco_of(np.eye(n_classes)[y])
    params, worst = model.params(), 0.0
    for b, (lo, hi) in enumerate(split_blocks(model)):
        def J(_, b=b):
            h = x
            for a, c in split_blocks(model)[:b + 1]:
                h, _ = forward_layers(model, a, c, h)
            return algo.block_objective(h, RX, RY)[0]
        for key in (k for k in grads if lo <= int(k.split(".")[0]) < hi):
            worst = max(worst, rel_error(grads[key], numerical_gradient(J, params[key])))
    return worst


@register_check("hsic: dense blocks dW (Dense+BN+tanh)", group="hsic")
def _check_dense_blocks(rng):
    model = hsic_mlp([5, 4, 3], rng, activation="tanh")      # tanh: no kinks
    return _block_check(model, rng.standard_normal((8, 5)), np.arange(8) % 3, 3, rng)


@register_check("hsic: conv blocks dW (Conv+BN+tanh, residual)", group="hsic")
def _check_conv_blocks(rng):
    model = hsic_resconv((1, 5, 5), rng, channels=1, n_blocks=1, width=2, kernel_size=3,
                         activation="tanh")
    return _block_check(model, rng.standard_normal((6, 1, 5, 5)), np.arange(6) % 3, 3, rng)


@register_check("BatchNorm train mode (N,C,H,W), affine", group="layers")
def _check_bn_train(rng):
    bn = BatchNorm(3, affine=True)
    bn.params["gamma"][...] = rng.uniform(0.5, 1.5, 3)
    return max(check_layer(bn, rng.standard_normal((3, 3, 2, 2)), rng).values())


@register_check("BatchNorm eval mode (N,C)", group="layers")
def _check_bn_eval(rng):
    bn = BatchNorm(4)
    stats = {"mean": rng.standard_normal(4), "var": rng.uniform(0.5, 2.0, 4)}
    x, dy = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    y, cache = bn.forward(x, running_stats=stats)
    dx, _ = bn.backward(dy, cache)
    num = numerical_gradient(lambda v: np.sum(dy * bn.forward(v, running_stats=stats)[0]), x)
    return rel_error(dx, num)


@register_check("Residual conv block (Conv+BN+tanh+Conv+BN, tanh)", group="layers")
def _check_residual(rng):
    block = Residual([Conv2D(2, 2, 3, padding="same", rng=rng, bias=False), BatchNorm(2), Tanh(),
                      Conv2D(2, 2, 3, padding="same", rng=rng, bias=False), BatchNorm(2)],
                     activation="tanh")
    return max(check_layer(block, rng.standard_normal((2, 2, 3, 3)), rng).values())
