"""Float64 PyTorch cross-checks of the decorrelated layers and of the authors' conv form.

The conv check follows the authors' ``Decorrelator2D``: R applied as a conv with
D = C_in k^2 output channels (kernel = R reshaped to (D, C_in, k, k)), then a
1x1 conv D -> C_out (DEC-2a, DEC-3 in the package README).
"""

import numpy as np
import pytest

from refnets.algorithms.decorrelation.algorithm import Decorrelation
from refnets.layers import Conv2D, Dense

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def test_dense_decorrelator_matches_torch_autograd(rng):
    layer = Dense(5, 3, rng)
    dec = Decorrelation()
    st = dec.init_layer(layer)
    st["R"] = np.eye(5) + 0.3 * rng.standard_normal((5, 5))
    h = rng.standard_normal((7, 5)) + 1.0
    a, cache = dec.forward(layer, h, dict(st))
    da = rng.standard_normal(a.shape)

    th = torch.tensor(h, requires_grad=True)
    tW = torch.tensor(layer.params["W"], requires_grad=True)
    tb = torch.tensor(layer.params["b"], requires_grad=True)
    z = (th - th.mean(dim=0)) @ torch.tensor(st["R"]).T
    ta = z @ tW.T + tb
    (ta * torch.tensor(da)).sum().backward()
    np.testing.assert_allclose(a, ta.detach().numpy(), rtol=0, atol=1e-13)
    np.testing.assert_allclose(dec.backward_input(layer, da, cache), th.grad.numpy(), atol=1e-13)
    grads = dec.backward_params(layer, da, cache)
    np.testing.assert_allclose(grads["W"], tW.grad.numpy(), atol=1e-13)
    np.testing.assert_allclose(grads["b"], tb.grad.numpy(), atol=1e-13)


@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 0)])
def test_conv_decorrelator_matches_the_authors_two_conv_form(rng, stride, padding):
    layer = Conv2D(2, 3, 3, stride=stride, padding=padding, rng=rng)
    layer.params["b"][:] = rng.standard_normal(3)
    dec = Decorrelation()
    st = dec.init_layer(layer)
    D = 18
    st["R"] = np.eye(D) + 0.2 * rng.standard_normal((D, D))
    h = rng.standard_normal((3, 2, 7, 6)) + 1.0
    a, cache = dec.forward(layer, h, dict(st))
    da = rng.standard_normal(a.shape)

    F = torch.nn.functional
    th = torch.tensor(h, requires_grad=True)
    tW = torch.tensor(layer.params["W"], requires_grad=True)
    tb = torch.tensor(layer.params["b"], requires_grad=True)
    hc = th - th.mean(dim=(0, 2, 3), keepdim=True)
    z = F.conv2d(hc, torch.tensor(st["R"]).reshape(D, 2, 3, 3), stride=stride, padding=padding)
    ta = F.conv2d(z, tW.reshape(3, D, 1, 1), tb)
    (ta * torch.tensor(da)).sum().backward()
    np.testing.assert_allclose(a, ta.detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(dec.backward_input(layer, da, cache), th.grad.numpy(), atol=1e-12)
    grads = dec.backward_params(layer, da, cache)
    np.testing.assert_allclose(grads["W"], tW.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(grads["b"], tb.grad.numpy(), atol=1e-12)
