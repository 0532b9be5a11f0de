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
from ...layers.activations import Activation, get_activation
from ...layers.dense import Dense
from ...layers.functional.conv import FunctionalConv2D
from ...layers.functional.dense import (DEFAULT_MAX_ELEMENTS, FunctionalDense, get_function,
                                        given_or_drawn)
from ...layers.functional.recurrent import FunctionalRNN, MemoryFunctional
from ...models import Sequential
from ...validation import check_bool, check_choice, check_input, check_number
from ..base import (Algorithm, StepResult, as_recorder, check_given, check_loss_finite)

__all__ = ["DEFAULT_FUNCTION", "FOLLOW", "ftnn", "FunctionalTransfer", "train_layerwise",
           "train_ftnn"]

#: The registry's default function (README section 7, "Default function").
DEFAULT_FUNCTION = "F03"


def _make_activation(activation, where):
    """A fresh activation layer from a name or an instance (its type)."""
    if isinstance(activation, str):
        try:
            return get_activation(activation)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    if isinstance(activation, Activation):
        return type(activation)()
    raise ValueError(f"{where}: activation must be a name or an Activation instance, "
                     f"got {activation!r}")


def _check_sizes(sizes, where):
    sizes = list(sizes)
    if len(sizes) < 2 or any(not isinstance(s, (int, np.integer)) or isinstance(s, bool) or s < 1
                             for s in sizes):
        raise ValueError(f"{where}: sizes must be a list of >= 2 positive ints, got {sizes!r}")
    return sizes


def _given_family(given, name, accepted, where):
    """A given-value dict ``{"k.name": array}``, its keys checked against ``accepted``."""
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise ValueError(f"{where}: {name} must be a dict {{'k.{name}': array}} keyed by model "
                         f"layer index, got {type(given).__name__}")
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise ValueError(f"{where}: {name} has keys {unknown} that no layer draws; the keys "
                         f"this network accepts are {sorted(accepted)}")
    return given


def ftnn(sizes, function=DEFAULT_FUNCTION, activation="tanh", rng=None, init="official",
         output="functional", path="auto", max_elements=DEFAULT_MAX_ELEMENTS, theta=None,
         signs=None, W=None):
    """A functional transfer network: FunctionalDense, act, ..., FunctionalDense.

    Parameters
    ----------
    sizes : list of int
        Widths including input and output, e.g. ``[2, 20, 2]``.
    function : str or FunctionType
        Per-connection function of every functional layer (``'F01'``..``'F20'``, ``'LIN'``).
    activation : str or Activation
        Hidden nonlinearity phi.
    rng : numpy.random.Generator or None
        Draws every layer in order (theta, then signs, of each functional layer;
        W of a dense output layer). None when every draw is given.
    init : {'official', 'fan_in'}
        Parameter ranges (FTM-1a, FTM-1b).
    output : {'functional', 'dense'}
        Kind of the last layer (the model outputs logits).
    path, max_elements :
        Passed to every :class:`FunctionalDense`.
    theta, signs : dict, optional
        Given initial draws ``{"k.theta": (n_theta, n_out, n_in)}`` (n_theta
        parameters per edge) and ``{"k.signs": (n_out, n_in)}``, k the model layer
        index (0, 2, 4, ...: activations sit between); a given value consumes
        nothing from ``rng``.
    W : dict, optional
        ``{"k.W": (n_out, n_in)}`` for the dense output layer (``output='dense'``).
    """
    where = "ftnn"
    sizes = _check_sizes(sizes, where)
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise ValueError(f"{where}: rng must be a numpy.random.Generator or None, "
                         f"got {type(rng).__name__}")
    check_choice(output, "output", ("functional", "dense"), where)
    function = get_function(function, where)
    n_layers = len(sizes) - 1
    dense_out = output == "dense"
    functional_keys = [2 * i for i in range(n_layers - (1 if dense_out else 0))]
    theta = _given_family(theta, "theta", [f"{k}.theta" for k in functional_keys], where)
    signs = _given_family(signs, "signs", [f"{k}.signs" for k in functional_keys
                                           if function.uses_sign], where)
    W = _given_family(W, "W", [f"{2 * (n_layers - 1)}.W"] if dense_out else [], where)
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        k, last = 2 * i, i == n_layers - 1
        if last and dense_out:
            key = f"{k}.W"
            if key in W:
                # the given W replaces the initialiser's draw; a fixed generator keeps
                # the caller's rng untouched (a given value consumes nothing)
                layer = Dense(n_in, n_out, np.random.default_rng(0))
                layer.params["W"] = given_or_drawn(W[key], key, (n_out, n_in), None, None, where)
            elif rng is None:
                raise ValueError(f"{where}: rng is None and W[{key!r}] was not given; pass an "
                                 f"rng or give W={{{key!r}: array of shape {(n_out, n_in)}}}")
            else:
                layer = Dense(n_in, n_out, rng)
            layers.append(layer)
        else:
            needed = [(theta, "theta", f"{k}.theta", (function.k, n_out, n_in))]
            if function.uses_sign:
                needed.append((signs, "signs", f"{k}.signs", (n_out, n_in)))
            for family, name, key, shape in needed:
                if rng is None and key not in family:
                    raise ValueError(f"{where}: rng is None and {name}[{key!r}] was not given; "
                                     f"pass an rng or give {name}={{{key!r}: array of shape "
                                     f"{shape}}}")
            layers.append(FunctionalDense(n_in, n_out, function, rng, init=init, path=path,
                                          max_elements=max_elements,
                                          theta=theta.get(f"{k}.theta"),
                                          signs=signs.get(f"{k}.signs")))
        if not last:
            layers.append(_make_activation(activation, where))
    return Sequential(layers)


