"""The training loop shared by every method, and its record (:class:`History`).

::

    state = algorithm.init_state(model, rng)              # unless state= is given
    for epoch in 1..epochs:
        for x, y in minibatches(data, batch_size, rng):
            res = algorithm.step(model, state, x, y, rng)  # loss, grads, info
            optimizer.update(algorithm.variables(model, state), res.grads)
        evaluate algorithm.predict(model, state, x) on the training and eval data

One generator ``rng`` drives the shuffling and every random draw of the
algorithm, in a fixed order, so the same seed gives a bit-identical History
(wall times aside).

Bad data and divergence are told apart: ``train`` checks the whole data set
once (float64, finite, non-empty: a ``ValueError`` naming ``data`` or
``eval_data`` and the first bad index), then runs the steps inside
:func:`refnets.validation.trusted`, so a NaN/inf that appears later was made
by the run. Any :class:`~refnets.validation.DivergenceError` (or other
``FloatingPointError``) from a step, a non-finite loss, or non-finite
variables after an epoch stop the run with one ``DivergenceError`` naming the
method, the epoch, the step and the quantity, followed by the step's own
message (which keeps method-specific hints such as the learning rate to lower).

Resuming: ``train(..., checkpoint=path)`` saves the run after every epoch
(model, algorithm state, optimiser, rng, counters); a fresh process that
builds the same model, algorithm and optimiser, calls
``load_checkpoint(path, model, optimizer=opt, rng=rng)`` and
``train(..., state=state, start_epoch=read_checkpoint(path).epoch + 1)``
continues exactly as the uninterrupted run.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np

from .checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from .datasets import minibatches
from .validation import (DivergenceError, check_bool, check_input, check_int, check_number,
                         check_rng, trusted)

__all__ = ["History", "train", "evaluate", "masked_accuracy", "save_checkpoint", "load_checkpoint",
           "read_checkpoint"]


@dataclass
class History:
    """What :func:`train` records, one entry per epoch.

    Attributes
    ----------
    train_loss : list of float
        Mean minibatch loss over the epoch (before each update).
    train_acc : list of float
        Accuracy of ``algorithm.predict`` on the whole training data after the epoch.
    test_acc : list of float
        Same on ``eval_data`` (empty without eval data).
    epoch_time : list of float
        Seconds spent in the epoch's training steps (evaluation excluded).
    info : dict of str -> list
        Each ``StepResult.info`` key averaged over the epoch's steps (floats,
        or 1-D arrays per layer).
    step_loss : list of float
        Every minibatch loss, for learning curves within an epoch.
    steps_per_epoch : int
    state : dict
        The algorithm state after training; use it for predictions:
        ``algorithm.predict(model, history.state, x)``.
    """

    train_loss: list = field(default_factory=list)
    train_acc: list = field(default_factory=list)
    test_acc: list = field(default_factory=list)
    epoch_time: list = field(default_factory=list)
    info: dict = field(default_factory=dict)
    step_loss: list = field(default_factory=list)
    steps_per_epoch: int = 0
    state: dict = field(default_factory=dict, repr=False)

    @property
    def epochs(self):
        """Number of completed epochs."""
        return len(self.train_loss)

    def final(self):
        """The last epoch's metrics as a flat dict of floats (info arrays averaged)."""
        out = {"train_loss": self.train_loss[-1], "train_acc": self.train_acc[-1]}
        if self.test_acc:
            out["test_acc"] = self.test_acc[-1]
        out["epoch_time"] = float(np.mean(self.epoch_time))
        for key, values in self.info.items():
            out[key] = float(np.mean(values[-1]))
        return out

    def as_dict(self):
        """JSON-friendly copy (lists of floats; per-layer arrays as lists); no state."""
        return {"train_loss": list(self.train_loss), "train_acc": list(self.train_acc),
                "test_acc": list(self.test_acc), "epoch_time": list(self.epoch_time),
                "step_loss": list(self.step_loss), "steps_per_epoch": self.steps_per_epoch,
                "info": {k: [np.asarray(v).tolist() for v in vals] for k, vals in self.info.items()}}


def _correct_and_count(output, y, where):
    """(number of correct labelled positions, number of labelled positions)."""
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer):
        y = np.argmax(y, axis=-1)
    pred = np.argmax(output, axis=-1)
    if pred.shape != y.shape:
        raise ValueError(f"{where}: labels must have shape {pred.shape} (output without "
                         f"the class axis), got {y.shape}")
    labelled = y >= 0
    return int(np.sum((pred == y) & labelled)), int(labelled.sum())


def masked_accuracy(output, y):
    """Fraction of labelled positions whose argmax matches the label.

    Labels < 0 mean "no label" (e.g. :func:`refnets.datasets.bit_sequences`
    before the delay) and are ignored; one-hot targets are argmax-ed.

    Parameters
    ----------
    output : ndarray of shape (..., C)
    y : int ndarray of shape (...) or float ndarray like ``output``

    Returns
    -------
    float in [0, 1] (NaN if nothing is labelled).
    """
    correct, n = _correct_and_count(output, y, "masked_accuracy")
    return correct / n if n else float("nan")


