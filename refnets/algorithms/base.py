"""The contract every training algorithm implements.

An algorithm owns the training loop body for one minibatch::

    state = algo.init_state(model, rng)             # B matrices, inverses, targets, R ...
    res = algo.step(model, state, x, y, rng)        # -> StepResult(loss, grads, info)
    optimizer.update(algo.variables(model, state), res.grads)

``grads`` holds *update directions* with the keys of ``variables``: the
optimiser subtracts ``lr * grads`` (for SGD), so a gradient-descent algorithm
returns the gradient. Updates that are not gradient descent on ``variables``
(decorrelation's R rule, DTP's inverse training) run inside ``step`` and are
documented there with their equations.

Cross-checking another implementation (the same for every algorithm)::

    state = algo.init_state(model, rng, B={"0.B": my_B0})   # give any initial draw
    tr = algo.trace(model, state, x, y, rng)                 # one step, nothing changed
    tr["values"]["2.delta"], tr["grads"]["0.W"], tr["after"], tr["given"]
    algo.step(model, state, x, y, None, **tr["given"])       # replays that step exactly

* **Given values.** Every random quantity a method draws (initial values in
  ``init_state``, per-step draws in ``step``) has a keyword; its value is a
  dict ``{key: array}`` keyed like the trace (``"{k}.{name}"``, k the model
  layer index). A given value is copied and shape-checked and consumes nothing
  from the rng; with ``rng=None`` a needed value that is not given raises,
  naming it. :func:`given_or_draw` is the one place this happens.
* **Trace.** :meth:`Algorithm.trace` runs ``step`` on deep copies of the
  model, state and rng with a :class:`Recorder`; ``step`` calls
  ``record.put(key, array)`` for each intermediate its package README names.
  There is no second implementation: the trace's grads and after-state are
  ``step``'s, bit for bit.

Checked entry points. ``step``, ``predict`` and ``trace`` of every
subclass are wrapped once, when the subclass is defined (:func:`_checked_entry`):
a user's ``x`` (and ``y``) is converted to float64 and scanned for NaN/inf
(``ValueError`` naming the argument and the first bad index), an ``x`` with
no entries along axis 0 (the batch, or the time of a (T, N, D) sequence) is
refused, and the method's
own body then runs inside :func:`refnets.validation.trusted`, so the layers it
calls on hidden activations do not scan them again, and a NaN that appears
there (the run diverged) reaches the loss, which raises
:class:`~refnets.validation.DivergenceError`.
"""

from __future__ import annotations

import copy
import functools
import inspect
from dataclasses import dataclass, field

import numpy as np

from ..losses import softmax_cross_entropy
from ..validation import (DivergenceError, NonFiniteInputError, check_input, is_trusted,
                          trusted)

__all__ = ["StepResult", "Algorithm", "backprop_gradients", "check_loss_finite", "check_labels",
           "Recorder", "NULL_RECORDER", "as_recorder", "given_or_draw", "check_given"]


@dataclass
class StepResult:
    """What one training step returns.

    Attributes
    ----------
    loss : float
        Training loss on the minibatch (before the update).
    grads : dict of ndarray
        Update directions, same keys as ``algorithm.variables(model, state)``.
    info : dict
        Diagnostics: floats, or 1-D arrays indexed by layer (cosine to
        backprop, alignment angles, HSIC terms, ...).
    """

    loss: float
    grads: dict
    info: dict = field(default_factory=dict)


def check_loss_finite(loss, where):
    """Raise :class:`~refnets.validation.DivergenceError` if ``loss`` is NaN or inf."""
    if not np.isfinite(loss):
        raise DivergenceError(f"{where}: loss is {loss} (diverged); try a smaller learning rate")
    return loss


