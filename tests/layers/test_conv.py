"""Conv2D, im2col/col2im and the loop reference conv2d_naive."""

import numpy as np
import pytest

from refnets.gradcheck import check_layer
from refnets.layers import Conv2D, col2im, conv2d_naive, conv_output_shape, im2col

TOL = 1e-7

# (N, C_in, H, W), C_out, kernel_size, stride, padding
SHAPES = [
    ((1, 1, 5, 5), 1, 3, 1, 0),            # batch 1, single channel
    ((2, 3, 5, 4), 2, 3, 1, 1),            # odd, non-square input
    ((3, 2, 7, 7), 4, 3, 2, 0),            # stride 2
    ((2, 2, 6, 5), 3, 3, 2, 1),            # stride 2 with padding 1
    ((1, 3, 4, 6), 2, 3, 1, 2),            # padding 2 (output larger than input)
    ((2, 4, 5, 3), 3, 1, 1, 0),            # kernel 1 (a per-pixel dense layer)
    ((2, 3, 4, 5), 2, 1, 2, 1),            # kernel 1, stride 2, padding 1
    ((2, 2, 6, 7), 3, (3, 2), (2, 1), (1, 2)),  # non-square kernel, stride, padding
    ((2, 3, 5, 6), 2, 3, 1, "same"),       # 'same' keeps H, W
    ((1, 2, 3, 3), 2, 3, 1, 0),            # kernel as large as the input: 1x1 output
]


def _conv(rng, c_in, c_out, k, stride, padding, bias=True):
    layer = Conv2D(c_in, c_out, k, stride=stride, padding=padding, rng=rng, bias=bias)
    if bias:
        layer.params["b"] = rng.standard_normal(c_out)  # exercise the bias path
    return layer


# ----------------------------------------------------------------------------
# values
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("x_shape,c_out,k,stride,padding", SHAPES)
def test_im2col_conv_equals_naive(rng, x_shape, c_out, k, stride, padding):
    layer = _conv(rng, x_shape[1], c_out, k, stride, padding)
    x = rng.standard_normal(x_shape)
    y, _ = layer.forward(x)
    ref = conv2d_naive(x, layer.params["W"], layer.params["b"], stride, padding)
    assert y.shape == ref.shape == (x_shape[0],) + layer.output_shape(x_shape)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-12)


def test_conv2d_naive_by_hand():
    # 1 sample, 1 channel, 3x3 input, 2x2 kernel [[1, 0], [0, -1]], bias 10:
    # y[i, j] = x[i, j] - x[i+1, j+1] + 10 = -4 + 10 for every (i, j) of arange(9)
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    W = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])
    np.testing.assert_array_equal(conv2d_naive(x, W, np.array([10.0])), np.full((1, 1, 2, 2), 6.0))
    # padding 1, stride 2: windows at (-1,-1), (-1,1), (1,-1), (1,1) of the padded input
    #   y[0,0] = 0 - x[0,0] = 0;  y[0,1] = 0 - x[0,2] = -2
    #   y[1,0] = 0 - x[2,0] = -6; y[1,1] = x[1,1] - x[2,2] = -4
    y = conv2d_naive(x, W, None, stride=2, padding=1)
    np.testing.assert_array_equal(y[0, 0], [[0.0, -2.0], [-6.0, -4.0]])


def test_im2col_by_hand():
    x = np.arange(18.0).reshape(1, 2, 3, 3)           # channel 0: 0..8, channel 1: 9..17
    cols = im2col(x, 2, 2)
    assert cols.shape == (4, 8)                         # (N*2*2, C*2*2)
    # row (n=0, i=0, j=1): channel 0 window [[1, 2], [4, 5]], channel 1 the same + 9
    np.testing.assert_array_equal(cols[1], [1, 2, 4, 5, 10, 11, 13, 14])
    # row (0, 1, 0): window starting at x[1, 0]
    np.testing.assert_array_equal(cols[2], [3, 4, 6, 7, 12, 13, 15, 16])


def test_im2col_columns_match_weight_layout(rng):
    """cols @ W.reshape(C_out, -1).T is the convolution (the documented column order)."""
    x = rng.standard_normal((2, 3, 5, 6))
    W = rng.standard_normal((4, 3, 3, 2))
    cols = im2col(x, 3, 2, stride=(2, 1), padding=(1, 0))
    y = (cols @ W.reshape(4, -1).T).reshape(2, 3, 5, 4).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(y, conv2d_naive(x, W, None, (2, 1), (1, 0)), atol=1e-12, rtol=0)


@pytest.mark.parametrize("x_shape,c_out,k,stride,padding", SHAPES)
@pytest.mark.parametrize("layout", ["C", "F"])
def test_col2im_is_adjoint_of_im2col(rng, x_shape, c_out, k, stride, padding, layout):
    """<im2col(x), c> = <x, col2im(c)> for random x, c (any memory layout of c)."""
    kh, kw = (k, k) if isinstance(k, int) else k
    x = rng.standard_normal(x_shape)
    cols = im2col(x, kh, kw, stride, padding)
    c = np.asarray(rng.standard_normal(cols.shape), order=layout)
    lhs = np.sum(cols * c)
    rhs = np.sum(x * col2im(c, x_shape, kh, kw, stride, padding))
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs)), (lhs, rhs)


