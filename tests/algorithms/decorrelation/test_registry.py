"""Every rule of the family is registered for ``refnets compare`` with its documented defaults."""

import numpy as np
import pytest

from refnets.algorithms import available_methods, get_method
from refnets.algorithms.decorrelation import (DecorrelatedBackprop, DirectFeedbackAlignment,
                                              FAStraightThrough, FeedbackAlignment,
                                              NodePerturbation, WeightPerturbation, rules)

# name -> (class, decorrelation rate or None, Adam rate): the values the docstrings measured
EXPECTED = {
    "decor-bp": (DecorrelatedBackprop, 1e-3, 1e-3),
    "fa": (FeedbackAlignment, None, 1e-3),
    "decor-fa": (FeedbackAlignment, 1e-4, 1e-3),
    "fa-st": (FAStraightThrough, None, 1e-3),
    "decor-fa-st": (FAStraightThrough, 1e-4, 1e-3),
    "dfa": (DirectFeedbackAlignment, None, 1e-3),
    "decor-dfa": (DirectFeedbackAlignment, 1e-4, 1e-3),
    "np": (NodePerturbation, None, 3e-4),
    "decor-np": (NodePerturbation, 1e-4, 3e-4),
    "wp": (WeightPerturbation, None, 3e-3),
    "decor-wp": (WeightPerturbation, 1e-4, 3e-3),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_registered_with_its_defaults_and_trains(name):
    assert name in available_methods()
    cls, decor_lr, lr = EXPECTED[name]
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((12, 4)), np.arange(12) % 2
    setup = get_method(name).build([4, 5, 2], "tanh", rng, x, y)
    assert type(setup.algorithm) is cls
    assert (setup.algorithm.decor is None) == (decor_lr is None)
    if decor_lr is not None:
        assert setup.algorithm.decor.lr == decor_lr and setup.algorithm.decor.mode == "scaled"
    assert setup.optimizer.lr == lr and setup.optimizer.beta2 == 0.9999
    state = setup.algorithm.init_state(setup.model, rng)
    res = setup.algorithm.step(setup.model, state, x, y, rng)
    setup.optimizer.update(setup.algorithm.variables(setup.model, state), res.grads)
    assert np.isfinite(res.loss)


def test_suggest_decor_lr_default_target():
    """The default target 0.002 = eta * lambda_max(C_h) (measured best for the FA family)."""
    rng = np.random.default_rng(0)
    h = rng.standard_normal((400, 5)) * np.array([3.0, 1.0, 1.0, 0.5, 0.1])
    lam = np.linalg.eigvalsh(np.cov(h.T, bias=True)).max()
    assert rules.suggest_decor_lr(h) == pytest.approx(0.002 / lam, rel=1e-6)
