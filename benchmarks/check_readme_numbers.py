"""Re-run the commands behind the README's result tables and fail on drift.

Every result table in the README follows a line that holds the command that
produced it, in backticks::

    `refnets compare --dataset spirals --seeds 3`

    | method | model | train acc | test acc | cos to bp | s/epoch |
    |---|---|---|---|---|---|
    | backprop | ... | 0.995 ± 0.004 | 0.938 ± 0.010 | n/a | 0.000546 |

This script finds each such pair, runs the command (output to a temporary
folder), and compares every "mean ± spread" cell of the accuracy and cosine
columns with the fresh run: a number fails when it moved by more than its
seed-to-seed spread (the larger of the README's and the fresh run's standard
deviation, and never less than the rounding of the printed digits). Seconds
per epoch depend on the machine and are not compared.

    python benchmarks/check_readme_numbers.py                 # every table, exit 1 on drift
    python benchmarks/check_readme_numbers.py --list          # the commands only
    python benchmarks/check_readme_numbers.py --table-from refnets-out/run-003
                                                              # print a README table from a run

It takes as long as the commands (a few minutes each on 2 cores).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMAND = re.compile(r"`(refnets compare[^`]*)`")
CHECKED = {"train acc": "train_acc", "test acc": "test_acc", "cos to bp": "cos_to_bp"}
CELL = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(?:(?:±|\+-)\s*(\d+(?:\.\d+)?))?\s*$")


def parse_tables(text):
    """[(command, header, rows)] for every table that follows a `refnets compare` line.

    ``rows`` is a list of dicts header -> cell text. The command must sit on
    one of the three non-blank lines before the table.
    """
    lines = text.splitlines()
    found, i = [], 0
    while i < len(lines):
        if lines[i].lstrip().startswith("|") and i + 1 < len(lines) and set(
                lines[i + 1].replace("|", "").strip()) <= set("-: ") and "-" in lines[i + 1]:
            before = [ln for ln in lines[max(0, i - 8):i] if ln.strip()][-3:]
            commands = [m.group(1) for ln in before for m in COMMAND.finditer(ln)]
            header = [c.strip() for c in lines[i].strip().strip("|").split("|")]
            rows, j = [], i + 2
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                cells = [c.strip() for c in lines[j].strip().strip("|").split("|")]
                rows.append(dict(zip(header, cells)))
                j += 1
            if commands and header and header[0] == "method":
                found.append((commands[-1], header, rows))
            i = j
        else:
            i += 1
    return found


def parse_cell(text):
    """(mean, spread, rounding) of "0.812 ± 0.004"; None for "n/a", "-" or text."""
    m = CELL.match(text.replace("`", ""))
    if not m:
        return None
    decimals = len(m.group(1).split(".")[1]) if "." in m.group(1) else 0
    spread = float(m.group(2)) if m.group(2) else 0.0
    return float(m.group(1)), spread, 0.5 * 10.0 ** -decimals


def run(command, out):
    """Run a README command with its output in ``out``; the results of that run."""
    args = shlex.split(command)[2:]                       # drop "refnets compare"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg")
    subprocess.run([sys.executable, "-m", "refnets", "compare", *args, "--quiet", "--out", out],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    latest = sorted(glob.glob(os.path.join(out, "run-*")))[-1]
    with open(os.path.join(latest, "results.json")) as f:
        return {r["method"]: r for r in json.load(f)["results"]}


def compare(rows, fresh):
    """Lines describing every number that drifted beyond its spread (empty: none)."""
    problems = []
    for row in rows:
        name = row["method"].strip("`")
        for column, key in CHECKED.items():
            if column not in row:
                continue
            readme = parse_cell(row[column])
            if readme is None:
                continue
            r = fresh.get(name)
            if r is None or r.get(key) is None:
                problems.append(f"{name} {column}: README {row[column]}, fresh run has none")
                continue
            mean, spread, rounding = readme
            tol = max(spread, r.get(key + "_std") or 0.0, rounding) + 1e-12
            if abs(r[key] - mean) > tol:
                problems.append(f"{name} {column}: README {row[column]}, fresh "
                                f"{r[key]:.3f} (moved {r[key] - mean:+.3f}, allowed {tol:.3f})")
    return problems


def table_from(run_dir):
    """A README table (markdown) from a ``refnets compare`` run folder."""
    with open(os.path.join(run_dir, "results.json")) as f:
        payload = json.load(f)

    def cell(r, key):
        if r.get(key) is None:
            return "n/a" if key == "cos_to_bp" and r.get("cos_note") == "n/a" else "-"
        s = r.get(key + "_std")
        return f"{r[key]:.3f}" + ("" if s is None else f" ± {s:.3f}")
    out = ["| method | model | train acc | test acc | cos to bp | s/epoch |",
           "|---|---|---|---|---|---|"]
    for r in payload["results"]:
        sec = "-" if r.get("sec_per_epoch") is None else f"{r['sec_per_epoch']:.3g}"
        out.append(f"| `{r['method']}` | {r['model'] or '-'} | {cell(r, 'train_acc')} | "
                   f"{cell(r, 'test_acc')} | {cell(r, 'cos_to_bp')} | {sec} |")
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="*", default=[os.path.join(ROOT, "README.md")],
                   help="markdown files to check (default: the top-level README.md)")
    p.add_argument("--list", action="store_true", help="print the commands and exit")
    p.add_argument("--table-from", metavar="RUN_DIR", help="print a README table from a run")
    args = p.parse_args(argv)
    if args.table_from:
        print(table_from(args.table_from))
        return 0
    failed = False
    for path in args.files:
        with open(path, encoding="utf-8") as f:
            tables = parse_tables(f.read())
        for command, _, rows in tables:
            print(f"{os.path.relpath(path, ROOT)}: {command} ({len(rows)} methods)", flush=True)
            if args.list:
                continue
            with tempfile.TemporaryDirectory() as out:
                problems = compare(rows, run(command, out))
            for line in problems:
                print(f"  DRIFT {line}")
            print("  ok" if not problems else f"  {len(problems)} numbers drifted", flush=True)
            failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
