"""Optimisers: hand-computed steps, in-place semantics, errors, optional torch cross-check."""

import numpy as np
import pytest

from refnets.models import mlp
from refnets.optim import SGD, Adam, LeeRMSprop, Momentum, RMSprop, get_optimizer


def _run(opt, p0, grads):
    """Apply successive gradients to a 1-element parameter; return the trajectory."""
    params = {"w": np.array([p0])}
    out = []
    for g in grads:
        assert opt.update(params, {"w": np.array([g])}) is None
        out.append(params["w"][0])
    return out


def test_sgd_by_hand():
    params = {"a": np.array([1.0, -2.0]), "b": np.array([[3.0]])}
    opt = SGD(lr=0.1)
    opt.update(params, {"a": np.array([0.5, 1.0]), "b": np.array([[-2.0]])})
    np.testing.assert_allclose(params["a"], [0.95, -2.1], rtol=1e-15)
    np.testing.assert_allclose(params["b"], [[3.2]], rtol=1e-15)
    opt.update(params, {"a": np.array([-1.0, 0.0]), "b": np.array([[0.0]])})
    np.testing.assert_allclose(params["a"], [1.05, -2.1], rtol=1e-15)


def test_sgd_weight_decay_by_hand():
    # g_eff = g + 0.5 * p = 1 + 0.5 * 2 = 2; p = 2 - 0.1 * 2 = 1.8
    assert _run(SGD(lr=0.1, weight_decay=0.5), 2.0, [1.0]) == pytest.approx([1.8], rel=1e-15)


def test_momentum_by_hand():
    """mu = 0.9, lr = 0.1, p0 = 1, g = 1, 2, -1.
    v1 = 1            p1 = 1 - 0.1*1 = 0.9
    v2 = 0.9 + 2 = 2.9      p2 = 0.9 - 0.29 = 0.61
    v3 = 2.61 - 1 = 1.61    p3 = 0.61 - 0.161 = 0.449"""
    traj = _run(Momentum(lr=0.1, momentum=0.9), 1.0, [1.0, 2.0, -1.0])
    assert traj == pytest.approx([0.9, 0.61, 0.449], rel=1e-14)


def test_nesterov_by_hand():
    """Same gradients, step = lr (g + mu v):
    step1 = 0.1 (1 + 0.9*1) = 0.19       p1 = 0.81
    step2 = 0.1 (2 + 0.9*2.9) = 0.461    p2 = 0.349
    step3 = 0.1 (-1 + 0.9*1.61) = 0.0449  p3 = 0.3041"""
    traj = _run(Momentum(lr=0.1, momentum=0.9, nesterov=True), 1.0, [1.0, 2.0, -1.0])
    assert traj == pytest.approx([0.81, 0.349, 0.3041], rel=1e-14)


def test_rmsprop_by_hand():
    """alpha = 0.9, lr = 0.01, eps = 1e-8, p0 = 1, g = 2, -1.
    s1 = 0.1*4 = 0.4              p1 = 1 - 0.01*2 / (sqrt(0.4) + eps)   = 0.96837722...
    s2 = 0.36 + 0.1*1 = 0.46      p2 = p1 + 0.01 / (sqrt(0.46) + eps)   = 0.98312142..."""
    traj = _run(RMSprop(lr=0.01, alpha=0.9, eps=1e-8), 1.0, [2.0, -1.0])
    p1 = 1 - 0.02 / (np.sqrt(0.4) + 1e-8)
    p2 = p1 + 0.01 / (np.sqrt(0.46) + 1e-8)
    assert traj == pytest.approx([p1, p2], rel=1e-14)
    assert traj == pytest.approx([0.96837722, 0.98312142], abs=1e-8)


def test_rmsprop_centered_by_hand():
    """Centered: m <- alpha m + (1 - alpha) g, denominator sqrt(s - m^2) + eps.
    m1 = 0.2,  s1 - m1^2 = 0.4 - 0.04 = 0.36        p1 = 1 - 0.02 / (0.6 + eps)
    m2 = 0.18 - 0.1 = 0.08,  s2 - m2^2 = 0.46 - 0.0064 = 0.4536
                                                     p2 = p1 + 0.01 / (sqrt(0.4536) + eps)
                                                       = p1 + 0.01484785"""
    traj = _run(RMSprop(lr=0.01, alpha=0.9, eps=1e-8, centered=True), 1.0, [2.0, -1.0])
    p1 = 1 - 0.02 / (0.6 + 1e-8)
    p2 = p1 + 0.01 / (np.sqrt(0.4536) + 1e-8)
    assert traj == pytest.approx([p1, p2], rel=1e-14)
    assert traj == pytest.approx([0.96666667, 0.96666667 + 0.01484785], abs=1e-8)


