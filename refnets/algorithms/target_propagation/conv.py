"""Difference target propagation for convolutional networks (reversed-block feedback).

The network is a :func:`refnets.models.convnet`: [Conv2D, act, pool] x n,
Flatten, [Dense, act] x m, Dense. A DTP *block* is one parametrised layer
(Conv2D or Dense) together with the parameter-free layers after it (activation,
pooling, Flatten); targets live on block outputs, exactly as in dense DTP
(:mod:`refnets.algorithms.target_propagation.algorithm`, DTP-3 to DTP-5).

Feedback maps are Ernoult et al.'s reversed blocks (DTP-13): unflatten,
unpool at the forward pass's argmax, the block's own activation, then a
transposed convolution with the conv's geometry (DTP-13a: with V_i = W_i it is
the conv's transpose); dense blocks keep g_i of DTP-1. The feedback losses are
DTP-2 (``'dtp'``) or DTP-10 (``'ldrl'``) with G_i in place of g_i, each G_i run
with the unpooling indices of the forward pass it follows. Derivation, the map
to Ernoult's code and the Deviations: this package's README.md.

Symbol table
------------
(k = the model index of the Conv2D/Dense layer the map inverts)

=====================  ==========================  ===============================
paper symbol           code name                   shape
=====================  ==========================  ===============================
h_i                    ``h[i]``                    (B, C_i, H_i, W_i) or (B, n_i)
W_i, b_i (conv)        ``block.main.params``       (C_i, C_{i-1}, kh, kw), (C_i,)
V_i, c_i (ConvT)       ``feedback["k.V"], ["k.c"]``  (C_i, C_{i-1}, kh, kw), (C_{i-1},)
V_i, c_i (dense)       ``feedback["k.V"], ["k.c"]``  (n_{i-1}, n_i), (n_{i-1},)
ĥ_i                    ``targets[i]``              like h_i
=====================  ==========================  ===============================

References
----------
M. Ernoult et al., "Towards Scaling Difference Target Propagation by Learning
Backprop Targets", ICML 2022, arXiv 2201.13415; code: github.com/ernoult/scalingDTP.
"""

from __future__ import annotations

import numpy as np

from ...diagnostics import cosine
from ...layers.activations import Activation, get_activation
from ...layers.conv import Conv2D
from ...layers.conv_transpose import ConvTranspose2D
from ...layers.dense import Dense
from ...layers.init import get_initializer
from ...losses import mse
from ...models import Sequential, param_key
from ...validation import DivergenceError, check_choice, check_input
from ..base import StepResult, as_recorder, check_given, check_loss_finite, given_or_draw
from .algorithm import DifferenceTargetPropagation, feedback_key
from .variants import LocalDifferenceReconstructionLoss
from .blocks import zeros_init

__all__ = ["ConvBlock", "conv_blocks", "Feedback", "conv_dtp_feedback_loss",
           "conv_ldrl_feedback_loss", "ConvDifferenceTargetPropagation"]


class ConvBlock:
    """One DTP layer of a conv net: a Conv2D or Dense layer and the parameter-free layers after it.

    Attributes
    ----------
    k : int, index of the parametrised layer in the model
    main : Conv2D or Dense
    free : list of parameter-free layers (activation, pooling, Flatten), in order
    """

    def __init__(self, k, main, free):
        self.k, self.main, self.free = k, main, list(free)

    def __repr__(self):
        return f"ConvBlock({self.main!r} + {self.free!r})"

    @property
    def act(self):
        """The block's activation layer, or None."""
        return next((layer for layer in self.free if isinstance(layer, Activation)), None)

    def forward(self, x, params=None):
        """h = free layers(main(x)); caches, one per layer (main first)."""
        h, cache = self.main.forward(x, params)
        caches = [cache]
        for layer in self.free:
            h, cache = layer.forward(h)
            caches.append(cache)
        return h, caches

    def param_grads(self, caches, dh):
        """Main layer's parameter gradients given dh = dLoss/dh (backprop inside the block)."""
        for layer, cache in zip(reversed(self.free), reversed(caches[1:])):
            dh = layer.backward(dh, cache)[0]
        return self.main.backward_params(dh, caches[0])

    def reverse_free(self, y, caches):
        """unflatten, unpool (forward argmax indices), activation: the reversed free layers."""
        for layer, cache in zip(reversed(self.free), reversed(caches[1:])):
            y = layer.apply(y) if isinstance(layer, Activation) else layer.backward(y, cache)[0]
        return y


