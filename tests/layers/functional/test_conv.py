"""FunctionalConv2D: LIN == Conv2D, a plain-loop reference, gradchecks, fast == generic."""

import numpy as np
import pytest

from refnets.gradcheck import check_layer
from refnets.layers import Conv2D
from refnets.layers.functional.conv import FunctionalConv2D

TOL = 1e-7
GEOMETRIES = [dict(stride=1, padding="same"), dict(stride=2, padding=1),
              dict(stride=(1, 2), padding=(0, 1))]


def _functional_conv_naive(layer, x):
    """The defining sum with loops: y[n,o,i,j] = b_o + sum_{c,u,v} f(xp[n,c,s i+u,s j+v]; theta[:,o,c,u,v])."""
    kh, kw = layer.kernel_size
    sh, sw = (layer.stride, layer.stride) if np.isscalar(layer.stride) else layer.stride
    ph, pw = ((kh - 1) // 2, (kw - 1) // 2) if layer.padding == "same" else (
        (layer.padding, layer.padding) if np.isscalar(layer.padding) else layer.padding)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    _, ho, wo = layer.output_shape(x.shape)
    theta, s = layer.params["theta"], layer.signs
    y = np.zeros((x.shape[0], layer.c_out, ho, wo))
    for n in range(x.shape[0]):
        for o in range(layer.c_out):
            for i in range(ho):
                for j in range(wo):
                    patch = xp[n, :, sh * i:sh * i + kh, sw * j:sw * j + kw]
                    f = layer.function.value(patch, theta[:, o], None if s is None else s[o])
                    y[n, o, i, j] = f.sum() + layer.params["b"][o]
    return y


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("name", ["F12", "F19", "F20"])
def test_matches_plain_loop(rng, name, geometry):
    layer = FunctionalConv2D(2, 3, 3, name, rng, **geometry)
    layer.params["b"][:] = rng.standard_normal(3)
    x = rng.standard_normal((2, 2, 5, 6))
    np.testing.assert_allclose(layer.forward(x)[0], _functional_conv_naive(layer, x),
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_lin_equals_conv2d(rng, geometry):
    conv = Conv2D(2, 3, 3, rng=rng, **geometry)
    conv.params["b"] = rng.standard_normal(3)
    layer = FunctionalConv2D(2, 3, 3, "LIN", rng, **geometry)
    layer.params["theta"][0] = conv.params["W"]
    layer.params["b"][:] = conv.params["b"]
    x = rng.standard_normal((2, 2, 6, 5))
    y_ref, c_ref = conv.forward(x)
    y, c = layer.forward(x)
    dy = rng.standard_normal(y.shape)
    dx_ref, g_ref = conv.backward(dy, c_ref)
    dx, g = layer.backward(dy, c)
    for u, v in ((y, y_ref), (dx, dx_ref), (g["theta"][0], g_ref["W"]), (g["b"], g_ref["b"])):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("name,path,geometry", [
    ("F03", "fast", GEOMETRIES[0]), ("F19", "fast", GEOMETRIES[1]), ("F19", "generic", GEOMETRIES[1]),
    ("F12", "generic", GEOMETRIES[2]), ("F20", "fast", GEOMETRIES[2])])
def test_gradcheck(rng, name, path, geometry):
    layer = FunctionalConv2D(2, 2, (3, 3), name, rng, path=path, **geometry)
    if name != "F12":
        layer.params["theta"] *= 5.0              # in place (a view of the FTM's array)
    layer.params["b"][:] = rng.standard_normal(2)
    errors = check_layer(layer, rng.standard_normal((2, 2, 5, 4)), rng)
    assert set(errors) == {"x", "theta", "b"}
    assert max(errors.values()) < TOL, errors


def test_fast_equals_generic_with_padding(rng):
    fast = FunctionalConv2D(2, 3, 3, "F20", rng, padding=1)
    generic = FunctionalConv2D(2, 3, 3, "F20", rng, padding=1, path="generic", max_elements=50)
    generic.params["theta"][...] = fast.params["theta"]
    generic.ftm.signs[...] = fast.ftm.signs
    x = rng.standard_normal((3, 2, 4, 5))
    y1, c1 = fast.forward(x)
    y2, c2 = generic.forward(x)
    dy = rng.standard_normal(y1.shape)
    (dx1, g1), (dx2, g2) = fast.backward(dy, c1), generic.backward(dy, c2)
    for u, v in ((y1, y2), (dx1, dx2), (g1["theta"], g2["theta"]), (g1["b"], g2["b"])):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-14)


