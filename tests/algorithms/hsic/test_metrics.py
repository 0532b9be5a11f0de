"""Unformatted-output metrics: greedy (authors'), Hungarian, train-fitted mapping, probe."""

import numpy as np
import pytest

from refnets.algorithms.hsic import metrics as hm


def permuted_detector(rng, perm, n=300, noise=0.3):
    """Outputs where class c switches on unit perm[c] (plus noise), labels y."""
    y = np.arange(n) % len(perm)
    out = noise * rng.random((n, len(perm)))
    out[np.arange(n), np.asarray(perm)[y]] += 1.0
    return out, y


def test_greedy_equals_hungarian_on_clean_permutation(rng):
    perm = [3, 0, 4, 1, 2]
    out, y = permuted_detector(rng, perm)
    g, g_units = hm.greedy_unit_accuracy(out, y, 5)
    h, h_units = hm.hungarian_accuracy(out, y, 5)
    assert g == h == 1.0
    np.testing.assert_array_equal(g_units, perm)
    np.testing.assert_array_equal(h_units, perm)


def test_greedy_hand_example_shared_unit():
    """Classes 0 and 1 both fire unit 0 most; greedy gives unit 0 to class 0, then
    class 1 takes its best free unit.

    outputs (unit 0, unit 1), labels:
      class 0: (1.0, 0.0), (0.9, 0.1)      mean (0.95, 0.05)
      class 1: (0.8, 0.5), (0.6, 0.7)      mean (0.70, 0.60)
    greedy: class 0 -> unit 0, class 1 -> unit 1.
    arg-max units: [0, 0, 0, 1]; recall class 0 = 2/2, class 1 = 1/2 -> balanced 0.75.
    Hungarian maximises 0.95 + 0.60 (= 1.55) over 0.05 + 0.70: the same mapping,
    plain accuracy 3/4.
    """
    out = np.array([[1.0, 0.0], [0.9, 0.1], [0.8, 0.5], [0.6, 0.7]])
    y = np.array([0, 0, 1, 1])
    acc, units = hm.greedy_unit_accuracy(out, y, 2)
    assert acc == pytest.approx(0.75)
    np.testing.assert_array_equal(units, [0, 1])
    assert hm.hungarian_accuracy(out, y, 2)[0] == pytest.approx(0.75)


def test_greedy_order_dependence_loses_to_hungarian():
    """Class 0 grabs the unit class 1 needs: greedy 0.5, Hungarian 1.0.

    class means: class 0 (0.6, 0.5), class 1 (0.9, 0.0). Greedy (class 0 first)
    gives unit 0 to class 0 and unit 1 to class 1; Hungarian picks
    0.5 + 0.9 = 1.4 > 0.6 + 0.0: class 0 -> unit 1, class 1 -> unit 0.
    """
    out = np.array([[0.6, 0.5], [0.6, 0.5], [0.9, 0.0], [0.9, 0.0]])
    y = np.array([0, 0, 1, 1])
    greedy, units = hm.greedy_unit_accuracy(out, y, 2)
    np.testing.assert_array_equal(units, [0, 1])
    assert greedy == pytest.approx(0.5)          # class 0: argmax unit 0 = its unit; class 1: 0
    hung, h_units = hm.hungarian_accuracy(out, y, 2)
    np.testing.assert_array_equal(h_units, [1, 0])
    assert hung == pytest.approx(0.5)            # unit 1 never wins for class 0 samples
    np.testing.assert_array_equal(hm.fit_unit_mapping(out, y, 2), [1, 0])


def test_greedy_terminates_on_all_zero_outputs():
    """The authors' zeroing loops forever when all remaining means are 0; -inf masking ends."""
    out = np.zeros((6, 3))
    y = np.array([0, 1, 2, 0, 1, 2])
    acc, units = hm.greedy_unit_accuracy(out, y, 3)
    assert sorted(units) == [0, 1, 2]            # distinct units, loop ended
    assert acc == pytest.approx(1 / 3)           # argmax of zeros is unit 0: only class 0 right


def test_train_fitted_mapping_on_held_out_data(rng):
    perm = [2, 0, 1]
    out_tr, y_tr = permuted_detector(rng, perm)
    out_te, y_te = permuted_detector(rng, perm, n=90)
    units = hm.fit_unit_mapping(out_tr, y_tr, 3)
    assert hm.mapped_accuracy(out_te, y_te, units) == 1.0
    # more units than classes: the extra unit is never assigned
    wide = np.hstack([out_tr, 0.1 * rng.random((len(out_tr), 1))])
    np.testing.assert_array_equal(hm.fit_unit_mapping(wide, y_tr, 3), perm)


def test_class_means_hand_example():
    out = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    means = hm.class_means(out, np.array([0, 0, 1]), 3)   # 3 classes, 2 units is fine
    np.testing.assert_allclose(means[:2], [[2.0, 3.0], [5.0, 6.0]])
    assert np.all(np.isnan(means[2]))            # class 2 absent


