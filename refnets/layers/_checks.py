"""Self-checks of the core layers, registered for ``refnets gradcheck``.

Each check runs :func:`refnets.gradcheck.check_layer` on a small random
input (inputs kept away from kinks) and returns the worst relative error over
dx and every parameter gradient.
"""

from __future__ import annotations

from ..gradcheck import check_layer
from ..selfcheck import register_check
from . import activations as act
from .dense import Dense


def _worst(errors):
    return max(errors.values())


@register_check("Dense (N=3, 5 -> 4)")
def _dense(rng):
    return _worst(check_layer(Dense(5, 4, rng), rng.standard_normal((3, 5)), rng))


def _away_from_zero(rng, shape):
    """Inputs with |x| >= 0.1 so finite differences never straddle a kink."""
    x = rng.standard_normal(shape)
    return x + 0.1 * (2 * (x >= 0) - 1)


for _cls in (act.Tanh, act.ReLU, act.LeakyReLU, act.Sigmoid, act.Softplus, act.Identity):
    def _make(cls):
        @register_check(f"{cls.__name__} (N=4, 6)")
        def _check(rng):
            return _worst(check_layer(cls(), _away_from_zero(rng, (4, 6)), rng))
        _check.__qualname__ = f"_check_{cls.__name__}"
        return _check
    _make(_cls)
