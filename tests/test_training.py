"""The shared training loop: contract calls, reproducibility, info averaging, errors."""

import numpy as np
import pytest

from refnets import mlp
from refnets.algorithms.backprop import Backprop
from refnets.algorithms.base import Algorithm, StepResult
from refnets.datasets import two_spirals
from refnets.optim import SGD, Adam
from refnets.training import evaluate, masked_accuracy, train
from refnets.validation import DivergenceError


def _spirals_run(seed, epochs=5):
    d = two_spirals()
    rng = np.random.default_rng(seed)
    model = mlp([2, 16, 16, 2], "tanh", rng)
    h = train(model, Backprop(), Adam(0.01), (d.x_train, d.y_train), epochs, 32, rng,
              eval_data=(d.x_test, d.y_test), progress=False)
    return model, h


def test_same_seed_bit_identical_history():
    m1, h1 = _spirals_run(7)
    m2, h2 = _spirals_run(7)
    a, b = h1.as_dict(), h2.as_dict()
    a.pop("epoch_time"), b.pop("epoch_time")
    assert a == b
    for key, value in m1.params().items():
        np.testing.assert_array_equal(value, m2.params()[key])
    _, h3 = _spirals_run(8)
    assert h3.step_loss != h1.step_loss


def test_history_contents():
    _, h = _spirals_run(0, epochs=3)
    assert h.epochs == 3 and h.steps_per_epoch == 7           # ceil(194 / 32)
    assert len(h.step_loss) == 21 and len(h.test_acc) == 3 and len(h.info["grad_norm"]) == 3
    assert np.isclose(h.train_loss[0], np.mean(h.step_loss[:7]))
    assert all(0 <= a <= 1 for a in h.train_acc + h.test_acc)
    f = h.final()
    assert set(f) >= {"train_loss", "train_acc", "test_acc", "epoch_time", "grad_norm"}


def test_training_reduces_loss_and_matches_manual_loop():
    d = two_spirals()
    x, y = d.x_train, d.y_train
    rng = np.random.default_rng(3)
    model = mlp([2, 8, 2], "tanh", rng)
    snapshot = model.copy_params()
    h = train(model, Backprop(), SGD(0.5), (x, y), 1, 194, np.random.default_rng(0), progress=False)
    # one full batch step of SGD done by hand (the shuffle does not change a full-batch mean)
    model2 = mlp([2, 8, 2], "tanh", np.random.default_rng(3))
    model2.set_params(snapshot)
    res = Backprop().step(model2, {}, x, y, None)
    for key, p in model2.params().items():
        p -= 0.5 * res.grads[key]
    for key, p in model.params().items():
        np.testing.assert_allclose(p, model2.params()[key], rtol=0, atol=1e-13)
    assert np.isclose(h.train_loss[0], res.loss)


class _Recorder(Algorithm):
    """Logs the calls train makes; info has a float and a per-layer array."""

    def __init__(self):
        super().__init__()
        self.calls = []
        self.k = 0

    def init_state(self, model, rng):
        self.calls.append("init_state")
        return {"w": np.zeros(3)}

    def variables(self, model, state):
        return {"w": state["w"]}

    def step(self, model, state, x, y, rng):
        self.calls.append(("step", x.shape))
        self.k += 1
        return StepResult(loss=1.0, grads={"w": -np.ones(3)},
                          info={"a": float(self.k), "per_layer": np.array([self.k, 2.0 * self.k])})

    def predict(self, model, state, x):
        self.calls.append("predict")
        out = np.zeros(x.shape[:-1] + (2,))
        out[..., 1] = 1.0                  # always predicts class 1
        return out


def test_contract_calls_and_info_average():
    algo = _Recorder()
    x, y = np.zeros((10, 1)), np.array([1] * 6 + [0] * 4)
    h = train(None, algo, SGD(1.0), (x, y), 2, 4, np.random.default_rng(0), progress=False)
    assert algo.calls[0] == "init_state" and algo.calls.count("init_state") == 1
    assert [c for c in algo.calls if c != "predict"][1:4] == [("step", (4, 1)), ("step", (4, 1)),
                                                              ("step", (2, 1))]
    np.testing.assert_array_equal(h.state["w"], 6.0 * np.ones(3))   # 6 steps of w -= 1 * (-1)
    assert h.info["a"] == [2.0, 5.0]                                  # mean of 1,2,3 then 4,5,6
    np.testing.assert_array_equal(h.info["per_layer"][1], [5.0, 10.0])
    assert h.train_acc == [0.6, 0.6]
    # a given state is continued, not re-initialised
    h2 = train(None, algo, SGD(1.0), (x, y), 1, 10, np.random.default_rng(0), progress=False,
               state=h.state)
    assert algo.calls.count("init_state") == 1 and h2.state["w"][0] == 7.0