def test_adam_by_hand_with_bias_correction():
    """lr = 0.1, b1 = 0.9, b2 = 0.999, eps = 1e-8, p0 = 1, g = 2, -1.
    t=1: m = 0.2, v = 0.004; m_hat = 0.2/0.1 = 2, v_hat = 0.004/0.001 = 4
         step = 0.1 * 2 / (2 + eps) ~ 0.1 (without bias correction it would be
         0.1 * 0.2 / sqrt(0.004) = 0.316)
    t=2: m = 0.18 - 0.1 = 0.08, v = 0.003996 + 0.001 = 0.004996
         m_hat = 0.08 / 0.19, v_hat = 0.004996 / 0.001999
         step = 0.1 * 0.4210526 / 1.5809015 = 0.0266337 (m_hat > 0: p still decreases)"""
    traj = _run(Adam(lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8), 1.0, [2.0, -1.0])
    p1 = 1 - 0.1 * 2 / (2 + 1e-8)
    p2 = p1 - 0.1 * (0.08 / 0.19) / (np.sqrt(0.004996 / 0.001999) + 1e-8)
    assert traj == pytest.approx([p1, p2], rel=1e-13)
    assert traj == pytest.approx([0.9, 0.9 - 0.02663370], abs=1e-8)


def test_adam_bias_correction_is_per_key():
    """A key first seen at step 2 gets the t = 1 correction (its own step count)."""
    opt = Adam(lr=0.1)
    params = {"a": np.array([0.0])}
    opt.update(params, {"a": np.array([1.0])})
    params["b"] = np.array([0.0])
    opt.update(params, {"a": np.array([1.0]), "b": np.array([3.0])})
    assert params["b"][0] == pytest.approx(-0.1 * 3 / (3 + 1e-8), rel=1e-14)


@pytest.mark.parametrize("opt", [SGD(0.1), Momentum(0.1, nesterov=True), RMSprop(0.1, centered=True),
                                 Adam(0.1)])
def test_updates_in_place_the_models_arrays(rng, opt):
    model = mlp([3, 4, 2], "tanh", rng)
    params = model.params()
    ids = {k: id(v) for k, v in params.items()}
    before = model.copy_params()
    grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
    assert opt.update(params, grads) is None
    for k, v in model.params().items():
        assert id(v) == ids[k]                        # same array objects ...
        assert not np.array_equal(v, before[k])       # ... whose values moved
        assert np.all(np.sign(before[k] - v) == np.sign(grads[k]))  # downhill, sign-wise
    assert model.layers[0].params["W"] is params["0.W"]


def test_key_and_shape_mismatch_leave_params_untouched():
    params = {"a": np.zeros(2), "b": np.zeros(3)}
    for opt in (SGD(0.1), Momentum(0.1), RMSprop(0.1), Adam(0.1)):
        with pytest.raises(ValueError, match=r"grads keys \['a'\] must equal params keys \['a', 'b'\]"):
            opt.update(params, {"a": np.ones(2)})
        with pytest.raises(ValueError, match=r"grads\['b'\] must have shape \(3,\), got \(2,\)"):
            opt.update(params, {"a": np.ones(2), "b": np.ones(2)})
        assert not params["a"].any() and not params["b"].any()
        assert opt.t == 0 and opt.state == {}


def test_params_must_be_writeable_arrays():
    ro = np.zeros(2)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"params\['w'\] must be a writeable ndarray"):
        SGD(0.1).update({"w": ro}, {"w": np.ones(2)})
    with pytest.raises(ValueError, match=r"params\['w'\] must be a writeable ndarray"):
        SGD(0.1).update({"w": [0.0, 0.0]}, {"w": np.ones(2)})


