"""Conformance vectors: one method's small cases, three steps, every value, in one ``.npz``.

``refnets vectors export --method NAME --out FILE.npz`` runs each small case of
a method (dense; conv and RNN where the method has them) for three consecutive
steps and writes everything another implementation needs to reproduce them and
everything it should get; ``refnets vectors check FILE.npz`` rebuilds each case
from the file alone (no seed, ``rng=None``, every draw given), runs refnets and
compares every output key. The check reads files written by any implementation
that follows the schema below; it never unpickles (``allow_pickle=False``).

Schema (version 1)
------------------
The npz holds float64 or int64 arrays and one string entry ``manifest``: a JSON
object with

* ``schema`` ``"refnets-vectors"``, ``schema_version`` 1, ``producer`` (free text);
* ``method``: the registered method name (informational);
* ``relative_error``: the formula below, in words;
* ``cases``: ``{case: config}``, config = ``model`` (a list of layer configs,
  :func:`model_config`), ``algorithm`` (``class``: ``"module:Class"`` under
  ``refnets.algorithms``, ``kwargs``: its keywords; an object keyword is itself
  ``{"class", "kwargs"}``, an array keyword ``{"array": name}``), ``loss`` (a name in
  ``refnets.losses``), ``optimizer`` (``name`` for
  :func:`refnets.optim.get_optimizer` and its keywords), ``steps``;
* ``keys``: ``{array name: {role, meaning, shape, dtype, layout, tol}}`` for
  every array in the file.

Array names are ``"{case}/{path}"`` with path one of

===============================  =======  ==============================================
path                             role     value
===============================  =======  ==============================================
``param/{k.name}``               param    the model's parameters before the first step
``init/{keyword}/{key}``         given    a value given to ``init_state(**{keyword: {key: .}})``
``algo/{name}``                  input    an array keyword of the algorithm, written
                                          ``{"array": name}`` in its ``kwargs``
``step{s}/x``, ``step{s}/y``     input    minibatch s (s = 0, 1, 2)
``step{s}/given/{keyword}/{key}`` given   a draw of step s, given to ``step(**{keyword: {key: .}})``
``step{s}/loss``                 trace    the minibatch loss (0-d)
``step{s}/trace/{key}``          trace    an intermediate the step records (``trace`` keys)
``step{s}/grad/{key}``           grad     the update direction for optimiser variable ``key``
``step{s}/after/param/{k.name}`` after    the model's parameters after step s's update
``step{s}/after/state/{path}``   after    the algorithm state after step s, nested keys
                                          joined by ``/`` (numeric leaves only)
===============================  =======  ==============================================

A step is: ``res = algorithm.step(model, state, x, y, None, **given)``, then
``optimizer.update(algorithm.variables(model, state), res.grads)``.

Relative error of an output key (trace, grad, after), file value e, refnets value g::

    err = max|g - e| / max(max|e|, max|g|)      (0 when both are all zero)

A key passes when err <= its ``tol`` (integer arrays: exactly equal); a
missing or differently shaped value fails.
"""

from __future__ import annotations

import importlib
import inspect
import json
import sys

import numpy as np

from .. import __version__
from ..algorithms.base import Algorithm, Recorder
from .cases import CASES, STEPS, Case, exportable_methods
from .config import model_config, model_from_config

__all__ = ["SCHEMA", "SCHEMA_VERSION", "TOL", "VectorFileError", "model_config",
           "model_from_config", "relative_error", "export_vectors", "check_vectors",
           "CASES", "Case", "STEPS", "exportable_methods", "add_subparser"]

SCHEMA = "refnets-vectors"
SCHEMA_VERSION = 1
#: default tolerance of float outputs: far above float64 rounding over three
#: steps, far below a one-in-a-million change (which the tests require to fail)
TOL = 1e-8
ROLES = ("param", "given", "input", "trace", "grad", "after")
OUTPUT_ROLES = ("trace", "grad", "after")
RELATIVE_ERROR = "max|got - expected| / max(max|expected|, max|got|); 0 when both are all zero"


class VectorFileError(ValueError):
    """A conformance-vector file that does not follow the schema."""


# -- running a case (the one code path of export and check) -------------------------------------

_LOSSES = ("softmax_cross_entropy", "masked_softmax_cross_entropy", "mse")


