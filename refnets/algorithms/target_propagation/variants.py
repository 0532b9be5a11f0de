"""Descendants of DTP that change how the feedback path is trained (or not trained).

Every variant keeps the difference rule ĥ_{i-1} = h_{i-1} + g_i(ĥ_i) - g_i(h_i)
(DTP-4) and the forward loss (DTP-5) of :mod:`refnets.algorithms.target_propagation.algorithm`;
they differ in the feedback loss (DRL, L-DRL), in freezing the feedback
(FW-DTP), or in sending targets straight from the output (DDTP). Each is a
subclass of :class:`DifferenceTargetPropagation` overriding
:meth:`feedback_loss` (and, for DDTP, the target propagation).

Symbol table (in addition to the DTP module's)
-----------------------------------------------
=========================  ===========================  =========================
paper symbol               code name                    shape
=========================  ===========================  =========================
ε (input noise)            ``noise`` / ``noise_in``     (B, n_{i-1}), N(0, σ²)
η (output noise, L-DRL)    ``noise_out``                (B, n_i), N(0, σ²)
t̃_j (noisy targets, DRL)   ``t``                        (B, n_j)
Q_i (DDTP feedback)        ``state["feedback"]["k.Q"]``  (n_i, n_L), k = f[i].k
J_f, J_g                   per-example Jacobians        (n_i, n_{i-1}), (n_{i-1}, n_i)
=========================  ===========================  =========================

Equations: DRL (DTP-9, DTP-9a), L-DRL (DTP-10, and its expectation and fixed
point J_g = J_fᵀ, DTP-10a), FW-DTP and its Jacobian-trace diagnostic (DTP-11),
DDTP-linear targets and feedback loss (DTP-12, DTP-12a); all in this package's
README.md, with the loss scalings of the authors' code (section 6) and the
Deviations (section 7).

References
----------
A. Meulemans, F. S. Carzaniga, J. A. K. Suykens, J. Sacramento, B. F. Grewe,
"A Theoretical Framework for Target Propagation", NeurIPS 2020, arXiv 2006.14331.
M. Ernoult, F. Normandin, A. Moudgil, S. Spinney, E. Belilovsky, I. Rish,
B. Richards, Y. Bengio, "Towards Scaling Difference Target Propagation by
Learning Backprop Targets", ICML 2022, arXiv 2201.13415.
T. Shibuya, N. Inoue, R. Kawakami, I. Sato, "Fixed-Weight Difference Target
Propagation", AAAI 2023, arXiv 2212.10352.
"""

from __future__ import annotations

import numpy as np

from ...layers.init import orthogonal
from ...losses import mse
from ...validation import check_number
from ..base import as_recorder, check_given, given_or_draw
from .algorithm import DifferenceTargetPropagation, feedback_key
from .blocks import apply_block, block_param_grads, difference_target

__all__ = ["drl_feedback_loss", "ldrl_feedback_loss", "ddtp_feedback_loss",
           "DifferenceReconstructionLoss", "LocalDifferenceReconstructionLoss",
           "FixedWeightDTP", "DirectDTP", "jacobian_trace"]


# ---------------------------------------------------------------------------
# Feedback losses (functions: the self-checks differentiate them numerically)
# ---------------------------------------------------------------------------

def drl_feedback_loss(f, g_maps, h, i, top, noise, params_i=None):
    """Meulemans et al.'s difference reconstruction loss (DTP-9) for g_i, and its gradient (DTP-9a).

    Parameters
    ----------
    f : list of Block, f[1..L]
    g_maps : dict {j: (Block, params)} for j = i..top (only g_i is differentiated)
    h : list of activations h[0..L] of the clean forward pass
    i, top : int, 2 <= i <= top
    noise : ndarray (B, n_{i-1}), ε
    params_i : dict {'W', 'b'} of g_i (default ``g_maps[i][1]``)

    Returns
    -------
    loss : float; grads : dict like ``params_i``
    """
    g_i, default = g_maps[i]
    params_i = default if params_i is None else params_i
    corrupted = h[i - 1] + noise
    t = corrupted
    for j in range(i, top + 1):                        # t~_top = f_top∘...∘f_i(h_{i-1} + ε)
        t = apply_block(f[j], t)[0]
    for j in range(top, i, -1):                        # down to t~_i by (DTP-4), g_j fixed
        g_j, p_j = g_maps[j]
        t = difference_target(lambda v, g_j=g_j, p_j=p_j: apply_block(g_j, v, p_j)[0],
                              h[j - 1], h[j], t)
    r_t, cache_t = apply_block(g_i, t, params_i)        # g_i(t~_i)
    r_h, cache_h = apply_block(g_i, h[i], params_i)     # g_i(h_i)
    loss, drec = mse(h[i - 1] + r_t - r_h, corrupted)
    grads_t = block_param_grads(g_i, cache_t, drec)
    grads_h = block_param_grads(g_i, cache_h, drec)
    return loss, {k: grads_t[k] - grads_h[k] for k in grads_t}


