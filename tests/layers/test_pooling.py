"""MaxPool2D, AvgPool2D and Flatten."""

import numpy as np
import pytest

from refnets.gradcheck import check_layer
from refnets.layers import AvgPool2D, Flatten, MaxPool2D
from refnets.validation import trusted

TOL = 1e-7

# (N, C, H, W), size, stride
SHAPES = [
    ((1, 1, 4, 4), 2, None),          # batch 1, tiling windows
    ((2, 3, 5, 7), 2, None),          # odd sizes: last row/column dropped
    ((2, 2, 7, 6), 3, 2),             # overlapping windows
    ((1, 2, 6, 6), 3, None),          # window 3 tiling
    ((2, 2, 5, 6), (2, 3), (1, 2)),   # non-square window and stride
    ((3, 1, 4, 5), 1, None),          # window 1: identity
    ((2, 2, 6, 5), 2, 1),             # stride 1
    ((1, 3, 3, 3), 3, None),          # global pooling
]


def _distinct(rng, shape):
    """Entries k/size for a random permutation of k: no ties, gaps 1/size >> h = 1e-5."""
    size = int(np.prod(shape))
    return rng.permutation(size).reshape(shape) / size


def _naive(x, size, stride, reduce):
    """Pooling by plain loops over every window (the readable oracle)."""
    ph, pw = (size, size) if isinstance(size, int) else size
    stride = size if stride is None else stride
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    ho, wo = (x.shape[2] - ph) // sh + 1, (x.shape[3] - pw) // sw + 1
    y = np.empty(x.shape[:2] + (ho, wo))
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            for i in range(ho):
                for j in range(wo):
                    y[n, c, i, j] = reduce(x[n, c, sh * i:sh * i + ph, sw * j:sw * j + pw])
    return y


# ----------------------------------------------------------------------------
# values
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("x_shape,size,stride", SHAPES)
def test_forward_equals_loops(rng, x_shape, size, stride):
    x = rng.standard_normal(x_shape)
    y_max, _ = MaxPool2D(size, stride).forward(x)
    y_avg, _ = AvgPool2D(size, stride).forward(x)
    np.testing.assert_array_equal(y_max, _naive(x, size, stride, np.max))
    np.testing.assert_allclose(y_avg, _naive(x, size, stride, np.mean), rtol=0, atol=1e-15)
    assert y_max.shape[1:] == MaxPool2D(size, stride).output_shape(x_shape)


def test_maxpool_by_hand():
    x = np.array([[[[1.0, 5.0, 2.0, 0.0],
                    [3.0, 4.0, 8.0, 1.0],
                    [0.0, 1.0, 2.0, 3.0],
                    [7.0, 2.0, 6.0, 4.0]]]])
    layer = MaxPool2D(2)
    y, cache = layer.forward(x)
    np.testing.assert_array_equal(y, [[[[5.0, 8.0], [7.0, 6.0]]]])
    dx, grads = layer.backward(np.array([[[[10.0, 20.0], [30.0, 40.0]]]]), cache)
    assert grads == {}
    np.testing.assert_array_equal(dx, [[[[0, 10, 0, 0],
                                         [0, 0, 20, 0],
                                         [0, 0, 0, 0],
                                         [30, 0, 40, 0]]]])


def test_maxpool_overlapping_windows_add_up():
    # window 2, stride 1 on a 1x3 row pair: the 9 is the max of both windows
    x = np.array([[[[1.0, 9.0, 2.0], [0.0, 3.0, 1.0]]]])
    layer = MaxPool2D(2, stride=1)
    y, cache = layer.forward(x)
    np.testing.assert_array_equal(y, [[[[9.0, 9.0]]]])
    dx, _ = layer.backward(np.array([[[[1.0, 2.0]]]]), cache)
    np.testing.assert_array_equal(dx, [[[[0, 3, 0], [0, 0, 0]]]])


def test_maxpool_ties_route_to_first_max_in_row_major_order():
    """PyTorch's convention: the whole gradient of a tied window goes to its first max."""
    x = np.array([[[[1.0, 3.0, 0.0, 0.0],
                    [3.0, 0.0, 0.0, 0.0]]]])   # window 1: 3 at (0,1) and (1,0); window 2: all 0
    layer = MaxPool2D(2)
    y, cache = layer.forward(x)
    dx, _ = layer.backward(np.array([[[[1.0, 2.0]]]]), cache)
    np.testing.assert_array_equal(dx, [[[[0, 1, 2, 0], [0, 0, 0, 0]]]])


