"""Conformance vectors: export -> check passes; any output changed by one part in a million
fails naming it; a file written with plain NumPy by another implementation is read and
checked; malformed files are rejected with a clear message."""

import io
import json

import numpy as np
import pytest

from refnets import vectors
from refnets.algorithms import available_methods
from refnets.cli import main
from refnets.layers import (RNN, AvgPool2D, BatchNorm, Conv2D, ConvTranspose2D, Dense, Flatten,
                            LastStep, LeakyReLU, MaxPool2D, ReLU, Residual, Sigmoid, Tanh)
from refnets.models import Sequential

def test_every_registered_method_is_exportable():
    assert sorted(vectors.CASES) == sorted(available_methods())


def test_model_config_round_trip(rng):
    model = Sequential([
        Conv2D(2, 3, (3, 2), stride=(1, 2), padding=(1, 0), rng=rng), BatchNorm(3, affine=True),
        LeakyReLU(0.2), Residual([Conv2D(3, 3, 3, padding=1, rng=rng, bias=False), BatchNorm(3),
                                  Sigmoid()], "tanh"),
        MaxPool2D(2, 1), AvgPool2D((1, 2)), ConvTranspose2D(3, 2, 2, stride=2, padding=1,
                                                            output_padding=1, rng=rng),
        Flatten(), Dense(2 * 9 * 1, 4, rng, bias=False), ReLU()])
    cfg = vectors.model_config(model)
    json.dumps(cfg)                                    # JSON-able
    rebuilt = vectors.model_from_config(cfg)
    assert vectors.model_config(rebuilt) == cfg
    rebuilt.set_params(model.copy_params())
    x = rng.standard_normal((2, 2, 6, 6))
    assert np.array_equal(rebuilt.forward(x)[0], model.forward(x)[0])
    rnn = Sequential([RNN(2, 3, rng), LastStep(), Dense(3, 2, rng)])
    assert vectors.model_config(vectors.model_from_config(vectors.model_config(rnn))) == \
        vectors.model_config(rnn)
    with pytest.raises(ValueError, match="model_from_config: each layer must be a dict with 'type'"):
        vectors.model_from_config([{"type": "Bogus"}])
    with pytest.raises(ValueError, match="model_from_config: layer Dense needs the key 'n_out'"):
        vectors.model_from_config([{"type": "Dense", "n_in": 3}])


