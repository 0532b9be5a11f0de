"""Target Space on an Elman RNN: OCU in time, hybrid or OCU read-out (TS-11, TS-11a, TS-11b)."""

import numpy as np
import pytest

from refnets.algorithms.target_space.algorithm import TargetSpace
from refnets.algorithms.target_space.checks import pipeline_gradient_error
from refnets.algorithms.target_space.rnn import RNNRealiser
from refnets.datasets import bit_sequences
from refnets.gradcheck import rel_error
from refnets.layers.dense import Dense
from refnets.layers.recurrent import RNN
from refnets.losses import masked_softmax_cross_entropy
from refnets.models import Sequential, rnn_classifier
from refnets.optim import Adam
from refnets.training import masked_accuracy


def _teacher_sums(teacher, x):
    """Pre-activation sums a_t = x_t W_x^T + h_{t-1} W_h^T + b of an RNN, and its states."""
    rnn = teacher.layers[0]
    hs, _ = rnn.forward(x)
    h_prev = np.concatenate([np.zeros_like(hs[:1]), hs[:-1]], axis=0)
    p = rnn.params
    return x @ p["W_x"].T + h_prev @ p["W_h"].T + p["b"], hs


@pytest.mark.parametrize("realisation", ["scu", "ocu"])      # scu = hybrid read-out
@pytest.mark.parametrize("readout", ["all", "last"])
def test_recovers_a_teacher_rnn_at_lam_zero(rng, realisation, readout):
    """(TS-11), (TS-11a): T_h, T_o = the sums of a teacher RNN on X_bar -> the OCU-in-time solve
    and the hybrid/OCU read-out solve return the teacher's weights (lam = 0)."""
    teacher = rnn_classifier(2, 4, 3, rng, readout=readout)
    for layer in teacher.layers:
        for v in layer.params.values():
            v[...] = rng.standard_normal(v.shape) * 0.7
    xs = rng.standard_normal((6, 5, 2))
    a, hs = _teacher_sums(teacher, xs)
    student = rnn_classifier(2, 4, 3, rng, readout=readout)
    algo = TargetSpace(xs, pseudoinverse_l2_regularisation=0.0, realisation=realisation,
                       projection=None)
    state = algo.init_state(student, rng)
    k_out = len(student.layers) - 1
    state["targets"]["0.T"][...] = a
    state["targets"][f"{k_out}.T"][...] = teacher.forward(xs)[0]
    params, recs = algo.realise(student, state)
    for name in ("W_x", "W_h", "b"):
        assert rel_error(params[0][name], teacher.layers[0].params[name]) < 1e-11
    for name in ("W", "b"):
        assert rel_error(params[k_out][name], teacher.layers[k_out].params[name]) < 1e-11
    assert np.abs(recs[0]["S"] - a).max() < 1e-11


@pytest.mark.parametrize("realisation", ["scu", "ocu"])
@pytest.mark.parametrize("readout", ["all", "last"])
def test_pipeline_gradient(rng, realisation, readout):
    """(TS-11b), T = 6: dL/dT_h and dL/dT_o through BPTT and both solves vs differences."""
    model = rnn_classifier(2, 3, 2, rng, readout=readout)
    xs = rng.standard_normal((6, 4, 2))
    x = rng.standard_normal((6, 3, 2))
    y = rng.integers(0, 2, (6, 3) if readout == "all" else 3)
    algo = TargetSpace(xs, pseudoinverse_l2_regularisation=0.1, realisation=realisation,
                       diagnostics=False)
    assert pipeline_gradient_error(model, algo, x, y, rng) < 1e-7


