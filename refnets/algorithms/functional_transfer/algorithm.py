"""Functional transfer neural networks (FTNN): backprop through learnable per-edge functions.

Every weight w_ij of an MLP becomes a parametric scalar function
f(x_i; theta_ij); a layer computes y = phi(F o x + b),
(F o x)_j = sum_i f(x_i; theta_ij) (FTM-2). Training is backprop with the
revised delta rule (FTM-4) and the revised error transmission (FTM-5), both in
:class:`refnets.layers.functional.dense.FunctionalDense`. This module builds
the networks, runs the (optionally clipped) gradient step (FTM-7) and the
greedy layer-wise supervised training (FTM-12).

The derivation, the equation tags (FTM-n), the map to the authors' code and
every deviation from the paper and that code are in this package's README.md.

Symbol table
------------
========================  ===========================  ===============================
paper symbol              code name                    shape
========================  ===========================  ===============================
x (v), layer input        ``x``                        (N, n_in)
F, transfer matrix        ``FunctionalDense``          n_out x n_in functions
F_ji's parameters         ``params['theta']``          (k, n_out, n_in)
fixed signs Sgn(U)        ``layer.signs``              (n_out, n_in), not trained
b                         ``params['b']``              (n_out,)
a = F o x + b             ``a`` (layer output)         (N, n_out)
phi                       activation layer             element-wise
delta_j = dE/da_j         ``dy`` of backward           (N, n_out)
dE/dtheta (FTM-4)         ``grads['theta']``           (k, n_out, n_in), batch sum
dE/dx_i (FTM-5)           ``dx``                       (N, n_in)
========================  ===========================  ===============================

References
----------
C.-H. Cai, Y. Xu, D. Ke, K. Su, J. Sun, "Trainable back-propagated functional
transfer matrices", arXiv:1710.10403 (2017); Applied Intelligence (2018),
doi:10.1007/s10489-018-1266-3. Code: github.com/cchrewrite/Functional-Transfer-Neural-Networks.
Y. Bengio, P. Lamblin, D. Popovici, H. Larochelle, "Greedy layer-wise training
of deep networks", NIPS 2007 (supervised variant).
"""

from __future__ import annotations

import numpy as np

from ...diagnostics import cosine
from ...layers.activations import get_activation
from ...layers.dense import Dense
from ...layers.functional.dense import DEFAULT_MAX_ELEMENTS, FunctionalDense, get_function
from ...models import Sequential
from ..base import Algorithm, StepResult, backprop_gradients, check_loss_finite

__all__ = ["DEFAULT_FUNCTION", "ftnn", "FunctionalTransfer", "train_layerwise", "train_ftnn"]

#: The registry's default function (README section 7, "Default function").
DEFAULT_FUNCTION = "F03"


def _make_activation(activation):
    if isinstance(activation, str):
        return get_activation(activation)
    return type(activation)()


def _check_sizes(sizes, where):
    sizes = list(sizes)
    if len(sizes) < 2 or any(not isinstance(s, (int, np.integer)) or isinstance(s, bool) or s < 1
                             for s in sizes):
        raise ValueError(f"{where}: sizes must be a list of >= 2 positive ints, got {sizes!r}")
    return sizes


def ftnn(sizes, function=DEFAULT_FUNCTION, activation="tanh", rng=None, init="official",
         output="functional", path="auto", max_elements=DEFAULT_MAX_ELEMENTS):
    """A functional transfer network: FunctionalDense, act, ..., FunctionalDense.

    Parameters
    ----------
    sizes : list of int
        Widths including input and output, e.g. ``[2, 20, 2]``.
    function : str or FunctionType
        Per-connection function of every functional layer (``'F01'``..``'F20'``, ``'LIN'``).
    activation : str or Activation
        Hidden nonlinearity phi.
    rng : numpy.random.Generator
    init : {'official', 'fan_in'}
        Parameter ranges (see :mod:`refnets.layers.functional.functions`).
    output : {'functional', 'dense'}
        Kind of the last layer (the model outputs logits).
    path, max_elements :
        Passed to every :class:`FunctionalDense`.
    """
    where = "ftnn"
    sizes = _check_sizes(sizes, where)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"{where}: rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if output not in ("functional", "dense"):
        raise ValueError(f"{where}: output must be 'functional' or 'dense', got {output!r}")
    function = get_function(function)
    layers = []
    n_layers = len(sizes) - 1
    for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = k == n_layers - 1
        if last and output == "dense":
            layers.append(Dense(n_in, n_out, rng))
        else:
            layers.append(FunctionalDense(n_in, n_out, function, rng, init=init, path=path,
                                          max_elements=max_elements))
        if not last:
            layers.append(_make_activation(activation))
    return Sequential(layers)