def _arrays(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _perturb(value):
    """Change one entry by one part in a million of the largest |entry| (1 for an int array)."""
    value = value.copy()
    if value.dtype.kind in "iu":
        value.flat[0] += 1
        return value
    i = np.argmax(np.abs(value))
    scale = np.abs(value.flat[i])
    value.flat[i] += 1e-6 * (scale if scale > 0 else 1.0)
    return value


def _output_keys(manifest):
    return sorted(k for k, m in manifest["keys"].items() if m["role"] in vectors.OUTPUT_ROLES)


@pytest.mark.parametrize("method", vectors.exportable_methods())
def test_export_check_and_every_output_key_detects_a_one_in_a_million_change(method, tmp_path):
    path = tmp_path / f"{method}.npz"
    manifest = vectors.export_vectors(method, path)
    assert vectors.check_vectors(path, stream=io.StringIO()) == []
    arrays = _arrays(path)
    outputs = _output_keys(manifest)
    assert outputs and all(manifest["keys"][k]["tol"] < 1e-6 for k in outputs)
    # Output keys never feed the rebuild, so changing all of them at once is the same test as
    # changing each one alone: every one must be named.
    bad = tmp_path / "bad.npz"
    np.savez(bad, **{k: (_perturb(v) if k in outputs else v) for k, v in arrays.items()})
    assert vectors.check_vectors(bad, stream=io.StringIO()) == outputs


def test_one_changed_key_alone_is_the_only_one_named(tmp_path):
    path = tmp_path / "bp.npz"
    manifest = vectors.export_vectors("backprop", path)
    arrays = _arrays(path)
    for key in [k for k in _output_keys(manifest) if k.startswith("dense/step1/")]:
        bad = tmp_path / "one.npz"
        np.savez(bad, **dict(arrays, **{key: _perturb(arrays[key])}))
        assert vectors.check_vectors(bad, stream=io.StringIO()) == [key]


def test_cli_export_check_and_exit_codes(tmp_path, capsys):
    path = str(tmp_path / "bp.npz")
    assert main(["vectors", "export", "--method", "backprop", "--out", path]) == 0
    assert main(["vectors", "check", path]) == 0
    out = capsys.readouterr().out
    assert "dense/step2/after/param/0.W" in out and "within tolerance" in out
    arrays = _arrays(path)
    key = "conv/step0/grad/0.W"
    np.savez(path, **dict(arrays, **{key: _perturb(arrays[key])}))
    assert main(["vectors", "check", path, "--quiet"]) == 1
    out = capsys.readouterr().out
    assert f"1 of " in out and key in out.splitlines()[-1]
    assert main(["vectors", "export", "--method", "nope", "--out", path]) == 2
    assert "not a registered method" in capsys.readouterr().err
    assert main(["vectors", "export", "--list"]) == 0
    assert "backprop" in capsys.readouterr().out


# -- a file written by another implementation: plain NumPy, no refnets algorithm code ----------

def _numpy_backprop_file(path, wrong_tanh=False):
    """Three SGD steps of a 4-5-3 tanh MLP with softmax cross-entropy, written by hand."""
    rng = np.random.default_rng(7)
    W0, b0 = rng.standard_normal((5, 4)) / 2, rng.standard_normal(5) / 10
    W1, b1 = rng.standard_normal((3, 5)) / 2, rng.standard_normal(3) / 10
    lr = 0.1
    arrays = {"param/0.W": W0.copy(), "param/0.b": b0.copy(), "param/2.W": W1.copy(),
              "param/2.b": b1.copy()}
    for s in range(3):
        x, y = rng.standard_normal((6, 4)), rng.integers(0, 3, 6)
        z0 = x @ W0.T + b0
        h0 = np.tanh(z0)
        z1 = h0 @ W1.T + b1
        p = np.exp(z1 - z1.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        loss = -np.mean(np.log(p[np.arange(6), y]))
        dz1 = (p - np.eye(3)[y]) / 6
        dh0 = dz1 @ W1
        dz0 = dh0 * ((1 - h0) if wrong_tanh else (1 - h0 ** 2))
        grads = {"0.W": dz0.T @ x, "0.b": dz0.sum(0), "2.W": dz1.T @ h0, "2.b": dz1.sum(0)}
        W0, b0 = W0 - lr * grads["0.W"], b0 - lr * grads["0.b"]
        W1, b1 = W1 - lr * grads["2.W"], b1 - lr * grads["2.b"]
        arrays.update({f"step{s}/x": x, f"step{s}/y": y, f"step{s}/loss": np.array(loss),
                       f"step{s}/trace/0.y": z0, f"step{s}/trace/1.y": h0,
                       f"step{s}/trace/2.y": z1, f"step{s}/trace/2.dy": dz1,
                       f"step{s}/trace/1.dy": dh0, f"step{s}/trace/0.dy": dz0})
        arrays.update({f"step{s}/grad/{k}": v for k, v in grads.items()})
        arrays.update({f"step{s}/after/param/0.W": W0, f"step{s}/after/param/0.b": b0,
                       f"step{s}/after/param/2.W": W1, f"step{s}/after/param/2.b": b1})

    def role(k):
        head = k.split("/")[0 if k.startswith("param") else 1]
        return {"param": "param", "x": "input", "y": "input", "loss": "trace"}.get(head, head)

    keys = {f"mlp/{k}": {"role": role(k), "meaning": k, "shape": list(np.shape(v)),
                         "dtype": str(np.asarray(v).dtype), "layout": "", "tol": 1e-10}
            for k, v in arrays.items()}
    manifest = {"schema": "refnets-vectors", "schema_version": 1, "producer": "plain numpy",
                "method": "backprop", "relative_error": "", "keys": keys,
                "cases": {"mlp": {"model": [{"type": "Dense", "n_in": 4, "n_out": 5},
                                            {"type": "Tanh"}, {"type": "Dense", "n_in": 5, "n_out": 3}],
                                  "algorithm": {"class": "backprop:Backprop", "kwargs": {}},
                                  "loss": "softmax_cross_entropy",
                                  "optimizer": {"name": "sgd", "lr": lr}, "steps": 3}}}
    np.savez(path, manifest=np.array(json.dumps(manifest)),
             **{f"mlp/{k}": np.asarray(v) for k, v in arrays.items()})


def test_file_written_by_another_implementation(tmp_path):
    path = tmp_path / "theirs.npz"
    _numpy_backprop_file(path)
    out = io.StringIO()
    assert vectors.check_vectors(path, stream=out) == []
    assert "plain numpy" in out.getvalue()
    _numpy_backprop_file(path, wrong_tanh=True)        # their bug: tanh' = 1 - h
    failed = vectors.check_vectors(path, stream=io.StringIO())
    assert "mlp/step0/trace/0.dy" in failed and "mlp/step0/grad/0.W" in failed
    assert "mlp/step0/trace/1.dy" not in failed and "mlp/step0/grad/2.W" not in failed


# -- malformed files ------------------------------------------------------------------------------

def _good(tmp_path):
    path = tmp_path / "good.npz"
    _numpy_backprop_file(path)
    arrays = _arrays(path)
    manifest = json.loads(str(arrays.pop("manifest")[()]))
    return manifest, arrays


def _write(tmp_path, manifest, arrays, raw_manifest=None):
    path = tmp_path / "m.npz"
    m = raw_manifest if raw_manifest is not None else np.array(json.dumps(manifest))
    np.savez(path, manifest=m, **arrays)
    return path


def _edit(fn, raw=None):
    """A good file with ``fn(manifest, arrays)`` applied (and ``raw`` as the manifest entry)."""
    def apply(tmp_path):
        manifest, arrays = _good(tmp_path)
        fn(manifest, arrays)
        return _write(tmp_path, manifest, arrays, raw)
    return apply


def _not_a_zip(tmp_path):
    path = tmp_path / "x.npz"
    path.write_text("not a zip")
    return path


@pytest.mark.parametrize("make,msg", [
    (_not_a_zip, "not a readable pickle-free"),
    (lambda tp: tp / "missing.npz", "no such file"),
    (_edit(lambda m, a: None, raw=np.array("{not json")), "the manifest is not valid JSON"),
    (_edit(lambda m, a: None, raw=np.array([1.0])), "'manifest' must be one string"),
    (_edit(lambda m, a: m.update(schema_version=9)), "expected schema 'refnets-vectors' version 1"),
    (_edit(lambda m, a: m.pop("cases")), "needs a non-empty object 'cases'"),
    (_edit(lambda m, a: a.pop("mlp/step1/grad/0.W")), "described in the manifest but not in the file"),
    (_edit(lambda m, a: a.update({"mlp/extra": np.zeros(2)})), "not described in the manifest"),
    (_edit(lambda m, a: m["keys"]["mlp/param/0.W"].update(role="weights")), "needs a role in"),
    (_edit(lambda m, a: m["keys"]["mlp/param/0.W"].update(shape=[4, 5])), "has shape [5, 4]"),
    (_edit(lambda m, a: m["keys"]["mlp/step0/grad/0.W"].pop("tol")), "needs a tolerance tol >= 0"),
    (_edit(lambda m, a: a.update({"mlp/step0/x": np.array(["a"] * 4)}) or m["keys"]["mlp/step0/x"].update(shape=[4])),
     "must be a float or int array"),
    (_edit(lambda m, a: m["cases"]["mlp"]["algorithm"].update({"class": "os:system"})),
     "not found under refnets.algorithms"),
    (_edit(lambda m, a: m["cases"]["mlp"]["algorithm"].update({"class": "..x:y"})),
     "algorithm class must be 'module:Class'"),
    (_edit(lambda m, a: m["cases"]["mlp"]["model"].append({"type": "Bogus"})),
     "case 'mlp' could not be rebuilt: model_from_config"),
    (_edit(lambda m, a: m["cases"]["mlp"]["model"].__setitem__(0, {"type": "Dense", "n_in": 4, "n_out": 6})),
     "could not be rebuilt"),
    (_edit(lambda m, a: m["cases"]["mlp"].update(steps=0)), "steps must be a positive int"),
    (_edit(lambda m, a: m["cases"]["mlp"].update(loss="hinge")), "loss must be one of"),
])
def test_malformed_files_are_rejected_clearly(tmp_path, make, msg, capsys):
    path = make(tmp_path)
    with pytest.raises(vectors.VectorFileError, match=None) as info:
        vectors.check_vectors(path, stream=io.StringIO())
    assert msg in str(info.value)
    assert main(["vectors", "check", str(path)]) == 2
    assert msg in capsys.readouterr().err


def test_object_arrays_are_never_unpickled(tmp_path):
    manifest, arrays = _good(tmp_path)
    path = tmp_path / "obj.npz"
    arrays["mlp/step0/x"] = np.array([{"a": 1}], dtype=object)
    np.savez(path, manifest=np.array(json.dumps(manifest)), **arrays)
    with pytest.raises(vectors.VectorFileError, match="not a readable pickle-free .npz"):
        vectors.check_vectors(path, stream=io.StringIO())


def test_relative_error():
    a = np.array([1.0, -4.0, 2.0])
    assert vectors.relative_error(a, a) == 0.0
    assert vectors.relative_error(a + np.array([0, 0, 4e-6]), a) == pytest.approx(1e-6)
    assert vectors.relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert vectors.relative_error(np.zeros(3), np.zeros(2)) == float("inf")
    assert vectors.relative_error(np.array([np.nan]), np.array([1.0])) == float("inf")


def test_model_config_round_trip_functional_layers(rng):
    from refnets.layers import FunctionalConv2D, FunctionalDense, FunctionalRNN

    for model, x in [
        (Sequential([FunctionalConv2D(1, 2, (3, 2), "F03", rng, stride=(1, 2), padding=(1, 0)),
                     Tanh(), Flatten(), FunctionalDense(2 * 6 * 3, 3, "F12", rng)]),
         rng.standard_normal((2, 1, 6, 6))),
        (Sequential([FunctionalRNN(2, 4, "F03", rng, recurrent_function="LIN"), LastStep(),
                     FunctionalDense(4, 3, "F03", rng)]), rng.standard_normal((5, 2, 2))),
    ]:
        cfg = vectors.model_config(model)
        rebuilt = vectors.model_from_config(json.loads(json.dumps(cfg)))
        assert vectors.model_config(rebuilt) == cfg
        rebuilt.set_params(model.copy_params())
        assert np.array_equal(rebuilt.forward(x)[0], model.forward(x)[0])


def _all_cases():
    return [pytest.param(m, c, id=f"{m}-{c}") for m in vectors.CASES for c in vectors.CASES[m]]


@pytest.mark.parametrize("method,case_name", _all_cases())
def test_trace_changes_nothing_and_step_replays_it_bit_for_bit(method, case_name):
    """For every case of every method: trace leaves model, state and rng untouched, and
    step(..., rng=None, **trace['given']) reproduces its grads and after-state exactly."""
    case = vectors.CASES[method][case_name]
    rng = np.random.default_rng(3)
    model = case.model(rng)
    (x, y), *_ = case.data(rng)
    algo = vectors._build_algorithm(case.config(model)["algorithm"], case.loss,
                                    None if case.arrays is None else case.arrays(rng))
    state = algo.init_state(model, rng)
    params, flat = model.copy_params(), vectors._flatten_state(state)
    rng_state = rng.bit_generator.state
    tr = algo.trace(model, state, x, y, rng)
    assert rng.bit_generator.state == rng_state
    for key, value in params.items():
        assert np.array_equal(model.params()[key], value), key
    after_trace = vectors._flatten_state(state)
    assert sorted(after_trace) == sorted(flat)
    for key, value in flat.items():
        assert np.array_equal(after_trace[key], value), key
    res = algo.step(model, state, x, y, None, **tr["given"])
    assert res.loss == tr["loss"]
    assert sorted(res.grads) == sorted(tr["grads"])
    for key, value in res.grads.items():
        assert np.array_equal(value, tr["grads"][key]), key
    want, got = vectors._flatten_state(tr["after"]), vectors._flatten_state(state)
    assert sorted(want) == sorted(got)
    for key, value in want.items():
        assert np.array_equal(got[key], value), key
