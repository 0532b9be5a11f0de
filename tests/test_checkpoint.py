"""Checkpoints round-trip exactly and never unpickle."""

import os

import numpy as np
import pytest

from refnets import mlp
from refnets.checkpoint import load_checkpoint, save_checkpoint
from refnets.training import load_checkpoint as lc2, save_checkpoint as sc2


def test_exact_round_trip(tmp_path, rng):
    model = mlp([3, 5, 2], "tanh", rng)
    state = {"B": {1: rng.standard_normal((5, 2)), 3: rng.standard_normal((2, 2))},
             "targets": [rng.standard_normal(4), np.arange(3)],
             "pair": (1.5, "scaled", None, True),
             "step": 7, "lr": 0.1 + 0.2, "scalar": np.float64(1) / 3,
             "mask": np.array([True, False]), "empty": {}}
    p = tmp_path / "ck.npz"
    save_checkpoint(p, model, state)
    params, loaded = load_checkpoint(p)
    for key, value in model.params().items():
        assert params[key].dtype == value.dtype
        np.testing.assert_array_equal(params[key], value)
    assert set(loaded["B"]) == {1, 3}
    np.testing.assert_array_equal(loaded["B"][3], state["B"][3])
    np.testing.assert_array_equal(loaded["targets"][1], state["targets"][1])
    assert loaded["targets"][1].dtype == state["targets"][1].dtype
    assert loaded["pair"] == state["pair"] and isinstance(loaded["pair"], tuple)
    assert loaded["step"] == 7 and loaded["lr"] == state["lr"] and loaded["empty"] == {}
    assert type(loaded["scalar"]) is np.float64 and loaded["scalar"] == state["scalar"]
    np.testing.assert_array_equal(loaded["mask"], state["mask"])
    assert sc2 is save_checkpoint and lc2 is load_checkpoint


def test_load_into_model(tmp_path, rng):
    a = mlp([3, 4, 2], "tanh", rng)
    b = mlp([3, 4, 2], "tanh", rng)
    save_checkpoint(tmp_path / "a.npz", a)
    _, state = load_checkpoint(tmp_path / "a.npz", model=b)
    assert state == {}
    x = rng.standard_normal((5, 3))
    np.testing.assert_array_equal(a.forward(x)[0], b.forward(x)[0])
    c = mlp([3, 6, 2], "tanh", rng)
    with pytest.raises(ValueError, match="shape"):
        load_checkpoint(tmp_path / "a.npz", model=c)


