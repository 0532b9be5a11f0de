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
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np

from .checkpoint import load_checkpoint, save_checkpoint
from .datasets import minibatches

__all__ = ["History", "train", "evaluate", "masked_accuracy", "save_checkpoint", "load_checkpoint"]


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


def _check_pair(data, name):
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        got = f"a sequence of length {len(data)}" if isinstance(data, (tuple, list)) else type(data).__name__
        raise ValueError(f"train: {name} must be a pair (x, y), got {got}"
                         + (" (for a Dataset pass (d.x_train, d.y_train) and "
                            "eval_data=(d.x_test, d.y_test))" if isinstance(data, tuple) else ""))
    return np.asarray(data[0]), np.asarray(data[1])


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
          progress=True, *, state=None, batch_axis=0, label=None, progress_every=10.0):
    """Train ``model`` with ``algorithm`` and ``optimizer``; return a :class:`History`.

    Parameters
    ----------
    model : Sequential (or anything the algorithm accepts)
    algorithm : refnets.algorithms.Algorithm
    optimizer : refnets.optim.Optimizer
        Updates ``algorithm.variables(model, state)`` in place with ``StepResult.grads``.
    data : (x, y)
        Training inputs and labels; samples along ``batch_axis``.
    epochs : int >= 1
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

    Returns
    -------
    History, with the final algorithm state in ``history.state``.

    Raises
    ------
    FloatingPointError
        A NaN/inf loss: names the epoch and step and suggests a smaller learning rate.
    """
    where = "train"
    x, y = _check_pair(data, "data")
    if eval_data is not None:
        x_eval, y_eval = _check_pair(eval_data, "eval_data")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"{where}: epochs must be an int >= 1, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"{where}: batch_size must be an int >= 1, got {batch_size!r}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"{where}: rng must be a numpy.random.Generator, got {type(rng).__name__}")
    for name in ("step", "variables", "predict", "init_state"):
        if not callable(getattr(algorithm, name, None)):
            raise ValueError(f"{where}: algorithm must have a {name}() method "
                             f"(see refnets.algorithms.base.Algorithm), got {type(algorithm).__name__}")
    if not callable(getattr(optimizer, "update", None)):
        raise ValueError(f"{where}: optimizer must have an update(params, grads) method, "
                         f"got {type(optimizer).__name__}")

    n = x.shape[batch_axis] if x.ndim > batch_axis else 0
    if n < 1:
        raise ValueError(f"{where}: data must hold at least one sample along batch_axis="
                         f"{batch_axis}, got x of shape {x.shape}")
    steps = -(-n // batch_size)
    prefix = f"[{label}] " if label else ""
    log = (lambda msg: print(prefix + msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)

    if state is None:
        state = algorithm.init_state(model, rng)
    history = History(steps_per_epoch=steps, state=state)
    every = max(1, epochs // 10)          # at most ~12 epoch lines for long runs of short epochs
    last_line = time.perf_counter()
    for epoch in range(1, epochs + 1):
        sums, counts, losses = {}, {}, []
        t0 = last = time.perf_counter()
        for step, (xb, yb) in enumerate(minibatches(x, y, batch_size, rng, batch_axis=batch_axis), 1):
            res = algorithm.step(model, state, xb, yb, rng)
            loss = float(res.loss)
            if not np.isfinite(loss):
                raise FloatingPointError(
                    f"{where}: loss is {loss} at epoch {epoch}, step {step}/{steps} "
                    f"({type(algorithm).__name__}); the run diverged - try a smaller learning rate "
                    f"(optimizer lr = {getattr(optimizer, 'lr', '?')})")
            optimizer.update(algorithm.variables(model, state), res.grads)
            losses.append(loss)
            _info_add(sums, counts, res.info or {}, f"{where}: epoch {epoch}, step {step}")
            now = time.perf_counter()
            if progress and now - last >= progress_every and step < steps:
                log(f"epoch {epoch}/{epochs}  step {step}/{steps}  loss {np.mean(losses):.4f}  "
                    f"({now - t0:.1f} s)")
                last = now
        elapsed = time.perf_counter() - t0

        history.train_loss.append(float(np.mean(losses)))
        history.step_loss.extend(losses)
        history.epoch_time.append(elapsed)
        for key in sums:
            history.info.setdefault(key, []).append(sums[key] / counts[key])
        history.train_acc.append(evaluate(model, algorithm, state, x, y, batch_axis=batch_axis))
        line = (f"epoch {epoch}/{epochs}  loss {history.train_loss[-1]:.4f}  "
                f"train acc {history.train_acc[-1]:.3f}")
        if eval_data is not None:
            history.test_acc.append(evaluate(model, algorithm, state, x_eval, y_eval,
                                             batch_axis=batch_axis))
            line += f"  test acc {history.test_acc[-1]:.3f}"
        if "cosine_to_backprop" in sums:
            line += f"  cos(bp) {float(np.mean(history.info['cosine_to_backprop'][-1])):.3f}"
        now = time.perf_counter()
        if epoch in (1, epochs) or epoch % every == 0 or now - last_line >= progress_every:
            log(line + f"  ({elapsed:.1f} s)")
            last_line = now
    return history