def test_maxpool_propagates_nan_between_layers():
    # a user's NaN is refused; a NaN of a diverging run (between layers) propagates
    x = np.array([[[[1.0, np.nan], [2.0, 0.0]]]])
    with pytest.raises(ValueError, match=r"MaxPool2D.forward: x contains a non-finite value "
                                         r"\(nan\) at index \(0, 0, 0, 1\)"):
        MaxPool2D(2).forward(x)
    with trusted():
        y, _ = MaxPool2D(2).forward(x)
    assert np.isnan(y).all()


def test_avgpool_by_hand():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    layer = AvgPool2D(2)
    y, cache = layer.forward(x)
    np.testing.assert_array_equal(y, [[[[2.5, 4.5], [10.5, 12.5]]]])   # e.g. (0+1+4+5)/4
    dx, _ = layer.backward(np.array([[[[4.0, 8.0], [0.0, -4.0]]]]), cache)
    np.testing.assert_array_equal(dx, [[[[1, 1, 2, 2], [1, 1, 2, 2],
                                         [0, 0, -1, -1], [0, 0, -1, -1]]]])


def test_dropped_border_gets_zero_gradient(rng):
    x = _distinct(rng, (1, 1, 5, 5))     # windows 2 cover rows/columns 0..3 only
    for layer in (MaxPool2D(2), AvgPool2D(2)):
        y, cache = layer.forward(x)
        dx, _ = layer.backward(np.ones(y.shape), cache)
        assert np.all(dx[..., 4, :] == 0) and np.all(dx[..., :, 4] == 0)
        assert dx.sum() == pytest.approx(4.0)


def test_flatten_order_is_c_y_x(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    y, cache = Flatten().forward(x)
    assert y.shape == (2, 60)
    assert y[1, 2 * 20 + 3 * 5 + 4] == x[1, 2, 3, 4]        # index c*H*W + i*W + j
    dx, grads = Flatten().backward(y * 2, cache)
    np.testing.assert_array_equal(dx, 2 * x)
    assert grads == {}
    assert Flatten().output_shape((3, 4, 5)) == (60,)


# ----------------------------------------------------------------------------
# gradients
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("x_shape,size,stride", SHAPES)
@pytest.mark.parametrize("cls", [MaxPool2D, AvgPool2D])
def test_check_layer(rng, cls, x_shape, size, stride):
    errors = check_layer(cls(size, stride), _distinct(rng, x_shape), rng, tol=TOL)
    assert set(errors) == {"x"}
    assert errors["x"] < TOL, errors


@pytest.mark.parametrize("x_shape", [(2, 3, 4, 5), (1, 7), (3, 2, 5)])
def test_check_layer_flatten(rng, x_shape):
    errors = check_layer(Flatten(), rng.standard_normal(x_shape), rng, tol=TOL)
    assert errors["x"] < TOL


@pytest.mark.parametrize("layer", [MaxPool2D(3, 2), AvgPool2D(2, 1), Flatten()])
def test_pure(rng, layer):
    x = _distinct(rng, (2, 2, 7, 6))
    x0 = x.copy()
    y, cache = layer.forward(x)
    dy = rng.standard_normal(y.shape)
    dx1, g1 = layer.backward(dy, cache)
    dx2, g2 = layer.backward(dy, cache)
    np.testing.assert_array_equal(dx1, dx2)
    assert g1 == g2 == {} and layer.params == {}
    np.testing.assert_array_equal(x, x0)


# ----------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [MaxPool2D, AvgPool2D])
def test_bad_input(cls):
    name = cls.__name__
    with pytest.raises(ValueError, match=rf"{name}: size must be >= 1, got 0"):
        cls(0)
    with pytest.raises(ValueError, match=rf"{name}: stride must be an int or a pair of ints"):
        cls(2, stride="2")
    layer = cls(3)
    with pytest.raises(ValueError, match=rf"{name}.forward: x must have 4 dimensions.*\(4, 4\)"):
        layer.forward(np.zeros((4, 4)))
    with pytest.raises(ValueError, match=rf"{name}.forward: pooling window \(3, 3\) is larger "
                                         rf"than the input \(2, 5\)"):
        layer.forward(np.zeros((1, 1, 2, 5)))
    with pytest.raises(ValueError, match=r"x must be a real numeric array, got dtype bool"):
        layer.forward(np.zeros((1, 1, 3, 3), dtype=bool))
    y, cache = layer.forward(np.zeros((1, 1, 3, 3)))
    with pytest.raises(ValueError, match=r"dy must have the output's shape \(1, 1, 1, 1\), "
                                         r"got \(1, 1\)"):
        layer.backward(np.zeros((1, 1)), cache)


def test_flatten_bad_input():
    with pytest.raises(ValueError, match=r"Flatten.forward: x must have a batch dimension.*"
                                         r"got shape \(5,\)"):
        Flatten().forward(np.zeros(5))
