"""Self-checks of Target Space run by ``refnets gradcheck`` (group ``target-space``).

:func:`pipeline_gradient_error` compares :meth:`TargetSpace.step`'s dL/dT_k
(TS-6 to TS-11b of this package's README) with centred differences of the
loss as a function of the targets, through every solve.
"""

from __future__ import annotations

from .algorithm import TargetSpace
from .dense import shortcut_mlp

__all__ = ["pipeline_gradient_error"]


def pipeline_gradient_error(model, algo, x, y, rng):
    """Largest relative error between :meth:`TargetSpace.step`'s dL/dT_k and centred
    differences of L(T) = minibatch loss with the weights realised from T.

    Parameters
    ----------
    model : refnets model
    algo : TargetSpace
    x, y : a minibatch
    rng : numpy.random.Generator (initialises the targets)
    """
    from ...gradcheck import numerical_gradient, rel_error

    state = algo.init_state(model, rng)
    res = algo.step(model, state, x, y, rng)

    def loss_of_targets(_):                      # reads state["targets"], perturbed in place
        params, _ = algo.realise(model, state)
        return algo.loss(model.forward(x, params)[0], y)[0]

    return max(rel_error(res.grads[key], numerical_gradient(loss_of_targets, T))
               for key, T in state["targets"].items())


def _register_checks():
    from ...models import convnet, mlp, rnn_classifier
    from ...selfcheck import register_check

    @register_check("target-space/dense dL/dT (SCU, shortcuts)", group="target_space")
    def _dense_scu(rng):
        xs, x, y = rng.standard_normal((8, 3)), rng.standard_normal((6, 3)), rng.integers(0, 2, 6)
        algo = TargetSpace(xs, pseudoinverse_l2_regularisation=0.1, diagnostics=False)
        return pipeline_gradient_error(shortcut_mlp([3, 4, 3, 2], "tanh", rng), algo, x, y, rng)

    @register_check("target-space/dense dL/dT (OCU)", group="target_space")
    def _dense_ocu(rng):
        xs, x, y = rng.standard_normal((8, 3)), rng.standard_normal((6, 3)), rng.integers(0, 2, 6)
        algo = TargetSpace(xs, pseudoinverse_l2_regularisation=0.1, realisation="ocu",
                           diagnostics=False)
        return pipeline_gradient_error(mlp([3, 4, 3, 2], "tanh", rng), algo, x, y, rng)

    @register_check("target-space/conv dL/dT (SCU, im2col/col2im)", group="target_space")
    def _conv(rng):
        xs, x = rng.standard_normal((3, 1, 4, 4)), rng.standard_normal((2, 1, 4, 4))
        y = rng.integers(0, 3, 2)
        model = convnet((1, 4, 4), [2], 3, 3, rng, activation="tanh", pool=None)
        algo = TargetSpace(xs, pseudoinverse_l2_regularisation=0.1, target_init_std=1.0,
                           projection=None, diagnostics=False)
        return pipeline_gradient_error(model, algo, x, y, rng)

    @register_check("target-space/RNN dL/dT (OCU in time, hybrid read-out)", group="target_space")
    def _rnn(rng):
        xs, x = rng.standard_normal((5, 3, 2)), rng.standard_normal((5, 2, 2))
        y = rng.integers(0, 2, (5, 2))
        algo = TargetSpace(xs, pseudoinverse_l2_regularisation=0.1, diagnostics=False)
        return pipeline_gradient_error(rnn_classifier(2, 3, 2, rng, readout="all"), algo, x, y,
                                       rng)


_register_checks()