#: The ``follow=`` presets: the keywords that reproduce a codebase's conventions.
FOLLOW = {
    # github.com/cchrewrite/Functional-Transfer-Neural-Networks (mlpractical 2015/16 layers):
    # pgrads clips the batch-summed gradients of the functional layers at +-1000.
    "cai-mlpractical": {"grad_clip": 1000.0, "clip_on": "sum", "clip_layers": "functional"},
}

_UNSET = object()

#: Layer types whose parameters ``clip_layers='functional'`` clips.
FUNCTIONAL_LAYERS = (FunctionalDense, FunctionalConv2D, FunctionalRNN, MemoryFunctional)


class FunctionalTransfer(Algorithm):
    """Backprop through functional transfer matrices, with optional element-wise clipping.

    Parameters
    ----------
    grad_clip : float or None
        If given, gradient entries are clipped element-wise (FTM-7). None
        (default): the exact gradient.
    clip_on : {'mean', 'sum'}
        ``'mean'`` (default): clip the gradient of the mean loss to
        [-grad_clip, grad_clip]. ``'sum'``: clip the batch-summed gradient, as
        the authors' ``pgrads`` does, i.e. the mean gradient to
        [-grad_clip / N, grad_clip / N] for a batch of N.
    clip_layers : {'all', 'functional'}
        Clip every parameter (default) or only those of the functional layers
        (the authors' code: its ordinary layers do not clip).
    follow : {None, 'cai-mlpractical'}
        Preset for the keywords above that reproduces a codebase's conventions
        (:data:`FOLLOW`; README section 6); keywords given explicitly win.
    loss : callable
        ``loss(output, y) -> (loss, doutput)``, mean over the batch.

    Notes
    -----
    Nothing is drawn: ``init_state`` and ``step`` take no given values (the
    network's own draws, theta and signs, are given to :func:`ftnn` or the
    layers). Trace keys are listed in README section 2.
    """

    name = "ftm"

    def __init__(self, grad_clip=_UNSET, clip_on=_UNSET, clip_layers=_UNSET, follow=None,
                 **kwargs):
        super().__init__(**kwargs)
        where = "FunctionalTransfer"
        preset = FOLLOW[check_choice(follow, "follow", (None, *FOLLOW), where)] if follow else {}
        chosen = {"grad_clip": None, "clip_on": "mean", "clip_layers": "all", **preset}
        for name, value in (("grad_clip", grad_clip), ("clip_on", clip_on),
                            ("clip_layers", clip_layers)):
            if value is not _UNSET:
                chosen[name] = value
        self.follow = follow
        self.grad_clip = (None if chosen["grad_clip"] is None else
                          check_number(chosen["grad_clip"], "grad_clip", where, low=0.0,
                                       low_open=True))
        self.clip_on = check_choice(chosen["clip_on"], "clip_on", ("mean", "sum"), where)
        self.clip_layers = check_choice(chosen["clip_layers"], "clip_layers",
                                        ("all", "functional"), where)

    def __repr__(self):
        return (f"FunctionalTransfer(grad_clip={self.grad_clip}, clip_on={self.clip_on!r}, "
                f"clip_layers={self.clip_layers!r}, follow={self.follow!r})")

    def init_state(self, model, rng, record=None, **given):
        """No state: FTM training is backprop. Accepts no given values."""
        check_given(given, (), "FunctionalTransfer.init_state")
        return {}

    def step(self, model, state, x, y, rng, record=None, **given):
        """Revised delta rule through every layer (= backprop); clip if asked.

        Parameters
        ----------
        model : Sequential
        state : dict (empty)
        x : ndarray of shape (N, ...)
        y : ndarray of shape (N,), integer labels (or the loss's targets)
        rng : numpy.random.Generator or None (nothing is drawn)
        record : Recorder, optional
            Collects the trace keys of README section 2 (:meth:`trace`).

        Returns
        -------
        StepResult; info: ``grad_norm`` of the exact gradient, ``clipped_fraction``
        of entries at the bound (when clipping) and ``cosine_to_backprop`` (1
        without clipping).
        """
        where = "FunctionalTransfer.step"
        check_given(given, (), where)
        x = check_input(x, "x", where)
        record = as_recorder(record)
        layers = model.layers
        h, caches = x, []
        for k, layer in enumerate(layers):                          # forward, bottom layer first
            h, cache = layer.forward(h)                             # (FTM-2) on functional layers
            caches.append(cache)
            if record.active:
                record.put(f"{k}.a" if isinstance(layer, (FunctionalDense, FunctionalConv2D))
                           else f"{k}.y", h)
        loss, dout = self.loss(h, y)
        check_loss_finite(loss, where)
        first = next((k for k, layer in enumerate(layers) if layer.params), len(layers))
        grads = [None] * len(layers)
        d = dout
        for k in range(len(layers) - 1, first - 1, -1):             # backward, top layer first
            d_out = d
            d, grads[k] = layers[k].backward(d_out, caches[k])      # (FTM-4), (FTM-5)
            if record.active:
                _record_layer(record, k, layers[k], caches[k], d_out, d)
        grads = model.flatten(grads)
        gnorm = float(sum(float((g * g).sum()) for g in grads.values())) ** 0.5
        info = {"grad_norm": gnorm}
        if self.grad_clip is not None:                              # (FTM-7)
            bound = self.grad_clip / x.shape[0] if self.clip_on == "sum" else self.grad_clip
            keys = [key for key in grads if self.clip_layers == "all"
                    or isinstance(layers[int(key.split(".")[0])], FUNCTIONAL_LAYERS)]
            clipped = dict(grads)
            for key in keys:
                clipped[key] = np.clip(grads[key], -bound, bound)
            n_clip = sum(int(np.sum(np.abs(grads[key]) > bound)) for key in keys)
            info["clipped_fraction"] = n_clip / max(1, sum(grads[key].size for key in keys))
            info["cosine_to_backprop"] = cosine(clipped, grads)
            grads = clipped
        else:
            info["cosine_to_backprop"] = 1.0
        return StepResult(loss=loss, grads=grads, info=info)


    def predict(self, model, state, x):
        """Network output (logits) for ``x``, checked and converted to float64 first."""
        return model.forward(check_input(x, "x", "FunctionalTransfer.predict"))[0]


