"""After HSIC training: the format layer and the sigma-combined network.

Format layer (HSIC-14; paper: format training; authors'
``core/engine.py::training_format``): the HSIC-trained net is frozen and a
single linear output layer is trained with SGD and cross-entropy on its
features::

    logits = f(x) W^T + b,   f = frozen HSIC net (batch norm in evaluation mode),
    only (W, b) are updated; no gradient reaches the HSIC net.

:class:`HSICFormat` is an ordinary :class:`~refnets.algorithms.base.Algorithm`
whose ``model`` is the output layer alone, so the usual training loop trains it.

Sigma-combined network (HSIC-15; paper Fig. 6b; authors' ``ModelEnsembleComb``):
several HSIC nets with different kernel widths sigma (1, 5, 10) are trained
independently on the same batches, frozen, and their outputs combined --
averaged in the authors' code (``combine='mean'``), or concatenated
(``combine='concat'``) -- then normalised by a batch norm with batch
statistics and formatted by one linear layer. :class:`HSICSigmaCombined`
trains the members; :func:`combined_format_setup` builds the format stage.

Where this differs from the authors' format stage and combined net (their
per-forward BatchNorm1d, their optimisers) is listed in this package's
README.md, section 7.
"""

from __future__ import annotations

import numpy as np

from ...layers.dense import Dense
from ...layers.normalization import BatchNorm
from ...losses import softmax_cross_entropy
from ...models import Sequential
from ...optim import SGD, Momentum
from ...validation import check_choice, check_input, check_number
from ..base import (Algorithm, Recorder, StepResult, as_recorder,
                    backprop_gradients, check_given, check_loss_finite)
from .algorithm import HSICBottleneck

__all__ = ["HSICFormat", "format_setup", "train_format", "FORMAT_MIN_STEPS", "HSICSigmaCombined",
           "combined_format_setup"]

#: Default length of format training, in SGD steps (lr 0.05, batch 256). Measured
#: on the embedded Fashion-MNIST subset (``python benchmarks/bench_hsic.py --measure
#: format``, seeds 0-2): after 400 steps the format layer's test accuracy is within
#: 0.2 points of its value after 800 steps; after 200 steps it trails by up to 1.5.
FORMAT_MIN_STEPS = 400


class HSICFormat(Algorithm):
    """Train a linear output layer on the features of a frozen network.

    Parameters
    ----------
    features : callable
        ``features(x) -> ndarray (N, D)``, the frozen net's output.
    loss : callable, default softmax cross-entropy (mean over the batch)

    Notes
    -----
    ``model`` is the output layer(s) alone (e.g. ``Sequential([Dense(D, C)])``);
    ``step`` returns the exact gradient of the loss w.r.t. its parameters
    (it *is* backprop, through the output layer only), so
    ``info['cosine_to_backprop']`` would be 1 by construction and is omitted.
    Nothing is drawn: no given values, ``rng`` may be None. Trace keys:
    ``"F"`` (the frozen features, (N, D)) and ``"logits"`` (N, C).
    """

    name = "hsic_format"

    def __init__(self, features, loss=softmax_cross_entropy):
        super().__init__(loss)
        if not callable(features):
            raise ValueError(f"HSICFormat: features must be callable, got {features!r}")
        self.features = features

    def init_state(self, model, rng, record=None, **given):
        """No state; nothing is drawn."""
        check_given(given, (), "HSICFormat.init_state")
        return {}

    def step(self, model, state, x, y, rng=None, record=None, **given):
        """Cross-entropy gradient of the output layer on frozen features (HSIC-14)."""
        where = "HSICFormat.step"
        check_given(given, (), where)
        record = as_recorder(record)
        x = check_input(x, "x", where)
        F = self.features(x)
        loss, grads, logits = backprop_gradients(model, F, y, self.loss)
        check_loss_finite(loss, where)
        record.put("F", F)
        record.put("logits", logits)
        return StepResult(loss=loss, grads=grads, info={})

    def predict(self, model, state, x):
        """Logits of the output layer on the frozen features."""
        x = check_input(x, "x", "HSICFormat.predict")
        return model.forward(self.features(x))[0]


