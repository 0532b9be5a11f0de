"""Every tutorial runs with --quick, writes a figure and ends with a sane SUMMARY line.

Discovers tutorials/[0-9]*.py. A tutorial containing the line ``# pytest: slow``
(its --quick run takes more than ~30 s) is marked slow and runs with ``pytest -m slow``.
One containing ``# pytest: needs torch`` is marked torch; without torch it must say
so in one line and exit 0.
"""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9]*.py"))


HAVE_TORCH = importlib.util.find_spec("torch") is not None


def _flags(path):
    return {line.strip() for line in path.read_text().splitlines()}


def _param(path):
    flags = _flags(path)
    marks = [pytest.mark.slow] if "# pytest: slow" in flags else []
    if "# pytest: needs torch" in flags:
        marks.append(pytest.mark.torch)
    return pytest.param(path, id=path.stem, marks=marks)


def _numbers(value):
    """Every number inside a JSON value (nested lists/dicts included)."""
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from _numbers(v)


def test_tutorials_found():
    assert TUTORIALS, "no tutorials/[0-9]*.py found"


@pytest.mark.parametrize("path", [_param(p) for p in TUTORIALS])
def test_tutorial_quick_run(path, tmp_path):
    out_dir = tmp_path / "out"
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(path), "--quick", "--out-dir", str(out_dir)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (f"{path.name} exited with {proc.returncode}\n"
                                  f"--- stdout (tail) ---\n{proc.stdout[-3000:]}\n"
                                  f"--- stderr (tail) ---\n{proc.stderr[-3000:]}")
    if "# pytest: needs torch" in _flags(path) and not HAVE_TORCH:
        lines = proc.stdout.strip().splitlines()
        assert len(lines) == 1 and "torch" in lines[0].lower(), (
            f"{path.name} without torch must say so in one line, got {lines!r}")
        return
    pngs = list(out_dir.rglob("*.png"))
    assert pngs, f"{path.name} wrote no .png into --out-dir"
    lines = proc.stdout.strip().splitlines()
    assert lines and lines[-1].startswith("SUMMARY "), (
        f"{path.name}: the last stdout line must be 'SUMMARY {{json}}', got {lines[-1:]!r}")
    summary = json.loads(lines[-1][len("SUMMARY "):])
    assert isinstance(summary, dict) and summary, f"{path.name}: SUMMARY must be a non-empty object"
    for key, value in summary.items():
        for number in _numbers(value):
            assert math.isfinite(number), f"{path.name}: SUMMARY[{key!r}] = {value!r} is not finite"
        if "acc" in key:
            accs = list(_numbers(value))
            assert accs and all(0.0 <= a <= 1.0 for a in accs), (
                f"{path.name}: SUMMARY[{key!r}] = {value!r} must be accuracies in [0, 1]")
