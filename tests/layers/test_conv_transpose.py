"""ConvTranspose2D: the adjoint of Conv2D, its gradients, PyTorch's layout."""

import numpy as np
import pytest

from refnets.gradcheck import check_layer
from refnets.layers.conv import Conv2D, conv2d_naive
from refnets.layers.conv_transpose import ConvTranspose2D

GEOMETRIES = [dict(kernel_size=3, stride=1, padding=1, output_padding=0),
              dict(kernel_size=3, stride=2, padding=1, output_padding=1),
              dict(kernel_size=(2, 3), stride=(2, 1), padding=0, output_padding=0),
              dict(kernel_size=1, stride=1, padding=0, output_padding=0)]


@pytest.mark.parametrize("geo", GEOMETRIES)
def test_adjoint_of_conv2d(geo, rng):
    """<conv(y, W), x> = <y, conv_transpose(x, W)> with the same kernel, stride, padding."""
    ct = ConvTranspose2D(3, 2, rng=rng, **geo)
    ct.params["b"][...] = 0.0
    x = rng.standard_normal((2, 3, 4, 5))
    y = ct.forward(x)[0]
    conv = Conv2D(2, 3, geo["kernel_size"], stride=geo["stride"], padding=geo["padding"], rng=rng,
                  bias=False)
    v = rng.standard_normal(y.shape)
    conv_v = conv.forward(v, {"W": ct.params["W"]})[0]          # W (3, 2, kh, kw) as a conv kernel
    assert conv_v.shape == x.shape
    assert np.sum(conv_v * x) == pytest.approx(np.sum(v * y), rel=1e-12)
    np.testing.assert_allclose(conv_v, conv2d_naive(v, ct.params["W"], None, geo["stride"],
                                                    geo["padding"]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("geo", GEOMETRIES)
@pytest.mark.parametrize("batch", [1, 3])
def test_gradcheck(geo, batch, rng):
    ct = ConvTranspose2D(2, 3, rng=rng, **geo)
    ct.params["b"][...] = rng.standard_normal(3)
    errors = check_layer(ct, rng.standard_normal((batch, 2, 3, 4)), rng)
    assert max(errors.values()) < 1e-7, errors


def test_hand_worked_stride_2():
    """1 channel, 1x2 input (a, b) = (1, 2), kernel [[1, 10]], stride (1, 2): y = [1, 10, 2, 20]."""
    rng = np.random.default_rng(0)
    ct = ConvTranspose2D(1, 1, (1, 2), stride=(1, 2), rng=rng)
    ct.params["W"][...] = np.array([[[[1.0, 10.0]]]])
    ct.params["b"][...] = 0.5
    y = ct.forward(np.array([[[[1.0, 2.0]]]]))[0]
    np.testing.assert_array_equal(y, [[[[1.5, 10.5, 2.5, 20.5]]]])


def test_output_shape_and_validation(rng):
    ct = ConvTranspose2D(4, 2, 3, stride=2, padding=1, output_padding=1, rng=rng)
    assert ct.forward(rng.standard_normal((1, 4, 7, 7)))[0].shape == (1, 2, 14, 14)
    with pytest.raises(ValueError, match="output_padding"):
        ConvTranspose2D(1, 1, 3, stride=1, output_padding=1, rng=rng)
    with pytest.raises(ValueError, match="channels"):
        ct.forward(rng.standard_normal((1, 3, 7, 7)))
    with pytest.raises(ValueError, match="c_in"):
        ConvTranspose2D(0, 1, 3, rng=rng)


@pytest.mark.torch
def test_matches_torch_conv_transpose2d(rng):
    torch = pytest.importorskip("torch")
    ct = ConvTranspose2D(3, 2, 3, stride=2, padding=1, output_padding=1, rng=rng)
    ct.params["b"][...] = rng.standard_normal(2)
    x = rng.standard_normal((2, 3, 4, 5))
    ref = torch.nn.functional.conv_transpose2d(
        torch.tensor(x), torch.tensor(ct.params["W"]), torch.tensor(ct.params["b"]), stride=2,
        padding=1, output_padding=1).numpy()
    np.testing.assert_allclose(ct.forward(x)[0], ref, rtol=1e-12, atol=1e-12)
