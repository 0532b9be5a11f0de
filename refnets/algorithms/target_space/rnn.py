"""Target Space for an Elman RNN layer: targets for every realisation time step.

Used by :class:`refnets.algorithms.target_space.algorithm.TargetSpace` when a model
starts with :class:`~refnets.layers.recurrent.RNN` (``[RNN, Dense]`` per-step
read-out or ``[RNN, LastStep, Dense]``), following the authors' TF1
bit-sequence/IMDB scripts and ``TSRNNDense`` (README tags TS-11, TS-11a, TS-11b).

Symbol table
------------
=======================  ==============  ===========================================
paper symbol             code name       shape
=======================  ==============  ===========================================
X_bar                    ``x``           (T_bar, n_bar, D) time-major
T_h                      ``T``           (T_bar, n_bar, H) targets of the sums a_t
A_bar_h (stacked in t)   ``A``           (T_bar*n_bar, 1 + D + H):
                                         [1, x_bar_t, tanh(T_h[t-1])], T_h[-1] -> h_0 = 0
W_h (solve layout)       ``W_full``      (1 + D + H, H): rows [bias, input, recurrent]
RNN params (refnets)     ``params``      'b' = W_full[0], 'W_x' = W_full[1:1+D].T (H, D),
                                         'W_h' = W_full[1+D:].T (H, H)
h_bar_t                  ``out``         (T_bar, n_bar, H) what the read-out layer reads
=======================  ==============  ===========================================

Realisation (TS-11). The recurrent layer is always **OCU in time**: its
solve reads the previous step's *targets* through tanh, so one ridge solve
over all T_bar*n_bar rows gives the shared weights, with no sequential
dependence::

    A_h = stack_t [1, x_bar_t, tanh(T_h[t-1])];   W_h = ridge_solve(A_h, stack_t T_h[t], lam)

What the read-out layer's solve reads is the mode of the algorithm (TS-11a):
``scu=True`` is the authors' **hybrid** (TF1 ``--scu``, the only TF2 mode):
run the real RNN with W_h on X_bar and give the output solve the realised
states h_bar_t; ``scu=False`` is OCU: tanh(T_h[t]).

Backward (TS-11b = TS-7 composed with BPTT): the total dL/dW_h is
the minibatch BPTT gradient plus, in hybrid mode, BPTT over the realisation
run of the output solve's dL/dh_bar; its ridge VJP gives dL/dT_h directly
and dL/dA_h, whose recurrent block at row block t is a gradient w.r.t.
tanh(T_h[t-1]), so dL/dT_h[t-1] += dA_h[t, :, recurrent] * tanh'(T_h[t-1]).
In OCU mode the output solve's input gradient reaches T_h through tanh'.
The initial projection (TS-14b) assigns T_h the pre-activations of a run of
the network on X_bar with the solved W_h (as the authors' TF2 ``TSRNNDense``).
Targets are time-major here, (n_bar, T_bar, .) in the authors' code (README
section 6).
"""

from __future__ import annotations

import numpy as np

from ..base import NULL_RECORDER
from .dense import Realiser, _record_backward
from .solve import design_matrix, ridge_solve, ridge_solve_vjp

__all__ = ["RNNRealiser", "run_preactivations"]


def run_preactivations(x, params, hs):
    """a_t = x_t W_x^T + h_{t-1} W_h^T + b of a run with states ``hs`` (h_0 = 0).

    Parameters
    ----------
    x : ndarray of shape (T, N, D), time-major
    params : dict 'W_x' (H, D), 'W_h' (H, H), 'b' (H,)
    hs : ndarray of shape (T, N, H), the states h_1..h_T of that run

    Returns
    -------
    a : ndarray of shape (T, N, H), with h_t = tanh(a_t)
    """
    h_prev = np.concatenate([np.zeros_like(hs[:1]), hs[:-1]], axis=0)
    return x @ params["W_x"].T + h_prev @ params["W_h"].T + params["b"]


