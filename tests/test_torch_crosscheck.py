"""Float64 cross-checks of the core layers and the loss against PyTorch.

Forward values and every backward quantity (dx and each parameter gradient, for
a random upstream dy) must agree with torch's autograd to a relative error of
1e-10. Skipped when torch is not installed.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from refnets.gradcheck import rel_error  # noqa: E402
from refnets.layers import RNN, AvgPool2D, Conv2D, Dense, Flatten, MaxPool2D  # noqa: E402
from refnets.losses import softmax_cross_entropy  # noqa: E402
from refnets.models import convnet  # noqa: E402

pytestmark = pytest.mark.torch

TOL = 1e-10


def _t(a):
    """float64 leaf tensor that records its gradient."""
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


def _assert_close(ours, theirs, what):
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else theirs
    assert ours.shape == theirs.shape, (what, ours.shape, theirs.shape)
    err = rel_error(ours, theirs)
    assert err < TOL, f"{what}: relative error {err:.2e} vs torch"


def _compare(layer, x, torch_fn, rng, params=None, names=()):
    """Run refnets and torch forward and backward with the same random dy.

    ``torch_fn(x_t, *param_tensors)`` mirrors ``layer.forward``; ``names`` lists
    the parameter keys in the order torch_fn takes them.
    """
    params = layer.params if params is None else params
    y, cache = layer.forward(x, params)
    dy = rng.standard_normal(y.shape)
    dx, grads = layer.backward(dy, cache)
    xt = _t(x)
    pt = [_t(params[name]) for name in names]
    yt = torch_fn(xt, *pt)
    yt.backward(torch.from_numpy(dy))
    _assert_close(y, yt, "forward")
    _assert_close(dx, xt.grad, "dx")
    for name, p in zip(names, pt):
        _assert_close(grads[name], p.grad, f"d{name}")


@pytest.mark.parametrize("x_shape,n_out", [((5, 7), 3), ((1, 4), 6), ((3, 2, 5), 4)])
def test_dense(rng, x_shape, n_out):
    layer = Dense(x_shape[-1], n_out, rng)
    layer.params["b"] = rng.standard_normal(n_out)
    _compare(layer, rng.standard_normal(x_shape), F.linear, rng, names=("W", "b"))


@pytest.mark.parametrize("x_shape,c_out,k,stride,padding", [
    ((2, 3, 7, 6), 4, 3, 1, 0),
    ((2, 3, 7, 6), 4, 3, 2, 1),
    ((1, 2, 8, 9), 3, (3, 2), (2, 1), (2, 1)),
    ((3, 2, 5, 5), 2, 1, 2, 0),
    ((2, 3, 6, 7), 4, 5, 1, "same"),
])
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d(rng, x_shape, c_out, k, stride, padding, bias):
    layer = Conv2D(x_shape[1], c_out, k, stride=stride, padding=padding, rng=rng, bias=bias)
    names = ("W", "b") if bias else ("W",)
    if bias:
        layer.params["b"] = rng.standard_normal(c_out)

    def torch_conv(xt, W, b=None):
        return F.conv2d(xt, W, b, stride=stride, padding=padding)

    _compare(layer, rng.standard_normal(x_shape), torch_conv, rng, names=names)


@pytest.mark.parametrize("x_shape,size,stride", [
    ((2, 3, 6, 6), 2, None),
    ((2, 3, 7, 5), 2, None),
    ((1, 2, 7, 8), 3, 2),
    ((2, 2, 6, 7), (2, 3), (1, 2)),
    ((2, 1, 5, 5), 2, 1),
])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pooling(rng, x_shape, size, stride, kind):
    x = rng.permutation(int(np.prod(x_shape))).reshape(x_shape) / 7.0   # no ties
    if kind == "max":
        layer, fn = MaxPool2D(size, stride), F.max_pool2d
    else:
        layer, fn = AvgPool2D(size, stride), F.avg_pool2d
    _compare(layer, x, lambda xt: fn(xt, size, stride), rng)


def test_maxpool_ties_match_torch(rng):
    """With ties (ReLU zeros, repeated values) the gradient goes where torch sends it."""
    x = np.maximum(rng.integers(-2, 3, (2, 3, 6, 6)).astype(float), 0.0)
    _compare(MaxPool2D(2), x, lambda xt: F.max_pool2d(xt, 2), rng)
    _compare(MaxPool2D(3, 1), x, lambda xt: F.max_pool2d(xt, 3, 1), rng)


def test_flatten(rng):
    _compare(Flatten(), rng.standard_normal((2, 3, 4, 5)), lambda xt: torch.flatten(xt, 1), rng)


@pytest.mark.parametrize("T", [1, 7])
def test_rnn(rng, T):
    """torch.nn.RNN (tanh) with bias_ih = b and bias_hh = 0, and a given h0."""
    N, D, H = 3, 4, 5
    layer = RNN(D, H, rng)
    layer.params["b"] = rng.standard_normal(H)
    x, h0 = rng.standard_normal((T, N, D)), rng.standard_normal((N, H))
    hs, cache = layer.forward(x, h0=h0)
    dhs = rng.standard_normal(hs.shape)
    dx, grads, dh0 = layer.backward_full(dhs, cache)

    net = torch.nn.RNN(D, H, nonlinearity="tanh").double()
    with torch.no_grad():
        net.weight_ih_l0.copy_(torch.from_numpy(layer.params["W_x"]))
        net.weight_hh_l0.copy_(torch.from_numpy(layer.params["W_h"]))
        net.bias_ih_l0.copy_(torch.from_numpy(layer.params["b"]))
        net.bias_hh_l0.zero_()
    xt, h0t = _t(x), _t(h0[None])
    hst, _ = net(xt, h0t)
    hst.backward(torch.from_numpy(dhs))
    _assert_close(hs, hst, "forward")
    _assert_close(dx, xt.grad, "dx")
    _assert_close(dh0, h0t.grad[0], "dh0")
    _assert_close(grads["W_x"], net.weight_ih_l0.grad, "dW_x")
    _assert_close(grads["W_h"], net.weight_hh_l0.grad, "dW_h")
    _assert_close(grads["b"], net.bias_ih_l0.grad, "db")
    _assert_close(grads["b"], net.bias_hh_l0.grad, "db (torch's b_hh)")


@pytest.mark.parametrize("targets", ["labels", "probabilities"])
def test_softmax_cross_entropy(rng, targets):
    logits = 3.0 * rng.standard_normal((6, 5))
    if targets == "labels":
        y = rng.integers(0, 5, 6)
        yt = torch.from_numpy(y)
    else:
        y = rng.dirichlet(np.ones(5), 6)
        yt = torch.from_numpy(y)
    loss, dlogits = softmax_cross_entropy(logits, y)
    lt = _t(logits)
    tloss = F.cross_entropy(lt, yt)
    tloss.backward()
    assert abs(loss - tloss.item()) < TOL * abs(loss)
    _assert_close(dlogits, lt.grad, "dlogits")


def test_convnet_training_gradients(rng):
    """The convnet builder's whole backprop gradient equals torch's on the same weights."""
    model = convnet((1, 12, 12), [3, 4], 3, 5, rng)
    for layer in model.layers:
        if "b" in layer.params:
            layer.params["b"][...] = 0.1 * rng.standard_normal(layer.params["b"].shape)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(36, 5)).double()
    mapping = {0: net[0], 3: net[3], 7: net[7]}
    with torch.no_grad():
        for k, module in mapping.items():
            module.weight.copy_(torch.from_numpy(model.layers[k].params["W"]))
            module.bias.copy_(torch.from_numpy(model.layers[k].params["b"]))
    x, y = rng.standard_normal((4, 1, 12, 12)), rng.integers(0, 5, 4)
    out, caches = model.forward(x)
    loss, dout = softmax_cross_entropy(out, y)
    _, grads = model.backward(dout, caches, input_grad=False)
    tloss = F.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y))
    tloss.backward()
    assert abs(loss - tloss.item()) < TOL * abs(loss)
    for k, module in mapping.items():
        _assert_close(grads[k]["W"], module.weight.grad, f"layer {k} dW")
        _assert_close(grads[k]["b"], module.bias.grad, f"layer {k} db")


def test_interop_state_dict_both_ways_with_torch(rng):
    """refnets.interop: a torch net's state_dict (conv, affine batch norm with running
    statistics, linear) loads into refnets with the same outputs, and back."""
    from refnets import interop
    from refnets.layers import BatchNorm, ReLU
    from refnets.models import Sequential

    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.BatchNorm2d(3),
                              torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(48, 4)).double()
    with torch.no_grad():
        net[1].weight.uniform_(0.5, 1.5)
        net[1].bias.uniform_(-0.5, 0.5)
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 1.5)
    model = Sequential([Conv2D(2, 3, 3, padding=1, rng=rng), BatchNorm(3, affine=True), ReLU(),
                        Flatten(), Dense(48, 4, rng)])
    stats = interop.load_state_dict(model, net.state_dict())   # tensors, num_batches_tracked
    x = rng.standard_normal((5, 2, 4, 4))
    net.eval()                                                  # running statistics
    h = x
    for k, layer in enumerate(model.layers):
        h = (layer.forward(h, running_stats=stats[k])[0] if k in stats else layer.forward(h)[0])
    _assert_close(h, net(torch.from_numpy(x)), "eval-mode output")
    net.train()
    _assert_close(model.forward(x)[0], net(torch.from_numpy(x)), "train-mode output")
    other = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.BatchNorm2d(3),
                                torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(48, 4)).double()
    # strict load: torch fills in the num_batches_tracked that refnets does not write
    other.load_state_dict({k: torch.from_numpy(v)
                           for k, v in interop.to_state_dict(model, stats).items()})
    other.eval()       # (net's own statistics moved in its train-mode pass above)
    _assert_close(h, other(torch.from_numpy(x)), "round trip, eval mode")


def test_interop_rnn_biases_with_torch(rng):
    """torch.nn.RNN's two biases load as their sum, and refnets' b goes back as (b, 0)."""
    from refnets import interop
    from refnets.layers import LastStep
    from refnets.models import Sequential

    net = torch.nn.RNN(3, 4, nonlinearity="tanh").double()
    model = Sequential([RNN(3, 4, rng)])
    interop.load_state_dict(model, {f"0.{k}": v for k, v in net.state_dict().items()})
    x = rng.standard_normal((6, 2, 3))
    _assert_close(model.forward(x)[0], net(torch.from_numpy(x))[0], "RNN output")
    back = torch.nn.RNN(3, 4, nonlinearity="tanh").double()
    back.load_state_dict({k[2:]: torch.from_numpy(v) for k, v in interop.to_state_dict(model).items()})
    _assert_close(model.forward(x)[0], back(torch.from_numpy(x))[0], "RNN round trip")
    assert not np.any(back.bias_hh_l0.detach().numpy())
    assert LastStep  # the read-out layer is parameter-free: nothing to convert
