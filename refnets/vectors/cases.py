"""The small cases ``refnets vectors export`` writes, per registered method.

Each :class:`Case` fixes a model, three minibatches, the algorithm (class and
keywords), the loss and the optimiser; the export draws the values with a seed,
the file then holds every one of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..layers.pooling import Flatten
from ..layers.recurrent import LastStep
from ..models import Sequential
from .config import model_config

__all__ = ["STEPS", "Case", "CASES", "exportable_methods"]

#: consecutive steps per case (one step hides bugs in optimiser moments and inverse training)
STEPS = 3


@dataclass
class Case:
    """One small, fully specified run of a method.

    ``model(rng)`` builds the network, ``data(rng)`` the three minibatches
    ``[(x, y), ...]``; ``algorithm`` is ``"module:Class"`` under
    ``refnets.algorithms`` with ``kwargs``; ``loss`` a name in refnets.losses;
    ``optimizer`` the keywords of :func:`refnets.optim.get_optimizer`.
    """

    model: Callable
    data: Callable
    algorithm: str
    kwargs: dict = field(default_factory=dict)
    loss: str = "softmax_cross_entropy"
    optimizer: dict = field(default_factory=lambda: {"name": "sgd", "lr": 0.1})
    tol: dict = field(default_factory=dict)   # key suffix -> tolerance, where TOL is too tight
    #: ``arrays(rng) -> {name: array}``: array keywords of the algorithm, stored as
    #: ``algo/{name}`` (role input) and written in ``kwargs`` as ``{"array": name}``
    arrays: Callable = None

    def config(self, model):
        return {"model": model_config(model),
                "algorithm": {"class": self.algorithm, "kwargs": self.kwargs},
                "loss": self.loss, "optimizer": self.optimizer, "steps": STEPS}


def _dense_model(rng, sizes=(4, 5, 3), act="tanh"):
    from ..models import mlp
    model = mlp(list(sizes), act, rng)
    for key, value in model.params().items():      # non-zero biases: a bias bug shows
        if key.endswith(".b"):
            value[...] = 0.1 * rng.standard_normal(value.shape)
    return model


def _dense_data(rng, n_in=4, n_classes=3, n=6):
    return [(rng.standard_normal((n, n_in)), rng.integers(0, n_classes, n)) for _ in range(STEPS)]


def _deep_dense_model(rng):
    """Three Dense layers: DTP's first target sits on the second, so one inverse g is used."""
    return _dense_model(rng, (4, 5, 5, 3))


def _conv_model(rng, hidden=()):
    from ..models import convnet
    model = convnet((1, 6, 6), [2], 3, 3, rng, hidden=hidden)
    for key, value in model.params().items():
        if key.endswith(".b"):
            value[...] = 0.1 * rng.standard_normal(value.shape)
    return model


def _deep_conv_model(rng):
    return _conv_model(rng, hidden=(4,))


def _conv_data(rng, n=4):
    return [(rng.standard_normal((n, 1, 6, 6)), rng.integers(0, 3, n)) for _ in range(STEPS)]


def _rnn_model(rng):
    from ..models import rnn_classifier
    model = rnn_classifier(2, 4, 3, rng)
    model.layers[0].params["b"][...] = 0.1 * rng.standard_normal(4)
    return model


def _rnn_data(rng, n=4, T=5):
    return [(rng.standard_normal((T, n, 2)), rng.integers(0, 3, n)) for _ in range(STEPS)]


def _hsic_model(rng):
    from ..algorithms.hsic import hsic_mlp
    return hsic_mlp([4, 5, 3], rng, activation="relu")


def _ftm_model(rng):
    from ..algorithms.functional_transfer import ftnn
    return ftnn([4, 5, 3], "F03", "tanh", rng)


def _ts_source(rng):
    return {"x_source": rng.standard_normal((8, 4))}


def _ts_conv_source(rng):
    return {"x_source": rng.standard_normal((4, 1, 6, 6))}


def _ts_rnn_source(rng):
    return {"x_source": rng.standard_normal((5, 6, 2))}


