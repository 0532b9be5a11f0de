"""refnets.interop: state_dict and Keras layouts, each way and back, and each against a
forward pass written in the other layout (so a wrong transpose cannot pass)."""

import numpy as np
import pytest

from refnets import interop
from refnets.layers import (RNN, BatchNorm, Conv2D, ConvTranspose2D, Dense, Flatten, LastStep,
                            ReLU, Residual, Tanh)
from refnets.models import Sequential


def _randomise(model, rng):
    for value in model.params().values():
        value[...] = rng.standard_normal(value.shape)


def _model(rng):
    """Conv, affine batch norm, a Residual block holding a batch norm, flatten, dense."""
    return Sequential([
        Conv2D(2, 3, 3, padding=1, rng=rng), BatchNorm(3, affine=True), ReLU(),
        Residual([Conv2D(3, 3, 3, padding=1, rng=rng), BatchNorm(3), ReLU(),
                  Conv2D(3, 3, 1, rng=rng, bias=False)]),
        ConvTranspose2D(3, 2, 2, stride=2, rng=rng), Flatten(), Dense(2 * 8 * 8, 4, rng)])


def test_state_dict_keys_and_round_trip(rng):
    model = _model(rng)
    _randomise(model, rng)
    stats = {1: {"mean": rng.standard_normal(3), "var": rng.random(3) + 0.5},
             3: {1: {"mean": rng.standard_normal(3), "var": rng.random(3) + 0.5}}}
    sd = interop.to_state_dict(model, stats)
    assert sorted(sd) == sorted([
        "0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
        "3.0.weight", "3.0.bias", "3.1.running_mean", "3.1.running_var", "3.3.weight",
        "4.weight", "4.bias", "6.weight", "6.bias"])
    assert np.array_equal(sd["1.weight"], model.layers[1].params["gamma"])
    assert np.array_equal(sd["3.3.weight"], model.layers[3].params["3.W"])
    assert np.array_equal(sd["3.1.running_var"], stats[3][1]["var"])
    sd["0.weight"][...] = 0.0        # the state dict holds copies
    assert np.any(model.layers[0].params["W"] != 0.0)
    sd = interop.to_state_dict(model, stats)

    other = _model(np.random.default_rng(99))
    got = interop.load_state_dict(other, sd)
    for key, value in model.params().items():
        assert np.array_equal(other.params()[key], value), key
    assert np.array_equal(got[1]["mean"], stats[1]["mean"])
    assert np.array_equal(got[3][1]["var"], stats[3][1]["var"])
    x = rng.standard_normal((2, 2, 4, 4))
    assert np.array_equal(model.forward(x)[0], other.forward(x)[0])


def test_rnn_two_biases_merge_and_come_back_as_b_and_zero(rng):
    model = Sequential([RNN(3, 4, rng), LastStep(), Dense(4, 2, rng)])
    b_ih, b_hh = rng.standard_normal(4), rng.standard_normal(4)
    sd = {"0.weight_ih_l0": rng.standard_normal((4, 3)), "0.weight_hh_l0": rng.standard_normal((4, 4)),
          "0.bias_ih_l0": b_ih, "0.bias_hh_l0": b_hh, "2.weight": rng.standard_normal((2, 4)),
          "2.bias": rng.standard_normal(2)}
    interop.load_state_dict(model, sd)
    assert np.array_equal(model.layers[0].params["b"], b_ih + b_hh)
    assert np.array_equal(model.layers[0].params["W_h"], sd["0.weight_hh_l0"])
    back = interop.to_state_dict(model)
    assert np.array_equal(back["0.bias_ih_l0"], b_ih + b_hh)
    assert np.array_equal(back["0.bias_hh_l0"], np.zeros(4))
    # a torch RNN without biases (bias=False): b = 0
    model.layers[0].params["b"][...] = 1.0
    del sd["0.bias_ih_l0"], sd["0.bias_hh_l0"]
    interop.load_state_dict(model, sd)
    assert np.array_equal(model.layers[0].params["b"], np.zeros(4))


class _FakeTensor:
    """Duck-typed like a torch tensor: detach(), cpu(), __array__."""

    def __init__(self, a):
        self.a = np.asarray(a, dtype=np.float32)

    def detach(self):
        return self

    def cpu(self):
        return self

    def __array__(self, dtype=None, copy=None):
        return self.a if dtype is None else self.a.astype(dtype)