def test_col2im_sums_overlapping_patches():
    # 1x1x3x3 input, 2x2 kernel, stride 1: the centre pixel lies in all 4 windows,
    # edge centres in 2, corners in 1
    dcols = np.ones((4, 4))
    dx = col2im(dcols, (1, 1, 3, 3), 2, 2)
    np.testing.assert_array_equal(dx[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])


@pytest.mark.parametrize("in_shape,k,stride,padding,expected", [
    ((28, 28), 3, 1, "same", (28, 28)),
    ((7, 7), 3, 2, 1, (4, 4)),          # (7 + 2 - 3) // 2 + 1
    ((2, 3, 6, 5), (3, 2), (2, 1), (1, 0), (3, 4)),
    ((5, 5), 5, 1, 0, (1, 1)),
    ((4, 6), 1, 3, 0, (2, 2)),
])
def test_conv_output_shape(in_shape, k, stride, padding, expected):
    assert conv_output_shape(in_shape, k, stride, padding) == expected


# ----------------------------------------------------------------------------
# gradients
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("x_shape,c_out,k,stride,padding", SHAPES)
def test_check_layer(rng, x_shape, c_out, k, stride, padding):
    layer = _conv(rng, x_shape[1], c_out, k, stride, padding)
    errors = check_layer(layer, rng.standard_normal(x_shape), rng, tol=TOL)
    assert set(errors) == {"x", "W", "b"}
    assert max(errors.values()) < TOL, errors


def test_check_layer_without_bias(rng):
    layer = _conv(rng, 2, 3, 3, 2, 1, bias=False)
    errors = check_layer(layer, rng.standard_normal((2, 2, 5, 6)), rng, tol=TOL)
    assert set(errors) == {"x", "W"}


def test_check_layer_directional_large(rng):
    """x with 4*3*16*16 > max_elements entries goes through the directional checker."""
    layer = _conv(rng, 3, 4, 3, 1, "same")
    errors = check_layer(layer, rng.standard_normal((4, 3, 16, 16)), rng, tol=TOL)
    assert max(errors.values()) < TOL, errors


def test_backward_by_hand():
    # 1x1x2x2 input, 1x1 kernel w = 3: y = 3 x + b
    layer = Conv2D(1, 1, 1, rng=np.random.default_rng(0))
    params = {"W": np.array([[[[3.0]]]]), "b": np.array([1.0])}
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    y, cache = layer.forward(x, params)
    np.testing.assert_array_equal(y, 3 * x + 1)
    dy = np.array([[[[1.0, -1.0], [2.0, 0.5]]]])
    dx, grads = layer.backward(dy, cache)
    np.testing.assert_array_equal(dx, 3 * dy)
    np.testing.assert_array_equal(grads["W"], [[[[1 - 2 + 6 + 2.0]]]])   # sum dy * x
    np.testing.assert_array_equal(grads["b"], [2.5])                      # sum dy


def test_backward_input_and_params_match_backward(rng):
    layer = _conv(rng, 2, 3, 3, 2, 1)
    x = rng.standard_normal((2, 2, 7, 5))
    y, cache = layer.forward(x)
    dy = rng.standard_normal(y.shape)
    dx, grads = layer.backward(dy, cache)
    np.testing.assert_array_equal(layer.backward_input(dy, cache), dx)
    g = layer.backward_params(dy, cache)
    assert set(g) == set(grads)
    for key in grads:
        np.testing.assert_array_equal(g[key], grads[key])
    # a feedback kernel B replaces W on the input path only
    B = rng.standard_normal(layer.params["W"].shape)
    _, cache_b = layer.forward(x, {"W": B, "b": layer.params["b"]})
    np.testing.assert_allclose(layer.backward_input(dy, cache, W=B),
                               layer.backward(dy, cache_b)[0], rtol=0, atol=1e-12)


def test_pure(rng):
    """backward twice gives identical results; params, x and the cache are untouched."""
    layer = _conv(rng, 2, 3, 3, 1, 1)
    before = {k: v.copy() for k, v in layer.params.items()}
    x = rng.standard_normal((2, 2, 5, 5))
    x0 = x.copy()
    y, cache = layer.forward(x)
    cache0 = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in cache.items()}
    dy = rng.standard_normal(y.shape)
    dx1, g1 = layer.backward(dy, cache)
    dx2, g2 = layer.backward(dy, cache)
    np.testing.assert_array_equal(dx1, dx2)
    for key in g1:
        np.testing.assert_array_equal(g1[key], g2[key])
    for key in before:
        np.testing.assert_array_equal(layer.params[key], before[key])
    np.testing.assert_array_equal(x, x0)
    for key, value in cache0.items():
        np.testing.assert_array_equal(cache[key], value)