class Recorder:
    """Collects one step's intermediates and draws for :meth:`Algorithm.trace`.

    ``values`` maps trace keys (the package README's symbols, ``"{k}.{name}"``
    per layer) to copies of arrays; ``draws`` maps each given-value keyword to
    the ``{key: array}`` dict that was used, so ``step(..., **draws)`` replays it.
    """

    active = True

    def __init__(self):
        self.values = {}
        self.draws = {}

    def put(self, key, value):
        """Record a copy of ``value`` under ``key`` (a later put overwrites)."""
        self.values[key] = np.array(value, copy=True)

    def draw(self, name, key, value):
        """Record the value used for random quantity ``key`` of keyword ``name``."""
        self.draws.setdefault(name, {})[key] = np.array(value, copy=True)


class _NullRecorder(Recorder):
    """The recorder of an ordinary ``step``: records nothing, costs nothing."""

    active = False

    def put(self, key, value):
        pass

    def draw(self, name, key, value):
        pass


NULL_RECORDER = _NullRecorder()


def as_recorder(record):
    """``record`` itself, or the no-op recorder for ``None``."""
    return NULL_RECORDER if record is None else record


def check_given(given, accepted, where):
    """Raise ValueError for a given-value keyword the method does not draw.

    ``accepted`` lists the keywords; each value must be a dict ``{key: array}``.
    """
    for name, value in given.items():
        if name not in accepted:
            raise ValueError(f"{where}: unknown keyword {name!r}; the given values this method "
                             f"accepts are {sorted(accepted)}")
        if not isinstance(value, dict):
            raise ValueError(f"{where}: {name} must be a dict {{key: array}} keyed like the trace, "
                             f"got {type(value).__name__}")


def given_or_draw(given, name, key, shape, draw, rng, record=NULL_RECORDER, where="",
                  dtype=np.float64):
    """The value of one random quantity: given by the caller, or drawn.

    Parameters
    ----------
    given : dict
        The keyword arguments of ``init_state``/``step`` holding given values.
    name : str
        The keyword (family of quantities), e.g. ``"B"``.
    key : str
        The quantity, e.g. ``"2.B"``.
    shape : tuple
        Its shape; a given value of another shape raises.
    draw : callable
        ``draw(rng) -> ndarray``, used when the value is not given.
    rng : numpy.random.Generator or None
    record : Recorder
    dtype : numpy dtype
        A given value is converted to it (float64; int64 for row indices).
    """
    family = given.get(name)
    if family is not None and key in family:
        raw = np.asarray(family[key])
        if np.issubdtype(dtype, np.integer) and not np.issubdtype(raw.dtype, np.integer):
            if not (np.issubdtype(raw.dtype, np.floating) and np.isfinite(raw).all()
                    and np.array_equal(raw, np.round(raw))):
                raise ValueError(f"{where}: given {name}[{key!r}] must hold integers (row "
                                 f"indices), got dtype {raw.dtype}")
        value = np.array(raw, dtype=dtype, copy=True)
        if value.shape != tuple(shape):
            raise ValueError(f"{where}: given {name}[{key!r}] must have shape {tuple(shape)}, "
                             f"got {value.shape}")
        if not np.isfinite(value).all():        # always the caller's array: always scanned
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(value))[0])
            raise NonFiniteInputError(f"{where}: given {name}[{key!r}] contains a non-finite "
                                      f"value ({value[bad]}) at index {bad}; expected finite "
                                      f"values", where=where, name=f"{name}[{key!r}]", index=bad)
    else:
        if rng is None:
            raise ValueError(f"{where}: rng is None and {name}[{key!r}] was not given; pass an "
                             f"rng or give {name}={{{key!r}: array of shape {tuple(shape)}}}")
        value = draw(rng)
    record.draw(name, key, value)
    return value


def backprop_gradients(model, x, y, loss_fn=softmax_cross_entropy, params=None):
    """Loss and exact gradient of the model's parameters by backprop.

    Every algorithm uses this as its reference ("cosine to backprop").

    Returns
    -------
    loss : float
    grads : dict, flat ``{"k.name": array}`` like ``model.params()``
    out : ndarray, the model output
    """
    out, caches = model.forward(x, params)
    loss, dout = loss_fn(out, y)
    _, grads = model.backward(dout, caches, input_grad=False)  # dL/dx of the data is not needed
    return loss, model.flatten(grads), out