def test_params_are_views_of_the_ftm(rng):
    layer = FunctionalConv2D(2, 3, (3, 2), "F18", rng)
    assert layer.params["theta"].shape == (1, 3, 2, 3, 2)
    assert np.shares_memory(layer.params["theta"], layer.ftm.params["theta"])
    assert layer.signs.shape == (3, 2, 3, 2)
    layer.params["theta"] += 1.0
    np.testing.assert_array_equal(layer.ftm.params["theta"].reshape(layer.params["theta"].shape),
                                  layer.params["theta"])


@pytest.mark.parametrize("kernel_size,message", [
    ((3,), r"kernel_size must be an int or a pair of ints, got \(3,\)"),  # was a tuple-unpack error
    (0, "kernel_size must be >= 1, got 0"),                                  # was about input_shape
    (2.5, "kernel_size must be an int or a pair of ints, got 2.5"),          # was about input_shape
])
def test_kernel_size_is_checked(rng, kernel_size, message):
    with pytest.raises(ValueError, match="FunctionalConv2D: " + message):
        FunctionalConv2D(2, 3, kernel_size, "F03", rng)


def test_given_kernels_and_signs(rng):
    drawn = FunctionalConv2D(2, 3, (3, 2), "F20", np.random.default_rng(4))
    state = rng.bit_generator.state
    given = FunctionalConv2D(2, 3, (3, 2), "F20", None, theta=drawn.params["theta"],
                             signs=drawn.signs)
    assert rng.bit_generator.state == state
    x = rng.standard_normal((2, 2, 5, 5))
    np.testing.assert_array_equal(given.forward(x)[0], drawn.forward(x)[0])
    with pytest.raises(ValueError, match=r"given theta must have shape \(2, 3, 2, 3, 2\)"):
        FunctionalConv2D(2, 3, (3, 2), "F20", None, theta=np.zeros((2, 3, 2, 2, 3)))
    with pytest.raises(ValueError, match="given signs must hold only"):
        FunctionalConv2D(2, 3, (3, 2), "F20", None, theta=drawn.params["theta"],
                         signs=np.zeros((3, 2, 3, 2)))


def test_float32_input_gives_float64(rng):
    layer = FunctionalConv2D(2, 2, 3, "F03", rng, padding=1)
    x = rng.standard_normal((2, 2, 4, 4)).astype(np.float32)
    y, cache = layer.forward(x)
    dx, _ = layer.backward(np.ones(y.shape, dtype=np.float32), cache)
    assert y.dtype == dx.dtype == np.float64
    np.testing.assert_array_equal(y, layer.forward(x.astype(np.float64))[0])
    with pytest.raises(ValueError, match="FunctionalConv2D.forward: x is an empty batch"):
        layer.forward(np.zeros((0, 2, 4, 4)))


def test_bad_arguments(rng):
    with pytest.raises(ValueError, match="c_in must be a positive int"):
        FunctionalConv2D(0, 2, 3, "F03", rng)
    with pytest.raises(ValueError, match="padding"):
        FunctionalConv2D(1, 2, 3, "F03", rng, padding="full")
    layer = FunctionalConv2D(2, 2, 3, "F03", rng)
    with pytest.raises(ValueError, match="must have 2 channels"):
        layer.forward(np.zeros((1, 3, 5, 5)))
    with pytest.raises(ValueError, match="4 dimensions"):
        layer.forward(np.zeros((3, 5, 5)))