def format_setup(hsic_model, hsic_algo, hsic_state, n_classes, rng, lr=0.01, weight_decay=1e-3,
                 bn="running"):
    """(model, algorithm, optimizer) training a format layer on a frozen HSIC net.

    Parameters
    ----------
    hsic_model, hsic_algo, hsic_state : the trained HSIC net, its algorithm and state
    n_classes : int
    rng : numpy.random.Generator, draws the output layer's weights
    lr, weight_decay : float, the format SGD (authors: lr 0.005-0.01, wd 1e-3)
    bn : {'running', 'batch'}, the frozen net's batch-norm mode

    Returns
    -------
    refnets.algorithms.Setup
    """
    from .. import Setup
    features = lambda x: hsic_algo.features(hsic_model, hsic_state, x, bn=bn)  # noqa: E731
    model = Sequential([Dense(_output_width(hsic_model), n_classes, rng)])
    return Setup(model, HSICFormat(features), SGD(lr, weight_decay=weight_decay))


def train_format(setup, x, y, rng, epochs=None, batch_size=256):
    """Train a format stage (only its output layer learns); return its state.

    Parameters
    ----------
    setup : Setup from :func:`format_setup` or :func:`combined_format_setup`
    x, y : the training set
    rng : numpy.random.Generator, shuffles the batches
    epochs : int, optional
        Default: enough epochs for ``FORMAT_MIN_STEPS`` SGD steps,
        ceil(400 / ceil(N / batch_size)): 2 on the full Fashion-MNIST
        (235 steps per epoch), 20 on the embedded 5000-image subset.
    batch_size : int

    Returns
    -------
    dict, the format algorithm's state (for ``setup.algorithm.predict``).
    """
    from ...datasets import minibatches
    where = "train_format"
    batch_size = check_number(batch_size, "batch_size", where, low=1, integer=True)
    if epochs is None:
        per_epoch = -(-len(x) // batch_size)
        epochs = max(1, -(-FORMAT_MIN_STEPS // per_epoch))
    epochs = check_number(epochs, "epochs", where, low=1, integer=True)
    state = setup.algorithm.init_state(setup.model, rng)
    for _ in range(epochs):
        for xb, yb in minibatches(x, y, batch_size, rng):
            res = setup.algorithm.step(setup.model, state, xb, yb, rng)
            setup.optimizer.update(setup.algorithm.variables(setup.model, state), res.grads)
    return state


def _output_width(model):
    """Width of the last HSIC block: that of its last BatchNorm (or Dense)."""
    for layer in reversed(model.layers):
        n = getattr(layer, "n_features", None) or getattr(layer, "n_out", None)
        if n:
            return int(n)
    raise ValueError("format_setup: cannot infer the HSIC net's output width")


class HSICSigmaCombined(Algorithm):
    """Several HSIC nets with different sigma, trained side by side on the same batches.

    Parameters
    ----------
    algorithms : list of HSICBottleneck
        One per member (e.g. sigma = 1, 5, 10), each with its own optimiser.
    combine : {'mean', 'concat'}, default 'mean'
        How :meth:`features` joins the members' outputs: average (authors')
        or concatenation.

    Notes
    -----
    ``model`` is a list of member networks (Sequential), ``state`` a dict
    with one HSIC state per member. Sequential-mode members update
    themselves inside ``step``; ``variables`` and ``grads`` are empty.
    ``predict`` averages the members' class scores (each member's own
    train-fitted readout); the proper combined classifier is the format stage
    (:func:`combined_format_setup`). Nothing is drawn: no given values,
    ``rng`` may be None. Trace keys: member j's keys (those of
    :class:`~refnets.algorithms.hsic.algorithm.HSICBottleneck`) prefixed
    ``"member{j}/"``.
    """

    name = "hsic_sigma_combined"

    def __init__(self, algorithms, combine="mean"):
        super().__init__()
        algorithms = list(algorithms)
        if not algorithms or not all(isinstance(a, HSICBottleneck) for a in algorithms):
            raise ValueError(f"HSICSigmaCombined: algorithms must be a non-empty list of "
                             f"HSICBottleneck, got {algorithms!r}")
        if any(a.parallel for a in algorithms):
            raise ValueError("HSICSigmaCombined: members must use sequential mode (parallel=False)")
        self.members = algorithms
        self.combine = check_choice(combine, "combine", ("mean", "concat"), "HSICSigmaCombined")

    def _check(self, model):
        if not isinstance(model, (list, tuple)) or len(model) != len(self.members):
            raise ValueError(f"HSICSigmaCombined: model must be a list of {len(self.members)} "
                             f"networks, got {type(model).__name__}")

    def init_state(self, model, rng, record=None, **given):
        """One HSIC state per member; nothing is drawn."""
        check_given(given, (), "HSICSigmaCombined.init_state")
        self._check(model)
        return {"members": [a.init_state(m, rng) for a, m in zip(self.members, model)]}

    def variables(self, model, state):
        return {}

    def step(self, model, state, x, y, rng=None, record=None, **given):
        """Train every member on this batch; info keys carry the member's sigma."""
        where = "HSICSigmaCombined.step"
        check_given(given, (), where)
        record = as_recorder(record)
        self._check(model)
        x = check_input(x, "x", where, ndim=(2, 3, 4))
        loss, info = 0.0, {}
        for j, (a, m, st) in enumerate(zip(self.members, model, state["members"])):
            res = a.step(m, st, x, y, rng, record=_Prefixed(record, f"member{j}/"))
            loss += res.loss
            for key, value in res.info.items():
                info[f"{key}_sigma{a.sigma:g}"] = value
        return StepResult(loss=loss, grads={}, info=info)

    def features(self, model, state, x, bn="running"):
        """Combined member outputs, (N, D) ('mean') or (N, n_members * D) ('concat')."""
        self._check(model)
        outs = [a.features(m, st, x, bn=bn).reshape(len(x), -1)
                for a, m, st in zip(self.members, model, state["members"])]
        return np.mean(outs, axis=0) if self.combine == "mean" else np.hstack(outs)

    def predict(self, model, state, x):
        """Mean of the members' class scores (each member's train-fitted readout)."""
        self._check(model)
        return np.mean([a.predict(m, st, x) for a, m, st in
                        zip(self.members, model, state["members"])], axis=0)


def combined_format_setup(models, combined, state, n_classes, rng, lr=0.004, momentum=0.9,
                          weight_decay=1e-4):
    """Format stage of the sigma-combined net: BatchNorm (batch statistics) + Dense.

    Parameters
    ----------
    models, combined, state : the member nets, the HSICSigmaCombined and its state
    n_classes : int
    rng : numpy.random.Generator
    lr, momentum, weight_decay : the authors' Fig. 6b format optimiser

    Returns
    -------
    refnets.algorithms.Setup; its model is ``[BatchNorm(D), Dense(D, C)]``, the
    BatchNorm always in training mode (batch statistics), as the authors'.
    """
    from .. import Setup
    features = lambda x: combined.features(models, state, x)  # noqa: E731
    widths = [_output_width(m) for m in models]
    if combined.combine == "mean" and len(set(widths)) != 1:
        raise ValueError(f"combined_format_setup: combine='mean' needs equal output widths, "
                         f"got {widths}")
    width = widths[0] if combined.combine == "mean" else sum(widths)
    model = Sequential([BatchNorm(width), Dense(width, n_classes, rng)])
    return Setup(model, HSICFormat(features),
                 Momentum(lr, momentum=momentum, weight_decay=weight_decay))


class _Prefixed(Recorder):
    """Forwards ``put`` to another recorder with every key prefixed (member traces)."""

    def __init__(self, inner, prefix):
        self.inner, self.prefix = inner, prefix
        self.active = inner.active

    def put(self, key, value):
        self.inner.put(self.prefix + key, value)

    def draw(self, name, key, value):
        self.inner.draw(name, self.prefix + key, value)