def conv_blocks(model):
    """Group a conv net (see :func:`refnets.models.convnet`) into blocks f[1..L] (f[0] = None)."""
    where = "ConvDTP"
    if not isinstance(model, Sequential):
        raise ValueError(f"{where}: model must be a refnets Sequential, got {type(model).__name__}")
    f = [None]
    for k, layer in enumerate(model.layers):
        if isinstance(layer, (Conv2D, Dense)):
            f.append(ConvBlock(k, layer, []))
        elif layer.params:
            raise ValueError(f"{where}: model.layers[{k}] = {layer!r} has parameters but is not "
                             f"Conv2D or Dense")
        elif len(f) == 1:
            raise ValueError(f"{where}: the model must start with a Conv2D or Dense layer, "
                             f"got {layer!r}")
        else:
            f[-1].free.append(layer)
    if not isinstance(f[-1].main, Dense) or f[-1].free:
        raise ValueError(f"{where}: the model must end in a Dense layer producing logits")
    if len(f) < 3:
        raise ValueError(f"{where}: the model needs at least two blocks, got {len(f) - 1}")
    return f


class Feedback:
    """A feedback map G_i run with given parameters: reversed conv block or dense g_i.

    Parameters
    ----------
    block : ConvBlock, the forward block i it inverts
    layer : ConvTranspose2D or Dense (a parameter-free shell; params always passed)
    act : Activation or None, applied after ``layer`` (dense feedback only)
    """

    def __init__(self, block, layer, act):
        self.block, self.layer, self.act = block, layer, act

    def apply(self, y, fwd_caches, params):
        """(DTP-13) G_i(y) using the unpooling indices in ``fwd_caches``; returns (out, cache)."""
        if isinstance(self.layer, ConvTranspose2D):
            out, cache = self.layer.forward(self.block.reverse_free(y, fwd_caches), params)
            return out, (cache, None)
        a, cache = self.layer.forward(y, params)
        if self.act is None:
            return a, (cache, None)
        out, acache = self.act.forward(a)
        return out, (cache, acache)

    def param_grads(self, cache, dout):
        """Gradient of G_i's parameters given dout = dLoss/dG_i(y)."""
        lcache, acache = cache
        if acache is not None:
            dout = self.act.backward(dout, acache)[0]
        return self.layer.backward_params(dout, lcache)


def conv_dtp_feedback_loss(block, fb, h_prev, noise, params):
    """Lee's denoising loss (DTP-2) for a (conv) block: (1/B) Σ ‖G(f(h+ε)) - (h+ε)‖²; grads of G."""
    corrupted = h_prev + noise
    u, fwd = block.forward(corrupted)
    r, cache = fb.apply(u, fwd, params)
    loss, dr = mse(r, corrupted)
    return loss, fb.param_grads(cache, dr)


def conv_ldrl_feedback_loss(block, fb, h_prev, noise_in, noise_out, params):
    """Ernoult's L-DRL (DTP-10) for a (conv) block; unpooling indices from the pass each G follows."""
    n = h_prev.shape[0]
    u, fwd = block.forward(h_prev)
    u_eps, fwd_eps = block.forward(h_prev + noise_in)
    r, c_r = fb.apply(u, fwd, params)
    r_eps, c_eps = fb.apply(u_eps, fwd_eps, params)
    r_eta, c_eta = fb.apply(u + noise_out, fwd, params)
    loss = (-2.0 * np.sum(noise_in * (r_eps - r)) + np.sum((r_eta - r) ** 2)) / n
    d_eps, d_eta = -2.0 * noise_in / n, 2.0 * (r_eta - r) / n
    grads = [fb.param_grads(c, d)
             for c, d in ((c_eps, d_eps), (c_eta, d_eta), (c_r, -d_eps - d_eta))]
    return float(loss), {k: grads[0][k] + grads[1][k] + grads[2][k] for k in grads[0]}


