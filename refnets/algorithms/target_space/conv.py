"""Target Space for a convolution layer: one target per (image, pixel, channel).

Used by :class:`refnets.algorithms.target_space.algorithm.TargetSpace` for every
:class:`~refnets.layers.conv.Conv2D` of a model (stride 1, 'same' padding,
odd kernel, as in the authors' ``TSConv2D`` and TF1 CNN script).

Symbol table
------------
=====================  ==============  =============================================
paper symbol           code name       shape
=====================  ==============  =============================================
X_bar_{k-1}            ``x``           (n_bar, C_in, H, W), realised input (NCHW)
P = im2col(X_bar)      ``P``           (n_bar*H*W, C_in*kh*kw), columns (c, ky, kx)
A_bar = [1, P]         ``A``           (n_bar*H*W, 1 + C_in*kh*kw)
T_conv                 ``T``           (n_bar*H*W, C_out), rows (image, y, x)
W_full                 ``W_full``      (1 + C_in*kh*kw, C_out), bias row 0
Conv2D weights         ``params``      'W' (C_out, C_in, kh, kw) = W_full[1:].T reshaped,
                                       'b' (C_out,) = W_full[0]
=====================  ==============  =============================================

Realisation (TS-10): ``A_bar W_full`` reshaped to (n_bar, C_out, H, W) *is*
the convolution of X_bar with the realised kernel plus bias (the rows of
im2col are the receptive fields), so S_bar needs no second convolution.

Backward (TS-10a): the solve's dL/dA_bar without its bias column is a
gradient w.r.t. the patch matrix P; ``col2im`` (the adjoint of im2col:
overlapping patches add up) turns it into a gradient w.r.t. the realised
input image. The minibatch term is the ordinary conv dW reshaped to the
solve layout. Patch columns are ordered (c, ky, kx), TF's (ky, kx, c): see
the README's sections 6 and 7.
"""

from __future__ import annotations

import numpy as np

from ...layers.conv import col2im, im2col
from ..base import NULL_RECORDER
from .dense import Realiser, _record_backward
from .solve import design_matrix, ridge_solve, ridge_solve_vjp

__all__ = ["ConvRealiser", "rows_to_nchw", "nchw_to_rows"]


def rows_to_nchw(S, n, h, w):
    """(n*h*w, C) rows in (image, y, x) order -> (n, C, h, w) (a transposed view)."""
    return S.reshape(n, h, w, -1).transpose(0, 3, 1, 2)


def nchw_to_rows(x):
    """(n, C, h, w) -> (n*h*w, C) rows in (image, y, x) order (inverse of rows_to_nchw)."""
    return x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1])


class ConvRealiser(Realiser):
    """Target Space for one Conv2D layer (stride 1, 'same')."""

    kind = "conv"

    def __init__(self, layer):
        kh, kw = layer.kernel_size
        same = ((kh - 1) // 2, (kw - 1) // 2)
        if layer.stride != (1, 1) or kh % 2 == 0 or kw % 2 == 0 or layer.padding != same:
            raise ValueError(f"TargetSpace: {layer!r} must be a stride-1 'same' convolution with "
                             f"an odd kernel (targets are one per input pixel), got stride "
                             f"{layer.stride}, kernel {layer.kernel_size}, padding {layer.padding}")
        if not layer.bias:
            raise ValueError(f"TargetSpace: {layer!r} has no bias; the realisation solve always "
                             f"fits a bias column")
        self.layer = layer

    def target_shape(self, x_shape):
        """(n_bar*H*W, C_out): one row per realisation image and output pixel."""
        if len(x_shape) != 4 or x_shape[1] != self.layer.c_in:
            raise ValueError(f"TargetSpace: the realisation input of {self.layer!r} must have "
                             f"shape (n_bar, {self.layer.c_in}, H, W); got {tuple(x_shape)} "
                             f"(check x_source against the model)")
        n, _, h, w = x_shape
        return (n * h * w, self.layer.c_out)

    def realise(self, x, T, lam, scu, zero_lam="min-norm"):
        """Solve the kernel from im2col patches of the realised input.

        Parameters
        ----------
        x : ndarray of shape (n_bar, C_in, H, W)
        T : ndarray of shape (n_bar*H*W, C_out)
        lam : float
        scu : bool
            Output realised sums (SCU) or the targets (OCU), as (n_bar, C_out, H, W).
        zero_lam : {'min-norm', 'cholesky'}
            The solve's branch at lam = 0 (:func:`ridge_solve`).

        Returns
        -------
        params : dict 'W' (C_out, C_in, kh, kw), 'b' (C_out,)
        out : ndarray of shape (n_bar, C_out, H, W)
        rec : dict for :meth:`backward`
        """
        layer = self.layer
        kh, kw = layer.kernel_size
        n, _, h, w = x.shape
        A = design_matrix(im2col(x, kh, kw, 1, layer.padding))  # [1, P]  (n h w, 1 + C kh kw)
        W_full, solve = ridge_solve(A, T, lam, zero_lam=zero_lam)   # (TS-10), (TS-2)
        S = solve["AW"]                                         # = conv(X_bar, K) + b, as rows
        params = self.params_from_full(W_full)
        out = rows_to_nchw(S if scu else T, n, h, w)
        return params, out, {"solve": solve, "x_shape": x.shape, "S": S, "T": T, "scu": scu}

    def backward(self, rec, grads, d_out, need_dx, record=NULL_RECORDER, prefix=""):
        """dL/dT and dL/d(realised input image); see DenseRealiser.backward."""
        layer, solve = self.layer, rec["solve"]
        kh, kw = layer.kernel_size
        dW = self.full_from_grads(grads)                       # dW_mb in the solve layout
        dA_out = None
        if d_out is not None and rec["scu"]:
            dS = nchw_to_rows(d_out)
            dW = dW + solve["A"].T @ dS                 # S_bar = A_bar W feeds later layers (TS-6)
            dA_out = dS @ solve["W"].T
        dT, dA = ridge_solve_vjp(dW, solve, need_dA=need_dx)                   # (TS-7)
        _record_backward(record, prefix, dW, d_out, dA)
        if d_out is not None and not rec["scu"]:
            dT = dT + nchw_to_rows(d_out)               # OCU: targets = next input (TS-8a)
        if not need_dx:
            return dT, None
        if dA_out is not None:
            dA = dA + dA_out
        # drop the bias column, then patches -> image: the adjoint of im2col (TS-10a)
        dx = col2im(np.ascontiguousarray(dA[:, 1:]), rec["x_shape"], kh, kw, 1, layer.padding)
        return dT, dx

    def full_from_grads(self, grads):
        """Conv2D {'W', 'b'} gradient -> solve layout (1 + C_in kh kw, C_out), bias row 0."""
        return np.concatenate([grads["b"][None, :], grads["W"].reshape(self.layer.c_out, -1).T],
                              axis=0)

    def params_from_full(self, W_full):
        """Solve layout (1 + C_in kh kw, C_out) -> Conv2D {'W' (C_out, C_in, kh, kw), 'b'}."""
        layer = self.layer
        return {"W": np.ascontiguousarray(W_full[1:].T).reshape(layer.params["W"].shape),
                "b": W_full[0].copy()}

    def fan(self):
        """(1 + C_in*kh*kw, C_out) of the solve-layout weight matrix."""
        kh, kw = self.layer.kernel_size
        return 1 + self.layer.c_in * kh * kw, self.layer.c_out