def test_rejects_unsaveable_state_and_foreign_files(tmp_path, rng):
    model = mlp([2, 2], "tanh", rng)
    with pytest.raises(ValueError, match=r"state\['f'\] has type function"):
        save_checkpoint(tmp_path / "x.npz", model, {"f": lambda: 0})
    with pytest.raises(ValueError, match="object array"):
        save_checkpoint(tmp_path / "x.npz", model, {"o": np.array([None, 1], dtype=object)})
    assert list(tmp_path.iterdir()) == []          # failed saves leave nothing
    np.savez(tmp_path / "plain.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match="not a refnets checkpoint"):
        load_checkpoint(tmp_path / "plain.npz")


# -- optimiser, rng and counters; resuming ---------------------------------------------------

def test_optimizer_rng_and_counters_round_trip(tmp_path, rng):
    from refnets.checkpoint import read_checkpoint
    from refnets.optim import Adam
    model, opt = mlp([3, 4, 2], "tanh", rng), Adam(lr=0.01, beta1=0.8)
    for _ in range(3):
        opt.update(model.params(), {k: rng.standard_normal(v.shape) for k, v in model.params().items()})
    save_checkpoint(tmp_path / "c.npz", model, {"s": 1}, optimizer=opt, rng=rng, epoch=4, step=12)
    ck = read_checkpoint(tmp_path / "c.npz")
    assert (ck.epoch, ck.step, ck.optimizer["class"], ck.optimizer["t"]) == (4, 12, "Adam", 3)
    assert ck.optimizer["hyperparameters"] == opt.hyperparameters()
    fresh_opt, fresh_rng = Adam(), np.random.default_rng(99)
    load_checkpoint(tmp_path / "c.npz", optimizer=fresh_opt, rng=fresh_rng)
    assert fresh_opt.beta1 == 0.8 and fresh_opt.t == 3
    for key, st in opt.state.items():
        np.testing.assert_array_equal(fresh_opt.state[key]["m"], st["m"])
        assert fresh_opt.state[key]["t"] == st["t"]
    np.testing.assert_array_equal(fresh_rng.random(5), rng.random(5))
    from refnets.optim import SGD
    with pytest.raises(ValueError, match=r"optimizer must be a Adam \(the saved one in .*c.npz\), "
                                         r"got SGD"):
        load_checkpoint(tmp_path / "c.npz", optimizer=SGD(0.1))


def _corrupt_files(tmp_path, rng):
    good = tmp_path / "good.npz"
    save_checkpoint(good, mlp([3, 4, 2], "tanh", rng), {"a": np.arange(3)})
    raw = good.read_bytes()
    files = {"empty": b"", "truncated": raw[: len(raw) // 2], "random": rng.bytes(500),
             "text": b"hello, not a checkpoint\n"}
    out = {}
    for name, data in files.items():
        (tmp_path / f"{name}.npz").write_bytes(data)
        out[name] = tmp_path / f"{name}.npz"
    import json
    import zipfile
    with np.load(good) as a:
        arrays = {k: a[k] for k in a.files}
    meta = json.loads(str(arrays["__refnets_checkpoint__"][()]))
    tampered = {
        "version1": dict(meta, version=1),
        "no-format": {k: v for k, v in meta.items() if k != "format"},
        "missing-array": dict(meta, state={"dict": [["str", "a", {"array": "state/7",
                                                                   "scalar": False}]]}),
        "foreign-array": dict(meta, state={"array": "params/0.W", "scalar": False}),
        "bad-node": dict(meta, state={"pickle": "x"}),
        "bad-params": dict(meta, params=["9.W"]),
        "bad-epoch": dict(meta, epoch="3"),
    }
    for name, m in tampered.items():
        arr = dict(arrays, __refnets_checkpoint__=np.array(json.dumps(m)))
        np.savez(tmp_path / f"{name}.npz", **arr)
        out[name] = tmp_path / f"{name}.npz"
    arr = dict(arrays, __refnets_checkpoint__=np.array("{not json"))
    np.savez(tmp_path / "bad-json.npz", **arr)
    out["bad-json"] = tmp_path / "bad-json.npz"
    assert zipfile.is_zipfile(out["bad-json"])
    return out


def test_every_bad_file_raises_checkpoint_error_naming_it(tmp_path, rng):
    from refnets.checkpoint import CheckpointError
    expected = {"empty": "not a readable .npz archive", "truncated": "not a readable .npz archive",
                "random": "not a readable .npz archive", "text": "not a readable .npz archive",
                "version1": r"format version 1; this refnets reads version 2 only",
                "no-format": "not a refnets checkpoint", "missing-array": "does not hold",
                "foreign-array": "does not hold", "bad-node": "malformed",
                "bad-params": r"lists parameter '9.W' that the file does not hold",
                "bad-epoch": r"'epoch' entry is missing or has the wrong type",
                "bad-json": "Expecting property name"}
    files = _corrupt_files(tmp_path, rng)
    assert set(files) == set(expected)
    for name, path in files.items():
        with pytest.raises(CheckpointError, match=rf"load_checkpoint: {path}: .*{expected[name]}"):
            load_checkpoint(path)
    assert issubclass(CheckpointError, ValueError)
    with pytest.raises(FileNotFoundError, match=r"load_checkpoint: no checkpoint file .*nope.npz"):
        load_checkpoint(tmp_path / "nope.npz")
    with pytest.raises(ValueError, match=r"load_checkpoint: path must be a str or os.PathLike"):
        load_checkpoint(3)


_RESUME_SCRIPT = r"""
import sys
import os

import numpy as np
from refnets.algorithms import get_method
from refnets.checkpoint import load_checkpoint, read_checkpoint
from refnets.training import train
name, path, out = sys.argv[1:4]
data = np.load(path.replace(".npz", "-data.npz"))
x, y = data["x"], data["y"]
rng = np.random.default_rng(12345)          # a different seed: everything comes from the file
setup = get_method(name).build([6, 8, 3], "tanh", rng, x, y)
_, state = load_checkpoint(path, setup.model, optimizer=setup.optimizer, rng=rng)
train(setup.model, setup.algorithm, setup.optimizer, (x, y), 3, 16, rng, progress=False,
      state=state, start_epoch=read_checkpoint(path).epoch + 1)
np.savez(out, **setup.model.params())
"""


def _methods():
    from refnets.algorithms import available_methods
    return available_methods()


@pytest.mark.parametrize("name", _methods())
def test_resume_in_a_fresh_process_equals_the_uninterrupted_run(tmp_path, name):
    """Save after epoch 1, resume in another process from the file alone: bit-identical."""
    import subprocess
    import sys
    from refnets.algorithms import get_method
    from refnets.training import train
    r = np.random.default_rng(0)
    x, y = r.standard_normal((40, 6)), r.integers(0, 3, 40)

    def build():
        rng = np.random.default_rng(1)
        return get_method(name).build([6, 8, 3], "tanh", rng, x, y), rng

    full, rng = build()
    train(full.model, full.algorithm, full.optimizer, (x, y), 3, 16, rng, progress=False)
    part, rng = build()
    path = tmp_path / "run.npz"
    train(part.model, part.algorithm, part.optimizer, (x, y), 1, 16, rng, progress=False,
          checkpoint=path)
    np.savez(tmp_path / "run-data.npz", x=x, y=y)
    out = tmp_path / "resumed.npz"
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    subprocess.run([sys.executable, "-c", _RESUME_SCRIPT, name, str(path), str(out)], check=True,
                   env=env, cwd=str(tmp_path))
    with np.load(out) as resumed:
        for key, value in full.model.params().items():
            np.testing.assert_array_equal(resumed[key], value, err_msg=f"{name}: {key}")


def test_damaged_files_raise_checkpoint_error_or_load_the_original(tmp_path):
    """Seeded fuzz: flipped, cut or inserted bytes never escape as another exception type."""
    from refnets.checkpoint import CheckpointError
    from refnets.optim import Adam
    rng = np.random.default_rng(7)
    model, opt = mlp([3, 4, 2], "tanh", rng), Adam()
    opt.update(model.params(), {k: np.ones_like(v) for k, v in model.params().items()})
    good = tmp_path / "good.npz"
    save_checkpoint(good, model, {"a": [np.arange(3), {"b": 1.5}]}, optimizer=opt, rng=rng,
                    epoch=2, step=8)
    raw = good.read_bytes()
    bad = tmp_path / "bad.npz"
    errors = 0
    for i in range(300):
        b = bytearray(raw)
        if i % 3 == 0:
            for _ in range(rng.integers(1, 4)):
                b[rng.integers(0, len(b))] = rng.integers(0, 256)
        elif i % 3 == 1:
            b = b[: rng.integers(0, len(b))]
        else:
            j = rng.integers(0, len(b))
            b[j:j] = rng.bytes(int(rng.integers(1, 20)))
        bad.write_bytes(bytes(b))
        try:
            params, state = load_checkpoint(bad, optimizer=Adam(), rng=np.random.default_rng())
        except CheckpointError as exc:
            assert str(bad) in str(exc)
            errors += 1
            continue
        for key, value in model.params().items():      # whatever loads is the original
            np.testing.assert_array_equal(params[key], value)
        np.testing.assert_array_equal(state["a"][0], np.arange(3))
    assert errors > 250
