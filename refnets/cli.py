"""Command-line interface: ``refnets compare`` and ``refnets gradcheck``.

``refnets compare`` trains every registered method (refnets.algorithms) on the
same data with the same layer widths and seed, prints a table and saves
learning curves and the results (CSV, JSON, NPZ) to a new numbered folder
under ``--out``.

``refnets gradcheck`` runs the registered finite-difference checks of the
analytic derivatives (layers, losses and methods) and prints a table; the exit
code is 1 if any check fails.

Every argument is checked when it is parsed, against the ranges declared in
:data:`refnets.validation.OPTION_RANGES`: a bad one exits with code 2 and one
line naming the option, before any work. A method that fails during training
is reported in the table, the others still run, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
import traceback

import numpy as np

from . import __version__

#: Per-dataset defaults of ``refnets compare``: hidden widths, epochs, batch size.
#: fashion-mnist-small (the default) is sized so that a run of every method
#: takes a few minutes on 2 cores.
COMPARE_DEFAULTS = {
    "spirals": {"hidden": [32, 32], "epochs": 2000, "batch_size": 194},
    "fashion-mnist-small": {"hidden": [128, 128], "epochs": 3, "batch_size": 50},
    "fashion-mnist": {"hidden": [256, 256], "epochs": 5, "batch_size": 100},
}

#: The folder ``refnets compare`` writes its numbered runs into.
DEFAULT_OUT = "refnets-out"

#: Lines printed under the comparison table, one per column (and for "-").
LEGEND = (
    ("model", "what the method trains: layer widths, then its blocks (a block is a layer "
              "with parameters and what follows it; R- = a decorrelating matrix before it)"),
    ("train_acc, test_acc", "accuracy of the method's own predict after the last epoch"),
    ("ce_loss", "mean softmax cross-entropy of the training minibatches in the last epoch"),
    ("objective", "the same for a method trained on its own objective instead (hsic: sum "
                  "over blocks of nHSIC(Z_k, X) - beta nHSIC(Z_k, Y), lower is better)"),
    ("s/epoch", "seconds per epoch of training steps (evaluation excluded; mean over seeds), "
                "3 significant digits"),
    ("cos_to_bp", "cosine between the method's update and the backprop gradient on the same "
                  "minibatch, averaged over the last epoch's steps and the layers; n/a where it "
                  "is 1 by construction (the update is the exact gradient) or undefined (the "
                  "method reports none)"),
    ("a +- s", "mean and standard deviation over the seeds (--seeds N)"),
    ("-", "not applicable to this method, or the method failed (see status)"),
)


class UsageError(Exception):
    """A bad command-line value found after parsing (reported like a parse error)."""


def load_compare_dataset(name):
    """(x_train, y_train, x_test, y_test) for a ``refnets compare --dataset`` name."""
    from . import datasets

    if name == "spirals":
        return datasets.two_spirals()
    if name == "fashion-mnist-small":
        return datasets.load_fashion_mnist_small()
    if name == "fashion-mnist":
        return datasets.load_fashion_mnist()
    raise ValueError(f"--dataset must be one of {sorted(COMPARE_DEFAULTS)}, got {name!r}")


def _final_cosine(history):
    values = history.info.get("cosine_to_backprop")
    return float(np.mean(values[-1])) if values else None


def new_run_dir(out):
    """Create and return ``out/run-NNN``, the first number not taken yet.

    Earlier runs are never overwritten: the folder is created with
    ``exist_ok=False``, so two runs started at once get different numbers.
    """
    os.makedirs(out, exist_ok=True)
    taken = [int(n[4:]) for n in os.listdir(out) if n.startswith("run-") and n[4:].isdigit()]
    k = max(taken, default=0) + 1
    while True:
        path = os.path.join(out, f"run-{k:03d}")
        try:
            os.makedirs(path)
            return path
        except FileExistsError:
            k += 1


def _mean_spread(values):
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None, None
    return float(np.mean(vals)), (float(np.std(vals)) if len(vals) > 1 else None)


def run_compare(dataset="fashion-mnist-small", methods=None, epochs=None, seed=0,
                out=DEFAULT_OUT, batch_size=None, hidden=None, activation="tanh",
                lr=None, progress=True, stream=None, seeds=1):
    """Train each method on the same data; write the table, figures, CSV, JSON and NPZ.

    Every method gets a fresh ``np.random.default_rng(s)`` for its build and
    its training for each seed ``s`` in ``seed, ..., seed + seeds - 1``, so all
    start from the same data order. A method that raises is reported as
    failed and the others continue. ``lr``, if given, replaces the learning
    rate of every method's optimiser (default: each method's own). The files go
    to a new folder ``out/run-NNN`` (see :func:`new_run_dir`).

    Returns
    -------
    rows : list of dict, one per method: method, model, status, train_acc,
        test_acc, ce_loss, objective, sec_per_epoch, cos_to_bp (means over the
        seeds), the same with ``_std`` (standard deviation over the seeds,
        None for one seed), per_seed (list of dicts) and error.
    histories : dict name -> History of the first seed, for the methods that finished.
    run_dir : str, the folder the files were written to.
    """
    from . import algorithms
    from .plotting import format_table
    from .training import train

    stream = sys.stdout if stream is None else stream
    defaults = COMPARE_DEFAULTS[dataset]
    epochs = defaults["epochs"] if epochs is None else epochs
    batch_size = defaults["batch_size"] if batch_size is None else batch_size
    hidden = defaults["hidden"] if hidden is None else list(hidden)
    methods = algorithms.available_methods() if not methods or methods == ["all"] else list(methods)
    for name in methods:
        algorithms.get_method(name)  # unknown names fail before any training
    seed_list = list(range(seed, seed + seeds))

    t_start = time.perf_counter()
    data = load_compare_dataset(dataset)
    run_dir = new_run_dir(out)
    n_classes = int(max(data.y_train.max(), data.y_test.max())) + 1
    sizes = [data.x_train.shape[1], *hidden, n_classes]
    seed_text = f"seed {seed}" if seeds == 1 else f"seeds {seed_list[0]}-{seed_list[-1]}"
    print(f"refnets compare: {dataset} ({len(data.y_train)} train / {len(data.y_test)} test), "
          f"widths {sizes}, activation {activation}, {epochs} epochs, batch {batch_size}, "
          f"{seed_text}; methods: {', '.join(methods)}", file=stream, flush=True)

    rows, histories, setups = [], {}, {}
    for name in methods:
        method = algorithms.get_method(name)
        row = {"method": name, "model": None, "status": "ok", "error": "", "per_seed": []}
        for s in seed_list:
            rng = np.random.default_rng(s)
            label = name if seeds == 1 else f"{name} seed {s}"
            try:
                setup = method.build(sizes, activation, rng, data.x_train, data.y_train)
                row["model"] = row["model"] or algorithms.describe_model(
                    setup.model, decorrelated=getattr(setup.algorithm, "decor", None) is not None)
                if lr is not None:
                    setup.optimizer.lr = float(lr)
                h = train(setup.model, setup.algorithm, setup.optimizer,
                          (data.x_train, data.y_train), epochs, batch_size, rng,
                          eval_data=(data.x_test, data.y_test), progress=progress, label=label)
            except Exception as exc:  # one failing method must not stop the comparison
                row.update(status="FAILED", error=f"{type(exc).__name__}: {exc}")
                print(f"[{label}] failed:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
                break
            if s == seed_list[0]:
                histories[name], setups[name] = h, setup
            cos = None if method.exact_gradient else _final_cosine(h)
            ce = method.loss_kind == "cross-entropy"
            row["per_seed"].append({
                "seed": s, "train_acc": h.train_acc[-1], "test_acc": h.test_acc[-1],
                "ce_loss": h.train_loss[-1] if ce else None,
                "objective": None if ce else h.train_loss[-1],
                "sec_per_epoch": float(np.mean(h.epoch_time)), "cos_to_bp": cos})
        for key in ("train_acc", "test_acc", "ce_loss", "objective", "sec_per_epoch", "cos_to_bp"):
            row[key], row[key + "_std"] = _mean_spread([p[key] for p in row["per_seed"]])
            if row["status"] != "ok":
                row[key] = row[key + "_std"] = None
        row["cos_note"] = ("n/a" if method.exact_gradient or (row["status"] == "ok"
                                                              and row["cos_to_bp"] is None) else "")
        rows.append(row)
    total = time.perf_counter() - t_start

    print("\n" + format_table(table_rows(rows), align_right=("train_acc", "test_acc", "ce_loss",
                                                            "objective", "s/epoch", "cos_to_bp")),
          file=stream)
    print("\n" + "\n".join(f"  {k}: {v}" for k, v in LEGEND), file=stream)
    for row in rows:
        if row["error"]:
            print(f"  {row['method']}: {row['error']}", file=stream)

    config = dict(dataset=dataset, methods=methods, epochs=epochs, seed=seed, seeds=seeds,
                  batch_size=batch_size, sizes=sizes, activation=activation, lr=lr,
                  total_seconds=total)
    written = _write_results(run_dir, rows, histories, config)
    written += _write_figures(run_dir, dataset, data, histories, setups)
    print(f"\nwrote {run_dir}{os.sep}: {', '.join(os.path.basename(p) for p in written)}",
          file=stream)
    print(f"total wall time {total:.1f} s", file=stream, flush=True)
    return rows, histories, run_dir


def _cell(row, key, fmt):
    mean, std = row.get(key), row.get(key + "_std")
    if mean is None:
        return None
    text = format(mean, fmt)
    return text if std is None else f"{text} +- {format(std, fmt)}"


def table_rows(rows):
    """The comparison table's cells (strings; None prints as "-")."""
    out = []
    for r in rows:
        cos = "n/a" if r.get("cos_note") == "n/a" else _cell(r, "cos_to_bp", ".3f")
        out.append({"method": r["method"], "model": r.get("model"),
                    "train_acc": _cell(r, "train_acc", ".3f"), "test_acc": _cell(r, "test_acc", ".3f"),
                    "ce_loss": _cell(r, "ce_loss", ".3f"), "objective": _cell(r, "objective", ".4g"),
                    "s/epoch": None if r.get("sec_per_epoch") is None else format(r["sec_per_epoch"], ".3g"), "cos_to_bp": cos,
                    "status": r["status"]})
    return out