def evaluate(model, algorithm, state, x, y, batch_size=1000, batch_axis=0):
    """Accuracy of ``algorithm.predict`` on (x, y), computed in chunks of ``batch_size``."""
    correct, total = 0, 0
    for xb, yb in minibatches(x, y, batch_size, None, shuffle=False, batch_axis=batch_axis):
        c, n = _correct_and_count(algorithm.predict(model, state, xb), yb, "evaluate")
        correct, total = correct + c, total + n
    return correct / total if total else float("nan")


def _check_pair(data, name, batch_axis):
    """(x, y) as float64 x and integer (or float64) labels, both finite and non-empty."""
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        got = f"a sequence of length {len(data)}" if isinstance(data, (tuple, list)) else type(data).__name__
        raise ValueError(f"train: {name} must be a pair (x, y), got {got}"
                         + (" (for a Dataset pass (d.x_train, d.y_train) and "
                            "eval_data=(d.x_test, d.y_test))" if isinstance(data, tuple) else ""))
    x = np.asarray(data[0])
    if x.ndim <= batch_axis or x.shape[batch_axis] == 0:
        raise ValueError(f"train: {name} must hold at least one sample along batch_axis="
                         f"{batch_axis}, got x of shape {x.shape}")
    x = check_input(x, f"{name}[0] (x)", "train", batch_axis=batch_axis)
    y = np.asarray(data[1])
    if not np.issubdtype(y.dtype, np.integer):
        y = check_input(y, f"{name}[1] (y)", "train", allow_empty=True)
    return x, y


def _method_name(algorithm):
    name = getattr(algorithm, "name", None)
    cls = type(algorithm).__name__
    # the registry name when the class sets one ("algorithm" is the base class's placeholder)
    return f"{cls} ({name})" if isinstance(name, str) and name not in (cls, "algorithm") else cls


def _diverged(algorithm, optimizer, epoch, step, steps, quantity, detail):
    lr = getattr(optimizer, "lr", None)
    hint = f"; optimizer lr = {lr}" if lr is not None else ""
    return DivergenceError(
        f"train: {_method_name(algorithm)} diverged at epoch {epoch}, step {step}/{steps}: "
        f"{quantity} became non-finite{hint}. {detail}", quantity=quantity)


def _info_add(sums, counts, info, where):
    for key, value in info.items():
        if isinstance(value, (bool, int, float, np.integer, np.floating)):
            value = float(value)
        elif isinstance(value, np.ndarray) and value.ndim <= 1 and np.issubdtype(value.dtype, np.number):
            value = value.astype(np.float64) if value.ndim else float(value)
        else:
            raise ValueError(f"{where}: info[{key!r}] must be a float or a 1-D numeric array "
                             f"(per layer), got {type(value).__name__}"
                             + (f" of shape {value.shape}" if isinstance(value, np.ndarray) else ""))
        if key in sums:
            if np.shape(sums[key]) != np.shape(value):
                raise ValueError(f"{where}: info[{key!r}] changed shape from {np.shape(sums[key])} "
                                 f"to {np.shape(value)} between steps")
            sums[key] = sums[key] + value
            counts[key] += 1
        else:
            sums[key], counts[key] = value, 1