def test_linear_probe(rng):
    # linearly separable 3-class data in 2-D features: the probe is (near) perfect
    y = np.arange(300) % 3
    centres = np.array([[0.0, 4.0], [4.0, 0.0], [-4.0, -4.0]])
    f = centres[y] + rng.standard_normal((300, 2))
    assert hm.linear_probe_accuracy(f[:200], y[:200], f[200:], y[200:], 3) > 0.95
    # features independent of the labels: about chance
    g = rng.standard_normal((300, 2))
    assert hm.linear_probe_accuracy(g[:200], y[:200], g[200:], y[200:], 3) < 0.55


def test_bad_input():
    with pytest.raises(ValueError, match="integer labels"):
        hm.greedy_unit_accuracy(np.ones((3, 2)), np.array([0.0, 1.0, 0.0]), 2)
    with pytest.raises(ValueError, match="at least n_classes"):
        hm.fit_unit_mapping(np.ones((3, 2)), np.array([0, 1, 2]), 3)
    with pytest.raises(ValueError, match="one label per row"):
        hm.class_means(np.ones((3, 2)), np.array([0, 1]), 2)


# ----------------------------------------------------------------------------
# the greedy metric of a trained net: running statistics by default
# ----------------------------------------------------------------------------
def _trained_net(seed=0, n=60, classes=3):
    from refnets.algorithms.hsic import HSICBottleneck, hsic_mlp
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.standard_normal((n, 6)) + 2.0 * np.eye(6)[y]       # class-dependent inputs
    model = hsic_mlp([6, 8, classes], rng)
    algo = HSICBottleneck(n_classes=classes, sigma=2.0, beta=10.0, lr=0.05)
    state = algo.init_state(model, None)
    for _ in range(5):
        algo.step(model, state, x, y, None)
    return model, algo, state, x, y


def test_greedy_accuracy_with_running_statistics_ignores_the_order():
    """Default bn='running': a sample's output does not depend on its batch, so sorting the
    set by class changes nothing; the score is greedy_unit_accuracy of the features."""
    model, algo, state, x, y = _trained_net()
    acc, units = algo.greedy_accuracy(model, state, x, y, batch_size=7)
    expected = hm.greedy_unit_accuracy(algo.features(model, state, x), y, 3)
    assert acc == expected[0]
    np.testing.assert_array_equal(units, expected[1])
    order = np.argsort(y, kind="stable")
    assert algo.greedy_accuracy(model, state, x[order], y[order], batch_size=7)[0] == acc


def test_greedy_accuracy_with_batch_statistics_is_the_authors_computation():
    model, algo, state, x, y = _trained_net()
    out = np.vstack([algo.features(model, state, x[i:i + 16], bn="batch") for i in range(0, 60, 16)])
    acc, _ = algo.greedy_accuracy(model, state, x, y, bn="batch", batch_size=16)
    assert acc == hm.greedy_unit_accuracy(out, y, 3)[0]


def test_greedy_accuracy_refuses_single_class_batches():
    """Class-sorted data in batches of one class: each unit is normalised to that class's
    own statistics and the class signal is gone, so bn='batch' refuses."""
    model, algo, state, x, y = _trained_net()
    order = np.argsort(y, kind="stable")           # 20 samples per class
    with pytest.raises(ValueError, match=r"greedy_accuracy: evaluation batch of rows 0..19 "
                                         r"holds only class 0; with bn='batch'"):
        algo.greedy_accuracy(model, state, x[order], y[order], bn="batch", batch_size=20)


def test_greedy_accuracy_warns_on_batches_with_few_classes():
    from refnets.algorithms.hsic import HSICBottleneck, hsic_mlp
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(6), 10)                # class-sorted, 6 classes
    x = rng.standard_normal((60, 6))
    model = hsic_mlp([6, 8, 6], rng)
    algo = HSICBottleneck(n_classes=6)
    state = algo.init_state(model, None)
    with pytest.warns(UserWarning, match=r"holds 2 of the 6 classes"):
        algo.greedy_accuracy(model, state, x, y, bn="batch", batch_size=20)


def test_greedy_accuracy_bad_input():
    model, algo, state, x, y = _trained_net()
    with pytest.raises(ValueError, match=r"greedy_accuracy: bn must be one of \['running', 'batch'\]"):
        algo.greedy_accuracy(model, state, x, y, bn="train")
    with pytest.raises(ValueError, match=r"greedy_accuracy: y must hold 60 integer labels"):
        algo.greedy_accuracy(model, state, x, y[:10])
    with pytest.raises(ValueError, match=r"greedy_accuracy: batch_size must be >= 2"):
        algo.greedy_accuracy(model, state, x, y, batch_size=1)
