"""The HSIC bottleneck: layer-local training by kernel dependence (Ma, Lewis & Kleijn 2020).

Every block k (Linear|Conv -> BatchNorm -> ReLU, or a residual block) is
trained on its own objective, with no gradient crossing blocks::

    J_k(theta_k) = nHSIC(Z_k, X) - beta nHSIC(Z_k, Y)                  (HSIC-5)

One step on a batch (sequential mode, the authors' order)::

    R_X, R_Y = nocco(K(X)), nocco(K(Y))            # once per batch     (HSIC-1..3)
    h = x
    for each block k:
        z = block_k(h)                              # batch statistics
        K = K(z); R_Z, M = nocco(K)
        G = eps m (H M (R_X - beta R_Y) M)^T        # dJ_k/dK           (HSIC-6)
        dZ = -(2/s) (Diag(P 1) - P) Z, P = (G + G^T) o K                (HSIC-7)
        grads = block_k.backward(dZ)                # dx discarded      (HSIC-8)
        theta_k <- theta_k - lr (grads + weight_decay theta_k)          (HSIC-9)
        h = block_k(h)                              # updated block feeds k+1

``parallel=True`` instead returns every block's gradient from one forward
pass for the caller's optimiser (HSIC-9a).

Symbol table
------------
====================  =============================  ===========================
paper symbol          code name                      shape
====================  =============================  ===========================
X                     ``x.reshape(m, -1)``           (m, d_x)
Y (one-hot)           ``Y``                          (m, C)
Z_k                   ``z`` / ``Z``                  (m, d_k) (conv: (m, C, H, W))
m                     ``m``                          current batch size
sigma                 ``sigma``                      scalar
beta                  ``beta`` (authors' lambda_y)   scalar
eps                   ``eps``                        scalar (ridge eps * m)
R_X, R_Y, R_Z         ``RX``, ``RY``, ``RZ``         (m, m)
M = (K_Z H + eps m I)^-1  ``M``                      (m, m)
T = R_X - beta R_Y    ``T``                          (m, m)
dJ_k / dK_Z           ``G``                          (m, m)
dJ_k / dZ_k           ``dZ``                         like z
nHSIC(Z_k, X)         ``info['nhsic_x'][b]``         (n_blocks,)
nHSIC(Z_k, Y)         ``info['nhsic_y'][b]``         (n_blocks,)
J_k                   ``info['objective'][b]``       (n_blocks,)
====================  =============================  ===========================

Prediction reads the last block's C units through a unit-to-class assignment
fitted on training batches (HSIC-11, HSIC-12); batch norm keeps no hidden
state: ``state['running_stats']`` holds every batch norm's running mean and
variance (HSIC-10), keyed by the model layer index.

The derivation of every equation, the map to the authors' code, the
deviations from the paper and from that code, and the measured numbers are
in this package's README.md.

References
----------
W.-D. K. Ma, J. P. Lewis, W. B. Kleijn, "The HSIC Bottleneck: Deep Learning
without Back-Propagation", AAAI 2020, arXiv:1908.01580. Authors' code:
github.com/choasma/HSIC-bottleneck (``core/train_hsic.py``).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import linear_sum_assignment

from ...layers.base import check_array
from ...losses import one_hot
from ...optim import SGD
from . import kernels as hk
from ...validation import check_bool, check_choice, check_input, check_number
from ..base import Algorithm, StepResult, as_recorder, check_given, check_loss_finite
from .metrics import greedy_unit_accuracy
from .models import (backward_layers, forward_layers, hsic_mlp, init_running_stats,
                     recompute_running_stats, running_stats_items, split_blocks,
                     update_running_stats)

__all__ = ["HSICBottleneck", "FOLLOW"]


def _forward_all_update_stats(model, x, running):
    """One training-mode forward of the whole model; every batch norm's statistics updated."""
    _, caches = forward_layers(model, 0, len(model.layers), x)
    return update_running_stats(model, 0, len(model.layers), running, caches)


#: ``follow=`` presets: the switches that reproduce an authors' codebase where refnets'
#: default differs from it by convention (README section 6).
FOLLOW = {
    "choasma/HSIC-bottleneck": {"running_stats_updates": "every_forward"},
}