def check_labels(y, name, where):
    """Integer labels as they are; float targets as float64, finite (``check_input``)."""
    a = np.asarray(y)
    if np.issubdtype(a.dtype, np.integer):
        return a
    return check_input(a, name, where, allow_empty=True)


def _checked_entry(fn, kind):
    """Wrap an algorithm's ``step``/``predict``/``trace``: check x (and y), run fn trusted."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def entry(self, *args, **kwargs):
        if is_trusted():                    # called by train or by another checked entry
            return fn(self, *args, **kwargs)
        where = f"{type(self).__name__}.{kind}"
        bound = signature.bind(self, *args, **kwargs)
        if "x" in bound.arguments:      # axis 0 is the batch, or time (T, N, D): never empty
            bound.arguments["x"] = check_input(bound.arguments["x"], "x", where)
        if "y" in bound.arguments:
            bound.arguments["y"] = check_labels(bound.arguments["y"], "y", where)
        with trusted():
            return fn(*bound.args, **bound.kwargs)

    entry.__checked_entry__ = True
    return entry


class Algorithm:
    """Base class with the defaults most algorithms share.

    Parameters
    ----------
    loss : callable
        ``loss(output, y) -> (loss, doutput)``, mean over the batch
        (default :func:`refnets.losses.softmax_cross_entropy`).
    """

    #: short name used by the registry and in tables
    name = "algorithm"

    def __init_subclass__(cls, **kwargs):
        """Wrap the subclass's own step/predict/trace as checked entry points."""
        super().__init_subclass__(**kwargs)
        for kind in ("step", "predict", "trace"):
            fn = cls.__dict__.get(kind)
            if callable(fn) and not getattr(fn, "__checked_entry__", False):
                setattr(cls, kind, _checked_entry(fn, kind))

    def __init__(self, loss=softmax_cross_entropy):
        if not callable(loss):
            raise ValueError(f"{type(self).__name__}: loss must be callable, got {loss!r}")
        self.loss = loss

    def init_state(self, model, rng, record=None, **given):
        """Extra per-run state (feedback matrices, inverses, targets, ...).

        A method that draws initial values takes them as given-value keywords
        (see the module docstring); this default draws nothing and accepts none.
        """
        check_given(given, (), f"{type(self).__name__}.init_state")
        return {}

    def variables(self, model, state):
        """The arrays the optimiser updates (default: the model's parameters)."""
        return model.params()

    def step(self, model, state, x, y, rng, record=None, **given):  # pragma: no cover
        """One minibatch: return a :class:`StepResult`.

        ``record`` (a :class:`Recorder`, or None) collects intermediates for
        :meth:`trace`; ``given`` holds given values of per-step draws.
        """
        raise NotImplementedError

    def trace(self, model, state, x, y, rng=None, **given):
        """One step's computation, recorded, leaving model, state and rng untouched.

        Returns
        -------
        dict with
            ``loss`` (float), ``values`` (every recorded intermediate, keyed by
            the package README's symbols), ``grads`` (the update directions),
            ``info`` (the step's diagnostics), ``after`` (the state after the
            step's internal updates: R after its rule, inverses after their
            training, ...) and ``given`` (the draws used: ``step(model, state,
            x, y, None, **trace["given"])`` replays this step exactly).
        """
        model_c, state_c = copy.deepcopy(model), copy.deepcopy(state)
        rng_c = copy.deepcopy(rng)
        rec = Recorder()
        res = self.step(model_c, state_c, x, y, rng_c, record=rec, **given)
        return {"loss": res.loss, "values": rec.values, "grads": res.grads, "info": res.info,
                "after": state_c, "given": rec.draws}

    def predict(self, model, state, x):
        """Network output used for evaluation (default: ``model.forward``)."""
        return model.forward(x)[0]

    def __repr__(self):
        return f"{type(self).__name__}()"


# the base class's own entry points (used by subclasses that do not override them)
Algorithm.trace = _checked_entry(Algorithm.trace, "trace")
Algorithm.predict = _checked_entry(Algorithm.predict, "predict")
