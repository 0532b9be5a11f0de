"""`refnets compare` and `refnets gradcheck` end to end (short runs, no network)."""

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from refnets import __version__, algorithms, cli
from refnets.algorithms import Method, Setup
from refnets.algorithms.base import Algorithm
from refnets.validation import OPTION_RANGES, OptionRange

pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]


def _run_module(*args):
    """``python -m refnets *args`` with this checkout first on the path; (code, out, err, s)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg")
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "refnets", *args], capture_output=True, text=True,
                       env=env, timeout=60)
    return p.returncode, p.stdout, p.stderr, time.perf_counter() - t0


def test_compare_spirals_backprop(tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(["compare", "--dataset", "spirals", "--methods", "backprop", "--epochs", "300",
                     "--lr", "0.01", "--seed", "1", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0
    run = out / "run-001"
    assert "backprop" in captured.out and "total wall time" in captured.out
    assert f"wrote {run}{os.sep}" in captured.out
    assert "[backprop] epoch 300/300" in captured.err
    for name in ("learning_curves.png", "decision_boundaries.png"):
        assert (run / name).read_bytes()[:4] == b"\x89PNG"
    rows = list(csv.DictReader(open(run / "results.csv")))
    assert [r["method"] for r in rows] == ["backprop"] and rows[0]["status"] == "ok"
    assert rows[0]["model"] == "2-32-32-2: Dense-tanh x2, Dense"
    result = json.load(open(run / "results.json"))
    assert result["config"]["sizes"] == [2, 32, 32, 2] and result["config"]["lr"] == 0.01
    curves = np.load(run / "histories.npz")
    assert len(curves["backprop/train_acc"]) == 300
    assert curves["backprop/test_acc"][-1] == float(rows[0]["test_acc"])
    # 300 full-batch Adam steps at lr 0.01 leave chance level behind on the training set
    assert curves["backprop/train_acc"][-1] > 0.6
    # the curves live in the .npz: the JSON is the summary only
    assert (run / "results.json").stat().st_size < 20_000


def test_every_run_gets_its_own_folder(tmp_path, capsys):
    args = ["compare", "--dataset", "spirals", "--methods", "backprop", "--epochs", "2",
            "--quiet", "--out", str(tmp_path)]
    assert cli.main(args) == 0 and cli.main(args) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run-001", "run-002"]
    assert f"wrote {tmp_path / 'run-002'}{os.sep}" in out
    (tmp_path / "run-007").mkdir()
    assert cli.new_run_dir(str(tmp_path)).endswith("run-008")


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


def _table(out):
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("method"))
    return lines[head], lines[head + 2:lines.index("", head)]


def test_failing_method_is_reported_and_others_continue(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(algorithms._REGISTRY, "test-broken", Method("test-broken", _failing_build, "x"))
    monkeypatch.setitem(algorithms._REGISTRY, "test-const", Method("test-const", _constant_build, "x"))
    code = cli.main(["compare", "--dataset", "spirals", "--methods", "test-broken", "test-const",
                     "--epochs", "2", "--out", str(tmp_path), "--quiet"])
    out = capsys.readouterr().out
    assert code == 1
    _, body = _table(out)
    broken = next(line for line in body if line.startswith("test-broken"))
    const = next(line for line in body if line.startswith("test-const"))
    assert "FAILED" in broken and "deliberate failure" in out
    assert const.split()[-2:] == ["0.500", "ok"]          # mean of the per-layer cosines
    rows = json.load(open(tmp_path / "run-001" / "results.json"))["results"]
    assert rows[0]["error"] == "RuntimeError: deliberate failure" and rows[1]["cos_to_bp"] == 0.5


def test_table_columns_legend_and_na(tmp_path, capsys, monkeypatch):
    """Objective vs cross-entropy columns, n/a cosines, a legend line per column."""
    monkeypatch.setitem(algorithms._REGISTRY, "test-const", Method("test-const", _constant_build, "x"))
    monkeypatch.setitem(algorithms._REGISTRY, "test-exact",
                        Method("test-exact", _constant_build, "x", exact_gradient=True))
    monkeypatch.setitem(algorithms._REGISTRY, "test-own",
                        Method("test-own", _constant_build, "x", loss_kind="own objective"))
    assert cli.main(["compare", "--dataset", "spirals", "--methods", "test-const", "test-exact",
                     "test-own", "--epochs", "2", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    header, body = _table(out)
    cols = header.split()
    assert cols == ["method", "model", "train_acc", "test_acc", "ce_loss", "objective", "s/epoch",
                    "cos_to_bp", "status"]
    rows = {line.split()[0]: line for line in body}
    assert rows["test-exact"].split()[-2] == "n/a" and rows["test-const"].split()[-2] == "0.500"
    results = {r["method"]: r for r in
               json.load(open(tmp_path / "run-001" / "results.json"))["results"]}
    assert results["test-const"]["ce_loss"] > 0 and results["test-const"]["objective"] is None
    assert results["test-own"]["ce_loss"] is None and results["test-own"]["objective"] > 0
    assert results["test-exact"]["cos_to_bp"] is None
    cells = rows["test-own"].split()
    assert cells[cells.index("-") + 1] == f"{results['test-own']['objective']:.4g}"
    for key, _ in cli.LEGEND:
        assert f"  {key}: " in out
    for col in cols[1:-1]:
        assert any(col in key.split(", ") for key, _ in cli.LEGEND), col


def test_seeds_report_mean_and_spread(tmp_path, capsys):
    assert cli.main(["compare", "--dataset", "spirals", "--methods", "fa", "--epochs", "3",
                     "--seeds", "3", "--seed", "2", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "seeds 2-4" in out
    row = json.load(open(tmp_path / "run-001" / "results.json"))["results"][0]
    accs = [p["test_acc"] for p in row["per_seed"]]
    assert [p["seed"] for p in row["per_seed"]] == [2, 3, 4]
    assert row["test_acc"] == pytest.approx(np.mean(accs))
    assert row["test_acc_std"] == pytest.approx(np.std(accs))
    _, body = _table(out)
    assert f"{np.mean(accs):.3f} +- {np.std(accs):.3f}" in body[0]


@pytest.mark.parametrize("args, option", [
    (["--hidden", "0"], "--hidden"),
    (["--seed", "-3"], "--seed"),
    (["--epochs", "-1"], "--epochs"),
    (["--activation", "foo"], "--activation"),
    (["--lr", "nan"], "--lr"),
    (["--batch-size", "2.5"], "--batch-size"),
    (["--seeds", "0"], "--seeds"),
    (["--methods", "no-such-method"], "--methods"),
    (["--methods", "fa", "fa"], "--methods"),
    (["--out", "__FILE__"], "--out"),
    (["--out", "__UNWRITABLE__"], "--out"),
])
def test_bad_compare_argument_exits_2_fast_naming_the_option(args, option, tmp_path):
    existing = tmp_path / "a-file"
    existing.write_text("x")
    if "__UNWRITABLE__" in args:
        if not os.path.isdir("/proc/self"):
            pytest.skip("needs /proc, where nothing can be created")
        args = ["--out", "/proc/refnets-out"]
    args = [str(existing) if a == "__FILE__" else a for a in args]
    code, out, err, seconds = _run_module("compare", *args)
    assert code == 2 and seconds < 2 + 3, (code, err)   # 2 s budget, plus interpreter start-up
    assert "Traceback" not in err and out == ""
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"argument {option}:" in errors[0], err
    assert err.startswith("usage: refnets compare"), err     # the subcommand's own usage


def test_python_m_refnets_compare_help():
    code, out, err, _ = _run_module("compare", "--help")
    assert code == 0 and out.startswith("usage: refnets compare") and "--seeds" in out
    assert OPTION_RANGES["epochs"].describe() in " ".join(out.split())


def test_option_ranges_are_declared_once():
    assert OPTION_RANGES["hidden"].parse("3") == 3
    assert OPTION_RANGES["lr"].parse("1e-3") == 1e-3
    for dest, bad in (("hidden", "0"), ("seed", "-1"), ("lr", "0"), ("lr", "inf"), ("epochs", "x")):
        with pytest.raises(ValueError, match=OPTION_RANGES[dest].name):
            OPTION_RANGES[dest].parse(bad)
    r = OptionRange("--x", integer=False, low=0, high=1, high_open=True)
    assert r.describe() == "a real number >= 0 and < 1" and r.parse("0") == 0.0
    with pytest.raises(ValueError, match="< 1"):
        r.parse("1")


def test_compare_list_shows_what_build_returns(capsys):
    assert cli.main(["compare", "--list"]) == 0
    out = capsys.readouterr().out
    names = algorithms.available_methods()
    assert f"{len(names)} registered methods" in out
    blocks = {b.split(":", 1)[0]: b for b in out.split("\n\n")[1:]}
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 4)), np.arange(8) % 2
    for name in names:
        setup = algorithms.get_method(name).build([4, 3, 2], "tanh", np.random.default_rng(0), x, y)
        text = blocks[name]
        assert f"lr={setup.optimizer.lr:g}" in text and type(setup.optimizer).__name__ in text
        assert type(setup.algorithm).__name__ in text and "model      4-3-2: " in text
    assert "lam=0.1" in blocks["target-space"].split("settings   ", 1)[1]
    assert "decor.lr=" in blocks["decor-fa"]
    for r in OPTION_RANGES.values():
        assert f"{r.name} {r.describe()}" in out


def test_methods_all_selects_every_method(tmp_path, capsys, monkeypatch):
    seen = []

    def fake_build(name):
        def build(sizes, activation, rng, x_train=None, y_train=None):
            seen.append(name)
            raise RuntimeError("not trained in this test")
        return build
    for name in algorithms.available_methods():
        monkeypatch.setitem(algorithms._REGISTRY, name,
                            Method(name, fake_build(name), "x"))
    assert cli.main(["compare", "--dataset", "spirals", "--methods", "all", "--epochs", "1",
                     "--out", str(tmp_path), "--quiet"]) == 1
    capsys.readouterr()
    assert seen == algorithms.available_methods()


def test_gradcheck_command(capsys):
    assert cli.main(["gradcheck", "--select", "Dense*"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header[:2] == ["name", "group"] and "result" in header and "seconds" in header
    assert "pass" in out and "FAIL" not in out and "checks passed" in out
    names = [line.split("  ")[0] for line in out.splitlines()[2:] if line.strip().endswith(tuple("0123456789"))]
    assert names and all(n.lower().startswith("dense") for n in names)


def test_gradcheck_select_group_exactly_or_glob(capsys):
    from refnets.selfcheck import GROUPS, all_checks, match_checks
    checks = all_checks()
    groups = {c.group for c in checks.values()}
    assert groups <= set(GROUPS), groups - set(GROUPS)
    assert {"layers", "losses", "functional", "target_space", "target_propagation", "hsic",
            "decorrelation"} <= groups
    assert all(c.group == "losses" for c in match_checks("losses"))
    assert {c.name for c in match_checks("losses")} >= {
        "softmax_cross_entropy, integer labels (N=4, C=5)", "mse, reduction 'batch' (N=3, 2x4)"}
    # a group is matched exactly: "fa" is no group and no name, even though names contain it
    assert any("fa" in n.lower() for n in checks)
    with pytest.raises(ValueError, match="neither a group"):
        match_checks("fa")
    assert {c.name for c in match_checks("*bptt*")} == {n for n in checks if "bptt" in n.lower()}
    with pytest.raises(SystemExit) as exc:
        cli.main(["gradcheck", "--select", "fa"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --select:" in err and "usage: refnets gradcheck" in err


def test_gradcheck_list(capsys):
    from refnets.selfcheck import all_checks
    assert cli.main(["gradcheck", "--list"]) == 0
    out = capsys.readouterr().out
    checks = all_checks()
    for group in {c.group for c in checks.values()}:
        n = sum(c.group == group for c in checks.values())
        assert f"{group} ({n} checks)" in out
    assert all(f"    {name}" in out for name in checks)


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


def _readme_checker():
    import importlib.util
    path = ROOT / "benchmarks" / "check_readme_numbers.py"
    found = importlib.util.spec_from_file_location("check_readme_numbers", path)
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    return module


def test_readme_result_tables_have_commands_and_parse():
    checker = _readme_checker()
    tables = checker.parse_tables((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(tables) >= 2
    registered = set(algorithms.available_methods())
    for command, header, rows in tables:
        assert command.startswith("refnets compare") and "--seeds" in command
        assert {"train acc", "test acc"} <= set(header)
        # every method named is registered (methods registered later join at the next re-measure)
        assert {r["method"].strip("`") for r in rows} <= registered, command
        for r in rows:
            mean, spread, _ = checker.parse_cell(r["test acc"])
            assert 0 <= mean <= 1 and spread >= 0


def test_readme_checker_flags_drift_beyond_the_spread():
    checker = _readme_checker()
    rows = [{"method": "`a`", "test acc": "0.800 ± 0.010", "cos to bp": "n/a"}]
    same = {"a": {"test_acc": 0.805, "test_acc_std": 0.01}}
    moved = {"a": {"test_acc": 0.83, "test_acc_std": 0.01}}
    assert checker.compare(rows, same) == []
    assert len(checker.compare(rows, moved)) == 1 and "moved +0.030" in checker.compare(rows, moved)[0]
    assert checker.parse_cell("n/a") is None and checker.parse_cell("0.5")[2] == 0.05