class HSICBottleneck(Algorithm):
    """Layer-local training on J_k = nHSIC(Z_k, X) - beta nHSIC(Z_k, Y).

    Parameters
    ----------
    n_classes : int
        C, the width of the one-hot label matrix Y (10 for Fashion-MNIST).
    sigma : float, default 6.0
        Kernel scale factor, shared by the X, Y and Z kernels (authors: 5 or 6).
    beta : float, default 1000.0
        Weight of the label term (authors' ``lambda_y``; 1000 for
        Fashion-MNIST unformatted training).
    lr : float, default 1e-3
        Learning rate of the default per-block SGD (sequential mode).
    weight_decay : float, default 1e-3
        L2 coefficient of the default per-block SGD.
    eps : float, default 1e-5
        NOCCO ridge factor (the ridge is eps * m).
    parallel : bool, default False
        False: sequential in-batch block updates inside ``step`` (authors').
        True: return every block's gradient from one forward pass.
    optimizer : refnets optimiser, optional
        Replaces the default ``SGD(lr, weight_decay)``. Sequential mode calls
        ``optimizer.update`` once per block inside ``step``; parallel mode
        leaves the update to the caller (pass the same object to the loop).
    scale_by_dim : bool, default True
        d-scaled kernel width (authors' code) or the paper's 2 sigma^2.
    mapping_momentum : float in (0, 1], default 0.1
        Moving-average weight of a new batch in ``state['class_means']``.
    readout : {'hungarian', 'centroid'}, default 'hungarian'
        How :meth:`predict` turns the last block's output into class scores:
        the units reordered by the Hungarian unit-class assignment, or minus
        the squared distance to each class's mean output (nearest centroid;
        needs no one-unit-per-class structure). Both use only
        ``state['class_means']`` from training batches.
    running_stats_updates : {'per_block', 'every_forward'}, optional
        When the batch-norm running statistics (HSIC-10) are updated.
        'per_block' (refnets' default): once per batch, from the training-mode
        forward of each block that feeds the next block (after the block's
        update). 'every_forward' (the authors' ``hsic_train``): at each of
        their L + 1 full forward passes per batch -- one before the block
        loop, then one before each block's update, every batch norm each time
        -- which costs L + 1 full forwards per batch.
    follow : {None, 'choasma/HSIC-bottleneck'}
        A preset of the switches above that reproduces the named codebase
        (see ``FOLLOW``); a switch given explicitly wins over the preset.

    Notes
    -----
    The HSIC bottleneck draws nothing at random: ``init_state`` and ``step``
    accept no given values (an unknown keyword raises) and run with
    ``rng=None``. ``step(..., record=Recorder())`` records the trace keys
    listed in the package README (section 2).
    """

    name = "hsic"

    #: given-value keywords of init_state and step (none: nothing is drawn)
    given_init = ()
    given_step = ()

    def __init__(self, n_classes, sigma=6.0, beta=1000.0, lr=1e-3, weight_decay=1e-3,
                 eps=hk.NHSIC_EPS, parallel=False, optimizer=None, scale_by_dim=True,
                 mapping_momentum=0.1, readout="hungarian", running_stats_updates=None,
                 follow=None):
        super().__init__()
        where = "HSICBottleneck"
        self.n_classes = check_number(n_classes, "n_classes", where, low=2, integer=True)
        self.sigma = check_number(sigma, "sigma", where, low=0, low_open=True)
        self.beta = check_number(beta, "beta", where, low=0)
        self.eps = check_number(eps, "eps", where, low=0, low_open=True)
        self.mapping_momentum = check_number(mapping_momentum, "mapping_momentum", where,
                                             low=0, low_open=True, high=1)
        self.parallel = check_bool(parallel, "parallel", where)
        self.scale_by_dim = check_bool(scale_by_dim, "scale_by_dim", where)
        self.readout = check_choice(readout, "readout", ("hungarian", "centroid"), where)
        self.follow = None if follow is None else check_choice(follow, "follow", tuple(FOLLOW),
                                                               where)
        preset = FOLLOW.get(self.follow, {})
        if running_stats_updates is None:
            running_stats_updates = preset.get("running_stats_updates", "per_block")
        self.running_stats_updates = check_choice(running_stats_updates, "running_stats_updates",
                                                  ("per_block", "every_forward"), where)
        if optimizer is None:
            lr = check_number(lr, "lr", where, low=0, low_open=True)
            weight_decay = check_number(weight_decay, "weight_decay", where, low=0)
            optimizer = SGD(lr, weight_decay=weight_decay)
        elif not callable(getattr(optimizer, "update", None)):
            raise ValueError(f"{where}: optimizer must have an update(params, grads) method, "
                             f"got {type(optimizer).__name__}")
        self.optimizer = optimizer

    def __repr__(self):
        return (f"HSICBottleneck(n_classes={self.n_classes}, sigma={self.sigma}, beta={self.beta}, "
                f"parallel={self.parallel}, optimizer={self.optimizer!r}, "
                f"running_stats_updates={self.running_stats_updates!r})")

    # -- state ----------------------------------------------------------------
    def init_state(self, model, rng, record=None, **given):
        """Block ranges, batch-norm running statistics and the unit-class statistics.

        Nothing is drawn (``rng`` may be None); no given values are accepted.
        """
        check_given(given, self.given_init, "HSICBottleneck.init_state")
        blocks = split_blocks(model)
        return {"blocks": blocks, "running_stats": init_running_stats(model),
                "class_means": None, "class_seen": np.zeros(self.n_classes, dtype=bool),
                "steps": 0}

    def variables(self, model, state):
        """Parallel mode: every parameter. Sequential mode: {} (updated inside ``step``)."""
        return model.params() if self.parallel else {}

    # -- kernels of one batch ---------------------------------------------------
    def _kernel_nocco(self, A):
        """(K_A, R_A) for data A (m, ...) flattened to (m, d) (HSIC-1, HSIC-3)."""
        A = A.reshape(A.shape[0], -1)
        K = hk.gaussian_kernel(A, self.sigma, self.scale_by_dim)
        return K, hk.nocco(K, self.eps)[0]

    def _nocco_of(self, A):
        """R_A for data A (m, ...) flattened to (m, d)."""
        return self._kernel_nocco(A)[1]

    def _labels(self, y, m, where):
        y = np.asarray(y)
        if np.issubdtype(y.dtype, np.integer):
            if y.shape != (m,):
                raise ValueError(f"{where}: integer labels y must have shape ({m},), got {y.shape}")
            return one_hot(y, self.n_classes), y
        y = check_array(y, "y", shape=(m, self.n_classes), where=where)
        return y, np.argmax(y, axis=1)

    def block_objective(self, z, RX, RY, record=None, key=None):
        """J_k, its parts and dJ_k/dZ_k for a block output ``z`` (HSIC-5..7).

        Parameters
        ----------
        z : ndarray of shape (m, ...), the block output
        RX, RY : ndarray of shape (m, m), NOCCO operators of the input and labels
        record : Recorder, optional
            Receives ``"{key}.K_Z"``, ``"{key}.M"``, ``"{key}.R_Z"``, ``"{key}.G"``
            (each (m, m)) and ``"{key}.dZ"`` (m, d_k) when given.
        key : int, the model index of the block's last layer (trace keys)

        Returns
        -------
        J, nhsic_x, nhsic_y : float
        dz : ndarray like ``z``
        """
        m = z.shape[0]
        Z = z.reshape(m, -1)
        s = hk.kernel_scale(self.sigma, Z.shape[1], self.scale_by_dim)
        K = np.exp(-hk.sq_distances(Z) / s)                      # (HSIC-1) kernel of Z_k
        RZ, M = hk.nocco(K, self.eps)                            # (HSIC-3)
        nx = float(np.sum(RZ * RX.T))                            # (HSIC-4) tr(R_Z R_X)
        ny = float(np.sum(RZ * RY.T))                            # (HSIC-4) tr(R_Z R_Y)
        T = RX - self.beta * RY                                  # (HSIC-5)
        G = hk.nhsic_grad_kernel(M, T, self.eps)                 # (HSIC-6) eps m (H M T M)^T
        dZ = hk.gaussian_kernel_backward(G, K, Z, s)             # (HSIC-7) -(2/s) Lap(P) Z
        if record is not None and record.active:
            for name, value in (("K_Z", K), ("M", M), ("R_Z", RZ), ("G", G), ("dZ", dZ)):
                record.put(f"{key}.{name}", value)
        return nx - self.beta * ny, nx, ny, dZ.reshape(z.shape)

    # -- one step -------------------------------------------------------------
    def step(self, model, state, x, y, rng=None, record=None, **given):
        """Train every block on its J_k for one batch; see the module docstring.

        Parameters
        ----------
        model : Sequential of HSIC blocks
        state : dict from :meth:`init_state`
        x : ndarray of shape (m, ...), m >= 2; float32 and ints are upcast
        y : int ndarray (m,) or one-hot ndarray (m, C)
        rng : unused (nothing is drawn); may be None
        record : Recorder, optional
            Receives the trace keys of the package README (section 2).

        Returns
        -------
        StepResult
            loss = sum_k J_k (each block's objective before its own update);
            grads = every block's gradient (parallel) or {} (sequential, applied);
            info = {'nhsic_x', 'nhsic_y', 'objective'}: arrays over blocks.
        """
        where = "HSICBottleneck.step"
        check_given(given, self.given_step, where)
        record = as_recorder(record)
        x = check_input(x, "x", where, ndim=(2, 3, 4))
        m = x.shape[0]
        if m < 2:
            raise ValueError(f"{where}: the batch needs at least 2 samples (kernels and batch "
                             f"norm), got x of shape {x.shape}; choose a batch size whose last "
                             f"batch is not a single sample")
        Y, labels = self._labels(y, m, where)
        state["steps"] += 1
        KX, RX = self._kernel_nocco(x)                              # (HSIC-1..3) once per batch
        KY, RY = self._kernel_nocco(Y)
        if record.active:
            for name, value in (("Y", Y), ("K_X", KX), ("R_X", RX), ("K_Y", KY), ("R_Y", RY),
                                ("T", RX - self.beta * RY)):
                record.put(name, value)
        blocks, running = state["blocks"], state["running_stats"]
        every_forward = self.running_stats_updates == "every_forward"
        if every_forward:                                         # authors' model(data) first
            running = _forward_all_update_stats(model, x, running)
        own = model.params()
        n = len(blocks)
        nx, ny, J = np.empty(n), np.empty(n), np.empty(n)
        all_grads = {}
        h = x
        for b, (lo, hi) in enumerate(blocks):
            k = hi - 1                                            # model index of Z_k's layer
            if every_forward:                                     # authors: a full forward per block
                running = _forward_all_update_stats(model, x, running)
            z, caches = forward_layers(model, lo, hi, h)          # Z_k, batch statistics
            J[b], nx[b], ny[b], dz = self.block_objective(z, RX, RY, record, k)
            check_loss_finite(J[b], f"{where} {state['steps']} (block {b}, layer {k})")
            _, grads = backward_layers(model, lo, hi, dz, caches)   # (HSIC-8) dZ_{k-1} discarded
            if record.active:
                record.put(f"{k}.Z", z.reshape(m, -1))
                for name, value in (("nhsic_x", nx[b]), ("nhsic_y", ny[b]), ("J", J[b])):
                    record.put(f"{k}.{name}", value)
                for key, g in grads.items():
                    record.put(f"{key}_grad", g)
            if self.parallel:
                all_grads.update(grads)                           # (HSIC-9a)
            else:
                self.optimizer.update({key: own[key] for key in grads}, grads)   # (HSIC-9)
                z, caches = forward_layers(model, lo, hi, h)      # updated block feeds k+1
                if record.active:
                    record.put(f"{k}.Z_after", z.reshape(m, -1))
                    for key in grads:
                        record.put(f"{key}_after", own[key])
            if not every_forward:
                running = update_running_stats(model, lo, hi, running, caches)    # (HSIC-10)
            h = z
        state["running_stats"] = running
        if record.active:
            for key, value in running_stats_items(running):
                record.put(key, value)
        self._update_class_means(state, h.reshape(m, -1), labels)
        if record.active:
            record.put("class_means", state["class_means"])
        return StepResult(loss=float(J.sum()), grads=all_grads,
                          info={"nhsic_x": nx, "nhsic_y": ny, "objective": J})

    def _update_class_means(self, state, out, labels):
        """Moving average of the per-class mean output (HSIC-11), for the train-fitted mapping."""
        C = self.n_classes
        if state["class_means"] is None:
            state["class_means"] = np.zeros((C, out.shape[1]))
        Yb = one_hot(labels, C)
        counts = Yb.sum(axis=0)
        present = counts > 0
        batch_means = (Yb.T @ out)[present] / counts[present, None]
        a = np.where(state["class_seen"][present], self.mapping_momentum, 1.0)[:, None]
        state["class_means"][present] = (1 - a) * state["class_means"][present] + a * batch_means
        state["class_seen"] |= present

    # -- evaluation -----------------------------------------------------------
    def calibrate_batchnorm(self, model, state, x, batch_size=1000):
        """Replace ``state['running_stats']`` by the statistics of the current net on ``x``.

        See :func:`refnets.algorithms.hsic.models.recompute_running_stats`.
        Measured (``python tutorials/30_hsic_bottleneck.py --quick``, embedded
        subset, one pass): train-fitted accuracy 0.725 with the running
        statistics, 0.768 after calibrating on the training images.
        """
        state["running_stats"] = recompute_running_stats(model, x, batch_size)
        return state

    def features(self, model, state, x, bn="running"):
        """The network output (last block), batch norm in evaluation or batch mode.

        Parameters
        ----------
        x : ndarray, the input batch
        bn : {'running', 'batch'}
            'running': the running statistics in ``state`` (default; works for
            any batch size). 'batch': the batch's own statistics (the authors'
            unformatted evaluation; needs a large batch).
        """
        where = "HSICBottleneck.features"
        check_choice(bn, "bn", ("running", "batch"), where)
        x = check_input(x, "x", where, ndim=(2, 3, 4))
        stats = state["running_stats"] if bn == "running" else None
        return forward_layers(model, 0, len(model.layers), x, stats)[0]

    def unit_mapping(self, state):
        """Class -> output unit, Hungarian on the training class means (HSIC-12; identity before any step)."""
        if state["class_means"] is None:
            return np.arange(self.n_classes)
        if state["class_means"].shape[1] < self.n_classes:
            raise ValueError(f"HSICBottleneck.unit_mapping: the last block has "
                             f"{state['class_means'].shape[1]} units, fewer than n_classes = "
                             f"{self.n_classes}; use a format layer (format.py: format_setup) instead")
        rows, cols = linear_sum_assignment(state["class_means"], maximize=True)
        units = np.empty(self.n_classes, dtype=int)
        units[rows] = cols
        return units

    def greedy_accuracy(self, model, state, x, y, bn="running", batch_size=256):
        """The authors' unformatted accuracy (HSIC-13) of the net on (x, y).

        The output is computed in consecutive batches of ``batch_size`` rows
        (the order of ``x``), then scored by
        :func:`refnets.algorithms.hsic.metrics.greedy_unit_accuracy`
        (self-fitted greedy unit-to-class mapping, balanced accuracy).

        Parameters
        ----------
        x : ndarray (N, ...); y : int ndarray (N,)
        bn : {'running', 'batch'}, default 'running'
            'running': batch norm with the running statistics in ``state``
            (the output of a sample does not depend on its batch). 'batch':
            each evaluation batch normalised by its own statistics, as the
            authors' ``get_accuracy_hsic``. Then a sample's output depends on
            which classes share its batch: a batch of one class is normalised
            to that class's own mean and loses the class signal. So 'batch'
            refuses (ValueError) a batch that holds a single class and warns
            (UserWarning) when a batch holds fewer than half of the classes
            present in ``y`` (class-sorted data: shuffle it first). Measured
            (``python benchmarks/bench_hsic.py --measure greedy``): on the
            class-sorted embedded test set, batches of 256 give 0.47 where
            ``predict`` gives 0.82.
        batch_size : int >= 2

        Returns
        -------
        accuracy : float; units : int ndarray (n_classes,)
        """
        where = "HSICBottleneck.greedy_accuracy"
        check_choice(bn, "bn", ("running", "batch"), where)
        batch_size = check_number(batch_size, "batch_size", where, low=2, integer=True)
        x = check_input(x, "x", where, ndim=(2, 3, 4))
        y = check_array(y, "y", ndim=1, where=where, allow_int=True)
        if not np.issubdtype(y.dtype, np.integer) or len(y) != len(x):
            raise ValueError(f"{where}: y must hold {len(x)} integer labels, got dtype {y.dtype} "
                             f"and shape {y.shape}")
        starts = range(0, len(x), batch_size)
        if bn == "batch":
            n_present = len(np.unique(y))
            for s in starts:
                classes = np.unique(y[s:s + batch_size])
                if len(classes) == 1 and n_present > 1:
                    raise ValueError(
                        f"{where}: evaluation batch of rows {s}..{min(s + batch_size, len(x)) - 1} "
                        f"holds only class {classes[0]}; with bn='batch' each batch is normalised "
                        f"by its own statistics, which removes the class signal. Shuffle x and y "
                        f"(class-sorted data) or use bn='running' (default)")
                if len(classes) < n_present / 2:
                    warnings.warn(
                        f"{where}: evaluation batch of rows {s}..{min(s + batch_size, len(x)) - 1} "
                        f"holds {len(classes)} of the {n_present} classes; with bn='batch' its "
                        f"outputs depend on that mix (class-sorted data?): shuffle x and y or use "
                        f"bn='running'", UserWarning, stacklevel=2)
                    break
        out = np.vstack([self.features(model, state, x[s:s + batch_size], bn=bn).reshape(
            len(x[s:s + batch_size]), -1) for s in starts])
        return greedy_unit_accuracy(out, y, self.n_classes)

    def predict(self, model, state, x, bn="running"):
        """Class scores (N, C) from the last block's output and the training class means.

        ``readout='hungarian'``: out[:, units], units = :meth:`unit_mapping`.
        ``readout='centroid'``: -||out - mu_c||^2 with mu_c = ``state['class_means'][c]``
        (HSIC-12a).
        """
        out = self.features(model, state, x, bn=bn)
        out = out.reshape(out.shape[0], -1)
        if self.readout == "hungarian":
            return out[:, self.unit_mapping(state)]
        if state["class_means"] is None:
            raise ValueError("HSICBottleneck.predict: readout='centroid' needs at least one "
                             "training step (no class means yet)")
        mu = state["class_means"]
        return -(np.sum(out * out, axis=1)[:, None] - 2.0 * out @ mu.T + np.sum(mu * mu, axis=1))