def _json_float(v):
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    return v


def _write_results(run_dir, rows, histories, config):
    """results.csv and results.json (summary, small) and histories.npz (the curves)."""
    paths = [os.path.join(run_dir, n) for n in ("results.csv", "results.json", "histories.npz")]
    flat = [{k: v for k, v in r.items() if k != "per_seed"} for r in rows]
    with open(paths[0], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(flat[0]) if flat else ["method"])
        writer.writeheader()
        writer.writerows(flat)
    payload = {"refnets_version": __version__, "config": config,
               "results": [{k: ([{kk: _json_float(vv) for kk, vv in p.items()} for p in v]
                                if k == "per_seed" else _json_float(v)) for k, v in r.items()}
                           for r in rows],
               "histories": f"{os.path.basename(paths[2])}: per method (first seed) <name>/train_loss, "
                            f"train_acc, test_acc, epoch_time, step_loss, info/<key>"}
    with open(paths[1], "w") as f:
        json.dump(payload, f, indent=1)
    arrays = {}
    for name, h in histories.items():
        for key in ("train_loss", "train_acc", "test_acc", "epoch_time", "step_loss"):
            arrays[f"{name}/{key}"] = np.asarray(getattr(h, key), dtype=np.float64)
        for key, values in h.info.items():
            try:
                arrays[f"{name}/info/{key}"] = np.asarray(values, dtype=np.float64)
            except ValueError:   # ragged per-layer values: keep the per-epoch mean
                arrays[f"{name}/info/{key}"] = np.array([np.mean(v) for v in values])
    np.savez_compressed(paths[2], **arrays)
    return paths


