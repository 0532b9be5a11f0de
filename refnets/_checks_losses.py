"""Self-checks of the losses' derivatives, registered for ``refnets gradcheck``.

Every loss in :mod:`refnets.losses` that returns a derivative is checked by
:func:`refnets.gradcheck.check_loss` (its ``dpred`` against centred
differences of its value), in each form it accepts.
"""

from __future__ import annotations

from .gradcheck import check_loss
from .losses import masked_softmax_cross_entropy, mse, softmax, softmax_cross_entropy
from .selfcheck import register_check


@register_check("softmax_cross_entropy, integer labels (N=4, C=5)", group="losses")
def _ce_labels(rng):
    return check_loss(softmax_cross_entropy, 2 * rng.standard_normal((4, 5)), rng.integers(0, 5, 4))


@register_check("softmax_cross_entropy, probability targets (N=3, C=4)", group="losses")
def _ce_probs(rng):
    return check_loss(softmax_cross_entropy, rng.standard_normal((3, 4)),
                      softmax(rng.standard_normal((3, 4))))


@register_check("softmax_cross_entropy, per time step (T=3, N=2, C=4)", group="losses")
def _ce_time(rng):
    return check_loss(softmax_cross_entropy, rng.standard_normal((3, 2, 4)),
                      rng.integers(0, 4, (3, 2)))


@register_check("masked_softmax_cross_entropy, labels -1 ignored (T=4, N=2, C=3)", group="losses")
def _masked_ce(rng):
    y = rng.integers(0, 3, (4, 2))
    y[:2] = -1                                  # no label before the delay
    return check_loss(masked_softmax_cross_entropy, rng.standard_normal((4, 2, 3)), y)


@register_check("mse, reduction 'batch' (N=3, 2x4)", group="losses")
def _mse_batch(rng):
    return check_loss(mse, rng.standard_normal((3, 2, 4)), rng.standard_normal((3, 2, 4)))


@register_check("mse, reduction 'elements' (N=5, 3)", group="losses")
def _mse_elements(rng):
    return check_loss(mse, rng.standard_normal((5, 3)), rng.standard_normal((5, 3)),
                      reduction="elements")


