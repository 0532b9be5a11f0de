"""Checkpoints round-trip exactly and never unpickle."""

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
