"""The HSIC bottleneck: layer-local training by kernel dependence (Ma, Lewis & Kleijn 2020).

Every block k (Linear|Conv -> BatchNorm -> ReLU, or a residual block) is
trained on its own objective, with no gradient crossing blocks (paper,
Algorithm 1 "unformatted training"; authors' ``core/train_hsic.py``)::

    J_k(theta_k) = nHSIC(Z_k, X) - beta * nHSIC(Z_k, Y)

(the paper's HSIC-bottleneck objective, the information bottleneck
min I(X; Z_k) - beta I(Z_k; Y) with HSIC in place of mutual information; its
equation numbers are not cited here because they were not checked against
the published version).

X is always the network input (flattened pixels, unnormalised), Y the one-hot
labels, Z_k the block's output on the batch (flattened), and nHSIC the
normalised HSIC the authors' code trains (``hsic_normalized_cca``, NOCCO):
nHSIC(A, B) = tr(R_A R_B), R = K H (K H + eps m I)^-1, with Gaussian kernels
of width s = 2 sigma^2 d (d = the argument's number of columns). The estimator
functions and their gradients are in :mod:`refnets.algorithms.hsic.kernels`.

One step on a batch (sequential mode, the authors' behaviour)::

    R_X, R_Y = nocco(K(X)), nocco(K(Y))          # once per batch
    h = x
    for each block k:
        z = block_k(h)                              # batch norm: batch statistics
        K = K(z); R_Z, M = nocco(K)
        G = eps m (H M (R_X - beta R_Y) M)^T        # dJ_k/dK   (spec 2.3)
        dZ = -(2/s) (Diag(P1) - P) Z, P = (G + G^T) o K
        grads = block_k.backward(dZ)                # dx discarded: block-local
        theta_k <- theta_k - lr (grads + weight_decay theta_k)
        h = block_k(h)                              # the updated block feeds k+1

``parallel=True`` instead computes every block's gradient from one forward
pass and returns them all for the caller's optimiser (the paper notes the
blocks could be trained in parallel).

Symbol table
------------
====================  =============================  ===========================
paper / spec symbol   code name                      shape
====================  =============================  ===========================
X                     ``X`` (= x.reshape(m, -1))     (m, d_x)
Y (one-hot)           ``Y``                          (m, C)
Z_k                   ``z`` / ``Z``                  (m, d_k) (conv: (m, C, H, W))
m                     ``m``                          current batch size
sigma                 ``sigma``                      scalar
beta                  ``beta`` (authors' lambda_y)   scalar
eps                   ``eps``                        scalar (ridge eps * m)
R_X, R_Y, R_Z         ``RX``, ``RY``, ``RZ``         (m, m)
M = (K_Z H + eps m I)^-1  ``M``                      (m, m)
dJ_k / dK_Z           ``G``                          (m, m)
dJ_k / dZ_k           ``dZ``                         like z
nHSIC(Z_k, X)         ``info['nhsic_x'][k]``         (n_blocks,)
nHSIC(Z_k, Y)         ``info['nhsic_y'][k]``         (n_blocks,)
J_k                   ``info['objective'][k]``       (n_blocks,)
====================  =============================  ===========================

Prediction. The last block's C units are an "unformatted" output: classes land
on permuted units. :meth:`HSICBottleneck.predict` returns class scores
``out[:, units]`` where ``units`` is the Hungarian assignment of classes to
units fitted on *training* batches: ``state['class_means']`` is a moving
average (momentum ``mapping_momentum``) of the per-class mean of the last
block's output, collected during ``step`` at no extra cost. For scoring
against the authors' greedy self-fitted metric, the linear probe and a
format layer see :mod:`refnets.algorithms.hsic.metrics` and
:mod:`refnets.algorithms.hsic.format`.

Batch norm has no hidden state: ``state['running_stats']`` holds the running
mean/var of every batch norm, updated (PyTorch rule, momentum 0.1) from the
training-mode forward that feeds the next block. ``predict``/``features`` use
them (evaluation mode) by default; ``bn='batch'`` uses the evaluated batch's own
statistics, as the authors' unformatted evaluation does. The running averages
lag behind the fast-moving first blocks (measured: 0.60 accuracy vs 0.77 with
batch statistics after 40 steps); :meth:`HSICBottleneck.calibrate_batchnorm`
recomputes them on training data with the final weights ("precise BN").

Deviations
----------
* **Estimator and kernel** follow the authors' code, not the paper's text:
  nHSIC (NOCCO) instead of the biased HSIC the paper presents, and the
  d-scaled width 2 sigma^2 d (``scale_by_dim=False`` gives the paper's 2 sigma^2).
* **Sequential updates inside** ``step``: as in the authors' loop, block k sees
  this batch's updates of blocks < k. The update uses the algorithm's own
  ``optimizer`` (default plain SGD with weight decay 1e-3, which is what the
  authors' per-step re-created ``SGD(momentum=0.9)`` amounts to: a fresh
  momentum buffer is inert); ``variables`` is then empty and ``grads`` is {}
  so the training loop's optimizer call is a no-op. A persistent-momentum
  optimizer (e.g. ``Momentum``) is a deliberate deviation from the authors.
* **O(L) work per batch** instead of the authors' O(L^2): they redo a full
  forward and a full autograd backward per layer (the gradients reaching
  earlier layers are zeroed, unused); here each block is run, differentiated
  locally and re-run once. The result is the same (tested).
* R_X and R_Y are computed once per batch (authors: once per layer).
* float64 and ``np.linalg.solve`` (authors: float32 kernels, ``torch.inverse``).
* Running statistics are updated once per batch per batch norm (authors:
  at each of their L+1 forward passes per batch, mostly with stale weights).
* ResConv (``hsic_resconv``): the residual block has two 5x5 convs,
  act(BN(conv(act(BN(conv x)))) + x), as the authors' ``BasicResidualBlockConv``
  in ``model/block.py``; the spec's section 2.3 writes it with one conv.
* No bias before batch norm by default (dead under BN; authors keep it, it only
  decays) -- see :func:`refnets.algorithms.hsic.models.hsic_mlp`.
* Data order is the caller's (the authors do not shuffle); partial batches are
  kept with their own eps m (as the authors), but need m >= 2.
* ``cosine_to_backprop`` is not reported: J_k is not a function of a
  classification loss, so there is no backprop gradient it approximates.
* ``predict`` uses a train-fitted Hungarian unit mapping and running BN
  statistics (the authors score with a greedy mapping fitted on the test set
  itself, BN in batch mode); all variants are in ``hsic_metrics``.

References
----------
W.-D. K. Ma, J. P. Lewis, W. B. Kleijn, "The HSIC Bottleneck: Deep Learning
without Back-Propagation", AAAI 2020, arXiv:1908.01580 (Algorithm 1; the
objective per layer). Official code: github.com/choasma/HSIC-bottleneck.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from ...layers.base import check_array
from ...losses import one_hot
from ...optim import SGD
from . import kernels as hk
from ..base import Algorithm, StepResult, check_loss_finite
from .models import (backward_layers, forward_layers, hsic_mlp, init_running_stats,
                          recompute_running_stats, split_blocks, update_running_stats)

__all__ = ["HSICBottleneck"]


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
    """

    name = "hsic"

    def __init__(self, n_classes, sigma=6.0, beta=1000.0, lr=1e-3, weight_decay=1e-3,
                 eps=hk.NHSIC_EPS, parallel=False, optimizer=None, scale_by_dim=True,
                 mapping_momentum=0.1, readout="hungarian"):
        super().__init__()
        where = "HSICBottleneck"
        if not isinstance(n_classes, (int, np.integer)) or n_classes < 2:
            raise ValueError(f"{where}: n_classes must be an int >= 2, got {n_classes!r}")
        for name, v in (("sigma", sigma), ("eps", eps)):
            if not (isinstance(v, (int, float, np.number)) and np.isfinite(v) and v > 0):
                raise ValueError(f"{where}: {name} must be a positive finite number, got {v!r}")
        if not (isinstance(beta, (int, float, np.number)) and np.isfinite(beta) and beta >= 0):
            raise ValueError(f"{where}: beta must be a finite number >= 0, got {beta!r}")
        if not (np.isfinite(mapping_momentum) and 0 < mapping_momentum <= 1):
            raise ValueError(f"{where}: mapping_momentum must be in (0, 1], "
                             f"got {mapping_momentum!r}")
        if readout not in ("hungarian", "centroid"):
            raise ValueError(f"{where}: readout must be 'hungarian' or 'centroid', got {readout!r}")
        if optimizer is not None and not callable(getattr(optimizer, "update", None)):
            raise ValueError(f"{where}: optimizer must have an update(params, grads) method, "
                             f"got {type(optimizer).__name__}")
        self.n_classes = int(n_classes)
        self.sigma, self.beta, self.eps = float(sigma), float(beta), float(eps)
        self.parallel, self.scale_by_dim = bool(parallel), bool(scale_by_dim)
        self.mapping_momentum = float(mapping_momentum)
        self.readout = readout
        self.optimizer = SGD(lr, weight_decay=weight_decay) if optimizer is None else optimizer

    def __repr__(self):
        return (f"HSICBottleneck(n_classes={self.n_classes}, sigma={self.sigma}, beta={self.beta}, "
                f"parallel={self.parallel}, optimizer={self.optimizer!r})")

    # -- state ----------------------------------------------------------------
    def init_state(self, model, rng):
        """Block ranges, batch-norm running statistics and the unit-class statistics."""
        blocks = split_blocks(model)
        return {"blocks": blocks, "running_stats": init_running_stats(model),
                "class_means": None, "class_seen": np.zeros(self.n_classes, dtype=bool),
                "steps": 0}

    def variables(self, model, state):
        """Parallel mode: every parameter. Sequential mode: {} (updated inside ``step``)."""
        return model.params() if self.parallel else {}

    # -- kernels of one batch ---------------------------------------------------
    def _nocco_of(self, A):
        """R_A for data A (m, ...) flattened to (m, d)."""
        A = A.reshape(A.shape[0], -1)
        return hk.nocco(hk.gaussian_kernel(A, self.sigma, self.scale_by_dim), self.eps)[0]

    def _labels(self, y, m, where):
        y = np.asarray(y)
        if np.issubdtype(y.dtype, np.integer):
            if y.shape != (m,):
                raise ValueError(f"{where}: integer labels y must have shape ({m},), got {y.shape}")
            return one_hot(y, self.n_classes), y
        y = check_array(y, "y", shape=(m, self.n_classes), where=where)
        return y, np.argmax(y, axis=1)

    def block_objective(self, z, RX, RY):
        """J_k, its parts and dJ_k/dZ_k for a block output ``z`` (spec 2.3).

        Parameters
        ----------
        z : ndarray of shape (m, ...), the block output
        RX, RY : ndarray of shape (m, m), NOCCO operators of the input and labels

        Returns
        -------
        J, nhsic_x, nhsic_y : float
        dz : ndarray like ``z``
        """
        m = z.shape[0]
        Z = z.reshape(m, -1)
        s = hk.kernel_scale(self.sigma, Z.shape[1], self.scale_by_dim)
        K = np.exp(-hk.sq_distances(Z) / s)                      # Gaussian kernel of Z_k
        RZ, M = hk.nocco(K, self.eps)
        nx = float(np.sum(RZ * RX.T))                            # tr(R_Z R_X)
        ny = float(np.sum(RZ * RY.T))                            # tr(R_Z R_Y)
        T = RX - self.beta * RY
        G = hk.nhsic_grad_kernel(M, T, self.eps)                 # dJ/dK = eps m (H M T M)^T
        dZ = hk.gaussian_kernel_backward(G, K, Z, s)             # -(2/s) Lap(P) Z
        return nx - self.beta * ny, nx, ny, dZ.reshape(z.shape)

    # -- one step -------------------------------------------------------------
    def step(self, model, state, x, y, rng):
        """Train every block on its J_k for one batch; see the module docstring.

        Returns
        -------
        StepResult
            loss = sum_k J_k (each block's objective before its own update);
            grads = every block's gradient (parallel) or {} (sequential, applied);
            info = {'nhsic_x', 'nhsic_y', 'objective'}: arrays over blocks.
        """
        where = "HSICBottleneck.step"
        x = check_array(x, "x", where=where)
        m = x.shape[0]
        if m < 2:
            raise ValueError(f"{where}: the batch needs at least 2 samples (kernels and batch "
                             f"norm), got x of shape {x.shape}; choose a batch size whose last "
                             f"batch is not a single sample")
        Y, labels = self._labels(y, m, where)
        state["steps"] += 1
        RX, RY = self._nocco_of(x), self._nocco_of(Y)             # once per batch
        blocks, running = state["blocks"], state["running_stats"]
        own = model.params()
        n = len(blocks)
        nx, ny, J = np.empty(n), np.empty(n), np.empty(n)
        all_grads = {}
        h = x
        for b, (lo, hi) in enumerate(blocks):
            z, caches = forward_layers(model, lo, hi, h)          # Z_k, batch statistics
            J[b], nx[b], ny[b], dz = self.block_objective(z, RX, RY)
            check_loss_finite(J[b], f"{where} {state['steps']} (block {b})")
            _, grads = backward_layers(model, lo, hi, dz, caches)   # dZ_{k-1} discarded
            if self.parallel:
                all_grads.update(grads)
            else:
                self.optimizer.update({key: own[key] for key in grads}, grads)
                z, caches = forward_layers(model, lo, hi, h)      # updated block feeds k+1
            running = update_running_stats(model, lo, hi, running, caches)
            h = z
        state["running_stats"] = running
        self._update_class_means(state, h.reshape(m, -1), labels)
        return StepResult(loss=float(J.sum()), grads=all_grads,
                          info={"nhsic_x": nx, "nhsic_y": ny, "objective": J})

    def _update_class_means(self, state, out, labels):
        """Moving average of the per-class mean output (for the train-fitted mapping)."""
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
        Measured (embedded subset, width 64, 2 epochs): accuracy with running
        statistics 0.60, after calibrating on the training images 0.78, with
        each test batch's own statistics 0.77.
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
        if bn not in ("running", "batch"):
            raise ValueError(f"HSICBottleneck.features: bn must be 'running' or 'batch', got {bn!r}")
        stats = state["running_stats"] if bn == "running" else None
        return forward_layers(model, 0, len(model.layers), x, stats)[0]

    def unit_mapping(self, state):
        """Class -> output unit, Hungarian on the training class means (identity before any step)."""
        if state["class_means"] is None:
            return np.arange(self.n_classes)
        if state["class_means"].shape[1] < self.n_classes:
            raise ValueError(f"HSICBottleneck.unit_mapping: the last block has "
                             f"{state['class_means'].shape[1]} units, fewer than n_classes = "
                             f"{self.n_classes}; use a format layer (hsic_format) instead")
        rows, cols = linear_sum_assignment(state["class_means"], maximize=True)
        units = np.empty(self.n_classes, dtype=int)
        units[rows] = cols
        return units

    def predict(self, model, state, x, bn="running"):
        """Class scores (N, C) from the last block's output and the training class means.

        ``readout='hungarian'``: out[:, units], units = :meth:`unit_mapping`.
        ``readout='centroid'``: -||out - mu_c||^2 with mu_c = ``state['class_means'][c]``.
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
    blocks (class units >= 0 that switch on for their class). Measured on the
    ``refnets compare`` default (fashion-mnist-small, [784, 128, 128, 10], 3
    epochs of batch 50): tanh blocks reach 0.33 test accuracy, tanh hidden
    blocks with a ReLU output block 0.71, ReLU throughout 0.81.
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