def _build_algorithm(cfg, loss_name, algo_arrays=None):
    from .. import losses
    if not isinstance(cfg, dict) or not isinstance(cfg.get("class"), str) \
            or not isinstance(cfg.get("kwargs", {}), dict):
        raise VectorFileError(f"algorithm must be {{'class': 'module:Class', 'kwargs': {{...}}}}, "
                              f"got {cfg!r}")
    cls = _resolve(cfg["class"])
    if loss_name not in _LOSSES:
        raise VectorFileError(f"loss must be one of {list(_LOSSES)}, got {loss_name!r}")
    kwargs = {k: _decode(v, algo_arrays or {}) for k, v in cfg.get("kwargs", {}).items()}
    if "loss" in inspect.signature(cls).parameters:
        kwargs["loss"] = getattr(losses, loss_name)
    return cls(**kwargs)


def _resolve(path, base=Algorithm):
    """The class ``"module:Class"`` under refnets.algorithms (a subclass of nothing in
    particular when ``base`` is None)."""
    module, _, name = path.partition(":") if isinstance(path, str) else ("", "", "")
    if not name or not all(part.isidentifier() for part in module.split(".")):
        raise VectorFileError(f"algorithm class must be 'module:Class' with module under "
                              f"refnets.algorithms, got {path!r}")
    try:
        cls = getattr(importlib.import_module(f"refnets.algorithms.{module}"), name)
    except (ImportError, AttributeError):
        raise VectorFileError(f"algorithm class {path!r} not found under "
                              f"refnets.algorithms") from None
    if not isinstance(cls, type) or (base is not None and not issubclass(cls, base)):
        raise VectorFileError(f"{path!r} is not a refnets {base.__name__ if base else 'class'}")
    return cls


def _decode(value, algo_arrays):
    """A keyword value: JSON as is; ``{"array": name}`` for the case's array ``algo/{name}``;
    ``{"class": "module:Class", "kwargs": {...}}`` for an object an algorithm takes (e.g. a
    Decorrelation), built the same way."""
    if isinstance(value, dict) and set(value) == {"array"}:
        if value["array"] not in algo_arrays:
            raise VectorFileError(f"algorithm keyword refers to array algo/{value['array']}, "
                                  f"which the case does not have")
        return algo_arrays[value["array"]]
    if isinstance(value, dict) and set(value) == {"class", "kwargs"}:
        return _resolve(value["class"], base=None)(
            **{k: _decode(v, algo_arrays) for k, v in value["kwargs"].items()})
    return value


def _build_optimizer(cfg):
    from ..optim import get_optimizer
    if not isinstance(cfg, dict) or "name" not in cfg:
        raise VectorFileError(f"optimizer must be {{'name': ..., keywords}}, got {cfg!r}")
    kwargs = {k: v for k, v in cfg.items() if k != "name"}
    return get_optimizer(cfg["name"], **kwargs)


def _accepts_record(fn):
    params = inspect.signature(fn).parameters
    return "record" in params


def _flatten_state(value, prefix=""):
    """Numeric leaves of a nested state as {"a/b/c": array}."""
    out = {}
    if isinstance(value, dict):
        for key, v in value.items():
            out.update(_flatten_state(v, f"{prefix}{key}/"))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            out.update(_flatten_state(v, f"{prefix}{i}/"))
    elif isinstance(value, np.ndarray) and value.dtype.kind in "fiu":
        out[prefix[:-1]] = value.copy()
    elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        out[prefix[:-1]] = np.asarray(value)
    return out


def _check_names(rec, where):
    """'/' separates the parts of an array name, so no trace or given key may hold one."""
    names = list(rec.values) + [n for name, fam in rec.draws.items() for n in (name, *fam)]
    bad = [n for n in names if "/" in n]
    if bad:
        raise ValueError(f"{where}: trace and given-value keys must not contain '/', got {bad[:3]}")