def test_explicit_params_leave_layer_untouched(rng):
    layer = _conv(rng, 2, 2, 3, 1, 0)
    own = {k: v.copy() for k, v in layer.params.items()}
    other = {"W": rng.standard_normal(own["W"].shape), "b": rng.standard_normal(2)}
    x = rng.standard_normal((1, 2, 4, 4))
    y, cache = layer.forward(x, other)
    np.testing.assert_allclose(y, conv2d_naive(x, other["W"], other["b"]), atol=1e-12, rtol=0)
    assert cache["W"] is other["W"]
    for key in own:
        np.testing.assert_array_equal(layer.params[key], own[key])


def test_same_seed_same_weights():
    a = Conv2D(3, 4, 3, rng=np.random.default_rng(5))
    b = Conv2D(3, 4, 3, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a.params["W"], b.params["W"])
    assert a.params["W"].shape == (4, 3, 3, 3) and a.params["b"].shape == (4,)


# ----------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,match", [
    ({"c_in": 0}, r"c_in must be a positive int, got 0"),
    ({"c_out": 2.5}, r"c_out must be a positive int, got 2.5"),
    ({"kernel_size": 0}, r"kernel_size must be >= 1, got 0"),
    ({"kernel_size": (3, 3, 3)}, r"kernel_size must be an int or a pair of ints"),
    ({"stride": 0}, r"stride must be >= 1, got 0"),
    ({"stride": 1.5}, r"stride must be an int or a pair of ints, got 1.5"),
    ({"padding": -1}, r"padding must be >= 0, got -1"),
    ({"padding": "full"}, r"padding must be .*'same'.*got 'full'"),
    ({"padding": "same", "kernel_size": 2}, r"'same' requires an odd kernel size.*\(2, 2\)"),
    ({"padding": "same", "stride": 2}, r"'same' requires stride 1, got stride \(2, 2\)"),
    ({"rng": None}, r"rng must be a numpy.random.Generator"),
    ({"init": "nope"}, r"init must be one of"),
])
def test_bad_constructor_arguments(rng, kwargs, match):
    args = {"c_in": 2, "c_out": 3, "kernel_size": 3, "rng": rng}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        Conv2D(**args)


def test_bad_forward_input(rng):
    layer = Conv2D(3, 2, 3, rng=rng)
    with pytest.raises(ValueError, match=r"Conv2D.forward: x must have 4 dimensions.*\(3, 5, 5\)"):
        layer.forward(np.zeros((3, 5, 5)))
    with pytest.raises(ValueError, match=r"x must have 3 channels \(N, 3, H, W\), got shape "
                                         r"\(1, 2, 5, 5\)"):
        layer.forward(np.zeros((1, 2, 5, 5)))
    with pytest.raises(ValueError, match=r"kernel \(3, 3\) is larger than the padded input "
                                         r"\(2, 5\)"):
        layer.forward(np.zeros((1, 3, 2, 5)))
    with pytest.raises(ValueError, match=r"x must be a real numeric array, got dtype complex128"):
        layer.forward(np.zeros((1, 3, 5, 5), dtype=complex))
    with pytest.raises(ValueError, match=r"params\['W'\] must have shape \(2, 3, 3, 3\)"):
        layer.forward(np.zeros((1, 3, 5, 5)), {"W": np.zeros((2, 3, 2, 2)), "b": np.zeros(2)})
    y, cache = layer.forward(np.zeros((1, 3, 5, 5)))
    with pytest.raises(ValueError, match=r"dy must have the output's shape \(1, 2, 3, 3\), "
                                         r"got \(1, 2, 3, 2\)"):
        layer.backward(np.zeros((1, 2, 3, 2)), cache)
    with pytest.raises(ValueError, match=r"W must have shape \(2, 3, 3, 3\), got \(2, 3\)"):
        layer.backward_input(np.zeros(y.shape), cache, W=np.zeros((2, 3)))


def test_bad_im2col_col2im_input(rng):
    with pytest.raises(ValueError, match=r"im2col: x must have 4 dimensions"):
        im2col(np.zeros((2, 5, 5)), 3, 3)
    with pytest.raises(ValueError, match=r"im2col: kernel \(7, 3\) is larger than the padded "
                                         r"input \(6, 6\)"):
        im2col(np.zeros((1, 1, 4, 4)), 7, 3, padding=1)
    with pytest.raises(ValueError, match=r"col2im: dcols must have shape \(9, 18\), got \(9, 9\)"):
        col2im(np.zeros((9, 9)), (1, 2, 5, 5), 3, 3)
    with pytest.raises(ValueError, match=r"col2im: x_shape must be \(N, C, H, W\)"):
        col2im(np.zeros((9, 9)), (2, 5, 5), 3, 3)
    with pytest.raises(ValueError, match=r"conv2d_naive: W must have C_in = x.shape\[1\] = 2"):
        conv2d_naive(np.zeros((1, 2, 4, 4)), np.zeros((1, 3, 3, 3)))
    with pytest.raises(ValueError, match=r"conv_output_shape: input_shape must end in \(H, W\)"):
        conv_output_shape((5,), 3)
