"""Finite-difference self-checks of every local loss in the DTP family.

Registered for ``refnets gradcheck`` (listed in ``CHECK_MODULES``). Each check
builds a small float64 problem, differentiates the loss numerically
(:func:`refnets.gradcheck.numerical_gradient`, centred, h = 1e-5) with the noise
held fixed, and returns the worst relative error over all parameter gradients.
"""

from __future__ import annotations

import numpy as np

from ...gradcheck import numerical_gradient, rel_error
from ...layers.activations import Tanh
from ...layers.dense import Dense
from ...selfcheck import register_check
from .blocks import Block, apply_block, dtp_feedback_loss, local_loss
from .variants import ddtp_feedback_loss, drl_feedback_loss, ldrl_feedback_loss


def _param_errors(loss_fn, params, analytic):
    """max over keys of rel_error(analytic[key], d loss_fn / d params[key])."""
    errors = []
    for key in params:
        def scalar(v, key=key):
            return loss_fn({**params, key: v})
        errors.append(rel_error(analytic[key], numerical_gradient(scalar, params[key].copy())))
    return max(errors)


def _tanh_block(n_in, n_out, rng):
    return Block(None, Dense(n_in, n_out, rng), Tanh())


@register_check("dtp/forward local loss dW, db", group="target_propagation")
def _check_local_loss(rng):
    f = _tanh_block(5, 4, rng)
    h_prev, target = rng.standard_normal((3, 5)), 0.8 * np.tanh(rng.standard_normal((3, 4)))
    params = {k: v.copy() for k, v in f.dense.params.items()}
    _, grads = local_loss(f, h_prev, target, params)
    return _param_errors(lambda p: local_loss(f, h_prev, target, p)[0], params, grads)


@register_check("dtp/inverse (denoising) loss dV, dc", group="target_propagation")
def _check_dtp_feedback(rng):
    f, g = _tanh_block(5, 4, rng), _tanh_block(4, 5, rng)
    h_prev = np.tanh(rng.standard_normal((3, 5)))
    noise = 0.3 * rng.standard_normal((3, 5))
    params = {k: v.copy() for k, v in g.dense.params.items()}
    _, grads = dtp_feedback_loss(f, g, h_prev, noise, params)
    return _param_errors(lambda p: dtp_feedback_loss(f, g, h_prev, noise, p)[0], params, grads)


def _linear_block(n_in, n_out, rng, bias=True):
    return Block(None, Dense(n_in, n_out, rng, bias=bias), None)


@register_check("dtp/DRL feedback loss dV, dc (Meulemans 2020)", group="target_propagation")
def _check_drl(rng):
    f = [None, _tanh_block(4, 5, rng), _tanh_block(5, 4, rng), _tanh_block(4, 3, rng)]
    h = [np.tanh(rng.standard_normal((3, 4)))]
    for i in (1, 2, 3):
        h.append(apply_block(f[i], h[-1])[0])
    g_maps = {}
    for j in (2, 3):
        g = _tanh_block(f[j].dense.n_out, f[j].dense.n_in, rng)
        g_maps[j] = (g, {k: v.copy() for k, v in g.dense.params.items()})
    noise = 0.3 * rng.standard_normal((3, 5))
    params = g_maps[2][1]
    _, grads = drl_feedback_loss(f, g_maps, h, 2, 3, noise, params)
    return _param_errors(lambda p: drl_feedback_loss(f, g_maps, h, 2, 3, noise, p)[0],
                         params, grads)


@register_check("dtp/L-DRL feedback loss dV, dc (Ernoult 2022)", group="target_propagation")
def _check_ldrl(rng):
    f, g = _tanh_block(5, 4, rng), _tanh_block(4, 5, rng)
    h_prev = np.tanh(rng.standard_normal((3, 5)))
    noise_in, noise_out = 0.3 * rng.standard_normal((3, 5)), 0.3 * rng.standard_normal((3, 4))
    params = {k: v.copy() for k, v in g.dense.params.items()}
    _, grads = ldrl_feedback_loss(f, g, h_prev, noise_in, noise_out, params)
    return _param_errors(lambda p: ldrl_feedback_loss(f, g, h_prev, noise_in, noise_out, p)[0],
                         params, grads)


