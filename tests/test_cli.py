"""`refnets compare` and `refnets gradcheck` end to end (short runs, no network)."""

import csv
import json

import numpy as np
import pytest

from refnets import __version__, algorithms, cli
from refnets.algorithms import Method, Setup
from refnets.algorithms.base import Algorithm

pytest.importorskip("matplotlib")


def test_compare_spirals_backprop(tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(["compare", "--dataset", "spirals", "--methods", "backprop", "--epochs", "300",
                     "--lr", "0.01", "--seed", "1", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0
    assert "backprop" in captured.out and "total wall time" in captured.out
    assert "[backprop] epoch 300/300" in captured.err
    for name in ("learning_curves.png", "decision_boundaries.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["method"] for r in rows] == ["backprop"] and rows[0]["status"] == "ok"
    result = json.load(open(out / "results.json"))
    assert result["config"]["sizes"] == [2, 32, 32, 2] and result["config"]["lr"] == 0.01
    h = result["histories"]["backprop"]
    assert len(h["train_acc"]) == 300 and h["test_acc"][-1] == float(rows[0]["test_acc"])
    # 300 full-batch Adam steps at lr 0.01 leave chance level behind on the training set
    assert h["train_acc"][-1] > 0.6


def _failing_build(sizes, activation, rng, x_train=None, y_train=None):
    raise RuntimeError("deliberate failure")


class _Constant(Algorithm):
    """Learns nothing; reports a cosine so the table column is exercised."""

    def step(self, model, state, x, y, rng):
        from refnets.algorithms.base import StepResult
        loss, grads, _ = algorithms.backprop_gradients(model, x, y)
        return StepResult(loss, {k: np.zeros_like(g) for k, g in grads.items()},
                          {"cosine_to_backprop": np.array([0.25, 0.75])})


def _constant_build(sizes, activation, rng, x_train=None, y_train=None):
    from refnets import mlp
    from refnets.optim import SGD
    return Setup(mlp(sizes, activation, rng), _Constant(), SGD(0.1))


def test_failing_method_is_reported_and_others_continue(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(algorithms._REGISTRY, "test-broken", Method("test-broken", _failing_build, "x"))
    monkeypatch.setitem(algorithms._REGISTRY, "test-const", Method("test-const", _constant_build, "x"))
    code = cli.main(["compare", "--dataset", "spirals", "--methods", "test-broken", "test-const",
                     "--epochs", "2", "--out", str(tmp_path), "--quiet"])
    out = capsys.readouterr().out
    assert code == 1
    lines = out.splitlines()
    broken = next(line for line in lines if line.startswith("test-broken"))
    const = next(line for line in lines if line.startswith("test-const"))
    assert "FAILED" in broken and "deliberate failure" in out
    assert const.split()[-2:] == ["0.500", "ok"]          # mean of the per-layer cosines
    rows = json.load(open(tmp_path / "results.json"))["results"]
    assert rows[0]["error"] == "RuntimeError: deliberate failure" and rows[1]["cos_to_bp"] == 0.5


def test_compare_unknown_method_and_bad_arguments(tmp_path, capsys):
    assert cli.main(["compare", "--methods", "no-such-method", "--out", str(tmp_path)]) == 2
    assert "no-such-method" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["compare", "--epochs", "0"])
    with pytest.raises(SystemExit):
        cli.main(["compare", "--dataset", "cifar"])


def test_compare_list(capsys):
    assert cli.main(["compare", "--list"]) == 0
    assert "backprop" in capsys.readouterr().out


def test_gradcheck_command(capsys):
    assert cli.main(["gradcheck", "--select", "Dense"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header[:2] == ["name", "group"] and "result" in header and "seconds" in header
    assert "pass" in out and "FAIL" not in out and "checks passed" in out
    assert cli.main(["gradcheck", "--select", "no-such-check"]) == 2


def test_gradcheck_failure_exit_code(capsys, monkeypatch):
    from refnets import selfcheck

    @selfcheck.register_check("test: wrong derivative", group="test-only", tol=1e-7)
    def _wrong(rng):
        return 0.5

    @selfcheck.register_check("test: raising check", group="test-only", tol=1e-7)
    def _raising(rng):
        raise ArithmeticError("boom")
    try:
        assert cli.main(["gradcheck", "--select", "test-only"]) == 1
        out = capsys.readouterr().out
        assert out.count("FAIL") == 2 and "ArithmeticError: boom" in out and "0/2 checks passed" in out
    finally:
        selfcheck._CHECKS.pop("test: wrong derivative")
        selfcheck._CHECKS.pop("test: raising check")


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"refnets {__version__}"
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    assert "compare" in out and "gradcheck" in out