def _run_case(config, params0, init_given, batches, step_given, rng, algo_arrays=None):
    """Run one case; return ({array path: value} of every output, init draws, step draws)."""
    model = model_from_config(config["model"])
    own = model.params()
    if sorted(own) != sorted(params0):
        raise VectorFileError(f"the file's parameters {sorted(params0)} do not match the "
                              f"model's {sorted(own)}")
    model.set_params(params0)
    algo = _build_algorithm(config["algorithm"], config.get("loss", "softmax_cross_entropy"),
                            algo_arrays)
    opt = _build_optimizer(config["optimizer"])
    rec0 = Recorder()
    if _accepts_record(algo.init_state):
        state = algo.init_state(model, rng, record=rec0, **init_given)
    elif init_given:
        raise VectorFileError(f"{type(algo).__name__}.init_state accepts no given values, "
                              f"the file gives {sorted(init_given)}")
    else:
        state = algo.init_state(model, rng)
    _check_names(rec0, type(algo).__name__)
    out, step_draws = {}, []
    for s, (x, y) in enumerate(batches):
        rec = Recorder()
        res = algo.step(model, state, x, y, rng, record=rec, **step_given[s])
        step_draws.append(rec.draws)
        _check_names(rec, type(algo).__name__)
        out[f"step{s}/loss"] = np.asarray(res.loss, dtype=np.float64)
        out.update({f"step{s}/trace/{k}": v for k, v in rec.values.items()})
        out.update({f"step{s}/grad/{k}": np.array(v, copy=True) for k, v in res.grads.items()})
        opt.update(algo.variables(model, state), res.grads)
        out.update({f"step{s}/after/param/{k}": v.copy() for k, v in model.params().items()})
        out.update({f"step{s}/after/state/{k}": v for k, v in _flatten_state(state).items()})
    return out, rec0.draws, step_draws


# -- export ----------------------------------------------------------------------------------------

def _role(path):
    parts = path.split("/")
    if parts[0] == "param":
        return "param"
    if parts[0] == "init":
        return "given"
    if parts[0] == "algo":
        return "input"
    kind = parts[1]
    return {"x": "input", "y": "input", "given": "given", "loss": "trace", "trace": "trace",
            "grad": "grad", "after": "after"}[kind]


def _describe(path, value, model_cfg):
    """(meaning, layout) of one array path."""
    parts = path.split("/")
    if parts[0] == "param":
        return f"parameter {parts[1]} before the first step", _param_layout(parts[1], model_cfg)
    if parts[0] == "init":
        return f"given initial value {parts[2]} (init_state keyword {parts[1]})", "as traced"
    if parts[0] == "algo":
        return f"array keyword {parts[1]} of the algorithm", "(n, ...) rows"
    step = parts[0][4:]
    kind = parts[1]
    if kind == "x":
        ndim = np.ndim(value)
        layout = {2: "(N, n_in)", 3: "time-major (T, N, D)", 4: "NCHW"}.get(ndim, "(N, ...)")
        return f"minibatch {step} input", layout
    if kind == "y":
        return f"minibatch {step} labels", "(N,) class indices"
    if kind == "given":
        return f"draw {parts[3]} of step {step} (step keyword {parts[2]})", "as traced"
    if kind == "loss":
        return f"minibatch loss of step {step} (mean over the batch)", "scalar"
    if kind == "trace":
        return f"intermediate {parts[2]} of step {step} (the method's trace keys)", "as traced"
    if kind == "grad":
        return (f"update direction of {parts[2]} at step {step}",
                _param_layout(parts[2], model_cfg))
    if parts[2] == "param":
        return f"parameter {parts[3]} after step {step}", _param_layout(parts[3], model_cfg)
    return f"algorithm state {'/'.join(parts[3:])} after step {step}", "as in the state"


def _param_layout(key, model_cfg):
    try:
        k, _, name = key.partition(".")
        layer = model_cfg[int(k)]
    except (ValueError, IndexError, TypeError):
        return "as the variable"
    t = layer.get("type")
    if t == "Dense":
        return {"W": "(n_out, n_in)", "b": "(n_out,)"}.get(name, "")
    if t == "Conv2D":
        return {"W": "(C_out, C_in, kh, kw)", "b": "(C_out,)"}.get(name, "")
    if t == "ConvTranspose2D":
        return {"W": "(C_in, C_out, kh, kw)", "b": "(C_out,)"}.get(name, "")
    if t == "RNN":
        return {"W_x": "(H, D)", "W_h": "(H, H)", "b": "(H,) = b_ih + b_hh"}.get(name, "")
    return ""