def test_pipeline_gradient_masked_loss_and_other_realisation_length(rng):
    """X_bar of 8 steps (truncated to 7), training sequences of 5: the realisation length
    may differ from the training length; the masked loss ignores the first steps."""
    model = rnn_classifier(1, 3, 2, rng, readout="all")
    xs = rng.standard_normal((8, 4, 1))
    x = rng.standard_normal((5, 3, 1))
    y = rng.integers(0, 2, (5, 3))
    y[:2] = -1
    algo = TargetSpace(xs, pseudoinverse_l2_regularisation=0.1, realisation_sequence_length=7,
                       loss=masked_softmax_cross_entropy, diagnostics=False)
    state = algo.init_state(model, rng)
    assert state["targets"]["0.T"].shape == (7, 4, 3) and state["targets"]["1.T"].shape == (7, 4, 2)
    assert pipeline_gradient_error(model, algo, x, y, rng) < 1e-7


def test_recurrent_design_matrix_uses_previous_targets(rng):
    """A_h rows [1, x_t, tanh(T_h[t-1])] with zeros at t = 0 (h_0 = 0), time-major blocks."""
    r = RNNRealiser(RNN(2, 3, rng))
    x = rng.standard_normal((4, 5, 2))
    T = rng.standard_normal((4, 5, 3))
    A = r._design(x, T).reshape(4, 5, 6)
    np.testing.assert_array_equal(A[..., 0], 1.0)
    np.testing.assert_array_equal(A[..., 1:3], x)
    np.testing.assert_array_equal(A[0, :, 3:], 0.0)
    np.testing.assert_array_equal(A[1:, :, 3:], np.tanh(T[:-1]))


def test_hybrid_readout_reads_realised_states(rng):
    """scu (hybrid): the read-out solve's input is the real RNN run on X_bar with the solved
    weights; ocu: it is tanh(T_h)."""
    model = rnn_classifier(2, 3, 2, rng, readout="all")
    xs = rng.standard_normal((5, 4, 2))
    for realisation in ("scu", "ocu"):
        algo = TargetSpace(xs, realisation=realisation)
        state = algo.init_state(model, rng)
        params, recs = algo.realise(model, state)
        read = recs[1]["solve"]["A"][:, 1:].reshape(5, 4, 3)
        expected = (model.layers[0].forward(xs, params[0])[0] if realisation == "scu"
                    else np.tanh(state["targets"]["0.T"]))
        assert rel_error(read, expected) < 1e-14


def test_learns_short_delay_bit_recall(rng):
    """Recall the bit from 2 steps back: a short run in target space solves it."""
    x, y = bit_sequences("recall", 2, 12, 64, rng)
    model = rnn_classifier(1, 5, 2, rng, readout="all")
    algo = TargetSpace(x, realisation_batch_size=32, pseudoinverse_l2_regularisation=0.1,
                       loss=masked_softmax_cross_entropy, diagnostics=False)
    state = algo.init_state(model, rng)
    opt = Adam(0.01)
    for _ in range(150):
        opt.update(algo.variables(model, state), algo.step(model, state, x, y, rng).grads)
    xt, yt = bit_sequences("recall", 2, 12, 64, rng)
    assert masked_accuracy(algo.predict(model, state, xt), yt) > 0.95


def test_rnn_bad_input(rng):
    model = rnn_classifier(2, 3, 2, rng)
    with pytest.raises(ValueError, match="time-major"):
        TargetSpace(rng.standard_normal((10, 2))).init_state(model, rng)
    with pytest.raises(ValueError, match="realisation_sequence_length must be <="):
        TargetSpace(rng.standard_normal((4, 6, 2)),
                    realisation_sequence_length=5).init_state(model, rng)
    with pytest.raises(ValueError, match=r"shape \(T_bar, n_bar, 2\)"):
        TargetSpace(rng.standard_normal((4, 6, 3))).init_state(model, rng)
    late = Sequential([Dense(2, 2, rng), RNN(2, 3, rng), Dense(3, 2, rng)])
    with pytest.raises(ValueError, match="first layer"):
        TargetSpace(rng.standard_normal((4, 6, 2))).init_state(late, rng)