class ConvDifferenceTargetPropagation(DifferenceTargetPropagation):
    """DTP (or L-DRL) on a conv net with reversed-block feedback maps (DTP-13).

    Parameters
    ----------
    feedback_loss : {'dtp', 'ldrl'}
    **kwargs
        As :class:`DifferenceTargetPropagation`; ``first_target`` may be
        'penultimate_grad' or 'output_grad', ``schedule`` must be 'batch'.
        ``feedback_activation`` applies to dense feedback maps only.

    Feedback parameters are keyed ``"k.V"``, ``"k.c"`` with k the model index
    of the Conv2D/Dense layer they invert; given values: ``V`` at
    ``init_state``, ``eps`` (and ``eta`` for 'ldrl') per step, keyed
    ``"k.eps.j"`` like dense DTP. ``follow='ernoult'`` sets Ernoult et al.'s
    conventions (first target on the logits, β on the summed loss, ½‖·‖² local
    losses).
    """

    name = "conv-dtp"
    FOLLOW = {"ernoult": LocalDifferenceReconstructionLoss.FOLLOW["ernoult"]}

    def __init__(self, feedback_loss="dtp", **kwargs):
        super().__init__(**kwargs)
        where = "ConvDifferenceTargetPropagation"
        self.feedback_loss_name = check_choice(feedback_loss, "feedback_loss", ("dtp", "ldrl"),
                                               where)
        if self.first_target == "label" or self.schedule != "batch":
            raise ValueError(f"{where}: first_target must be 'penultimate_grad' or 'output_grad' "
                             f"and schedule 'batch', got {self.first_target!r}, {self.schedule!r}")
        self.GIVEN_STEP = ("eps",) if feedback_loss == "dtp" else ("eps", "eta")

    def blocks(self, model):
        return conv_blocks(model)

    def feedback_shapes(self, f):
        """{i: shape of V_i}: ConvT kernel (C_i, C_{i-1}, kh, kw) or dense (n_{i-1}, n_i)."""
        top = self.top_layer(len(f) - 1)
        return {i: (f[i].main.params["W"].shape if isinstance(f[i].main, Conv2D)
                    else (f[i].main.n_in, f[i].main.n_out)) for i in range(2, top + 1)}

    def init_state(self, model, rng, record=None, **given):
        """Feedback parameters ``{"k.V": V_i, "k.c": c_i}`` (shapes in :meth:`feedback_shapes`)."""
        where = f"{type(self).__name__}.init_state"
        check_given(given, self.GIVEN_INIT, where)
        record = as_recorder(record)
        f = self.blocks(model)
        feedback = {}
        for i, shape in self.feedback_shapes(f).items():
            main, key = f[i].main, feedback_key(f[i].k, "V")
            if isinstance(main, Conv2D):
                feedback[key] = given_or_draw(
                    given, "V", key, shape, lambda r, s=shape: np.asarray(
                        get_initializer(self.feedback_init)(s, r), dtype=np.float64),
                    rng, record, where)
                c = np.zeros(main.c_in)
            else:
                feedback[key] = given_or_draw(
                    given, "V", key, shape, lambda r, m=main: Dense(
                        m.n_out, m.n_in, r, init=self.feedback_init, bias=False).params["W"],
                    rng, record, where)
                c = np.zeros(main.n_in)
            if self.feedback_bias:
                feedback[feedback_key(f[i].k, "c")] = c
        return {"feedback": feedback, "feedback_optimizer": {"t": 0, "moments": {}}, "steps": 0}

    def feedback_of(self, f, state, i, in_shape):
        """(Feedback, params) of block i for inputs of shape ``in_shape`` (B, C, H, W) or (B, n).

        A ConvT's ``output_padding`` is set so that it returns the conv's input size.
        """
        main, fb, k = f[i].main, state["feedback"], f[i].k
        params = {"W": fb[feedback_key(k, "V")]}
        if feedback_key(k, "c") in fb:
            params["b"] = fb[feedback_key(k, "c")]
        bias = "b" in params
        if isinstance(main, Conv2D):
            x_hw, y_hw = in_shape[2:], main.output_shape(in_shape[1:])[1:]
            op = tuple(x - ((y - 1) * s - 2 * p + kk) for x, y, s, p, kk in
                       zip(x_hw, y_hw, main.stride, main.padding, main.kernel_size))
            key = ("convT", main.c_out, main.c_in, main.kernel_size, main.stride, main.padding, op,
                   bias)
            if key not in self._shells:
                self._shells[key] = ConvTranspose2D(main.c_out, main.c_in, main.kernel_size,
                                                    main.stride, main.padding, op, init=zeros_init,
                                                    bias=bias)
            return Feedback(f[i], self._shells[key], None), params
        key = ("dense", main.n_out, main.n_in, bias)
        if key not in self._shells:
            self._shells[key] = Dense(main.n_out, main.n_in, None, init=zeros_init, bias=bias)
        act = get_activation(self.feedback_activation)
        return Feedback(f[i], self._shells[key], None if act.name == "identity" else act), params

    @staticmethod
    def forward(f, x):
        h, caches = [x], [None]
        for i in range(1, len(f)):
            hi, ci = f[i].forward(h[i - 1])
            h.append(hi)
            caches.append(ci)
        return h, caches

    def first_target_and_top_grads(self, f, h, caches, y):
        L = len(f) - 1
        loss, dlogits = self.loss(h[L], y)
        if self.first_target == "penultimate_grad":            # (DTP-3)
            dh_top, top_grads = f[L].main.backward(dlogits, caches[L][0])
            target = h[L - 1] - self._step_scale(len(h[0])) * dh_top
            return loss, dlogits, L - 1, target, {L: top_grads}
        return loss, dlogits, L, h[L] - self._step_scale(len(h[0])) * dlogits, {}   # (DTP-3a)

    def propagate_targets(self, f, state, h, top, target, caches=None, record=None):
        """(DTP-4) with G_i run on the forward pass's unpooling indices: caches are required."""
        record = as_recorder(record)
        targets = {top: target}
        for i in range(top, 1, -1):
            fb, params = self.feedback_of(f, state, i, h[i - 1].shape)
            g_hat = fb.apply(targets[i], caches[i], params)[0]
            g_h = fb.apply(h[i], caches[i], params)[0]
            targets[i - 1] = h[i - 1] + g_hat - g_h
            record.put(feedback_key(f[i].k, "g_h_hat"), g_hat)
            record.put(feedback_key(f[i].k, "g_h"), g_h)
        return targets

    def feedback_loss(self, f, state, h, i, rng, given=None, record=None, it=0, where=""):
        k = f[i].k
        given, record = given or {}, as_recorder(record)
        noise = self._noise(given, "eps", feedback_key(k, f"eps.{it}"), h[i - 1].shape, rng,
                            record, where)
        fb, params = self.feedback_of(f, state, i, h[i - 1].shape)
        if self.feedback_loss_name == "dtp":
            loss, grads = conv_dtp_feedback_loss(f[i], fb, h[i - 1], noise, params)
        else:
            noise_out = self._noise(given, "eta", feedback_key(k, f"eta.{it}"), h[i].shape, rng,
                                    record, where)
            loss, grads = conv_ldrl_feedback_loss(f[i], fb, h[i - 1], noise, noise_out, params)
        return loss, self._state_keys(k, grads), noise[0].size

    def reconstruction_errors(self, f, state, h, caches=None):
        out = []
        for i in sorted(self.feedback_shapes(f)):
            fwd = caches[i] if caches is not None else f[i].forward(h[i - 1])[1]
            fb, params = self.feedback_of(f, state, i, h[i - 1].shape)
            out.append(mse(fb.apply(h[i], fwd, params)[0], h[i - 1])[0])
        return np.array(out)

    def step(self, model, state, x, y, rng, record=None, **given):
        """Feedback update(s), then targets and local gradients; info and trace keys as in dense DTP."""
        where = f"{type(self).__name__}.step"
        check_given(given, self.GIVEN_STEP, where)
        self._check_state(state, where)
        x = check_input(x, "x", where)
        where = f"{where} (step {state['steps']})"
        record = as_recorder(record)
        f = self.blocks(model)
        h, caches = self.forward(f, x)
        for i in range(1, len(f)):
            record.put(f"{f[i].k}.h", h[i])
        for it in range(self.feedback_iterations):
            fb_losses = self._feedback_round(f, state, h, rng, True, given, record, it, where)
        loss, dlogits, top, target, true_grads = self.first_target_and_top_grads(f, h, caches, y)
        check_loss_finite(loss, where)
        record.put(f"{f[-1].k}.dL_da", dlogits)
        targets = self.propagate_targets(f, state, h, top, target, caches, record)
        per_block, fw_losses = dict(true_grads), []
        for i in range(1, len(f)):
            if i in targets:
                record.put(f"{f[i].k}.h_hat", targets[i])
            if i not in per_block:
                fw_loss, dh = mse(h[i], targets[i])                          # (DTP-5)
                if self.local_loss_scale == "half_sum":                      # (DTP-5a)
                    fw_loss, dh = 0.5 * fw_loss, 0.5 * dh
                if not np.isfinite(fw_loss):
                    raise DivergenceError(f"{where}: local loss of layer {f[i].k} is {fw_loss}",
                                          quantity="local loss")
                per_block[i] = f[i].param_grads(caches[i], dh)
                fw_losses.append(fw_loss)
                record.put(f"{f[i].k}.L_local", fw_loss)
                record.put(f"{f[i].k}.dL_local_dh", dh)
        grads = {param_key(f[i].k, name): v for i in sorted(per_block)
                 for name, v in per_block[i].items()}
        state["steps"] += 1
        info = {"forward_loss": np.array(fw_losses), "feedback_loss": fb_losses,
                "reconstruction_error": self.reconstruction_errors(f, state, h, caches)}
        if self.compare_to_backprop:
            bp = model.flatten(model.backward(dlogits, [c for i in range(1, len(f))
                                                        for c in caches[i]])[1])
            keys = [[param_key(f[i].k, n) for n in f[i].main.params] for i in range(1, len(f))]
            cos = np.array([cosine(grads, bp, k) for k in keys])
            info.update({"cosine_per_layer": cos,
                         "angle_per_layer": np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))),
                         "cosine_to_backprop": cosine(grads, bp)})
            propagated = [k for i, ks in enumerate(keys, 1) if i < top for k in ks]
            if propagated:
                info["cosine_to_backprop_propagated"] = cosine(grads, bp, propagated)
        return StepResult(loss=loss, grads=grads, info=info)