def _tolerance(path, value, case):
    if np.asarray(value).dtype.kind in "iu":
        return 0.0
    for suffix, tol in case.tol.items():
        if path.endswith(suffix):
            return float(tol)
    return TOL


def export_vectors(method, path, seed=0):
    """Write the conformance vectors of ``method`` to ``path`` (an ``.npz``).

    ``seed`` only chooses the values written; the check never needs it.
    Returns the manifest (a dict).
    """
    if method not in CASES:
        from ..algorithms import available_methods
        known = available_methods()
        status = "a registered method without conformance cases yet" if method in known \
            else "not a registered method"
        raise ValueError(f"export_vectors: method {method!r} is {status}; exportable: "
                         f"{exportable_methods()}")
    arrays, keys, cases = {}, {}, {}
    for case_name, case in CASES[method].items():
        rng = np.random.default_rng(seed)
        model = case.model(rng)
        batches = case.data(rng)
        algo_arrays = {} if case.arrays is None else case.arrays(rng)
        config = case.config(model)
        params0 = model.copy_params()
        out, init_draws, step_draws = _run_case(config, params0, {}, batches,
                                                [{} for _ in batches], rng, algo_arrays)
        case_arrays = {f"param/{k}": v for k, v in params0.items()}
        case_arrays.update({f"algo/{k}": v for k, v in algo_arrays.items()})
        for name, family in init_draws.items():
            case_arrays.update({f"init/{name}/{k}": v for k, v in family.items()})
        for s, (x, y) in enumerate(batches):
            case_arrays[f"step{s}/x"], case_arrays[f"step{s}/y"] = np.asarray(x), np.asarray(y)
            for name, family in step_draws[s].items():
                case_arrays.update({f"step{s}/given/{name}/{k}": v for k, v in family.items()})
        case_arrays.update(out)
        for p, value in case_arrays.items():
            value = np.asarray(value)
            if value.dtype.kind == "b":
                value = value.astype(np.int64)
            full = f"{case_name}/{p}"
            arrays[full] = value
            meaning, layout = _describe(p, value, config["model"])
            keys[full] = {"role": _role(p), "meaning": meaning, "shape": list(value.shape),
                          "dtype": str(value.dtype), "layout": layout,
                          "tol": _tolerance(p, value, case)}
        cases[case_name] = config
    manifest = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION,
                "producer": f"refnets {__version__}", "method": method,
                "relative_error": RELATIVE_ERROR, "cases": cases, "keys": keys}
    np.savez(path, manifest=np.array(json.dumps(manifest)), **arrays)
    return manifest


# -- check -----------------------------------------------------------------------------------------

def relative_error(got, expected):
    """max|got - expected| / max(max|expected|, max|got|); 0 if both are zero; inf on mismatch."""
    got, expected = np.asarray(got), np.asarray(expected)
    if got.shape != expected.shape:
        return float("inf")
    if got.size == 0:
        return 0.0
    diff = np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64)))
    scale = max(np.max(np.abs(expected)), np.max(np.abs(got)))
    if not np.isfinite(diff) or not np.isfinite(scale):
        return 0.0 if np.array_equal(got, expected, equal_nan=True) else float("inf")
    return 0.0 if scale == 0 else float(diff / scale)


