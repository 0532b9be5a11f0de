"""Self-checks of the recurrent layers, registered for ``refnets gradcheck``.

Each returns the worst relative error of BPTT against centred differences
(element-wise VJPs with a random upstream gradient).
"""

from __future__ import annotations

from ..gradcheck import check_layer, numerical_vjp, rel_error
from ..selfcheck import register_check
from .recurrent import RNN, LastStep


@register_check("RNN BPTT (T=5, N=3, 4 -> 6): dx, dW_x, dW_h, db")
def _rnn(rng):
    layer = RNN(4, 6, rng)
    layer.params["b"] = 0.1 * rng.standard_normal(6)
    return max(check_layer(layer, rng.standard_normal((5, 3, 4)), rng).values())


@register_check("RNN BPTT (T=5, N=3, 4 -> 6): dh0")
def _rnn_h0(rng):
    layer = RNN(4, 6, rng)
    x, h0 = rng.standard_normal((5, 3, 4)), rng.standard_normal((3, 6))
    hs, cache = layer.forward(x, h0=h0)
    dhs = rng.standard_normal(hs.shape)
    _, _, dh0 = layer.backward_full(dhs, cache)
    return rel_error(dh0, numerical_vjp(lambda v: layer.forward(x, h0=v)[0], h0, dhs))


@register_check("LastStep (T=4, N=3, 5)")
def _last_step(rng):
    return max(check_layer(LastStep(), rng.standard_normal((4, 3, 5)), rng).values())