@pytest.mark.parametrize("make,match", [
    (lambda: SGD(lr=0), "SGD: lr must be > 0, got 0"),
    (lambda: SGD(lr=np.nan), "SGD: lr must be finite, got nan"),
    (lambda: Adam(lr="1e-3"), r"Adam: lr must be a real number, got '1e-3' \(str\)"),
    (lambda: Adam(lr=None), r"Adam: lr must be a real number, got None"),
    (lambda: Momentum(0.1, momentum="0.9"), r"Momentum: momentum must be a real number, got '0.9'"),
    (lambda: Momentum(0.1, nesterov="yes"), "Momentum: nesterov must be True or False, got 'yes'"),
    (lambda: RMSprop(0.1, centered=1), "RMSprop: centered must be True or False, got 1"),
    (lambda: LeeRMSprop(0.1, stabilizer="1e-3"), "LeeRMSprop: stabilizer must be a real number"),
    (lambda: LeeRMSprop(0.1, averaging_coeff=1), r"LeeRMSprop: averaging_coeff must be >= 0 and < 1"),
    (lambda: Adam(0.1, weight_decay=True), "Adam: weight_decay must be a real number, got True"),
    (lambda: SGD(lr=0.1, weight_decay=-1), "weight_decay must be >= 0, got -1"),
    (lambda: Momentum(0.1, momentum=1.0), r"momentum must be >= 0 and < 1, got 1.0"),
    (lambda: RMSprop(0.1, alpha=1.0), r"alpha must be >= 0 and < 1"),
    (lambda: RMSprop(0.1, eps=0.0), "eps must be > 0"),
    (lambda: Adam(0.1, beta1=1.0), r"beta1 must be >= 0 and < 1"),
    (lambda: Adam(0.1, beta2=-0.1), r"beta2 must be >= 0 and < 1"),
    (lambda: Adam(0.1, eps=-1.0), "eps must be > 0"),
    (lambda: get_optimizer("adamw", lr=0.1), r"optimizer must be one of \[.*'adam'.*\], got 'adamw'"),
])
def test_bad_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_get_optimizer():
    opt = get_optimizer("momentum", lr=0.2, nesterov=True)
    assert isinstance(opt, Momentum) and opt.lr == 0.2 and opt.nesterov


@pytest.mark.torch
@pytest.mark.parametrize("name,kwargs,torch_kwargs", [
    ("sgd", {"lr": 0.1, "weight_decay": 0.01}, {"lr": 0.1, "weight_decay": 0.01}),
    ("momentum", {"lr": 0.1, "momentum": 0.8}, {"lr": 0.1, "momentum": 0.8}),
    ("momentum", {"lr": 0.1, "momentum": 0.8, "nesterov": True},
     {"lr": 0.1, "momentum": 0.8, "nesterov": True}),
    ("rmsprop", {"lr": 0.01, "alpha": 0.9, "centered": True},
     {"lr": 0.01, "alpha": 0.9, "centered": True}),
    ("adam", {"lr": 0.01, "beta1": 0.8, "beta2": 0.95}, {"lr": 0.01, "betas": (0.8, 0.95)}),
])
def test_matches_torch(rng, name, kwargs, torch_kwargs):
    torch = pytest.importorskip("torch")
    cls = {"sgd": torch.optim.SGD, "momentum": torch.optim.SGD, "rmsprop": torch.optim.RMSprop,
           "adam": torch.optim.Adam}[name]
    p0 = rng.standard_normal((3, 4))
    params = {"w": p0.copy()}
    tp = torch.nn.Parameter(torch.tensor(p0))
    ours, theirs = get_optimizer(name, **kwargs), cls([tp], **torch_kwargs)
    for _ in range(5):
        g = rng.standard_normal((3, 4))
        ours.update(params, {"w": g})
        tp.grad = torch.tensor(g)
        theirs.step()
    np.testing.assert_allclose(params["w"], tp.detach().numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("make", [lambda: SGD(0.1, weight_decay=0.01), lambda: Momentum(0.1, 0.8, True),
                                  lambda: RMSprop(0.01, centered=True), lambda: Adam(0.01, 0.8),
                                  lambda: LeeRMSprop(0.01)])
def test_state_dict_round_trip_continues_bit_for_bit(make):
    rng = np.random.default_rng(3)
    grads = [{"w": rng.standard_normal((2, 3)), "b": rng.standard_normal(3)} for _ in range(4)]
    a, pa = make(), {"w": np.ones((2, 3)), "b": np.zeros(3)}
    for g in grads[:2]:
        a.update(pa, g)
    b = type(a)(**a.hyperparameters())
    b.load_state_dict(a.state_dict())
    pb = {k: v.copy() for k, v in pa.items()}
    for g in grads[2:]:
        a.update(pa, g)
        b.update(pb, g)
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k])
    with pytest.raises(ValueError, match=r"load_state_dict: state must be a dict with keys 't' "
                                         r"and 'state'"):
        b.load_state_dict({"t": 1})