class FunctionalTransfer(Algorithm):
    """Backprop through functional transfer matrices, with optional element-wise clipping.

    Parameters
    ----------
    grad_clip : float or None
        If given, every gradient entry is clipped to [-grad_clip, grad_clip]
        (FTM-7; the authors' code clips batch sums at +-1000, README section 6).
        None: exact gradient.
    loss : callable
        ``loss(output, y) -> (loss, doutput)``, mean over the batch.
    """

    name = "ftm"

    def __init__(self, grad_clip=None, **kwargs):
        super().__init__(**kwargs)
        if grad_clip is not None and not (np.isscalar(grad_clip) and grad_clip > 0):
            raise ValueError(f"FunctionalTransfer: grad_clip must be a positive number or None, "
                             f"got {grad_clip!r}")
        self.grad_clip = None if grad_clip is None else float(grad_clip)

    def __repr__(self):
        return f"FunctionalTransfer(grad_clip={self.grad_clip})"

    def step(self, model, state, x, y, rng):
        """Revised delta rule through every layer (= backprop); clip if asked.

        info: ``grad_norm`` of the exact gradient, ``clipped_fraction`` of
        entries at the bound and ``cosine_to_backprop`` (1 without clipping).
        """
        loss, grads, _ = backprop_gradients(model, x, y, self.loss)
        check_loss_finite(loss, "FunctionalTransfer.step")
        gnorm = float(sum(float((g * g).sum()) for g in grads.values())) ** 0.5
        info = {"grad_norm": gnorm}
        if self.grad_clip is not None:
            clipped = {k: np.clip(g, -self.grad_clip, self.grad_clip) for k, g in grads.items()}
            n_clip = sum(int(np.sum(np.abs(g) > self.grad_clip)) for g in grads.values())
            info["clipped_fraction"] = n_clip / sum(g.size for g in grads.values())
            info["cosine_to_backprop"] = cosine(clipped, grads)
            grads = clipped
        else:
            info["cosine_to_backprop"] = 1.0
        return StepResult(loss=loss, grads=grads, info=info)


def _features(layers, x, batch_size=1000):
    """Output of a frozen stack of layers, computed in batches (no caches kept)."""
    if not layers:
        return x
    stack = Sequential(layers)
    return np.concatenate([stack.forward(x[i:i + batch_size])[0]
                           for i in range(0, x.shape[0], batch_size)], axis=0)