def _write_figures(run_dir, dataset, data, histories, setups):
    if not histories:
        return []
    from . import plotting

    paths = []
    fig = plotting.learning_curves(histories, title=f"refnets compare: {dataset}")
    paths.append(plotting.save(fig, os.path.join(run_dir, "learning_curves.png")))
    if dataset == "spirals":          # 2-D inputs: show every method's decision regions
        n = len(histories)
        ncols = min(n, 4)
        fig, axes = plotting.new_figure(-(-n // ncols), ncols, width=3.2, height=3.2)
        for ax, (name, h) in zip(np.ravel(axes), histories.items()):
            setup = setups[name]
            plotting.decision_boundary(
                lambda p, s=setup, st=h.state: s.algorithm.predict(s.model, st, p),
                data.x_test, data.y_test, ax=ax, title=f"{name}: test {h.test_acc[-1]:.2f}")
        for ax in np.ravel(axes)[n:]:
            ax.set_visible(False)
        paths.append(plotting.save(fig, os.path.join(run_dir, "decision_boundaries.png")))
    return paths


def list_methods(stream=None):
    """Print every registered method with what its ``build`` returns.

    Each method is built on a tiny case (widths [4, 3, 2], 8 random points)
    and introspected (:func:`refnets.algorithms.describe_setup`), so the list
    shows what ``compare`` really trains.
    """
    from . import algorithms
    from .validation import OPTION_RANGES

    stream = sys.stdout if stream is None else stream
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 4)), np.arange(8) % 2
    names = algorithms.available_methods()
    print(f"{len(names)} registered methods (`--methods all` selects every one); models shown "
          f"for widths [4, 3, 2], the defaults are per dataset:", file=stream)
    for name in names:
        m = algorithms.get_method(name)
        d = algorithms.describe_setup(m.build([4, 3, 2], "tanh", np.random.default_rng(0), x, y))
        print(f"\n{name}: {m.summary}" + (f"  [{m.paper}]" if m.paper else ""), file=stream)
        print(f"    model      {d['model']}", file=stream)
        print(f"    algorithm  {d['algorithm']}; trains on "
              f"{'the cross-entropy' if m.loss_kind == 'cross-entropy' else m.loss_kind}", file=stream)
        print(f"    optimiser  {d['optimizer']}", file=stream)
        hyper = ", ".join(f"{k}={v}" for k, v in d["hyperparameters"].items())
        print(f"    settings   {hyper or '(none)'}", file=stream)
    print("\noption ranges: " + "; ".join(f"{r.name} {r.describe()}" for r in OPTION_RANGES.values()),
          file=stream)