def ldrl_feedback_loss(f, g, h_prev, noise_in, noise_out, g_params=None):
    """Ernoult et al.'s local difference reconstruction loss (DTP-10) for g, and its gradient.

    L = (1/B) Σ_n [-2 ⟨ε, g(f(x+ε)) - r⟩ + ‖g(f(x) + η) - r‖²], r = g(f(x)), x = h_{i-1}.

    Parameters
    ----------
    f, g : Block (forward block i, feedback map g_i)
    h_prev : ndarray (B, n_{i-1})
    noise_in : ndarray (B, n_{i-1}), ε;  noise_out : ndarray (B, n_i), η
    g_params : dict {'W', 'b'}

    Returns
    -------
    loss : float; grads : dict like ``g_params``
    """
    n = h_prev.shape[0]
    u = apply_block(f, h_prev)[0]                       # f(x), constant
    u_eps = apply_block(f, h_prev + noise_in)[0]        # f(x + ε), constant
    r, c_r = apply_block(g, u, g_params)
    r_eps, c_eps = apply_block(g, u_eps, g_params)
    r_eta, c_eta = apply_block(g, u + noise_out, g_params)
    loss = (-2.0 * np.sum(noise_in * (r_eps - r)) + np.sum((r_eta - r) ** 2)) / n
    d_eps = -2.0 * noise_in / n                         # ∂L/∂g(f(x+ε))
    d_eta = 2.0 * (r_eta - r) / n                       # ∂L/∂g(f(x)+η)
    d_r = -d_eps - d_eta                                # ∂L/∂r (r appears in both terms)
    grads = [block_param_grads(g, c, d) for c, d in ((c_eps, d_eps), (c_eta, d_eta), (c_r, d_r))]
    return float(loss), {k: grads[0][k] + grads[1][k] + grads[2][k] for k in grads[0]}


def ddtp_feedback_loss(f, q, h, i, noise, q_params=None):
    """Direct DTP (linear) feedback loss (DTP-12a) for Q_i and its gradient.

    L = (1/B) Σ_n ‖ε - (a_L(h_i + ε) - a_L(h_i)) Q_iᵀ‖², the forward path f_{i+1..L} constant.

    Parameters
    ----------
    f : list of Block, f[1..L] (f[L] linear: its output is a_L)
    q : Block, the linear map n_L -> n_i
    h : list h[0..L]; i : int in 1..L-1; noise : ndarray (B, n_i)
    q_params : dict {'W': Q_i}
    """
    a = h[i] + noise
    for j in range(i + 1, len(f)):
        a = apply_block(f[j], a)[0]
    delta = a - h[-1]                                   # a_L(h_i + ε) - a_L(h_i)
    r, cache = apply_block(q, delta, q_params)
    loss, dr = mse(r, noise)
    return loss, block_param_grads(q, cache, dr)


def jacobian_trace(f_block, g_block, h_prev, h, g_params):
    """(DTP-11) batch mean of tr(J_f(h_{i-1}) J_g(h_i)) for a Dense+act f and g.

    tr(J_f J_g) = Σ_jk s'_f[j] W[j, k] t'_g[k] V[k, j], per example.
    """
    W, V = f_block.dense.params["W"], g_params["W"]
    a_f = h_prev @ W.T + f_block.dense.params.get("b", 0.0)
    a_g = h @ V.T + g_params.get("b", 0.0)
    s_f = np.ones_like(a_f) if f_block.act is None else f_block.act.derivative(a_f)
    t_g = np.ones_like(a_g) if g_block.act is None else g_block.act.derivative(a_g)
    return float(np.mean(np.sum((s_f @ (W * V.T)) * t_g, axis=1)))


# ---------------------------------------------------------------------------
# Algorithms
# ---------------------------------------------------------------------------