def _record_layer(record, k, layer, cache, dy, dx):
    """Trace keys of model layer k on the way down (README section 2)."""
    if isinstance(layer, FunctionalDense):
        record.put(f"{k}.x", cache["x"].reshape(cache["x_shape"]))
        for name, value in layer.edges(cache).items():          # f, df_dx, df_dtheta
            record.put(f"{k}.{name}", value)
        record.put(f"{k}.delta", dy)
    elif isinstance(layer, FunctionalConv2D):                   # (FTM-11): an FTM on patches
        record.put(f"{k}.cols", cache["ftm"]["x"])
        for name, value in layer.ftm.edges(cache["ftm"]).items():
            record.put(f"{k}.{name}", value)
        record.put(f"{k}.delta", dy)
    else:
        record.put(f"{k}.dy", dy)
    if dx is not None:
        record.put(f"{k}.dx", dx)


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
    """Greedy layer-wise supervised training, then end-to-end fine-tuning (FTM-12).

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
    check_number(epochs_per_layer, "epochs_per_layer", where, low=1, integer=True)
    check_number(finetune_epochs, "finetune_epochs", where, low=0, integer=True)
    check_number(batch_size, "batch_size", where, low=1, integer=True)
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
        stage = Sequential([hidden, _make_activation(activation, where), *head_model.layers])
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

    where = "train_ftnn"
    check_number(epochs, "epochs", where, low=0, integer=True)
    check_number(batch_size, "batch_size", where, low=1, integer=True)
    check_bool(layerwise, "layerwise", where)
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
    """Registry factory for ``ftm``.

    Defaults: every layer a :class:`FunctionalDense` with F03 (a x^2 + b x, exact
    two-matmul fast path), official init (FTM-1a), ``activation`` between
    layers, all-functional output; :class:`FunctionalTransfer` with no
    clipping (the exact backprop gradient of the mean softmax cross-entropy,
    so its cosine to backprop is 1 by construction); Adam(lr=2e-3).
    """
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