def test_time_major_batches_and_masked_accuracy():
    algo = _Recorder()
    x = np.zeros((5, 8, 1))                       # (T, N, D)
    y = np.ones((5, 8), dtype=np.int64)
    y[:2] = -1                                     # no label before the delay
    h = train(None, algo, SGD(1.0), (x, y), 1, 3, np.random.default_rng(0), progress=False,
              batch_axis=1)
    assert [c[1] for c in algo.calls if isinstance(c, tuple)] == [(5, 3, 1), (5, 3, 1), (5, 2, 1)]
    assert h.train_acc == [1.0]                    # the -1 positions are ignored
    assert masked_accuracy(np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([1, -1])) == 1.0
    assert masked_accuracy(np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([[1.0, 0.0], [1.0, 0.0]])) == 0.5


class _Diverging(_Recorder):
    def step(self, model, state, x, y, rng):
        self.k += 1
        return StepResult(loss=np.inf if self.k == 5 else 1.0, grads={"w": np.zeros(3)})


def test_non_finite_loss_names_epoch_and_step():
    x, y = np.zeros((8, 1)), np.zeros(8, dtype=np.int64)
    with pytest.raises(DivergenceError, match=r"train: _Diverging diverged at epoch 2, step 1/4: "
                                              r"loss became non-finite; optimizer lr = 0.1\. .*"
                                              r"smaller learning rate") as info:
        train(None, _Diverging(), SGD(0.1), (x, y), 3, 2, np.random.default_rng(0), progress=False)
    assert info.value.quantity == "loss"


class _RaisesDivergence(_Recorder):
    def step(self, model, state, x, y, rng):
        raise DivergenceError("inner: target of layer 2 is nan; try a smaller target_step",
                              quantity="target")


def test_a_steps_divergence_error_is_re_raised_with_epoch_step_and_its_hint():
    x, y = np.zeros((8, 1)), np.zeros(8, dtype=np.int64)
    with pytest.raises(DivergenceError, match=r"at epoch 1, step 1/4: target became non-finite.*"
                                              r"inner: target of layer 2 is nan; try a smaller "
                                              r"target_step"):
        train(None, _RaisesDivergence(), SGD(0.1), (x, y), 1, 2, np.random.default_rng(0),
              progress=False)


def test_start_epoch_and_checkpoint_arguments(tmp_path):
    args = dict(model=None, algorithm=_Recorder(), optimizer=SGD(0.1),
                data=(np.zeros((4, 1)), np.zeros(4, int)), epochs=3, batch_size=2,
                rng=np.random.default_rng(0), progress=False)
    with pytest.raises(ValueError, match=r"train: start_epoch must be >= 1 and <= 3, got 4"):
        train(**args, start_epoch=4)
    h = train(**args, start_epoch=3)
    assert h.epochs == 1


def test_bad_info_value_is_rejected():
    class BadInfo(_Recorder):
        def step(self, model, state, x, y, rng):
            return StepResult(1.0, {"w": np.zeros(3)}, {"matrix": np.eye(2)})
    with pytest.raises(ValueError, match=r"info\['matrix'\].*1-D"):
        train(None, BadInfo(), SGD(0.1), (np.zeros((4, 1)), np.zeros(4, int)), 1, 2,
              np.random.default_rng(0), progress=False)


@pytest.mark.parametrize("kwargs, match", [
    (dict(epochs=0), "epochs"), (dict(batch_size=0), "batch_size"),
    (dict(rng=0), "rng"), (dict(data=(np.zeros((4, 1)),)), "pair"),
    (dict(data=(np.zeros((0, 1)), np.zeros(0, int))), "at least one sample"),
    (dict(data=(np.zeros((4, 1)), np.zeros(3, int))), "y must have 4 samples"),
])
def test_argument_errors(kwargs, match):
    args = dict(model=None, algorithm=_Recorder(), optimizer=SGD(0.1),
                data=(np.zeros((4, 1)), np.zeros(4, int)), epochs=1, batch_size=2,
                rng=np.random.default_rng(0), progress=False)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        train(**args)


def test_progress_lines_on_stderr(capsys):
    _spirals_run(0, epochs=2)
    assert capsys.readouterr().err == ""
    d = two_spirals()
    rng = np.random.default_rng(0)
    train(mlp([2, 4, 2], "tanh", rng), Backprop(), Adam(0.01), (d.x_train, d.y_train), 2, 64, rng,
          eval_data=(d.x_test, d.y_test), label="bp", progress_every=0.0)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == ""
    assert lines[-1].startswith("[bp] epoch 2/2") and "test acc" in lines[-1]
    assert any("step 1/4" in line for line in lines)      # within-epoch lines


def test_evaluate_matches_full_batch_accuracy():
    d = two_spirals()
    rng = np.random.default_rng(0)
    model = mlp([2, 8, 2], "tanh", rng)
    full = masked_accuracy(model.forward(d.x_test)[0], d.y_test)
    assert evaluate(model, Backprop(), {}, d.x_test, d.y_test, batch_size=50) == full