class DifferenceReconstructionLoss(DifferenceTargetPropagation):
    """DTP whose inverses minimise Meulemans et al.'s DRL (DTP-9; Gauss-Newton targets).

    Same parameters as :class:`DifferenceTargetPropagation`. Cost: O(L²) block
    evaluations per feedback update (each g_i sees the noisy output of the whole
    stack above it). ``follow='meulemans'``: their DRL scale 1/(σ² n), no floor.
    """

    name = "dtp-drl"
    FOLLOW = {"meulemans": {**DifferenceTargetPropagation.FOLLOW["meulemans"],
                            "feedback_sigma_floor": 0.0}}

    def feedback_loss(self, f, state, h, i, rng, given=None, record=None, it=0, where=""):
        top = self.top_layer(len(f) - 1)
        g_maps = {j: self.feedback_map(state, f[j].k) for j in range(i, top + 1)}
        k = f[i].k
        noise = self._noise(given or {}, "eps", feedback_key(k, f"eps.{it}"), h[i - 1].shape,
                            rng, as_recorder(record), where)
        loss, grads = drl_feedback_loss(f, g_maps, h, i, top, noise)       # (DTP-9)
        return loss, self._state_keys(k, grads), noise[0].size


class LocalDifferenceReconstructionLoss(DifferenceTargetPropagation):
    """DTP whose inverses minimise Ernoult et al.'s L-DRL (DTP-10; J_g -> J_fᵀ, backprop targets).

    Defaults follow Ernoult et al.: first target on the logits
    (``first_target='output_grad'``); other parameters as in
    :class:`DifferenceTargetPropagation`. Given values per step: ``eps`` (input
    noise, ``"k.eps.j"``, (B, n_{i-1})) and ``eta`` (output noise, ``"k.eta.j"``,
    (B, n_i)). ``follow='ernoult'`` (½‖·‖² local losses) or ``'shibuya'`` (half
    the L-DRL loss, no feedback bias).
    """

    name = "dtp-ldrl"
    CONVENTIONS = {**DifferenceTargetPropagation.CONVENTIONS, "first_target": "output_grad"}
    FOLLOW = {
        # Ernoult et al.'s scalingDTP: β against the summed CE, ½‖·‖² forward losses
        "ernoult": {"first_target": "output_grad", "target_step_reduction": "sum",
                    "feedback_loss_scale": "sum", "local_loss_scale": "half_sum"},
        # Shibuya et al.'s tp_net (loss_type 'L-DRL'): half the loss, no feedback bias
        "shibuya": {"first_target": "output_grad", "target_step_reduction": "sum",
                    "feedback_loss_scale": "half_sum", "feedback_bias": False},
    }
    GIVEN_STEP = ("eps", "eta")

    def feedback_loss(self, f, state, h, i, rng, given=None, record=None, it=0, where=""):
        k = f[i].k
        g, params = self.feedback_map(state, k)
        given, record = given or {}, as_recorder(record)
        noise_in = self._noise(given, "eps", feedback_key(k, f"eps.{it}"), h[i - 1].shape, rng,
                               record, where)
        noise_out = self._noise(given, "eta", feedback_key(k, f"eta.{it}"), h[i].shape, rng,
                                record, where)
        loss, grads = ldrl_feedback_loss(f[i], g, h[i - 1], noise_in, noise_out, params)
        return loss, self._state_keys(k, grads), noise_in[0].size