def train(model, algorithm, optimizer, data, epochs, batch_size, rng, eval_data=None,
          progress=True, *, state=None, batch_axis=0, label=None, progress_every=10.0,
          start_epoch=1, checkpoint=None):
    """Train ``model`` with ``algorithm`` and ``optimizer``; return a :class:`History`.

    Parameters
    ----------
    model : Sequential (or anything the algorithm accepts)
    algorithm : refnets.algorithms.Algorithm
    optimizer : refnets.optim.Optimizer
        Updates ``algorithm.variables(model, state)`` in place with ``StepResult.grads``.
    data : (x, y)
        Training inputs and labels; samples along ``batch_axis``. ``x`` is
        converted to float64 and must be finite (checked once, here).
    epochs : int >= 1
        The last epoch to run (the run's total, also when resuming).
    batch_size : int >= 1
    rng : numpy.random.Generator
        Shuffles every epoch and is passed to ``init_state`` and every ``step``.
    eval_data : (x, y), optional
        Held-out data evaluated after every epoch (``History.test_acc``).
    progress : bool
        Print progress to stderr: a line per epoch (for more than 10 epochs,
        the first, the last, every ``epochs // 10``-th, and any epoch ending
        ``progress_every`` seconds after the previous line), and a line every
        ``progress_every`` seconds within long epochs.
    state : dict, optional
        Continue from this algorithm state instead of ``algorithm.init_state(model, rng)``.
    batch_axis : int
        1 for time-major sequences (T, N, D) with labels (T, N) or (N,).
    label : str, optional
        Prefix of the progress lines (e.g. the method name).
    progress_every : float
        Seconds between progress lines within an epoch.
    start_epoch : int >= 1
        Number of the first epoch to run (``read_checkpoint(path).epoch + 1``
        when resuming); the History holds epochs ``start_epoch..epochs``.
    checkpoint : str or os.PathLike, optional
        Save the run there after every epoch (:func:`save_checkpoint` with the
        optimiser, the rng and the counters).

    Returns
    -------
    History, with the final algorithm state in ``history.state``.

    Raises
    ------
    ValueError
        Bad arguments or data (NaN/inf in ``data`` names the first bad index).
    DivergenceError
        The run diverged (a ``FloatingPointError``): names the method, epoch,
        step and the quantity that went non-finite.
    """
    where = "train"
    batch_axis = check_int(batch_axis, "batch_axis", where, low=0)
    x, y = _check_pair(data, "data", batch_axis)
    if eval_data is not None:
        x_eval, y_eval = _check_pair(eval_data, "eval_data", batch_axis)
    epochs = check_int(epochs, "epochs", where, low=1)
    batch_size = check_int(batch_size, "batch_size", where, low=1)
    start_epoch = check_int(start_epoch, "start_epoch", where, low=1, high=epochs)
    check_rng(rng, "rng", where)
    progress = check_bool(progress, "progress", where)
    progress_every = check_number(progress_every, "progress_every", where, low=0)
    for name in ("step", "variables", "predict", "init_state"):
        if not callable(getattr(algorithm, name, None)):
            raise ValueError(f"{where}: algorithm must have a {name}() method "
                             f"(see refnets.algorithms.base.Algorithm), got {type(algorithm).__name__}")
    if not callable(getattr(optimizer, "update", None)):
        raise ValueError(f"{where}: optimizer must have an update(params, grads) method, "
                         f"got {type(optimizer).__name__}")

    n = x.shape[batch_axis]
    steps = -(-n // batch_size)
    prefix = f"[{label}] " if label else ""
    log = (lambda msg: print(prefix + msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)

    if state is None:
        state = algorithm.init_state(model, rng)
    history = History(steps_per_epoch=steps, state=state)
    every = max(1, epochs // 10)          # at most ~12 epoch lines for long runs of short epochs
    last_line = time.perf_counter()
    for epoch in range(start_epoch, epochs + 1):
        sums, counts, losses = {}, {}, []
        t0 = last = time.perf_counter()
        # The data were checked above; inside trusted() a NaN/inf is the run's own.
        with trusted():
            for step, (xb, yb) in enumerate(minibatches(x, y, batch_size, rng,
                                                        batch_axis=batch_axis), 1):
                try:
                    res = algorithm.step(model, state, xb, yb, rng)
                except FloatingPointError as exc:   # DivergenceError and numpy's
                    quantity = getattr(exc, "quantity", "a quantity of the step")
                    raise _diverged(algorithm, optimizer, epoch, step, steps, quantity,
                                    str(exc)) from exc
                loss = float(res.loss)
                if not np.isfinite(loss):
                    raise _diverged(algorithm, optimizer, epoch, step, steps, "loss",
                                    f"The step returned loss {loss}; try a smaller learning rate.")
                optimizer.update(algorithm.variables(model, state), res.grads)
                losses.append(loss)
                _info_add(sums, counts, res.info or {}, f"{where}: epoch {epoch}, step {step}")
                now = time.perf_counter()
                if progress and now - last >= progress_every and step < steps:
                    log(f"epoch {epoch}/{epochs}  step {step}/{steps}  loss {np.mean(losses):.4f}  "
                        f"({now - t0:.1f} s)")
                    last = now
        elapsed = time.perf_counter() - t0
        for key, value in algorithm.variables(model, state).items():
            if not np.isfinite(value).all():
                raise _diverged(algorithm, optimizer, epoch, steps, steps, f"variable {key!r}",
                                "The last update made it NaN or inf; try a smaller learning rate.")

        history.train_loss.append(float(np.mean(losses)))
        history.step_loss.extend(losses)
        history.epoch_time.append(elapsed)
        for key in sums:
            history.info.setdefault(key, []).append(sums[key] / counts[key])
        with trusted():                     # both data sets were checked above
            history.train_acc.append(evaluate(model, algorithm, state, x, y,
                                              batch_axis=batch_axis))
            if eval_data is not None:
                history.test_acc.append(evaluate(model, algorithm, state, x_eval, y_eval,
                                                 batch_axis=batch_axis))
        line = (f"epoch {epoch}/{epochs}  loss {history.train_loss[-1]:.4f}  "
                f"train acc {history.train_acc[-1]:.3f}")
        if eval_data is not None:
            line += f"  test acc {history.test_acc[-1]:.3f}"
        if "cosine_to_backprop" in sums:
            line += f"  cos(bp) {float(np.mean(history.info['cosine_to_backprop'][-1])):.3f}"
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, state, optimizer=optimizer, rng=rng,
                            epoch=epoch, step=epoch * steps)
        now = time.perf_counter()
        if epoch in (start_epoch, epochs) or epoch % every == 0 or now - last_line >= progress_every:
            log(line + f"  ({elapsed:.1f} s)")
            last_line = now
    return history