def _load(path):
    """(manifest, arrays) of a vector file, or VectorFileError saying what is wrong."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {name: f[name] for name in f.files}
    except FileNotFoundError:
        raise VectorFileError(f"{path}: no such file") from None
    except Exception as exc:   # not a zip/npz, or an object array (would need unpickling)
        raise VectorFileError(f"{path}: not a readable pickle-free .npz ({exc})") from None
    if "manifest" not in arrays:
        raise VectorFileError(f"{path}: no 'manifest' entry (a JSON string) in the npz")
    raw = arrays.pop("manifest")
    if raw.shape != () or raw.dtype.kind != "U":
        raise VectorFileError(f"{path}: 'manifest' must be one string (0-d unicode array), got "
                              f"dtype {raw.dtype} shape {raw.shape}")
    try:
        manifest = json.loads(str(raw[()]))
    except json.JSONDecodeError as exc:
        raise VectorFileError(f"{path}: the manifest is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise VectorFileError(f"{path}: the manifest must be a JSON object")
    if manifest.get("schema") != SCHEMA or manifest.get("schema_version") != SCHEMA_VERSION:
        raise VectorFileError(f"{path}: expected schema {SCHEMA!r} version {SCHEMA_VERSION}, got "
                              f"{manifest.get('schema')!r} version "
                              f"{manifest.get('schema_version')!r}")
    for name, kind in (("cases", dict), ("keys", dict)):
        if not isinstance(manifest.get(name), kind) or not manifest[name]:
            raise VectorFileError(f"{path}: the manifest needs a non-empty object {name!r}")
    keys = manifest["keys"]
    undescribed = sorted(set(arrays) - set(keys))
    if undescribed:
        raise VectorFileError(f"{path}: arrays not described in the manifest's keys: "
                              f"{undescribed[:5]}")
    absent = sorted(set(keys) - set(arrays))
    if absent:
        raise VectorFileError(f"{path}: keys described in the manifest but not in the file: "
                              f"{absent[:5]}")
    for name, meta in keys.items():
        if not isinstance(meta, dict) or meta.get("role") not in ROLES:
            raise VectorFileError(f"{path}: keys[{name!r}] needs a role in {list(ROLES)}, "
                                  f"got {meta!r}")
        if list(arrays[name].shape) != list(meta.get("shape", [])):
            raise VectorFileError(f"{path}: {name!r} has shape {list(arrays[name].shape)}, the "
                                  f"manifest says {meta.get('shape')}")
        if arrays[name].dtype.kind not in "fiu":
            raise VectorFileError(f"{path}: {name!r} must be a float or int array, got "
                                  f"{arrays[name].dtype}")
        tol = meta.get("tol")
        if meta["role"] in OUTPUT_ROLES and (isinstance(tol, bool) or not isinstance(tol, (int, float))
                                             or not tol >= 0):
            raise VectorFileError(f"{path}: keys[{name!r}] needs a tolerance tol >= 0, got {tol!r}")
        case = name.split("/", 1)[0]
        if case not in manifest["cases"]:
            raise VectorFileError(f"{path}: {name!r} belongs to no case of the manifest "
                                  f"({sorted(manifest['cases'])})")
    return manifest, arrays


def _case_inputs(case, config, arrays, path):
    """params0, init given, batches, step given of one case, from the file's arrays."""
    pre = f"{case}/"
    mine = {k[len(pre):]: v for k, v in arrays.items() if k.startswith(pre)}
    steps = config.get("steps")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise VectorFileError(f"{path}: cases[{case!r}].steps must be a positive int, got {steps!r}")
    params0 = {k[len("param/"):]: v for k, v in mine.items() if k.startswith("param/")}
    algo_arrays = {k[len("algo/"):]: v for k, v in mine.items() if k.startswith("algo/")}
    init_given, batches, step_given = {}, [], [{} for _ in range(steps)]
    for k, v in mine.items():
        parts = k.split("/")
        if parts[0] == "init" and len(parts) == 3:
            init_given.setdefault(parts[1], {})[parts[2]] = v
    for s in range(steps):
        try:
            batches.append((mine[f"step{s}/x"], mine[f"step{s}/y"]))
        except KeyError as exc:
            raise VectorFileError(f"{path}: case {case!r} has no input {pre}{exc.args[0]}") from None
        for k, v in mine.items():
            parts = k.split("/")
            if parts[0] == f"step{s}" and parts[1] == "given" and len(parts) == 4:
                step_given[s].setdefault(parts[2], {})[parts[3]] = v
    return params0, init_given, batches, step_given, None, algo_arrays


