"""Save and restore a training run: parameters, algorithm state, optimiser, rng, counters.

The file is a plain NumPy archive read with ``allow_pickle=False``: every array
is stored as itself (bit-exact), and the nesting of the state (dicts with str
or int keys, lists, tuples, scalars, None) is described by a JSON string in the
entry ``__refnets_checkpoint__``. Nothing is pickled, so loading a checkpoint
never executes code.

Layout (format version 2)::

    params/<k.name>        model.params() arrays
    state/<i>              the arrays found in the algorithm state, in traversal order
    optimizer/<i>          the arrays of the optimiser's state, in traversal order
    __refnets_checkpoint__ JSON: {"format", "version", "params": [...], "state": tree,
                                  "optimizer": {"class", "hyperparameters", "t", "state"} or null,
                                  "rng": the bit generator's state or null,
                                  "epoch": int, "step": int}

With the optimiser and the rng stored, a run saved after epoch e and resumed
(:func:`load_checkpoint` into a freshly built model, optimiser and rng, then
``train(..., state=state, start_epoch=e + 1)``) continues exactly as the
uninterrupted run would have, bit for bit.

Every problem with a file (empty, truncated, not a checkpoint, an older
format version, a description that does not match the arrays) raises one
error type, :class:`CheckpointError`, naming the file and what is wrong.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field

import numpy as np

from .validation import check_int, check_rng

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint", "Checkpoint",
           "CheckpointError"]

_META = "__refnets_checkpoint__"
_FORMAT, _VERSION = "refnets-checkpoint", 2


class CheckpointError(ValueError):
    """A file is not a readable refnets checkpoint (the message names file and fault)."""


@dataclass
class Checkpoint:
    """Everything :func:`read_checkpoint` found in a file.

    Attributes
    ----------
    params : dict ``{"k.name": ndarray}``
    state : the algorithm state, same nesting and types as saved
    optimizer : dict or None
        ``{"class": name, "hyperparameters": {...}, "t": int, "state": {...}}``.
    rng_state : dict or None
        ``numpy.random.Generator.bit_generator.state`` at the time of saving.
    epoch, step : int
        Completed epochs and optimiser steps.
    """

    params: dict
    state: object
    optimizer: dict = None
    rng_state: dict = None
    epoch: int = 0
    step: int = 0
    path: str = field(default="", repr=False)


# ---------------------------------------------------------------------------
# the tree <-> JSON description
# ---------------------------------------------------------------------------
def _encode(value, arrays, path, prefix="state"):
    """Tree -> JSON-able tree; arrays go to ``arrays`` (this prefix's only) as '<prefix>/<i>'."""
    if isinstance(value, np.ndarray) or isinstance(value, np.generic):
        arr = np.asarray(value)
        if arr.dtype == object:
            raise ValueError(f"save_checkpoint: {prefix}{path} is an object array; only numeric "
                             f"and string arrays can be saved without pickling")
        key = f"{prefix}/{len(arrays)}"
        arrays[key] = arr
        return {"array": key, "scalar": isinstance(value, np.generic)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    if isinstance(value, dict):
        items = []
        for k, v in value.items():
            if isinstance(k, bool) or not isinstance(k, (str, int, np.integer)):
                raise ValueError(f"save_checkpoint: {prefix}{path} has a key {k!r} of type "
                                 f"{type(k).__name__}; keys must be str or int")
            kind = "str" if isinstance(k, str) else "int"
            items.append([kind, k if kind == "str" else int(k),
                          _encode(v, arrays, f"{path}[{k!r}]", prefix)])
        return {"dict": items}
    if isinstance(value, (list, tuple)):
        kind = "list" if isinstance(value, list) else "tuple"
        return {kind: [_encode(v, arrays, f"{path}[{i}]", prefix) for i, v in enumerate(value)]}
    raise ValueError(f"save_checkpoint: {prefix}{path} has type {type(value).__name__}; it may "
                     f"hold arrays, numbers, strings, None, and dicts/lists/tuples of them")


def _decode(node, archive, prefix):
    """JSON description -> tree; any mismatch raises a plain message (wrapped by the caller)."""
    if not isinstance(node, dict) or len(node) not in (1, 2):
        raise ValueError(f"a {prefix} entry of the description is malformed: {node!r:.60}")
    if "array" in node:
        key = node["array"]
        if not (isinstance(key, str) and key.startswith(prefix + "/") and key in archive.files):
            raise ValueError(f"the description names a {prefix} array {key!r:.60} that the "
                             f"file does not hold")
        arr = archive[key]
        return arr[()] if node.get("scalar") is True else arr
    if len(node) != 1:
        raise ValueError(f"a {prefix} entry of the description is malformed: {node!r:.60}")
    (kind, value), = node.items()
    if kind == "value":
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise ValueError(f"a {prefix} value has type {type(value).__name__}")
        return value
    if kind == "dict" and isinstance(value, list):
        out = {}
        for item in value:
            if not (isinstance(item, list) and len(item) == 3 and item[0] in ("str", "int")
                    and isinstance(item[1], str if item[0] == "str" else int)):
                raise ValueError(f"a {prefix} dict item is malformed: {item!r:.60}")
            out[item[1]] = _decode(item[2], archive, prefix)
        return out
    if kind in ("list", "tuple") and isinstance(value, list):
        items = [_decode(v, archive, prefix) for v in value]
        return items if kind == "list" else tuple(items)
    raise ValueError(f"a {prefix} entry of the description is malformed: {node!r:.60}")


# ---------------------------------------------------------------------------
# save
# ---------------------------------------------------------------------------
def save_checkpoint(path, model, state=None, *, optimizer=None, rng=None, epoch=0, step=0):
    """Write a training run to ``path`` (.npz, atomically: a failed write leaves nothing).

    Parameters
    ----------
    path : str or os.PathLike
    model : object with ``params() -> {"k.name": ndarray}`` (e.g. Sequential)
    state : dict, optional
        An algorithm state (``history.state``); arrays, numbers, strings,
        None, and dicts (str/int keys), lists and tuples of them.
    optimizer : refnets.optim.Optimizer, optional
        Its class, hyperparameters and accumulated state (moments, velocities, t).
    rng : numpy.random.Generator, optional
        Its bit generator's state, so a resumed run draws what the uninterrupted one would.
    epoch, step : int
        Completed epochs and optimiser steps (``train`` passes them).

    Returns
    -------
    str, the path written.
    """
    where = "save_checkpoint"
    check_rng(rng, "rng", where, allow_none=True)
    epoch = check_int(epoch, "epoch", where, low=0)
    step = check_int(step, "step", where, low=0)
    if optimizer is not None and not all(hasattr(optimizer, a) for a in
                                         ("hyperparameters", "state_dict")):
        raise ValueError(f"{where}: optimizer must be a refnets.optim optimiser (with "
                         f"hyperparameters() and state_dict()), got {type(optimizer).__name__}")
    params = model.params()
    arrays = {f"params/{k}": np.asarray(v) for k, v in params.items()}
    state_arrays, opt_arrays = {}, {}
    tree = _encode({} if state is None else state, state_arrays, "", "state")
    opt_meta = None
    if optimizer is not None:
        sd = optimizer.state_dict()
        opt_meta = {"class": type(optimizer).__name__,
                    "hyperparameters": optimizer.hyperparameters(),
                    "t": int(sd["t"]), "state": _encode(sd["state"], opt_arrays, "", "optimizer")}
    arrays.update(state_arrays)
    arrays.update(opt_arrays)
    meta = {"format": _FORMAT, "version": _VERSION, "params": list(params), "state": tree,
            "optimizer": opt_meta, "rng": None if rng is None else rng.bit_generator.state,
            "epoch": epoch, "step": step}
    arrays[_META] = np.array(json.dumps(meta))
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".ckpt-", suffix=".npz", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


# ---------------------------------------------------------------------------
# load
# ---------------------------------------------------------------------------
def _read_meta(archive):
    if _META not in archive.files:
        raise ValueError(f"not a refnets checkpoint (no {_META} entry)")
    meta = json.loads(str(archive[_META][()]))
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise ValueError(f"not a refnets checkpoint (format {meta.get('format')!r:.40} "
                         f"instead of {_FORMAT!r})" if isinstance(meta, dict) else
                         "not a refnets checkpoint (its description is not a JSON object)")
    version = meta.get("version")
    if version != _VERSION:
        raise ValueError(f"has checkpoint format version {version!r}; this refnets reads "
                         f"version {_VERSION} only (version 1 files lack the optimiser, rng and "
                         f"counters: re-create the checkpoint with this version)")
    for key, kind in (("params", list), ("optimizer", (dict, type(None))),
                      ("rng", (dict, type(None))), ("epoch", int), ("step", int)):
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise ValueError(f"the description's {key!r} entry is missing or has the wrong type")
    return meta


def read_checkpoint(path):
    """Read everything in a checkpoint written by :func:`save_checkpoint`.

    Returns
    -------
    Checkpoint

    Raises
    ------
    FileNotFoundError
        No such file.
    CheckpointError
        Anything else that makes the file unreadable, naming the file.
    """
    shown = os.fspath(path) if isinstance(path, (str, os.PathLike)) else path
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"load_checkpoint: path must be a str or os.PathLike, got "
                         f"{type(path).__name__}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_checkpoint: no checkpoint file {shown}")
    with open(path, "rb") as f:
        head = f.read(4)
    if len(head) == 0:
        raise CheckpointError(f"load_checkpoint: {shown}: the file is empty (0 bytes); not a "
                              f"readable .npz archive")
    if head != b"PK\x03\x04":       # every .npz is a zip archive
        raise CheckpointError(f"load_checkpoint: {shown}: not a readable .npz archive (it does "
                              f"not start with the zip signature, got {head!r})")
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = _read_meta(archive)
            params = {}
            for k in meta["params"]:
                if not isinstance(k, str) or f"params/{k}" not in archive.files:
                    raise ValueError(f"the description lists parameter {k!r:.40} that the file "
                                     f"does not hold")
                params[k] = archive[f"params/{k}"]
            state = _decode(meta["state"], archive, "state")
            opt = meta["optimizer"]
            if opt is not None:
                if not (isinstance(opt.get("class"), str) and isinstance(opt.get("t"), int)
                        and isinstance(opt.get("hyperparameters"), dict)):
                    raise ValueError("the optimizer entry of the description is malformed")
                opt = dict(opt, state=_decode(opt.get("state"), archive, "optimizer"))
    except CheckpointError:
        raise
    except Exception as exc:    # noqa: BLE001 - whatever a damaged file makes numpy/zipfile raise
        detail = str(exc) or type(exc).__name__
        if isinstance(exc, (zipfile.BadZipFile, EOFError, NotImplementedError)) \
                or "zip" in detail.lower():
            detail = f"not a readable .npz archive (truncated or corrupt: {detail})"
        raise CheckpointError(f"load_checkpoint: {shown}: {detail}") from exc
    return Checkpoint(params=params, state=state, optimizer=opt, rng_state=meta["rng"],
                      epoch=meta["epoch"], step=meta["step"], path=shown)


def load_checkpoint(path, model=None, *, optimizer=None, rng=None):
    """Read a checkpoint and restore what it holds into the objects given.

    Parameters
    ----------
    path : str or os.PathLike
    model : Sequential, optional
        Its parameters are overwritten in place (``set_params`` checks keys and shapes).
    optimizer : refnets.optim.Optimizer, optional
        Must be of the saved class; gets the saved hyperparameters and state.
    rng : numpy.random.Generator, optional
        Gets the saved bit-generator state.

    Returns
    -------
    params : dict ``{"k.name": ndarray}``
    state : the saved algorithm state, same nesting and types.

    Use :func:`read_checkpoint` for the epoch and step counters.
    """
    ck = read_checkpoint(path)
    _restore(ck, model, optimizer, rng)
    return ck.params, ck.state


def _restore(ck, model, optimizer, rng):
    where = "load_checkpoint"
    check_rng(rng, "rng", where, allow_none=True)
    if optimizer is not None:
        if ck.optimizer is None:
            raise CheckpointError(f"{where}: {ck.path} holds no optimiser state (saved without "
                                  f"optimizer=); cannot restore {type(optimizer).__name__}")
        if type(optimizer).__name__ != ck.optimizer["class"]:
            raise ValueError(f"{where}: optimizer must be a {ck.optimizer['class']} (the saved "
                             f"one in {ck.path}), got {type(optimizer).__name__}")
    if rng is not None:
        if ck.rng_state is None:
            raise CheckpointError(f"{where}: {ck.path} holds no rng state (saved without rng=)")
        if ck.rng_state.get("bit_generator") != type(rng.bit_generator).__name__:
            raise ValueError(f"{where}: rng must use a {ck.rng_state.get('bit_generator')} bit "
                             f"generator (the saved one in {ck.path}), got "
                             f"{type(rng.bit_generator).__name__}")
    # Build everything first, so a failure leaves the given objects untouched.
    new_opt = None
    if optimizer is not None:
        try:
            new_opt = type(optimizer)(**ck.optimizer["hyperparameters"])
            new_opt.load_state_dict({"t": ck.optimizer["t"], "state": ck.optimizer["state"]})
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{where}: {ck.path}: the saved optimiser cannot be "
                                  f"restored ({exc})") from exc
    if rng is not None:
        probe = np.random.Generator(type(rng.bit_generator)())
        try:
            probe.bit_generator.state = ck.rng_state
        except (ValueError, TypeError, KeyError) as exc:
            raise CheckpointError(f"{where}: {ck.path}: the saved rng state is invalid "
                                  f"({exc})") from exc
    if model is not None:
        model.set_params(ck.params)
    if new_opt is not None:
        optimizer.__dict__.update(new_opt.__dict__)
    if rng is not None:
        rng.bit_generator.state = ck.rng_state
