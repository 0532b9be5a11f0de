"""LeeRMSprop: Lee et al.'s ``util.rms_prop`` (centered, momentum, stabiliser inside the root)."""

import numpy as np
import pytest

from refnets.optim import LeeRMSprop, get_optimizer


def test_two_hand_worked_steps():
    """g = 0.1 twice, lr = 0.01, defaults (momentum 0.9, decay 0.95, c = 1e-3).

    step 1: m = 0.005, v = 0.0005, v - m^2 = 0.000475, root = sqrt(0.001475)
            inc = -0.01 * 0.1 / sqrt(0.001475)
    step 2: m = 0.00975, v = 0.000975, v - m^2 = 0.0008799375
            inc = 0.9 inc - 0.01 * 0.1 / sqrt(0.0018799375)
    """
    p = np.array([1.0])
    opt = LeeRMSprop(lr=0.01)
    opt.update({"p": p}, {"p": np.array([0.1])})
    inc1 = -0.001 / np.sqrt(0.001475)
    assert p[0] == pytest.approx(1.0 + inc1, abs=1e-15)
    opt.update({"p": p}, {"p": np.array([0.1])})
    inc2 = 0.9 * inc1 - 0.001 / np.sqrt(0.0018799375)
    assert p[0] == pytest.approx(1.0 + inc1 + inc2, abs=1e-15)


def test_tiny_gradients_make_it_momentum_sgd_with_lr_over_sqrt_c():
    """|g| << sqrt(1e-3): the step is lr/sqrt(c) g accumulated with momentum 0.9."""
    rng = np.random.default_rng(0)
    p, q = np.zeros(5), np.zeros(5)
    opt = LeeRMSprop(lr=0.01)
    vel = np.zeros(5)
    for _ in range(20):
        g = 1e-6 * rng.standard_normal(5)
        opt.update({"p": p}, {"p": g})
        vel = 0.9 * vel - 0.01 / np.sqrt(1e-3) * g
        q += vel
    np.testing.assert_allclose(p, q, rtol=1e-6)


def test_registry_name_and_validation():
    assert isinstance(get_optimizer("lee_rmsprop", lr=0.1), LeeRMSprop)
    with pytest.raises(ValueError, match="momentum"):
        LeeRMSprop(lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="stabilizer"):
        LeeRMSprop(lr=0.1, stabilizer=0.0)
    with pytest.raises(ValueError, match="lr"):
        LeeRMSprop(lr=-1.0)
