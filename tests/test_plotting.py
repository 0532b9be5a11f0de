"""Plot helpers write real images; importing refnets does not import matplotlib."""

import subprocess
import sys

import numpy as np
import pytest

from refnets.training import History

pytest.importorskip("matplotlib")
from refnets import plotting  # noqa: E402


def test_import_refnets_does_not_import_matplotlib():
    code = ("import sys, refnets, refnets.datasets, refnets.training, refnets.plotting, refnets.cli, "
            "refnets.algorithms; refnets.algorithms.available_methods(); "
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _history(seed):
    rng = np.random.default_rng(seed)
    h = History(steps_per_epoch=10)
    h.step_loss = list(np.exp(-np.arange(30) / 10) + 0.1 * rng.random(30))
    h.train_loss = [float(np.mean(h.step_loss[i:i + 10])) for i in range(0, 30, 10)]
    h.train_acc, h.test_acc, h.epoch_time = [0.5, 0.7, 0.8], [0.5, 0.6, 0.7], [1.0] * 3
    return h


def _is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_learning_curves_png(tmp_path):
    fig = plotting.learning_curves({"a": _history(0), "b": _history(1)}, title="t")
    p = plotting.save(fig, tmp_path / "sub" / "lc.png")
    assert _is_png(tmp_path / "sub" / "lc.png") and p.endswith("lc.png")
    ax_loss, ax_acc = fig.axes[:2]
    assert len(ax_loss.lines) == 2 and len(ax_acc.lines) == 4
    assert ax_loss.get_yscale() == "log"


def test_learning_curves_leave_out_non_positive_losses():
    other = _history(2)
    other.step_loss = [-5.0] * 30                        # e.g. a negative HSIC objective
    fig = plotting.learning_curves({"a": _history(0), "hsic": other})
    ax_loss, ax_acc = fig.axes[:2]
    assert [line.get_label() for line in ax_loss.lines] == ["a"]
    assert any("hsic" in t.get_text() for t in ax_loss.texts)
    assert len(ax_acc.lines) == 4                        # accuracies of both are still drawn


def test_decision_boundary_png(tmp_path):
    x = np.array([[-1.0, 0.0], [1.0, 0.0], [-2.0, 1.0], [2.0, -1.0]])
    y = np.array([0, 1, 0, 1])
    seen = {}

    def predict(points):
        seen["shape"] = points.shape
        return np.stack([-points[:, 0], points[:, 0]], axis=1)   # class 1 where x0 > 0
    fig = plotting.decision_boundary(predict, x, y, resolution=31)
    assert seen["shape"] == (31 * 31, 2)
    plotting.save(fig, tmp_path / "db.png")
    assert _is_png(tmp_path / "db.png")
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        plotting.decision_boundary(predict, np.zeros((3, 3)), y)


def test_format_table_and_running_mean():
    text = plotting.format_table([{"method": "bp", "acc": 0.91234, "cos": None},
                                  {"method": "fa-long", "acc": 0.5, "cos": 0.25}])
    lines = text.splitlines()
    assert lines[0].split() == ["method", "acc", "cos"]
    assert lines[2].split() == ["bp", "0.912", "-"] and lines[3].split() == ["fa-long", "0.500", "0.250"]
    np.testing.assert_allclose(plotting.running_mean([1, 2, 3, 4], 2), [1, 1.5, 2.5, 3.5])


def test_accuracy_axis_fits_the_data():
    a, b = _history(0), _history(1)
    a.train_acc, a.test_acc = [0.80, 0.85, 0.90], [0.78, 0.82, 0.84]
    b.train_acc, b.test_acc = [0.81, 0.86, 0.88], [0.79, 0.80, 0.83]
    ax_acc = plotting.learning_curves({"a": a, "b": b}).axes[1]
    lo, hi = ax_acc.get_ylim()
    assert 0.7 < lo < 0.78 and 0.90 < hi < 0.95          # not squeezed into a 0-1 axis


def test_format_table_right_aligns_text_columns_on_request():
    rows = [{"m": "a", "acc": "0.812 +- 0.004"}, {"m": "bb", "acc": "0.5"}]
    plain = plotting.format_table(rows).splitlines()
    right = plotting.format_table(rows, align_right=("acc",)).splitlines()
    assert plain[3].endswith("0.5") and plain[3].rstrip() != right[3]
    assert right[3].endswith(" 0.5") and len(right[3]) == len(right[2])
