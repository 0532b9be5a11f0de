"""Validation of what a user hands to refnets, in one place.

Every public entry point where a user's array or hyperparameter enters calls
one of these (``train``, ``step``, ``predict``, ``trace``, a layer's
``forward``/``backward`` called directly, losses, loaders, constructors).
Internal calls between layers do not validate again: there a non-finite value
means the run diverged (:class:`DivergenceError`), not that the input was bad.

Every error is a ``ValueError`` naming the function, the argument, what was
expected and what was received.

Which calls are "internal"? A user may call any layer's ``forward`` directly,
so the layers always call :func:`check_input`. Code that hands refnets' own
arrays from one layer to the next (``Sequential`` after its first layer,
``Residual`` inside its branch, ``train`` after it has checked the whole data
set once, and every algorithm's ``step``/``predict``/``trace`` after checking
its ``x`` and ``y``, see :mod:`refnets.algorithms.base`) runs inside
``with trusted():``; there :func:`check_input` still converts to float64 and
checks shapes, but skips the scan for NaN/inf, which would cost time on every
hidden activation and would call a diverging run "bad data". A non-finite
value that gets through then reaches the loss, which raises
:class:`DivergenceError`.
"""

from __future__ import annotations

import contextlib
import contextvars
import numbers

import numpy as np

__all__ = ["DivergenceError", "NonFiniteInputError", "check_input", "check_number",
           "check_choice", "check_bool", "check_int", "check_rng", "trusted", "is_trusted"]

_TRUSTED = contextvars.ContextVar("refnets_trusted_arrays", default=False)


@contextlib.contextmanager
def trusted():
    """Inside this block, arrays come from refnets itself or were checked already.

    :func:`check_input` then skips its NaN/inf scan (it still converts to
    float64 and checks empty batches). See the module docstring.
    """
    token = _TRUSTED.set(True)
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def is_trusted():
    """True inside :func:`trusted`."""
    return _TRUSTED.get()


class DivergenceError(FloatingPointError):
    """A quantity of a training run became NaN or inf (the run diverged).

    Attributes
    ----------
    quantity : str
        What went non-finite (e.g. ``"loss"``, ``"logits"``).
    """

    def __init__(self, message, quantity="loss"):
        super().__init__(message)
        self.quantity = quantity


class NonFiniteInputError(ValueError):
    """A user's array holds NaN or inf (bad data, not divergence).

    Attributes
    ----------
    where, name : str
        The function and the argument.
    index : tuple of int
        The first non-finite entry (row-major).
    """

    def __init__(self, message, where="", name="", index=()):
        super().__init__(message)
        self.where, self.name, self.index = where, name, index


def _prefix(where):
    return f"{where}: " if where else ""


def check_input(x, name, where="", ndim=None, batch_axis=0, allow_empty=False):
    """A user's floating array as float64: finite, non-empty along the batch.

    Parameters
    ----------
    x : array_like
        Floating or integer data (ints and float32 are converted exactly).
    name : str
        Argument name for the message.
    where : str
        The function, e.g. ``"Dense.forward"``.
    ndim : int or tuple of int, optional
        Accepted numbers of dimensions.
    batch_axis : int
        The axis holding examples (1 for time-major sequences).
    allow_empty : bool
        Accept a batch of zero examples.

    Returns
    -------
    ndarray of float64 (``x`` itself when it already is one).

    Raises
    ------
    ValueError
        Not a real numeric array, wrong number of dimensions, or an empty
        batch; :class:`NonFiniteInputError` (a ValueError) for NaN/inf, naming
        the first bad index (not inside :func:`trusted`).
    """
    p = _prefix(where)
    try:
        a = np.asarray(x)
    except Exception as exc:
        raise ValueError(f"{p}{name} must be array-like, got {type(x).__name__}") from exc
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.floating)
                               or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{p}{name} must be a real numeric array, got dtype {a.dtype}")
    if ndim is not None:
        accepted = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if a.ndim not in accepted:
            exp = " or ".join(str(d) for d in accepted)
            raise ValueError(f"{p}{name} must have {exp} dimensions, got shape {a.shape}")
    if a.dtype != np.float64:
        a = a.astype(np.float64)
    if not allow_empty and a.ndim > batch_axis and a.shape[batch_axis] == 0:
        raise ValueError(f"{p}{name} is an empty batch (shape {a.shape}); "
                         f"expected at least one example along axis {batch_axis}")
    if not _TRUSTED.get() and not np.isfinite(a).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
        layer_call = where.rpartition(".")[2].startswith(("forward", "backward"))
        hint = ("if this is your data, clean it; if it came from a previous layer, the run "
                "diverged" if layer_call else "clean the data")
        raise NonFiniteInputError(f"{p}{name} contains a non-finite value ({a[bad]}) at index "
                                  f"{bad}; expected finite values ({hint})",
                                  where=where, name=name, index=bad)
    return a


