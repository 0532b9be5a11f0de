"""The layer-local pieces of target propagation, as plain functions.

A *block* f_i is one Dense layer followed by an optional element-wise
activation; a feedback map g_i has the same form (Dense n_i -> n_{i-1}, then
t_i). Everything here works on one layer and one minibatch; the training loop
that strings them together is
:class:`refnets.algorithms.target_propagation.algorithm.DifferenceTargetPropagation`.
Equation tags (DTP-n) are defined in this package's README.md, with the
loss conventions (squared losses summed over units, averaged over the batch).
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from ...layers.activations import Activation
from ...layers.dense import Dense
from ...losses import mse, softmax
from ...models import Sequential

__all__ = ["Block", "SoftmaxOutput", "dense_blocks", "apply_block", "block_param_grads",
           "local_loss", "difference_target", "dtp_feedback_loss", "reconstruction_error",
           "zeros_init"]

Block = namedtuple("Block", ["k", "dense", "act"])
Block.__doc__ = ("One DTP layer f_i (or feedback map g_i): ``dense`` then ``act`` "
                 "(None = linear). ``k`` is the Dense layer's index in the model (None for g_i).")


class SoftmaxOutput(Activation):
    """softmax over the last axis as the top block's map in SDTP ('label' mode).

    Only its value is used (feedback-loss inputs); the output layer is trained
    by the cross-entropy gradient, so no derivative is needed.
    """

    name = "softmax"

    def apply(self, z):
        return softmax(z)

    def derivative(self, z):
        raise NotImplementedError("softmax is not element-wise; the SDTP output layer is "
                                  "trained by the cross-entropy gradient instead")


def zeros_init(shape, rng):
    """All-zero weights (for parameter-free Dense shells that are always run with given params)."""
    return np.zeros(shape)


def dense_blocks(model):
    """Group an MLP into DTP blocks f_1..f_L (Dense followed by an optional activation).

    Parameters
    ----------
    model : Sequential of Dense and Activation layers ending in a Dense (logits),
        e.g. :func:`refnets.models.mlp`.

    Returns
    -------
    list of Block, length L + 1, with ``f[0] = None`` so that ``f[i]`` is block i.
    """
    where = "DTP"
    if not isinstance(model, Sequential):
        raise ValueError(f"{where}: model must be a refnets Sequential MLP, "
                         f"got {type(model).__name__}")
    f, layers, k = [None], model.layers, 0
    while k < len(layers):
        if not isinstance(layers[k], Dense):
            raise ValueError(f"{where}: model.layers[{k}] must be a Dense layer (an MLP is "
                             f"Dense, activation, ..., Dense), got {layers[k]!r}")
        has_act = k + 1 < len(layers) and isinstance(layers[k + 1], Activation)
        act = layers[k + 1] if has_act else None
        f.append(Block(k, layers[k], act))
        k += 1 if act is None else 2
    if f[-1].act is not None:
        raise ValueError(f"{where}: the model must end in a Dense layer producing logits, "
                         f"got a final {f[-1].act!r}")
    if len(f) < 3:
        raise ValueError(f"{where}: the model needs at least one hidden layer (L >= 2 blocks), "
                         f"got {len(f) - 1} block")
    return f


def apply_block(block, h_prev, params=None):
    """h = act(h_prev @ W.T + b).

    Parameters
    ----------
    block : Block
    h_prev : ndarray of shape (B, n_in)
    params : dict with 'W', 'b', optional (default the Dense layer's own)

    Returns
    -------
    h : ndarray of shape (B, n_out)
    caches : (dense cache, activation cache or None)
    """
    a, dcache = block.dense.forward(h_prev, params)
    if block.act is None:
        return a, (dcache, None)
    h, acache = block.act.forward(a)
    return h, (dcache, acache)


def block_param_grads(block, caches, dh):
    """(DTP-2a) parameter gradients given dh = dLoss/dh: {'W': δᵀ h_prev, 'b': Σ δ}, δ = s'(a) ⊙ dh."""
    dcache, acache = caches
    da = dh if acache is None else block.act.backward(dh, acache)[0]
    return block.dense.backward_params(da, dcache)


def local_loss(block, h_prev, target, params=None):
    """Forward (layer-local) loss (DTP-5) and its parameter gradients.

    L_i = (1/B) Σ_n ‖f_i(h_{i-1}) - ĥ_i‖², h_{i-1} and ĥ_i constants.

    Returns
    -------
    loss : float
    grads : dict {'W': (n_i, n_{i-1}), 'b': (n_i,)}
    """
    h, caches = apply_block(block, h_prev, params)
    loss, dh = mse(h, target)                       # dh = 2 (h - ĥ) / B
    return loss, block_param_grads(block, caches, dh)


def difference_target(g, h_prev, h, h_hat, difference=True):
    """Target of the layer below: (DTP-4) h_{i-1} + g(ĥ_i) - g(h_i), or (DTP-4a) g(ĥ_i).

    Parameters
    ----------
    g : callable, (B, n_i) -> (B, n_{i-1})
    h_prev : ndarray (B, n_{i-1}); h, h_hat : ndarrays (B, n_i)
    """
    if difference:
        return h_prev + g(h_hat) - g(h)
    return g(h_hat)


def dtp_feedback_loss(f, g, h_prev, noise, g_params=None):
    """Lee's denoising inverse loss (DTP-2) and its gradient w.r.t. g's parameters.

    L^inv = (1/B) Σ_n ‖g(f(h_{i-1} + ε)) - (h_{i-1} + ε)‖², f constant.

    Parameters
    ----------
    f, g : Block (forward block i and feedback map g_i)
    h_prev : ndarray (B, n_{i-1})
    noise : ndarray (B, n_{i-1}), the drawn ε (already scaled by σ)
    g_params : dict {'W': V_i, 'b': c_i}

    Returns
    -------
    loss : float; grads : dict {'W': (n_{i-1}, n_i), 'b': (n_{i-1},)}
    """
    corrupted = h_prev + noise
    u, _ = apply_block(f, corrupted)                 # f_i(h_{i-1} + ε), a constant
    r, caches = apply_block(g, u, g_params)
    loss, dr = mse(r, corrupted)
    return loss, block_param_grads(g, caches, dr)


def reconstruction_error(f, g, h_prev, g_params=None):
    """(1/B) Σ_n ‖g_i(f_i(h_{i-1})) - h_{i-1}‖², the noise-free inverse error."""
    r, _ = apply_block(g, apply_block(f, h_prev)[0], g_params)
    return mse(r, h_prev)[0]