def test_tensors_accepted_and_converted_to_float64(rng):
    model = Sequential([Dense(3, 2, rng)])
    W = rng.standard_normal((2, 3))
    interop.load_state_dict(model, {"0.weight": _FakeTensor(W), "0.bias": _FakeTensor([1, 2])})
    assert model.layers[0].params["W"].dtype == np.float64
    assert np.array_equal(model.layers[0].params["W"], W.astype(np.float32).astype(np.float64))


def test_bad_state_dicts_raise_and_change_nothing(rng):
    model = Sequential([Dense(3, 2, rng), Tanh(), Dense(2, 2, rng)])
    before = model.copy_params()
    sd = interop.to_state_dict(model)
    with pytest.raises(ValueError, match=r"Sequential.set_params: unknown key '0.weight'"):
        model.set_params(sd)     # the converter is the way in
    with pytest.raises(ValueError, match=r"from_state_dict: keys the model does not have: \['5.weight'\]"):
        interop.load_state_dict(model, dict(sd, **{"5.weight": np.zeros(2)}))
    with pytest.raises(ValueError, match=r"from_state_dict: missing keys \['2.bias'\]"):
        interop.load_state_dict(model, {k: v for k, v in sd.items() if k != "2.bias"})
    with pytest.raises(ValueError, match=r"state_dict\['0.weight'\] must have shape \(2, 3\), got \(3, 2\)"):
        interop.load_state_dict(model, dict(sd, **{"0.weight": np.zeros((3, 2))}))
    with pytest.raises(ValueError, match="must be a mapping"):
        interop.from_state_dict(model, [1, 2])
    for key, value in before.items():
        assert np.array_equal(model.params()[key], value)
    # strict=False: unknown keys ignored, missing ones keep the model's values
    params, _ = interop.from_state_dict(model, {"0.weight": np.ones((2, 3)), "9.x": 1.0},
                                        strict=False)
    assert sorted(params) == ["0.W"]


def test_batchnorm_needs_both_statistics(rng):
    model = Sequential([BatchNorm(3)])
    with pytest.raises(ValueError, match="needs both running_mean and running_var"):
        interop.from_state_dict(model, {"0.running_mean": np.zeros(3)}, strict=False)
    # num_batches_tracked (torch) is accepted and ignored
    _, stats = interop.from_state_dict(model, {"0.running_mean": np.ones(3), "0.running_var":
                                               np.ones(3), "0.num_batches_tracked": 7})
    assert np.array_equal(stats[0]["mean"], np.ones(3))


# -- Keras / TensorFlow layouts: round trips, and each against a forward pass in that layout --

def test_dense_keras(rng):
    kernel, bias = rng.standard_normal((5, 3)), rng.standard_normal(3)
    W, b = interop.dense_from_keras(kernel, bias)
    k2, b2 = interop.dense_to_keras(W, b)
    assert np.array_equal(k2, kernel) and np.array_equal(b2, bias)
    assert np.array_equal(interop.dense_from_keras(kernel), W)
    layer = Dense(5, 3, rng)
    layer.params.update(W=W, b=b)
    x = rng.standard_normal((4, 5))
    np.testing.assert_allclose(layer.forward(x)[0], x @ kernel + bias, rtol=1e-13, atol=0)


def test_bias_row_matrix(rng):
    M = rng.standard_normal((6, 4))            # (n_in + 1, n_out), bias in row 0
    W, b = interop.from_bias_row(M)
    assert W.shape == (4, 5) and np.array_equal(interop.to_bias_row(W, b), M)
    x = rng.standard_normal((3, 5))
    ones_x = np.hstack([np.ones((3, 1)), x])   # [1, x] @ M, the TF form
    np.testing.assert_allclose(x @ W.T + b, ones_x @ M, rtol=1e-13, atol=1e-14)
    with pytest.raises(ValueError, match=r"to_bias_row: b must have shape \(4,\)"):
        interop.to_bias_row(W, np.zeros(5))


def _conv_nhwc(x, kernel):
    """Valid stride-1 cross-correlation in TF's layouts, written as loops over the kernel."""
    kh, kw = kernel.shape[:2]
    N, H, W, _ = x.shape
    out = np.zeros((N, H - kh + 1, W - kw + 1, kernel.shape[3]))
    for u in range(kh):
        for v in range(kw):
            out += x[:, u:u + H - kh + 1, v:v + W - kw + 1, :] @ kernel[u, v]
    return out