def _hsic_conv_model(rng):
    from ..algorithms.hsic import hsic_resconv
    return hsic_resconv((1, 7, 7), rng, channels=2, n_blocks=1, width=3, kernel_size=3)


def _hsic_conv_data(rng, n=6):
    return [(rng.standard_normal((n, 1, 7, 7)), rng.integers(0, 3, n)) for _ in range(STEPS)]


def _ftm_conv_model(rng):
    from ..layers import Tanh
    from ..layers.functional import FunctionalConv2D, FunctionalDense
    return Sequential([FunctionalConv2D(1, 2, 3, "F03", rng, padding=1), Tanh(), Flatten(),
                       FunctionalDense(72, 3, "F03", rng)])


def _ftm_rnn_model(rng):
    from ..layers.functional import FunctionalDense, FunctionalRNN
    return Sequential([FunctionalRNN(2, 4, "F03", rng), LastStep(),
                       FunctionalDense(4, 3, "F03", rng)])


def _decor(lr):
    """Keyword value of a decorrelator (an object, written as class + keywords)."""
    return {"class": "decorrelation:Decorrelation", "kwargs": {"lr": lr}}


#: method name -> {case name: Case}. A method whose package makes every draw
#: injectable and records its trace gets its cases here.
CASES = {
    "backprop": {
        "dense": Case(_dense_model, _dense_data, "backprop:Backprop",
                      optimizer={"name": "adam", "lr": 0.05}),
        "conv": Case(_conv_model, _conv_data, "backprop:Backprop",
                     optimizer={"name": "momentum", "lr": 0.1, "momentum": 0.9}),
        "rnn": Case(_rnn_model, _rnn_data, "backprop:Backprop"),
    },
    "target-space": {
        "dense": Case(_dense_model, _dense_data, "target_space:TargetSpace",
                      {"x_source": {"array": "x_source"}, "realisation_batch_size": 6,
                       "pseudoinverse_l2_regularisation": 0.1},
                      optimizer={"name": "adam", "lr": 0.01}, arrays=_ts_source),
        "conv": Case(_conv_model, _conv_data, "target_space:TargetSpace",
                     {"x_source": {"array": "x_source"}, "realisation_batch_size": 3,
                      "pseudoinverse_l2_regularisation": 0.1}, arrays=_ts_conv_source),
        "rnn": Case(_rnn_model, _rnn_data, "target_space:TargetSpace",
                    {"x_source": {"array": "x_source"}, "realisation_batch_size": 4,
                     "pseudoinverse_l2_regularisation": 0.1}, arrays=_ts_rnn_source),
    },
    "dtp": {
        "dense": Case(_deep_dense_model, _dense_data,
                      "target_propagation:DifferenceTargetPropagation",
                      {"target_step": 0.01, "sigma": 0.2, "feedback_optimizer": "adam",
                       "feedback_lr": 0.003}, optimizer={"name": "adam", "lr": 0.003}),
        "conv": Case(_deep_conv_model, _conv_data,
                     "target_propagation:ConvDifferenceTargetPropagation",
                     {"target_step": 0.01, "sigma": 0.2}),
        "rnn": Case(_rnn_model, _rnn_data, "target_propagation:TargetPropagationThroughTime"),
    },
    "dtp-ldrl": {
        "dense": Case(_deep_dense_model, _dense_data,
                      "target_propagation:LocalDifferenceReconstructionLoss",
                      {"target_step": 0.01, "sigma": 0.2, "feedback_optimizer": "sgd",
                       "feedback_lr": 0.1}, optimizer={"name": "adam", "lr": 0.003}),
    },
    # the rest of the DTP family, on dtp's net (two hidden layers: a learned feedback map)
    "tp": {
        "dense": Case(_deep_dense_model, _dense_data,
                      "target_propagation:DifferenceTargetPropagation",
                      {"target_step": 0.05, "sigma": 0.2, "difference": False,
                       "feedback_optimizer": "sgd", "feedback_lr": 0.05}),
    },
    "drl": {
        "dense": Case(_deep_dense_model, _dense_data,
                      "target_propagation:DifferenceReconstructionLoss",
                      {"target_step": 0.05, "sigma": 0.2, "first_target": "output_grad",
                       "feedback_optimizer": "sgd", "feedback_lr": 0.05,
                       "feedback_iterations": 2}),
    },
    "fw-dtp": {
        "dense": Case(_deep_dense_model, _dense_data, "target_propagation:FixedWeightDTP",
                      {"target_step": 0.05, "first_target": "output_grad"}),
    },
    "ddtp": {
        "dense": Case(_deep_dense_model, _dense_data, "target_propagation:DirectDTP",
                      {"target_step": 0.05, "sigma": 0.2, "feedback_optimizer": "sgd",
                       "feedback_lr": 0.05}),
    },
    "decor-bp": {
        "dense": Case(_dense_model, _dense_data, "decorrelation:DecorrelatedBackprop",
                      {"decorrelate": _decor(0.01)}, optimizer={"name": "adam", "lr": 0.01}),
        "conv": Case(_conv_model, _conv_data, "decorrelation:DecorrelatedBackprop",
                     {"decorrelate": _decor(0.01)}),
    },
    "fa": {
        "dense": Case(_dense_model, _dense_data, "decorrelation:FeedbackAlignment"),
        "conv": Case(_conv_model, _conv_data, "decorrelation:FeedbackAlignment"),
    },
    "decor-fa": {
        "dense": Case(_dense_model, _dense_data, "decorrelation:FeedbackAlignment",
                      {"decorrelate": _decor(0.01)}),
    },
    "decor-np": {
        "dense": Case(_dense_model, _dense_data, "decorrelation:NodePerturbation",
                      {"sigma": 1e-3, "decorrelate": _decor(0.01)}),
    },
    "fa-st": {
        "dense": Case(_dense_model, _dense_data, "decorrelation:FAStraightThrough"),
    },
    "decor-fa-st": {
        "dense": Case(_dense_model, _dense_data, "decorrelation:FAStraightThrough",
                      {"decorrelate": _decor(0.01)}),
    },
    "dfa": {
        "dense": Case(_dense_model, _dense_data, "decorrelation:DirectFeedbackAlignment"),
    },
    "decor-dfa": {
        "dense": Case(_dense_model, _dense_data, "decorrelation:DirectFeedbackAlignment",
                      {"decorrelate": _decor(0.01)}),
    },
    "np": {
        "dense": Case(_dense_model, _dense_data, "decorrelation:NodePerturbation",
                      {"sigma": 1e-3}),
    },
    "wp": {
        "dense": Case(_dense_model, _dense_data, "decorrelation:WeightPerturbation",
                      {"sigma": 1e-3, "n_draws": 2}),
    },
    "decor-wp": {
        "dense": Case(_dense_model, _dense_data, "decorrelation:WeightPerturbation",
                      {"sigma": 1e-3, "decorrelate": _decor(0.01)}),
    },
    "hsic": {
        "dense": Case(_hsic_model, _dense_data, "hsic:HSICBottleneck",
                      {"n_classes": 3, "sigma": 6.0, "beta": 1000.0, "lr": 0.01,
                       "weight_decay": 1e-3}),
        "conv": Case(_hsic_conv_model, _hsic_conv_data, "hsic:HSICBottleneck",
                     {"n_classes": 3, "sigma": 6.0, "beta": 1000.0, "lr": 0.01,
                      "weight_decay": 1e-3}),
    },
    "ftm": {
        "dense": Case(_ftm_model, _dense_data, "functional_transfer:FunctionalTransfer",
                      optimizer={"name": "adam", "lr": 0.01}),
        "conv": Case(_ftm_conv_model, _conv_data, "functional_transfer:FunctionalTransfer"),
        "rnn": Case(_ftm_rnn_model, _rnn_data, "functional_transfer:FunctionalTransfer"),
    },
}


def exportable_methods():
    """Names of the methods ``refnets vectors export`` covers."""
    return list(CASES)