@register_check("dtp/DDTP feedback loss dQ (Meulemans 2020)", group="target_propagation")
def _check_ddtp(rng):
    f = [None, _tanh_block(4, 5, rng), _tanh_block(5, 4, rng), _linear_block(4, 3, rng)]
    h = [rng.standard_normal((3, 4))]
    for i in (1, 2, 3):
        h.append(apply_block(f[i], h[-1])[0])
    q = _linear_block(3, 5, rng, bias=False)
    noise = 0.3 * rng.standard_normal((3, 5))
    params = {"W": q.dense.params["W"].copy()}
    _, grads = ddtp_feedback_loss(f, q, h, 1, noise, params)
    return _param_errors(lambda p: ddtp_feedback_loss(f, q, h, 1, noise, p)[0], params, grads)


@register_check("ConvTranspose2D (N=2, 2 -> 3 ch, k 3, stride 2, pad 1, out-pad 1)", group="layers")
def _check_conv_transpose(rng):
    from ...gradcheck import check_layer
    from ...layers.conv_transpose import ConvTranspose2D
    layer = ConvTranspose2D(2, 3, 3, stride=2, padding=1, output_padding=1, rng=rng)
    layer.params["b"][...] = rng.standard_normal(3)
    return max(check_layer(layer, rng.standard_normal((2, 2, 3, 3)), rng).values())


@register_check("dtp/conv local loss and inverse loss through ConvT + unpool", group="target_propagation")
def _check_conv_losses(rng):
    from ...models import convnet
    from .conv import ConvDifferenceTargetPropagation, conv_dtp_feedback_loss
    model = convnet((1, 4, 4), [2, 2], 3, 3, rng, activation="tanh", pool=2)
    algo = ConvDifferenceTargetPropagation()
    state = algo.init_state(model, rng)
    f = algo.blocks(model)
    h, _ = algo.forward(f, rng.standard_normal((2, 1, 4, 4)))
    target = h[2] + 0.1 * rng.standard_normal(h[2].shape)

    def local(p):
        out, c = f[2].forward(h[1], p)
        return float(np.sum((out - target) ** 2)) / len(out), f[2].param_grads(
            c, 2 * (out - target) / len(out))

    params = {k: v.copy() for k, v in f[2].main.params.items()}
    err = _param_errors(lambda p: local(p)[0], params, local(params)[1])
    fb, fb_params = algo.feedback_of(f, state, 2, h[1].shape)
    fb_params = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in fb_params.items()}
    noise = 0.3 * rng.standard_normal(h[1].shape)
    _, grads = conv_dtp_feedback_loss(f[2], fb, h[1], noise, fb_params)
    return max(err, _param_errors(lambda p: conv_dtp_feedback_loss(f[2], fb, h[1], noise, p)[0],
                                  fb_params, grads))


@register_check("dtp/TPTT local loss dW_x, dW_h, db and inverse loss dV, dc", group="target_propagation")
def _check_tptt(rng):
    from ...layers.recurrent import RNN
    from .rnn import tptt_feedback_loss, tptt_local_loss
    rnn = RNN(2, 3, rng)
    x = rng.standard_normal((3, 2, 2))
    hs = rnn.forward(x)[0]
    targets = hs + 0.1 * rng.standard_normal(hs.shape)
    params = {k: v.copy() for k, v in rnn.params.items()}
    err = _param_errors(lambda p: tptt_local_loss(rnn, x, hs, targets, p)[0], params,
                        tptt_local_loss(rnn, x, hs, targets, params)[1])
    noise = 0.2 * rng.standard_normal(hs[:-1].shape)
    fb = {"V": rng.standard_normal((3, 3)), "c": 0.1 * rng.standard_normal(3)}

    def inv(p):
        return tptt_feedback_loss(rnn, x, hs, noise, rnn.params["W_x"], None, None, p)
    return max(err, _param_errors(lambda p: inv(p)[0], fb, inv(fb)[1]))