def test_conv_hwio_and_nhwc(rng):
    kernel = rng.standard_normal((3, 2, 4, 5))   # (kh, kw, C_in, C_out), not square: catches swaps
    W = interop.conv_from_hwio(kernel)
    assert W.shape == (5, 4, 3, 2) and np.array_equal(interop.conv_to_hwio(W), kernel)
    x_nhwc = rng.standard_normal((2, 6, 7, 4))
    x = interop.nhwc_to_nchw(x_nhwc)
    assert x.shape == (2, 4, 6, 7) and np.array_equal(interop.nchw_to_nhwc(x), x_nhwc)
    conv = Conv2D(4, 5, (3, 2), rng=rng, bias=False)
    conv.params["W"] = W
    np.testing.assert_allclose(interop.nchw_to_nhwc(conv.forward(x)[0]), _conv_nhwc(x_nhwc, kernel),
                               rtol=1e-12, atol=1e-12)


def test_dense_after_flatten_order(rng):
    """conv -> flatten -> dense in Keras' NHWC order equals refnets' NCHW net after conversion."""
    C, H, W_, n_out = 3, 4, 5, 2
    kernel_c = rng.standard_normal((3, 3, 2, C))
    kernel_d = rng.standard_normal((H * W_ * C, n_out))
    x_nhwc = rng.standard_normal((2, H + 2, W_ + 2, 2))
    keras_out = _conv_nhwc(x_nhwc, kernel_c).reshape(2, -1) @ kernel_d   # flatten in (h, w, c)

    model = Sequential([Conv2D(2, C, 3, rng=rng, bias=False), Flatten(),
                        Dense(C * H * W_, n_out, rng, bias=False)])
    model.layers[0].params["W"] = interop.conv_from_hwio(kernel_c)
    model.layers[2].params["W"] = interop.dense_after_flatten_from_keras(kernel_d, (C, H, W_))
    out = model.forward(interop.nhwc_to_nchw(x_nhwc))[0]
    np.testing.assert_allclose(out, keras_out, rtol=1e-12, atol=1e-12)
    # a plain transpose would be wrong here
    assert not np.allclose(interop.dense_from_keras(kernel_d), model.layers[2].params["W"])
    back = interop.dense_after_flatten_to_keras(model.layers[2].params["W"], (C, H, W_))
    assert np.array_equal(back, kernel_d)
    with pytest.raises(ValueError, match="chw must be the feature-map shape"):
        interop.dense_after_flatten_from_keras(kernel_d, (C, H))


def test_rnn_keras_and_batch_major(rng):
    D, Hd, N, T = 3, 4, 2, 5
    kernel, rec, bias = (rng.standard_normal((D, Hd)), rng.standard_normal((Hd, Hd)) / 2,
                         rng.standard_normal(Hd))
    p = interop.rnn_from_keras(kernel, rec, bias)
    k2, r2, b2 = interop.rnn_to_keras(p)
    assert np.array_equal(k2, kernel) and np.array_equal(r2, rec) and np.array_equal(b2, bias)
    x_bm = rng.standard_normal((N, T, D))       # Keras: batch-major
    h, keras_hs = np.zeros((N, Hd)), []
    for t in range(T):
        h = np.tanh(x_bm[:, t] @ kernel + h @ rec + bias)
        keras_hs.append(h)
    layer = RNN(D, Hd, rng)
    layer.params.update(p)
    x = interop.to_time_major(x_bm)
    assert x.shape == (T, N, D) and np.array_equal(interop.to_batch_major(x), x_bm)
    hs = layer.forward(x)[0]
    np.testing.assert_allclose(interop.to_batch_major(hs), np.stack(keras_hs, axis=1),
                               rtol=1e-12, atol=1e-13)
    assert np.array_equal(interop.rnn_from_keras(kernel, rec)["b"], np.zeros(Hd))


@pytest.mark.parametrize("fn,arg,msg", [
    (interop.conv_from_hwio, np.zeros((3, 3, 2)), "conv_from_hwio: kernel must have 4 dimensions"),
    (interop.dense_from_keras, np.zeros(3), "dense_from_keras: kernel must have 2 dimensions"),
    (interop.nhwc_to_nchw, np.zeros((2, 3)), "nhwc_to_nchw: x must have 4 dimensions"),
    (interop.from_bias_row, np.zeros((1, 3)), r"from_bias_row: M must have shape \(n_in \+ 1"),
    (interop.to_time_major, np.zeros(3), "to_time_major: x must have shape"),
    (interop.dense_from_keras, "abc", "dense_from_keras: kernel must be a numeric array"),
])
def test_bad_layouts_raise_naming_function_and_argument(fn, arg, msg):
    with pytest.raises(ValueError, match=msg):
        fn(arg)