# ----------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------
def _build(sizes, activation, rng, x_train=None, y_train=None):
    """Registry factory: the authors' dense net for ``sizes``, unformatted output.

    Blocks Dense -> BatchNorm(affine=False) -> ReLU for every entry of
    ``sizes[1:]`` (the last block has one unit per class); sequential HSIC with
    the authors' Fashion-MNIST unformatted setting: sigma = 6, beta = 1000,
    plain SGD lr 1e-3 with weight decay 1e-3. Predictions use the train-fitted
    Hungarian unit mapping.

    ``activation`` is ignored: the unformatted output needs the authors' ReLU
    blocks (class units >= 0 that switch on for their class; tanh blocks,
    whose outputs change sign, learn far less). Measured with
    ``refnets compare --methods hsic`` (fashion-mnist-small, [784, 128, 128,
    10], 3 epochs of batch 50, seed 0): test accuracy 0.817.
    """
    from .. import Setup
    model = hsic_mlp(sizes, rng, activation="relu")
    algo = HSICBottleneck(n_classes=sizes[-1], sigma=6.0, beta=1000.0, lr=1e-3, weight_decay=1e-3)
    return Setup(model, algo, algo.optimizer)


def _register():
    from .. import Method, register
    register(Method("hsic", _build, "HSIC bottleneck: block-local nHSIC(Z,X) - beta nHSIC(Z,Y), "
                                    "Linear-BN-ReLU blocks, unformatted output",
                    "Ma, Lewis & Kleijn 2020", loss_kind="hsic"))


_register()

# the finite-difference self-checks of this part (``refnets gradcheck``)
