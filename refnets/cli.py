"""Command-line interface: ``refnets compare`` and ``refnets gradcheck``.

``refnets compare`` trains every registered method (refnets.algorithms) on the
same data with the same MLP layer sizes and seed, prints a table and saves
learning curves and the results (CSV, JSON) to ``--out``.

``refnets gradcheck`` runs every registered finite-difference check of the
analytic derivatives (layers and methods) and prints a table; the exit code is
1 if any check fails.
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
#: fashion-mnist-small (the default) is sized so that a run of ~10 methods takes
#: under 3 minutes on 2 cores.
COMPARE_DEFAULTS = {
    "spirals": {"hidden": [32, 32], "epochs": 2000, "batch_size": 194},
    "fashion-mnist-small": {"hidden": [128, 128], "epochs": 3, "batch_size": 50},
    "fashion-mnist": {"hidden": [256, 256], "epochs": 5, "batch_size": 100},
}


def load_compare_dataset(name):
    """(x_train, y_train, x_test, y_test) for a ``refnets compare --dataset`` name."""
    from . import datasets

    if name == "spirals":
        return datasets.two_spirals()
    if name == "fashion-mnist-small":
        return datasets.load_fashion_mnist_small()
    if name == "fashion-mnist":
        return datasets.load_fashion_mnist()
    raise ValueError(f"unknown dataset {name!r}; choose from {sorted(COMPARE_DEFAULTS)}")


def _final_cosine(history):
    values = history.info.get("cosine_to_backprop")
    return float(np.mean(values[-1])) if values else None


def run_compare(dataset="fashion-mnist-small", methods=None, epochs=None, seed=0,
                out="refnets-out", batch_size=None, hidden=None, activation="tanh",
                lr=None, progress=True, stream=None):
    """Train each method on the same data; write the table, figure, CSV and JSON.

    Every method gets a fresh ``np.random.default_rng(seed)`` for its build and
    its training, so all start from the same data order. A method that raises
    is reported as failed and the others continue. ``lr``, if given, replaces
    the learning rate of every method's optimiser (default: each method's own).

    Returns
    -------
    rows : list of dict (method, status, train_acc, test_acc, sec_per_epoch,
        cos_to_bp, error), one per method.
    histories : dict name -> History of the methods that finished.
    """
    from . import algorithms
    from .plotting import format_table
    from .training import train

    stream = sys.stdout if stream is None else stream
    defaults = COMPARE_DEFAULTS[dataset]
    epochs = defaults["epochs"] if epochs is None else epochs
    batch_size = defaults["batch_size"] if batch_size is None else batch_size
    hidden = defaults["hidden"] if hidden is None else list(hidden)
    methods = algorithms.available_methods() if not methods else list(methods)
    for name in methods:
        algorithms.get_method(name)  # unknown names fail before any training

    t_start = time.perf_counter()
    data = load_compare_dataset(dataset)
    n_classes = int(max(data.y_train.max(), data.y_test.max())) + 1
    sizes = [data.x_train.shape[1], *hidden, n_classes]
    print(f"refnets compare: {dataset} ({len(data.y_train)} train / {len(data.y_test)} test), "
          f"MLP {sizes} {activation}, {epochs} epochs, batch {batch_size}, seed {seed}; "
          f"methods: {', '.join(methods)}", file=stream, flush=True)

    rows, histories, setups = [], {}, {}
    for name in methods:
        rng = np.random.default_rng(seed)
        row = {"method": name, "status": "ok", "train_acc": None, "test_acc": None,
               "sec_per_epoch": None, "cos_to_bp": None, "error": ""}
        try:
            setup = algorithms.get_method(name).build(sizes, activation, rng,
                                                      data.x_train, data.y_train)
            if lr is not None:
                setup.optimizer.lr = float(lr)
            h = train(setup.model, setup.algorithm, setup.optimizer, (data.x_train, data.y_train),
                      epochs, batch_size, rng, eval_data=(data.x_test, data.y_test),
                      progress=progress, label=name)
        except Exception as exc:  # one failing method must not stop the comparison
            row.update(status="FAILED", error=f"{type(exc).__name__}: {exc}")
            print(f"[{name}] failed:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
        else:
            histories[name] = h
            setups[name] = setup
            row.update(train_acc=h.train_acc[-1], test_acc=h.test_acc[-1],
                       sec_per_epoch=float(np.mean(h.epoch_time)), cos_to_bp=_final_cosine(h))
        rows.append(row)
    total = time.perf_counter() - t_start

    columns = ["method", "train_acc", "test_acc", "sec_per_epoch", "cos_to_bp", "status"]
    print("\n" + format_table(rows, columns), file=stream)
    for row in rows:
        if row["error"]:
            print(f"  {row['method']}: {row['error']}", file=stream)

    os.makedirs(out, exist_ok=True)
    _write_results(out, rows, histories, dict(dataset=dataset, methods=methods, epochs=epochs,
                                              seed=seed, batch_size=batch_size, sizes=sizes,
                                              activation=activation, lr=lr, total_seconds=total))
    figures = _write_figures(out, dataset, data, histories, setups)
    print(f"\nwrote {', '.join([os.path.join(out, 'results.csv'), os.path.join(out, 'results.json')] + figures)}",
          file=stream)
    print(f"total wall time {total:.1f} s", file=stream, flush=True)
    return rows, histories


def _json_float(v):
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v


def _write_results(out, rows, histories, config):
    with open(os.path.join(out, "results.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["method"])
        writer.writeheader()
        writer.writerows(rows)
    payload = {"refnets_version": __version__, "config": config,
               "results": [{k: _json_float(v) for k, v in r.items()} for r in rows],
               "histories": {k: h.as_dict() for k, h in histories.items()}}
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(payload, f, indent=1, default=float)


def _write_figures(out, dataset, data, histories, setups):
    if not histories:
        return []
    from . import plotting

    paths = []
    fig = plotting.learning_curves(histories, title=f"refnets compare: {dataset}")
    paths.append(plotting.save(fig, os.path.join(out, "learning_curves.png")))
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
        paths.append(plotting.save(fig, os.path.join(out, "decision_boundaries.png")))
    return paths


def cmd_compare(args):
    from . import algorithms

    if args.list:
        for name in algorithms.available_methods():
            m = algorithms.get_method(name)
            print(f"{name:24s} {m.summary}" + (f"  [{m.paper}]" if m.paper else ""))
        return 0
    try:
        rows, _ = run_compare(dataset=args.dataset, methods=args.methods, epochs=args.epochs,
                              seed=args.seed, out=args.out, batch_size=args.batch_size,
                              hidden=args.hidden, activation=args.activation, lr=args.lr,
                              progress=not args.quiet)
    except (ValueError, FileNotFoundError) as exc:
        print(f"refnets compare: error: {exc}", file=sys.stderr)
        return 2
    return 1 if any(r["status"] != "ok" for r in rows) else 0


def cmd_gradcheck(args):
    from .plotting import format_table
    from .selfcheck import run_checks

    t0 = time.perf_counter()
    rows = run_checks(seed=args.seed, select=args.select)
    if not rows:
        print(f"refnets gradcheck: no check matches {args.select!r}", file=sys.stderr)
        return 2
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


def build_parser():
    parser = argparse.ArgumentParser(
        prog="refnets", description=__doc__.split("\n\n")[0] + " See `refnets <command> --help`.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  refnets compare\n  refnets compare --dataset spirals --methods backprop\n"
               "  refnets gradcheck --select dense")
    parser.add_argument("--version", action="version", version=f"refnets {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="command")

    p = sub.add_parser("compare", help="train every method on the same data and compare",
                       description=run_compare.__doc__.split("\n\n")[0] + " Defaults per dataset: "
                       + "; ".join(f"{k}: hidden {v['hidden']}, {v['epochs']} epochs, batch "
                                   f"{v['batch_size']}" for k, v in COMPARE_DEFAULTS.items()) + ".")
    p.add_argument("--dataset", choices=list(COMPARE_DEFAULTS), default="fashion-mnist-small",
                   help="spirals (2-D, 194 points), fashion-mnist-small (embedded 5000/1000 "
                        "subset; default), fashion-mnist (full set; see README for the files)")
    p.add_argument("--methods", nargs="+", metavar="NAME",
                   help="registered method names (default: all; see --list)")
    p.add_argument("--epochs", type=int, help="epochs per method (default: per dataset)")
    p.add_argument("--seed", type=int, default=0, help="seed of every method's rng (default 0)")
    p.add_argument("--out", default="refnets-out", help="output directory (default ./refnets-out)")
    p.add_argument("--batch-size", type=int, help="minibatch size (default: per dataset)")
    p.add_argument("--hidden", type=int, nargs="+", metavar="WIDTH",
                   help="hidden layer widths (default: per dataset)")
    p.add_argument("--activation", default="tanh", help="hidden nonlinearity (default tanh)")
    p.add_argument("--lr", type=float,
                   help="learning rate for every method's optimiser (default: each method's own; "
                        "spirals needs ~1e-2 with Adam)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress on stderr")
    p.add_argument("--list", action="store_true", help="list the registered methods and exit")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("gradcheck", help="finite-difference check of every analytic derivative",
                       description="Run every registered derivative check (refnets.selfcheck) "
                                   "and print name, group, max relative error, tolerance, "
                                   "pass/fail and seconds. Exit code 1 if any check fails.")
    p.add_argument("--select", help="only checks whose name or group contains this text")
    p.add_argument("--seed", type=int, default=0, help="seed of the random test inputs")
    p.set_defaults(func=cmd_gradcheck)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    for name in ("epochs", "batch_size", "lr"):
        value = getattr(args, name, None)
        if value is not None and not value > 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0, got {value}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