def check_vectors(path, stream=None, verbose=True):
    """Rebuild every case of a vector file with refnets and compare every output key.

    Prints one line per output key (relative error, tolerance, pass/FAIL) and a
    summary. Returns the sorted list of failing keys (empty: all within
    tolerance). Raises :class:`VectorFileError` for a malformed file.
    """
    stream = sys.stdout if stream is None else stream
    manifest, arrays = _load(path)
    failed = []
    for case, config in manifest["cases"].items():
        if not isinstance(config, dict) or "model" not in config or "algorithm" not in config \
                or "optimizer" not in config:
            raise VectorFileError(f"{path}: cases[{case!r}] needs 'model', 'algorithm', "
                                  f"'optimizer' (and 'loss', 'steps')")
        inputs = _case_inputs(case, config, arrays, path)
        try:
            got, _, _ = _run_case(config, *inputs)
        except VectorFileError as exc:
            raise VectorFileError(f"{path}: case {case!r}: {exc}") from None
        except ValueError as exc:   # refnets rejected the case (bad config, missing draw, ...)
            raise VectorFileError(f"{path}: case {case!r} could not be rebuilt: {exc}") from None
        print(f"case {case}: {config['algorithm'].get('class')}, {len(config['model'])} layers, "
              f"{config['steps']} steps", file=stream)
        for name, meta in manifest["keys"].items():
            if not name.startswith(case + "/") or meta["role"] not in OUTPUT_ROLES:
                continue
            sub = name[len(case) + 1:]
            expected = arrays[name]
            if sub not in got:
                err, ok, note = float("inf"), False, "  (refnets does not produce this key)"
            else:
                value = got[sub]
                if expected.dtype.kind in "iu" and np.asarray(value).dtype.kind in "iu":
                    ok = np.array_equal(value, expected)
                    err = 0.0 if ok else relative_error(value, expected)
                else:
                    err = relative_error(value, expected)
                    ok = err <= meta["tol"]
                note = ""
            if not ok:
                failed.append(name)
            if verbose or not ok:
                print(f"  {'ok  ' if ok else 'FAIL'} {err:9.2e} (tol {meta['tol']:.0e})  {name}{note}",
                      file=stream)
    n_out = sum(meta["role"] in OUTPUT_ROLES for meta in manifest["keys"].values())
    if failed:
        print(f"{len(failed)} of {n_out} output keys outside tolerance: {', '.join(failed)}",
              file=stream)
    else:
        print(f"all {n_out} output keys within tolerance ({manifest.get('producer', '?')} "
              f"vs refnets {__version__})", file=stream)
    return sorted(failed)


# -- command line ------------------------------------------------------------------------------

def _cmd_export(args):
    if args.list:
        for name in exportable_methods():
            print(f"{name:16s} cases: {', '.join(CASES[name])}")
        return 0
    if not args.method or not args.out:
        print("refnets vectors export: error: --method and --out are required (or --list)",
              file=sys.stderr)
        return 2
    try:
        manifest = export_vectors(args.method, args.out, seed=args.seed)
    except ValueError as exc:
        print(f"refnets vectors export: error: {exc}", file=sys.stderr)
        return 2
    n = len(manifest["keys"])
    print(f"wrote {args.out}: method {args.method}, cases {', '.join(manifest['cases'])}, "
          f"{STEPS} steps, {n} arrays")
    return 0


def _cmd_check(args):
    try:
        failed = check_vectors(args.file, verbose=not args.quiet)
    except VectorFileError as exc:
        print(f"refnets vectors check: error: {exc}", file=sys.stderr)
        return 2
    return 1 if failed else 0


def add_subparser(subparsers):
    """Add ``refnets vectors export|check`` to the CLI's subparsers."""
    p = subparsers.add_parser(
        "vectors", help="export or check conformance vectors (npz + JSON manifest)",
        description="Conformance vectors: a method's small cases over three steps, every input, "
                    "draw, intermediate, update and parameter, in one pickle-free npz "
                    "(schema: README, 'Cross-checking your implementation').")
    sub = p.add_subparsers(dest="vectors_command", metavar="action", required=True)
    e = sub.add_parser("export", help="write a method's vectors to an npz")
    e.add_argument("--method", help="registered method name (see --list)")
    e.add_argument("--out", help="output .npz path")
    e.add_argument("--seed", type=int, default=0,
                   help="chooses the values written (the check never needs it; default 0)")
    e.add_argument("--list", action="store_true", help="list the exportable methods and exit")
    e.set_defaults(func=_cmd_export)
    c = sub.add_parser("check", help="rebuild every case with refnets and compare every key; "
                                     "exit 0 if all are within tolerance, 1 naming the others, "
                                     "2 for a malformed file")
    c.add_argument("file", help="a vectors .npz (written by refnets or any implementation)")
    c.add_argument("--quiet", action="store_true", help="print only the keys that fail")
    c.set_defaults(func=_cmd_check)
    return p