def train_layerwise(sizes, data, rng, function=DEFAULT_FUNCTION, activation="tanh",
                    epochs_per_layer=10, finetune_epochs=10, batch_size=50,
                    make_optimizer=None, algorithm=None, init="official", output="functional",
                    eval_data=None, progress=False, path="auto"):
    """Greedy layer-wise supervised training, then end-to-end fine-tuning.

    Stage k = 1 .. L-1 (L = len(sizes) - 1 layers)::

        h_{k-1} = frozen layers 1..k-1 applied to x            (computed once)
        train   [F_k, phi, G_k] on (h_{k-1}, y)                 (G_k a fresh output layer)
        keep F_k, discard G_k (except after the last stage)

    and finally train the whole net [F_1, phi, ..., F_{L-1}, phi, G_{L-1}]
    for ``finetune_epochs`` (0 skips it).

    Parameters
    ----------
    sizes : list of int, length >= 3 (at least one hidden layer)
    data : (x, y)
    rng : numpy.random.Generator
        Draws every layer (in stage order) and drives the training.
    function, activation, init, output, path :
        As in :func:`ftnn`.
    epochs_per_layer, finetune_epochs, batch_size : int
    make_optimizer : callable, optional
        ``make_optimizer() -> Optimizer``, a fresh one per stage (default Adam(2e-3)).
    algorithm : Algorithm, optional
        Default :class:`FunctionalTransfer` ().
    eval_data : (x, y), optional
    progress : bool

    Returns
    -------
    model : Sequential, the trained full network
    histories : list of History, one per stage plus the fine-tuning (if any)
    """
    from ...optim import Adam
    from ...training import train

    where = "train_layerwise"
    sizes = _check_sizes(sizes, where)
    if len(sizes) < 3:
        raise ValueError(f"{where}: sizes needs at least one hidden layer, got {sizes!r}")
    for name, v, lo in (("epochs_per_layer", epochs_per_layer, 1),
                        ("finetune_epochs", finetune_epochs, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{where}: {name} must be an int >= {lo}, got {v!r}")
    make_optimizer = make_optimizer or (lambda: Adam(lr=2e-3))
    algorithm = algorithm or FunctionalTransfer()
    x, y = data
    x_eval, y_eval = eval_data if eval_data is not None else (None, None)

    frozen, histories = [], []
    n_classes = sizes[-1]
    for k in range(1, len(sizes) - 1):
        # layers are drawn in stage order from rng: hidden layer k, then its output head
        hidden = FunctionalDense(sizes[k - 1], sizes[k], function, rng, init=init, path=path)
        head_model = ftnn([sizes[k], n_classes], function, activation, rng, init=init,
                          output=output, path=path)
        stage = Sequential([hidden, _make_activation(activation), *head_model.layers])
        h = _features(frozen, x)                                # frozen layers 1..k-1
        ev = None if eval_data is None else (_features(frozen, x_eval), y_eval)
        histories.append(train(stage, algorithm, make_optimizer(), (h, y), epochs_per_layer,
                               batch_size, rng, eval_data=ev, progress=progress,
                               label=f"layer-wise stage {k}"))
        frozen += stage.layers[:2]                              # keep F_k and phi
        head = stage.layers[2:]
    model = Sequential(frozen + head)
    if finetune_epochs:
        histories.append(train(model, algorithm, make_optimizer(), (x, y), finetune_epochs,
                               batch_size, rng, eval_data=eval_data, progress=progress,
                               label="fine-tune"))
    return model, histories


def train_ftnn(sizes, data, rng, function=DEFAULT_FUNCTION, activation="tanh", epochs=10,
               batch_size=50, layerwise=False, epochs_per_layer=None, make_optimizer=None,
               grad_clip=None, init="official", output="functional", eval_data=None,
               progress=False, path="auto"):
    """Train an FTNN end to end or, with ``layerwise=True``, greedily layer by layer.

    End to end: :func:`ftnn` + :func:`refnets.training.train` for ``epochs``.
    Layer-wise: :func:`train_layerwise` with ``epochs_per_layer`` (default
    ``epochs``) per stage, then ``epochs`` of fine-tuning.

    Returns
    -------
    model : Sequential
    histories : list of History (one for end-to-end training)
    """
    from ...optim import Adam
    from ...training import train

    make_optimizer = make_optimizer or (lambda: Adam(lr=2e-3))
    algorithm = FunctionalTransfer(grad_clip=grad_clip)
    if layerwise:
        return train_layerwise(sizes, data, rng, function, activation,
                               epochs_per_layer=epochs_per_layer or epochs,
                               finetune_epochs=epochs, batch_size=batch_size,
                               make_optimizer=make_optimizer, algorithm=algorithm, init=init,
                               output=output, eval_data=eval_data, progress=progress, path=path)
    model = ftnn(sizes, function, activation, rng, init=init, output=output, path=path)
    history = train(model, algorithm, make_optimizer(), data, epochs, batch_size, rng,
                    eval_data=eval_data, progress=progress,
                    label=f"ftnn {get_function(function).name}")
    return model, [history]


def _build(sizes, activation, rng, x_train=None, y_train=None):
    """Registry factory: an all-functional F03 network trained by backprop with Adam(2e-3)."""
    from ...optim import Adam
    from .. import Setup
    return Setup(ftnn(sizes, DEFAULT_FUNCTION, activation, rng), FunctionalTransfer(),
                 Adam(lr=2e-3))


def _register():
    from .. import Method, register
    register(Method("ftm", _build,
                    f"functional transfer matrices: a learnable f(x; theta) per connection "
                    f"({DEFAULT_FUNCTION}: a x^2 + b x), trained by backprop",
                    "Cai et al. 2017 (arXiv:1710.10403), Appl. Intell. 2018", exact_gradient=True))


_register()