class FixedWeightDTP(DifferenceTargetPropagation):
    """DTP with fixed random feedback maps g_i(h) = t(V_i h) (DTP-11; Shibuya et al. 2023).

    Parameters
    ----------
    feedback_scale : float > 0
        Drawn V_i = feedback_scale x (orthogonal matrix); a given ``V`` is used as is.
    **kwargs
        As :class:`DifferenceTargetPropagation` (the feedback optimiser is
        unused; ``feedback_bias`` defaults to False, as in Shibuya's code).
    """

    name = "fw-dtp"
    CONVENTIONS = {**DifferenceTargetPropagation.CONVENTIONS, "feedback_bias": False}
    FOLLOW = {"shibuya": {"first_target": "output_grad", "target_step_reduction": "sum",
                          "feedback_bias": False}}
    GIVEN_STEP = ()

    def __init__(self, feedback_scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.feedback_scale = check_number(feedback_scale, "feedback_scale", "FixedWeightDTP",
                                           low=0, low_open=True)

    def init_state(self, model, rng, record=None, **given):
        """Fixed V_i = ``feedback_scale`` x orthogonal, keyed ``"k.V"``; given ``V`` as is."""
        where = f"{type(self).__name__}.init_state"
        check_given(given, self.GIVEN_INIT, where)
        record = as_recorder(record)
        f = self.blocks(model)
        feedback = {}
        for i, (n_in, n_out) in self.feedback_shapes(f).items():
            key = feedback_key(f[i].k, "V")
            feedback[key] = given_or_draw(
                given, "V", key, (n_out, n_in),
                lambda r, s=(n_out, n_in): self.feedback_scale * orthogonal(s, r),
                rng, record, where)
            if self.feedback_bias:
                feedback[feedback_key(f[i].k, "c")] = np.zeros(n_out)
        return {"feedback": feedback, "feedback_optimizer": {"t": 0, "moments": {}}, "steps": 0}

    def _feedback_round(self, f, state, h, rng, update, given=None, record=None, it=0, where=""):
        """No training: (DTP-11) tr(J_f J_g) per layer instead of a feedback loss."""
        record = as_recorder(record)
        out = []
        for i in sorted(self.feedback_shapes(f)):
            g, params = self.feedback_map(state, f[i].k)
            out.append(jacobian_trace(f[i], g, h[i - 1], h[i], params))
            record.put(feedback_key(f[i].k, "jacobian_trace"), out[-1])
        return np.array(out)

    def step(self, model, state, x, y, rng, record=None, **given):
        """As DTP; ``info['feedback_loss']`` is renamed ``jacobian_trace`` (nothing is trained)."""
        res = super().step(model, state, x, y, rng, record, **given)
        res.info["jacobian_trace"] = res.info.pop("feedback_loss")
        return res


class DirectDTP(DifferenceTargetPropagation):
    """DDTP-linear (DTP-12; Meulemans et al. 2020): targets sent from the output by learned Q_i.

    ĥ_i = h_i + (ĥ_L - a_L) Q_iᵀ for every hidden layer i = 1..L-1 (a "DFA with a
    learned pseudo-inverse"); the first target is on the logits, so
    ``first_target`` is fixed to 'output_grad'. Q_i is keyed ``"k.Q"``, k the
    model index of layer i's Dense; given values ``Q`` at ``init_state`` and
    ``eps`` (``"k.eps.j"``, noise on h_i, (B, n_i)) per step.
    """

    name = "ddtp"
    CONVENTIONS = {**DifferenceTargetPropagation.CONVENTIONS, "first_target": "output_grad",
                   "feedback_activation": "identity", "feedback_bias": False}
    FOLLOW = {"meulemans": {"target_step_reduction": "mean",
                            "feedback_loss_scale": "mean_over_sigma2",
                            "feedback_sigma_floor": 0.0, "feedback_init": "glorot_normal"}}
    FEEDBACK_WEIGHT = "Q"
    GIVEN_INIT = ("Q",)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.first_target != "output_grad":
            raise ValueError(f"DirectDTP: first_target must be 'output_grad' (targets come from "
                             f"the output pre-activation), got {self.first_target!r}")
        if self.feedback_activation != "identity":
            raise ValueError(f"DirectDTP: feedback_activation must be 'identity' (DDTP-linear), "
                             f"got {self.feedback_activation!r}")

    def feedback_shapes(self, f):
        """{i: (n_L, n_i)}: Q_i maps the output space to layer i, i = 1..L-1."""
        n_out = f[-1].dense.n_out
        return {i: (n_out, f[i].dense.n_out) for i in range(1, len(f) - 1)}

    def propagate_targets(self, f, state, h, top, target, record=None):
        """(DTP-12) ĥ_i = h_i + (ĥ_L - a_L) Q_iᵀ, i = 1..L-1."""
        targets = {top: target}
        for i in sorted(self.feedback_shapes(f)):
            targets[i] = h[i] + self.g(state, f[i].k, target - h[top])
        return targets

    def feedback_loss(self, f, state, h, i, rng, given=None, record=None, it=0, where=""):
        k = f[i].k
        q, params = self.feedback_map(state, k)
        noise = self._noise(given or {}, "eps", feedback_key(k, f"eps.{it}"), h[i].shape, rng,
                            as_recorder(record), where)
        loss, grads = ddtp_feedback_loss(f, q, h, i, noise, params)        # (DTP-12a)
        return loss, self._state_keys(k, grads, "Q"), noise[0].size

    def reconstruction_errors(self, f, state, h):
        """Not defined for direct feedback (no layer-wise inverse): empty."""
        return np.zeros(0)


def _build_ldrl(sizes, activation, rng, x_train=None, y_train=None):
    """Registry factory: L-DRL feedback (SGD, as Ernoult et al.), Adam on the forward weights.

    First target on the logits (η̂ = 0.01 per example), σ = 0.2, feedback SGD at
    lr 0.1 (a normalising optimiser random-walks on L-DRL's noisy gradient),
    forward Adam at lr 3e-3. Measured with the compare defaults: Fashion-MNIST
    subset test accuracy 0.783 +- 0.017 (seeds 0-2, ``refnets compare --methods
    dtp-ldrl --seeds 3``), two spirals 0.876 (seed 0).
    """
    from ...models import mlp
    from ...optim import Adam
    from .. import Setup
    model = mlp(sizes, activation, rng, init="orthogonal")
    algo = LocalDifferenceReconstructionLoss(target_step=0.01, sigma=0.2, feedback_optimizer="sgd",
                                             feedback_lr=0.1)
    return Setup(model, algo, Adam(lr=3e-3))


def _build_drl(sizes, activation, rng, x_train=None, y_train=None):
    """Registry factory: DRL feedback (DTP-9), otherwise the ``dtp`` setup.

    Adam lr 3e-3 for W and V, η̂ = 0.01, σ = 0.2, first target on h_{L-1}.
    Measured with the compare defaults: Fashion-MNIST subset test accuracy
    0.818 +- 0.009 (seeds 0-2, ``refnets compare --methods drl --seeds 3``), two
    spirals 0.686 (seed 0); a step costs ~1.3x a ``dtp`` step at this depth.
    """
    from ...models import mlp
    from ...optim import Adam
    from .. import Setup
    model = mlp(sizes, activation, rng, init="orthogonal")
    algo = DifferenceReconstructionLoss(target_step=0.01, sigma=0.2, feedback_optimizer="adam",
                                        feedback_lr=3e-3)
    return Setup(model, algo, Adam(lr=3e-3))


def _build_fw(sizes, activation, rng, x_train=None, y_train=None):
    """Registry factory: fixed random orthogonal feedback (DTP-11), η̂ = 0.01, Adam lr 3e-3.

    Measured with the compare defaults: Fashion-MNIST subset test accuracy
    0.806 +- 0.011 (seeds 0-2, ``refnets compare --methods fw-dtp --seeds 3``),
    two spirals 0.747 (seed 0).
    """
    from ...models import mlp
    from ...optim import Adam
    from .. import Setup
    model = mlp(sizes, activation, rng, init="orthogonal")
    return Setup(model, FixedWeightDTP(target_step=0.01), Adam(lr=3e-3))


def _build_ddtp(sizes, activation, rng, x_train=None, y_train=None):
    """Registry factory: direct DTP (DTP-12), Q_i trained by Adam lr 3e-3, η̂ = 0.01, σ = 0.2.

    Measured with the compare defaults: Fashion-MNIST subset test accuracy
    0.810 +- 0.004 (seeds 0-2, ``refnets compare --methods ddtp --seeds 3``), two
    spirals 0.665 (seed 0).
    """
    from ...models import mlp
    from ...optim import Adam
    from .. import Setup
    model = mlp(sizes, activation, rng, init="orthogonal")
    algo = DirectDTP(target_step=0.01, sigma=0.2, feedback_optimizer="adam", feedback_lr=3e-3)
    return Setup(model, algo, Adam(lr=3e-3))


def _register():
    from .. import Method, register
    register(Method("drl", _build_drl, "DTP with DRL feedback (difference reconstruction loss: "
                    "Gauss-Newton-like targets)", "Meulemans et al. 2020"))
    register(Method("fw-dtp", _build_fw, "DTP with fixed random feedback maps (never trained)",
                    "Shibuya et al. 2023"))
    register(Method("ddtp", _build_ddtp, "direct DTP: targets sent from the output by learned "
                    "linear maps Q_i", "Meulemans et al. 2020"))
    register(Method("dtp-ldrl", _build_ldrl,
                    "DTP with L-DRL feedback (inverses learn Jᵀ: backprop-like targets)",
                    "Ernoult et al. 2022"))


_register()
