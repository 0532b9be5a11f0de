"""Save and restore a model's parameters and an algorithm's state (``.npz``).

The file is a plain NumPy archive read with ``allow_pickle=False``: every array
is stored as itself (bit-exact), and the nesting of the state (dicts with str
or int keys, lists, tuples, scalars, None) is described by a JSON string in the
entry ``__refnets_checkpoint__``. Nothing is pickled, so loading a checkpoint
never executes code.

Layout::

    params/<k.name>        model.params() arrays
    state/<i>              the arrays found in the state, in traversal order
    __refnets_checkpoint__ JSON: {"format", "version", "params": [...], "state": tree}
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np

__all__ = ["save_checkpoint", "load_checkpoint"]

_META = "__refnets_checkpoint__"
_FORMAT, _VERSION = "refnets-checkpoint", 1


def _encode(value, arrays, path):
    """State tree -> JSON-able tree; arrays go to ``arrays`` under 'state/<i>'."""
    if isinstance(value, np.ndarray) or isinstance(value, np.generic):
        arr = np.asarray(value)
        if arr.dtype == object:
            raise ValueError(f"save_checkpoint: state{path} is an object array; only numeric "
                             f"and string arrays can be saved without pickling")
        key = f"state/{len(arrays)}"
        arrays[key] = arr
        return {"array": key, "scalar": isinstance(value, np.generic)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    if isinstance(value, dict):
        items = []
        for k, v in value.items():
            if isinstance(k, bool) or not isinstance(k, (str, int, np.integer)):
                raise ValueError(f"save_checkpoint: state{path} has a key {k!r} of type "
                                 f"{type(k).__name__}; keys must be str or int")
            kind = "str" if isinstance(k, str) else "int"
            items.append([kind, k if kind == "str" else int(k), _encode(v, arrays, f"{path}[{k!r}]")])
        return {"dict": items}
    if isinstance(value, (list, tuple)):
        kind = "list" if isinstance(value, list) else "tuple"
        return {kind: [_encode(v, arrays, f"{path}[{i}]") for i, v in enumerate(value)]}
    raise ValueError(f"save_checkpoint: state{path} has type {type(value).__name__}; a state may "
                     f"hold arrays, numbers, strings, None, and dicts/lists/tuples of them")


def _decode(node, archive):
    if "array" in node:
        arr = archive[node["array"]]
        return arr[()] if node["scalar"] else arr
    if "value" in node:
        return node["value"]
    if "dict" in node:
        return {k: _decode(v, archive) for _, k, v in node["dict"]}
    if "list" in node:
        return [_decode(v, archive) for v in node["list"]]
    if "tuple" in node:
        return tuple(_decode(v, archive) for v in node["tuple"])
    raise ValueError(f"load_checkpoint: corrupt state description {node!r}")


def save_checkpoint(path, model, state=None):
    """Write ``model.params()`` and ``state`` to ``path`` (.npz, atomically).

    Parameters
    ----------
    path : str or os.PathLike
    model : object with ``params() -> {"k.name": ndarray}`` (e.g. Sequential)
    state : dict, optional
        An algorithm state (``history.state``); arrays, numbers, strings,
        None, and dicts (str/int keys), lists and tuples of them.
    """
    params = model.params()
    arrays = {f"params/{k}": np.asarray(v) for k, v in params.items()}
    state_arrays = {}
    tree = _encode({} if state is None else state, state_arrays, "")
    arrays.update(state_arrays)
    meta = {"format": _FORMAT, "version": _VERSION, "params": list(params), "state": tree}
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


def load_checkpoint(path, model=None):
    """Read a checkpoint written by :func:`save_checkpoint`.

    Parameters
    ----------
    path : str or os.PathLike
    model : Sequential, optional
        If given, its parameters are overwritten in place (``set_params``,
        which checks keys and shapes).

    Returns
    -------
    params : dict ``{"k.name": ndarray}``
    state : the saved state, same nesting and types.
    """
    with np.load(path, allow_pickle=False) as archive:
        if _META not in archive.files:
            raise ValueError(f"load_checkpoint: {path} is not a refnets checkpoint "
                             f"(no {_META} entry)")
        meta = json.loads(str(archive[_META]))
        if meta.get("format") != _FORMAT or meta.get("version") != _VERSION:
            raise ValueError(f"load_checkpoint: {path} has format {meta.get('format')!r} "
                             f"version {meta.get('version')!r}; expected {_FORMAT!r} {_VERSION}")
        params = {k: archive[f"params/{k}"] for k in meta["params"]}
        state = _decode(meta["state"], archive)
    if model is not None:
        model.set_params(params)
    return params, state