def _writable_out(out):
    """Create ``out`` if needed and write a probe file in it; the error text otherwise."""
    import tempfile

    try:
        os.makedirs(out, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        return f"argument --out: {out!r} cannot be written to ({exc.strerror or exc})"
    return None


def cmd_compare(args):
    if args.list:
        list_methods()
        return 0
    twice = sorted({m for m in (args.methods or []) if args.methods.count(m) > 1})
    if twice:
        args.parser.error(f"argument --methods: {', '.join(map(repr, twice))} given more than once")
    problem = _writable_out(args.out)        # before any data is loaded or any method trained
    if problem:
        args.parser.error(problem)
    try:
        rows, _, _ = run_compare(dataset=args.dataset, methods=args.methods, epochs=args.epochs,
                                 seed=args.seed, out=args.out, batch_size=args.batch_size,
                                 hidden=args.hidden, activation=args.activation, lr=args.lr,
                                 progress=not args.quiet, seeds=args.seeds)
    except (ValueError, OSError) as exc:       # e.g. a dataset file not found
        raise UsageError(f"{exc}") from None
    return 1 if any(r["status"] != "ok" for r in rows) else 0


def cmd_gradcheck(args):
    from .plotting import format_table
    from .selfcheck import all_checks, run_checks

    if args.list:
        checks = all_checks()
        for group in sorted({c.group for c in checks.values()}):
            names = sorted(n for n, c in checks.items() if c.group == group)
            print(f"{group} ({len(names)} checks)")
            for n in names:
                print(f"    {n}")
        return 0
    t0 = time.perf_counter()
    rows = run_checks(seed=args.seed, select=args.select)
    table = [{"name": r["name"], "group": r["group"], "max rel error": f"{r['error']:.2e}",
              "tol": f"{r['tol']:.0e}", "result": "pass" if r["passed"] else "FAIL",
              "seconds": r["seconds"]} for r in rows]
    print(format_table(table, floatfmt=".2f"))
    failed = [r for r in rows if not r["passed"]]
    for r in failed:
        if r.get("message"):
            print(f"  {r['name']}: {r['message']}")
    print(f"\n{len(rows) - len(failed)}/{len(rows)} checks passed "
          f"({time.perf_counter() - t0:.1f} s)")
    return 1 if failed else 0


# -- argument types: each checks its value when parsed, naming the option ---------

def _ranged(dest):
    from .validation import OPTION_RANGES

    declared = OPTION_RANGES[dest]

    def parse(text):
        try:
            return declared.parse(text)
        except ValueError as exc:
            msg = str(exc)
            raise argparse.ArgumentTypeError(msg[len(declared.name) + 1:]
                                             if msg.startswith(declared.name) else msg) from None
    parse.__name__ = declared.describe()
    return parse


def _method_name(text):
    from . import algorithms

    names = algorithms.available_methods()
    if text == "all" or text in names:
        return text
    raise argparse.ArgumentTypeError(f"unknown method {text!r}; choose 'all' or one of "
                                     f"{', '.join(names)} (see --list)")


def _out_dir(text):
    """A folder that exists or can be created, and can be written to."""
    path = os.path.abspath(text)
    if os.path.exists(path) and not os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{text!r} is an existing file, not a folder")
    probe = path
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise argparse.ArgumentTypeError(f"{text!r} cannot be created: {probe!r} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text!r} is not writable ({probe!r} refuses writes)")
    return text


def _activation(text):
    from .layers.activations import _ACTIVATIONS

    if text in _ACTIVATIONS:
        return text
    raise argparse.ArgumentTypeError(f"must be one of {', '.join(sorted(_ACTIVATIONS))}, "
                                     f"got {text!r}")


def _selection(text):
    from .selfcheck import match_checks

    try:
        match_checks(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[-1]) from None
    return text


def build_parser():
    from .validation import OPTION_RANGES

    def rng_help(dest, text):
        return f"{text}; {OPTION_RANGES[dest].describe()}"

    parser = argparse.ArgumentParser(
        prog="refnets", description=__doc__.split("\n\n")[0] + " See `refnets <command> --help`.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  refnets compare\n  refnets compare --dataset spirals --methods backprop fa\n"
               "  refnets compare --list\n  refnets gradcheck --select losses")
    parser.add_argument("--version", action="version", version=f"refnets {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="command")

    p = sub.add_parser("compare", help="train every method on the same data and compare",
                       description=run_compare.__doc__.split("\n\n")[0] + " Defaults per dataset: "
                       + "; ".join(f"{k}: hidden {v['hidden']}, {v['epochs']} epochs, batch "
                                   f"{v['batch_size']}" for k, v in COMPARE_DEFAULTS.items()) + ".")
    p.add_argument("--dataset", choices=list(COMPARE_DEFAULTS), default="fashion-mnist-small",
                   help="spirals (2-D, 194 points), fashion-mnist-small (embedded 5000/1000 "
                        "subset; default), fashion-mnist (full set; see README for the files)")
    p.add_argument("--methods", nargs="+", metavar="NAME", type=_method_name,
                   help="registered method names, or 'all' (default: all; see --list)")
    p.add_argument("--epochs", type=_ranged("epochs"),
                   help=rng_help("epochs", "epochs per method (default: per dataset)"))
    p.add_argument("--seed", type=_ranged("seed"), default=0,
                   help=rng_help("seed", "first seed of every method's rng (default 0)"))
    p.add_argument("--seeds", type=_ranged("seeds"), default=1,
                   help=rng_help("seeds", "number of seeds (seed, seed+1, ...); the table shows "
                                          "mean +- standard deviation (default 1)"))
    p.add_argument("--out", type=_out_dir, default=DEFAULT_OUT,
                   help=f"folder under which each run writes a new numbered subfolder "
                        f"run-NNN (default ./{DEFAULT_OUT})")
    p.add_argument("--batch-size", type=_ranged("batch_size"),
                   help=rng_help("batch_size", "minibatch size (default: per dataset)"))
    p.add_argument("--hidden", type=_ranged("hidden"), nargs="+", metavar="WIDTH",
                   help=rng_help("hidden", "hidden layer widths (default: per dataset)"))
    p.add_argument("--activation", type=_activation, default="tanh",
                   help="hidden nonlinearity of the methods that take one (default tanh)")
    p.add_argument("--lr", type=_ranged("lr"),
                   help=rng_help("lr", "learning rate for every method's optimiser (default: "
                                       "each method's own, see --list)"))
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress on stderr")
    p.add_argument("--list", action="store_true",
                   help="list the registered methods with their model, optimiser and settings")
    p.set_defaults(func=cmd_compare, parser=p)

    p = sub.add_parser("gradcheck", help="finite-difference check of every analytic derivative",
                       description="Run the registered derivative checks (refnets.selfcheck) "
                                   "and print name, group, max relative error, tolerance, "
                                   "pass/fail and seconds. Exit code 1 if any check fails.")
    p.add_argument("--select", type=_selection, metavar="GROUP_OR_GLOB",
                   help="a group exactly (e.g. layers, losses, hsic; see --list) or a glob over "
                        "check names, case-insensitive (e.g. 'Dense*', '*BPTT*')")
    p.add_argument("--seed", type=_ranged("seed"), default=0,
                   help=rng_help("seed", "seed of the random test inputs (default 0)"))
    p.add_argument("--list", action="store_true", help="list the groups and their checks")
    p.set_defaults(func=cmd_gradcheck, parser=p)

    __import__("refnets.vectors").vectors.add_subparser(sub)   # refnets vectors export|check
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"refnets {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:          # output piped into e.g. `head`, which stopped reading
        sys.stdout = open(os.devnull, "w")
        return 0


if __name__ == "__main__":
    sys.exit(main())