def check_number(value, name, where="", low=None, high=None, low_open=False, high_open=False,
                 integer=False):
    """A real (or integer) hyperparameter within its range.

    Strings, bools, None, NaN and inf are refused. Returns ``float(value)``
    (or ``int(value)`` when ``integer``).
    """
    p = _prefix(where)
    kind = "an integer" if integer else "a real number"
    ok = isinstance(value, numbers.Integral) if integer else isinstance(value, numbers.Real)
    if isinstance(value, (bool, np.bool_)) or not ok:
        raise ValueError(f"{p}{name} must be {kind}, got {value!r} ({type(value).__name__})")
    v = int(value) if integer else float(value)
    if not integer and not np.isfinite(v):
        raise ValueError(f"{p}{name} must be finite, got {value!r}")
    lo_bad = low is not None and (v <= low if low_open else v < low)
    hi_bad = high is not None and (v >= high if high_open else v > high)
    if lo_bad or hi_bad:
        lo = "" if low is None else (f"> {low}" if low_open else f">= {low}")
        hi = "" if high is None else (f"< {high}" if high_open else f"<= {high}")
        rng = " and ".join(s for s in (lo, hi) if s)
        raise ValueError(f"{p}{name} must be {rng}, got {value!r}")
    return v


def check_int(value, name, where="", low=None, high=None):
    """An integer hyperparameter (a Python or NumPy int, never a bool, float or string)."""
    return check_number(value, name, where, low=low, high=high, integer=True)


def check_rng(rng, name="rng", where="", allow_none=False):
    """A ``numpy.random.Generator`` (``np.random.default_rng(seed)``)."""
    if rng is None and allow_none:
        return None
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"{_prefix(where)}{name} must be a numpy.random.Generator "
                         f"(np.random.default_rng(seed)), got {type(rng).__name__}")
    return rng


def check_choice(value, name, choices, where=""):
    """One of ``choices`` (compared with ``==``)."""
    if not isinstance(value, str) and any(isinstance(c, str) for c in choices):
        raise ValueError(f"{_prefix(where)}{name} must be one of {list(choices)}, got {value!r}")
    if value not in choices:
        raise ValueError(f"{_prefix(where)}{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_bool(value, name, where=""):
    """A bool (numpy bools accepted), never a string or number."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{_prefix(where)}{name} must be True or False, got {value!r}")
    return bool(value)


# ---------------------------------------------------------------------------
# Declared ranges of the command-line options (read by refnets.cli).
#
# Each option's constraint is declared once here; ``refnets compare`` and
# ``refnets gradcheck`` build their argparse types from it and
# ``refnets compare --list`` prints it, so the parser, the listing and the
# check cannot disagree. (Kept as its own block: the functions above are the
# library's checks, this is the command line's table.)
# ---------------------------------------------------------------------------

class OptionRange:
    """The declared range of one numeric command-line option.

    Parameters
    ----------
    name : str
        The option as typed, e.g. ``"--epochs"``.
    integer : bool
        Whole numbers only.
    low, high : float, optional
        Bounds; ``low_open``/``high_open`` make them strict.
    """

    def __init__(self, name, integer=True, low=None, high=None, low_open=False, high_open=False):
        self.name, self.integer = name, integer
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open

    def describe(self):
        """The range in words, e.g. ``"an integer >= 1"``."""
        kind = "an integer" if self.integer else "a real number"
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        return kind + (" " + " and ".join(parts) if parts else "")

    def parse(self, text):
        """The value of ``text`` (a command-line string) in range, or ValueError."""
        try:
            value = int(text) if self.integer else float(text)
        except (TypeError, ValueError):
            raise ValueError(f"{self.name} must be {self.describe()}, got {text!r}") from None
        try:
            return check_number(value, self.name, low=self.low, high=self.high,
                                low_open=self.low_open, high_open=self.high_open,
                                integer=self.integer)
        except ValueError:
            raise ValueError(f"{self.name} must be {self.describe()}, got {text!r}") from None

    def __repr__(self):
        return f"OptionRange({self.name!r}: {self.describe()})"


#: Every numeric option of ``refnets compare`` / ``refnets gradcheck``, by destination name.
OPTION_RANGES = {
    "epochs": OptionRange("--epochs", low=1),
    "batch_size": OptionRange("--batch-size", low=1),
    "hidden": OptionRange("--hidden", low=1),
    "seed": OptionRange("--seed", low=0),
    "seeds": OptionRange("--seeds", low=1),
    "lr": OptionRange("--lr", integer=False, low=0, low_open=True),
}