class RNNRealiser(Realiser):
    """Target Space for the model's first layer, an Elman RNN (OCU in time)."""

    kind = "rnn"

    def __init__(self, layer):
        self.layer = layer

    def target_shape(self, x_shape):
        """(T_bar, n_bar, H): one target per realisation sequence, step and unit."""
        if len(x_shape) != 3 or x_shape[2] != self.layer.n_in:
            raise ValueError(f"TargetSpace: the realisation input of {self.layer!r} must have "
                             f"shape (T_bar, n_bar, {self.layer.n_in}) (time-major); got "
                             f"{tuple(x_shape)} (check x_source against the model)")
        return tuple(x_shape[:2]) + (self.layer.n_hidden,)

    def _design(self, x, T):
        """A_h rows [1, x_t, tanh(T[t-1])] for every (t, n), tanh(T[-1]) -> h_0 = 0 (TS-11)."""
        t_bar, n, d = x.shape
        h_prev = np.concatenate([np.zeros((1, n, self.layer.n_hidden)), np.tanh(T[:-1])], axis=0)
        return design_matrix(np.concatenate([x, h_prev], axis=-1).reshape(t_bar * n, -1))

    def realise(self, x, T, lam, scu, zero_lam="min-norm"):
        """One solve over all T_bar*n_bar rows; output realised (hybrid) or tanh(T) states.

        Parameters
        ----------
        x : ndarray of shape (T_bar, n_bar, D), the realisation sequences
        T : ndarray of shape (T_bar, n_bar, H)
        lam : float
        scu : bool
            True: hybrid (run the RNN with the solved weights on X_bar);
            False: OCU (the read-out reads tanh(T)).
        zero_lam : {'min-norm', 'cholesky'}
            The solve's branch at lam = 0 (:func:`ridge_solve`).

        Returns
        -------
        params : dict 'W_x', 'W_h', 'b'
        out : ndarray of shape (T_bar, n_bar, H)
        rec : dict for :meth:`backward`
        """
        A = self._design(x, T)
        H = self.layer.n_hidden
        W_full, solve = ridge_solve(A, T.reshape(-1, H), lam, zero_lam=zero_lam)   # (TS-11)
        params = self.params_from_full(W_full)
        rec = {"solve": solve, "T": T, "x": x, "x_shape": x.shape, "scu": scu,
               "S": solve["AW"].reshape(T.shape)}
        if scu:
            out, rec["run"] = self.layer.forward(x, params)     # realised h_bar_t (TS-11a)
        else:
            out = np.tanh(T)                                    # OCU read-out (TS-11a)
        return params, out, rec

    def _run(self, params, rec):
        """States h_bar and pre-activations a_bar of the RNN run on X_bar with W_h."""
        hs = rec["run"]["hs"] if "run" in rec else self.layer.forward(rec["x"], params)[0]
        return hs, run_preactivations(rec["x"], params, hs)

    def projected_targets(self, params, rec):
        """Initial projection (TS-14): T_h <- the pre-activations of a run of the network on
        X_bar with the solved W_h (what the authors' TF2 ``TSRNNDense`` assigns), not the
        OCU solve's fitted values A_h W_h."""
        return self._run(params, rec)[1]

    def record_realisation(self, record, prefix, params, rec):
        """Trace keys T, A_bar, W_full, S_bar, and a_bar, h_bar of the run on X_bar."""
        super().record_realisation(record, prefix, params, rec)
        hs, a = self._run(params, rec)
        record.put(prefix + "a_bar", a)
        record.put(prefix + "h_bar", hs)

    def record_minibatch(self, record, prefix, grads, cache):
        """Trace keys dW_mb, and a, h: the minibatch run's pre-activations and states."""
        super().record_minibatch(record, prefix, grads, cache)
        params = {name: cache[name] for name in ("W_x", "W_h", "b")}
        record.put(prefix + "a", run_preactivations(cache["x"], params, cache["hs"]))
        record.put(prefix + "h", cache["hs"])

    def backward(self, rec, grads, d_out, need_dx, record=NULL_RECORDER, prefix=""):
        """dL/dT_h (the realisation input X_bar is data: no dx)."""
        layer, solve, T = self.layer, rec["solve"], rec["T"]
        D, H = layer.n_in, layer.n_hidden
        g = dict(grads)
        dT_direct = 0.0
        if d_out is not None:
            if rec["scu"]:                          # hybrid: BPTT over the realisation run (TS-11b)
                _, g_run = layer.backward(d_out, rec["run"])
                g = {name: g[name] + g_run[name] for name in g}
            else:                                   # OCU: the read-out read tanh(T_h)
                dT_direct = d_out * (1.0 - np.tanh(T) ** 2)
        dW = self.full_from_grads(g)                                            # (1+D+H, H)
        dT, dA = ridge_solve_vjp(dW, solve)                                     # (TS-7)
        _record_backward(record, prefix, dW, d_out, dA)
        dT = dT.reshape(T.shape) + dT_direct
        # recurrent columns of row block t hold tanh(T[t-1]): chain rule into T[t-1] (TS-11b)
        dh_prev = dA[:, 1 + D:].reshape(T.shape)
        dT[:-1] += dh_prev[1:] * (1.0 - np.tanh(T[:-1]) ** 2)
        return dT, None

    def full_from_grads(self, grads):
        """RNN {'W_x', 'W_h', 'b'} gradient -> solve layout (1 + D + H, H), rows [b, x, h]."""
        return np.concatenate([grads["b"][None, :], grads["W_x"].T, grads["W_h"].T], axis=0)

    def params_from_full(self, W_full):
        """Solve layout (1 + D + H, H) rows [bias, input, recurrent] -> refnets RNN params."""
        D = self.layer.n_in
        return {"W_x": np.ascontiguousarray(W_full[1:1 + D].T),
                "W_h": np.ascontiguousarray(W_full[1 + D:].T), "b": W_full[0].copy()}

    def fan(self):
        """(1 + D + H, H) of the solve-layout weight matrix."""
        return 1 + self.layer.n_in + self.layer.n_hidden, self.layer.n_hidden
