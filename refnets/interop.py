"""Parameters in and out of refnets: PyTorch ``state_dict`` and TensorFlow/Keras layouts.

refnets keeps PyTorch's layouts (Dense W (n_out, n_in), conv NCHW with W
(C_out, C_in, kh, kw), time-major sequences), so a PyTorch model converts key
by key; a TensorFlow/Keras model needs the transposes below. Nothing here
imports torch or tensorflow: a torch tensor is read through
``.detach().cpu().numpy()`` (each method when the object has it), anything else
through ``np.asarray``; every value becomes a float64 copy.

PyTorch ``state_dict`` keys of a :class:`~refnets.models.Sequential`
--------------------------------------------------------------------
=====================================  ==========================================
refnets layer k (its params)           state_dict keys
=====================================  ==========================================
Dense, Conv2D, ConvTranspose2D W, b    ``k.weight``, ``k.bias``
RNN W_x, W_h, b                        ``k.weight_ih_l0``, ``k.weight_hh_l0``,
                                       ``k.bias_ih_l0``, ``k.bias_hh_l0``
BatchNorm gamma, beta (affine only)    ``k.weight``, ``k.bias``; running statistics
                                       ``k.running_mean``, ``k.running_var``
Residual branch layer i                the same names under ``k.i.`` (``k.i.weight``)
any other layer's parameter ``name``   ``k.name`` (e.g. the functional layers)
=====================================  ==========================================

PyTorch's RNN has two biases with one role (a_t = x_t W_ih^T + b_ih + h W_hh^T
+ b_hh); refnets has their sum ``b``. The way in adds them; the way out returns
``bias_ih_l0 = b`` and ``bias_hh_l0 = 0``, which loads into ``torch.nn.RNN`` and
computes the same function. ``num_batches_tracked`` is accepted and ignored on
the way in and not written on the way out (torch fills it in when it is missing).

Running statistics are not part of a refnets model (batch norm takes them as an
argument): they go in and out as the ``running_stats`` dict the HSIC algorithm
keeps, ``{k: {"mean", "var"}}`` for a BatchNorm at k and ``{k: {i: {"mean", "var"}}}``
for a Residual block at k.

TensorFlow/Keras layouts
------------------------
========================================  ====================================  =====================
Keras / TF                                refnets                               functions
========================================  ====================================  =====================
Dense kernel (n_in, n_out)                W (n_out, n_in)                       dense_from_keras / dense_to_keras
weight matrix with the bias in row 0,     W (n_out, n_in), b (n_out,)           from_bias_row / to_bias_row
(n_in + 1, n_out) (Target Space's TF code)
Conv2D kernel HWIO (kh, kw, C_in, C_out)  W OIHW (C_out, C_in, kh, kw)          conv_from_hwio / conv_to_hwio
activations NHWC (N, H, W, C)             NCHW (N, C, H, W)                     nhwc_to_nchw / nchw_to_nhwc
SimpleRNN kernel (D, H), recurrent        W_x (H, D), W_h (H, H), b (H,)        rnn_from_keras / rnn_to_keras
kernel (H, H), bias (H,)
batch-major sequences (N, T, D)           time-major (T, N, D)                  to_time_major / to_batch_major
Dense after Flatten of NHWC maps: rows    W (n_out, C*H*W), columns in NCHW     dense_after_flatten_from_keras /
in (h, w, c) order                        flatten order (c, h, w)               dense_after_flatten_to_keras
========================================  ====================================  =====================

The last row is the one that is easy to get wrong: Keras flattens (H, W, C)
feature maps, refnets and PyTorch flatten (C, H, W), so the dense layer after a
conv block sees its inputs in another order and its kernel's rows must be
permuted, not only transposed.
"""

from __future__ import annotations

import numpy as np

from .layers.conv import Conv2D
from .layers.conv_transpose import ConvTranspose2D
from .layers.dense import Dense
from .layers.normalization import BatchNorm
from .layers.recurrent import RNN
from .layers.residual import Residual

__all__ = ["to_state_dict", "from_state_dict", "load_state_dict", "as_float64",
           "dense_from_keras", "dense_to_keras", "from_bias_row", "to_bias_row",
           "conv_from_hwio", "conv_to_hwio", "nhwc_to_nchw", "nchw_to_nhwc",
           "rnn_from_keras", "rnn_to_keras", "to_time_major", "to_batch_major",
           "dense_after_flatten_from_keras", "dense_after_flatten_to_keras"]

_AFFINE = (Dense, Conv2D, ConvTranspose2D)
_AFFINE_NAMES = {"W": "weight", "b": "bias"}
_BN_NAMES = {"gamma": "weight", "beta": "bias"}


def as_float64(value, name, where):
    """A float64 ndarray copy of ``value`` (ndarray, list, or a torch tensor)."""
    for method in ("detach", "cpu", "numpy"):   # torch tensors, without importing torch
        if not isinstance(value, np.ndarray) and callable(getattr(value, method, None)):
            value = getattr(value, method)()
    try:
        out = np.array(value, dtype=np.float64, copy=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {name} must be a numeric array, got "
                         f"{type(value).__name__}") from exc
    return out


def _torch_names(layer):
    """{refnets param name: state_dict suffix} of one layer (not Residual)."""
    if isinstance(layer, _AFFINE):
        return {name: _AFFINE_NAMES[name] for name in layer.params}
    if isinstance(layer, BatchNorm):
        return {name: _BN_NAMES[name] for name in layer.params}
    if isinstance(layer, RNN):
        return {"W_x": "weight_ih_l0", "W_h": "weight_hh_l0", "b": "bias_ih_l0"}
    return {name: name for name in layer.params}


def _layer_to_sd(layer, prefix, stats, out):
    for name, suffix in _torch_names(layer).items():
        out[prefix + suffix] = layer.params[name].copy()
    if isinstance(layer, RNN):
        out[prefix + "bias_hh_l0"] = np.zeros_like(layer.params["b"])
    if isinstance(layer, BatchNorm):
        stats = layer.init_running_stats() if stats is None else stats
        out[prefix + "running_mean"] = np.array(stats["mean"], dtype=np.float64)
        out[prefix + "running_var"] = np.array(stats["var"], dtype=np.float64)


def to_state_dict(model, running_stats=None):
    """A PyTorch-style ``state_dict`` (``{"0.weight": array, ...}``) of a Sequential.

    Parameters
    ----------
    model : refnets.models.Sequential
    running_stats : dict, optional
        Batch-norm running statistics ``{k: {"mean", "var"}}`` (``{k: {i: ...}}``
        for a Residual block at k), e.g. the HSIC algorithm's
        ``state["running_stats"]``; default: fresh ones (mean 0, var 1).

    Returns
    -------
    dict of float64 ndarray copies, keys as in the module docstring. For a
    PyTorch model with the same structure: ``net.load_state_dict({k:
    torch.from_numpy(v) for k, v in sd.items()})``.
    """
    running_stats = {} if running_stats is None else running_stats
    out = {}
    for k, layer in enumerate(model.layers):
        if isinstance(layer, Residual):
            for i, sub in enumerate(layer.branch):
                _layer_to_sd(sub, f"{k}.{i}.", running_stats.get(k, {}).get(i), out)
        else:
            _layer_to_sd(layer, f"{k}.", running_stats.get(k), out)
    return out


def _expected(model):
    """{state_dict key: (flat refnets key or stats path, shape)} for a model."""
    exp = {}

    def add(layer, prefix, key_prefix, stats_path):
        for name, suffix in _torch_names(layer).items():
            exp[prefix + suffix] = (("param", key_prefix + name), layer.params[name].shape)
        if isinstance(layer, RNN):
            exp[prefix + "bias_hh_l0"] = (("param", key_prefix + "b"), layer.params["b"].shape)
        if isinstance(layer, BatchNorm):
            shape = (layer.n_features,)
            exp[prefix + "running_mean"] = (("stats", stats_path + ("mean",)), shape)
            exp[prefix + "running_var"] = (("stats", stats_path + ("var",)), shape)

    for k, layer in enumerate(model.layers):
        if isinstance(layer, Residual):
            for i, sub in enumerate(layer.branch):
                add(sub, f"{k}.{i}.", f"{k}.{i}.", (k, i))
        else:
            add(layer, f"{k}.", f"{k}.", (k,))
    return exp


def from_state_dict(model, state_dict, strict=True):
    """Refnets parameters and running statistics from a PyTorch-style ``state_dict``.

    Nothing is modified; :func:`load_state_dict` also copies the parameters in.

    Parameters
    ----------
    model : refnets.models.Sequential
        Gives the structure (which keys, which shapes).
    state_dict : mapping of str to array-like (ndarrays or torch tensors)
    strict : bool, default True
        Raise on keys the model does not have and on missing keys. With
        False, unknown keys are ignored and missing parameters keep the
        model's values. An RNN's ``bias_hh_l0`` (and ``bias_ih_l0``) may be
        missing in either mode (a torch RNN with ``bias=False``: b = 0).

    Returns
    -------
    params : dict ``{"k.name": float64 array}`` like ``model.params()``;
        an RNN's ``b`` is ``bias_ih_l0 + bias_hh_l0``.
    running_stats : dict ``{k: {"mean", "var"}}`` (``{k: {i: ...}}`` in a
        Residual block) for every batch-norm layer whose statistics were given.
    """
    where = "from_state_dict"
    if not hasattr(state_dict, "items"):
        raise ValueError(f"{where}: state_dict must be a mapping {{key: array}}, "
                         f"got {type(state_dict).__name__}")
    exp = _expected(model)
    unknown = sorted(k for k in state_dict if k not in exp and not k.endswith("num_batches_tracked"))
    if strict and unknown:
        raise ValueError(f"{where}: keys the model does not have: {unknown}; expected keys "
                         f"{sorted(exp)}")
    optional = {k for k in exp if k.endswith(("bias_hh_l0", "bias_ih_l0"))}
    missing = sorted(k for k in exp if k not in state_dict and k not in optional)
    if strict and missing:
        raise ValueError(f"{where}: missing keys {missing}")

    params, stats = {}, {}
    for key, ((kind, target), shape) in exp.items():
        if key not in state_dict:
            continue
        value = as_float64(state_dict[key], f"state_dict[{key!r}]", where)
        if value.shape != tuple(shape):
            raise ValueError(f"{where}: state_dict[{key!r}] must have shape {tuple(shape)}, "
                             f"got {value.shape}")
        if kind == "param":
            if key.endswith(("bias_ih_l0", "bias_hh_l0")):   # b = b_ih + b_hh
                params[target] = params.get(target, np.zeros(shape)) + value
            else:
                params[target] = value
        else:
            node = stats
            for step in target[:-1]:
                node = node.setdefault(step, {})
            node[target[-1]] = value
    for key, ((kind, target), shape) in exp.items():   # an RNN given without biases: b = 0
        if key.endswith("bias_hh_l0") and target not in params and (
                strict or key[:-len("bias_hh_l0")] + "weight_hh_l0" in state_dict):
            params[target] = np.zeros(shape)
    for path, node in _stat_nodes(stats):
        if set(node) != {"mean", "var"}:
            raise ValueError(f"{where}: batch norm at {'.'.join(map(str, path))} needs both "
                             f"running_mean and running_var, got {sorted(node)}")
    return params, stats


def _stat_nodes(stats, path=()):
    for key, value in stats.items():
        if isinstance(value, dict) and not ({"mean", "var"} & set(value)):
            yield from _stat_nodes(value, path + (key,))
        else:
            yield path + (key,), value


def load_state_dict(model, state_dict, strict=True):
    """Copy a PyTorch-style ``state_dict`` into the model; return the running statistics.

    See :func:`from_state_dict`. The model's own arrays are updated in place
    (validated first: a bad call changes nothing).
    """
    params, stats = from_state_dict(model, state_dict, strict=strict)
    model.set_params(params)
    return stats


# -- TensorFlow / Keras layouts ----------------------------------------------------------------

def _arr(x, name, where, ndim):
    x = as_float64(x, name, where)
    if x.ndim != ndim:
        raise ValueError(f"{where}: {name} must have {ndim} dimensions, got shape {x.shape}")
    return x


def dense_from_keras(kernel, bias=None):
    """Keras Dense ``kernel`` (n_in, n_out) [, ``bias`` (n_out,)] -> ``W`` (n_out, n_in) [, ``b``].

    Keras computes y = x @ kernel + bias; refnets y = x @ W.T + b, so W = kernel.T.
    Returns W, or (W, b) when ``bias`` is given.
    """
    W = _arr(kernel, "kernel", "dense_from_keras", 2).T.copy()
    if bias is None:
        return W
    return W, _arr(bias, "bias", "dense_from_keras", 1)


def dense_to_keras(W, b=None):
    """Inverse of :func:`dense_from_keras`: kernel = W.T (and bias = b)."""
    kernel = _arr(W, "W", "dense_to_keras", 2).T.copy()
    if b is None:
        return kernel
    return kernel, _arr(b, "b", "dense_to_keras", 1)


def from_bias_row(M):
    """A weight matrix with the bias in row 0, (n_in + 1, n_out) -> ``(W, b)``.

    Target Space's TensorFlow code multiplies [1, x] (a column of ones
    prepended to the layer input) by one matrix M, so M[0] is the bias and
    M[1:] the Keras-layout kernel: W = M[1:].T (n_out, n_in), b = M[0].
    """
    M = _arr(M, "M", "from_bias_row", 2)
    if M.shape[0] < 2:
        raise ValueError(f"from_bias_row: M must have shape (n_in + 1, n_out) with n_in >= 1, "
                         f"got {M.shape}")
    return M[1:].T.copy(), M[0].copy()


def to_bias_row(W, b):
    """Inverse of :func:`from_bias_row`: M = [b; W.T], shape (n_in + 1, n_out)."""
    W = _arr(W, "W", "to_bias_row", 2)
    b = _arr(b, "b", "to_bias_row", 1)
    if b.shape != (W.shape[0],):
        raise ValueError(f"to_bias_row: b must have shape ({W.shape[0]},), got {b.shape}")
    return np.vstack([b[None, :], W.T])


def conv_from_hwio(kernel):
    """TF conv kernel (kh, kw, C_in, C_out) -> refnets/PyTorch W (C_out, C_in, kh, kw)."""
    return _arr(kernel, "kernel", "conv_from_hwio", 4).transpose(3, 2, 0, 1).copy()


def conv_to_hwio(W):
    """Inverse of :func:`conv_from_hwio`: (C_out, C_in, kh, kw) -> (kh, kw, C_in, C_out)."""
    return _arr(W, "W", "conv_to_hwio", 4).transpose(2, 3, 1, 0).copy()


def nhwc_to_nchw(x):
    """Channels-last images (N, H, W, C) -> channels-first (N, C, H, W)."""
    return _arr(x, "x", "nhwc_to_nchw", 4).transpose(0, 3, 1, 2).copy()


def nchw_to_nhwc(x):
    """Inverse of :func:`nhwc_to_nchw`."""
    return _arr(x, "x", "nchw_to_nhwc", 4).transpose(0, 2, 3, 1).copy()


def to_time_major(x):
    """Batch-major sequences (N, T, ...) (Keras) -> time-major (T, N, ...) (refnets RNN)."""
    x = as_float64(x, "x", "to_time_major")
    if x.ndim < 2:
        raise ValueError(f"to_time_major: x must have shape (N, T, ...), got {x.shape}")
    return np.swapaxes(x, 0, 1).copy()


def to_batch_major(x):
    """Inverse of :func:`to_time_major`: (T, N, ...) -> (N, T, ...)."""
    x = as_float64(x, "x", "to_batch_major")
    if x.ndim < 2:
        raise ValueError(f"to_batch_major: x must have shape (T, N, ...), got {x.shape}")
    return np.swapaxes(x, 0, 1).copy()


def rnn_from_keras(kernel, recurrent_kernel, bias=None):
    """Keras SimpleRNN weights -> refnets RNN params ``{"W_x", "W_h", "b"}``.

    Keras: h_t = tanh(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias) with
    kernel (D, H), recurrent_kernel (H, H); refnets: W_x = kernel.T,
    W_h = recurrent_kernel.T, b = bias (zeros when None).
    """
    where = "rnn_from_keras"
    Wx = _arr(kernel, "kernel", where, 2).T.copy()
    Wh = _arr(recurrent_kernel, "recurrent_kernel", where, 2).T.copy()
    H = Wx.shape[0]
    if Wh.shape != (H, H):
        raise ValueError(f"{where}: recurrent_kernel must have shape ({H}, {H}), got {Wh.T.shape}")
    b = np.zeros(H) if bias is None else _arr(bias, "bias", where, 1)
    if b.shape != (H,):
        raise ValueError(f"{where}: bias must have shape ({H},), got {b.shape}")
    return {"W_x": Wx, "W_h": Wh, "b": b}


def rnn_to_keras(params):
    """Inverse of :func:`rnn_from_keras`: ``(kernel, recurrent_kernel, bias)``."""
    where = "rnn_to_keras"
    if not isinstance(params, dict) or not {"W_x", "W_h", "b"} <= set(params):
        raise ValueError(f"{where}: params must be a dict with 'W_x', 'W_h', 'b' (RNN.params), "
                         f"got {params if not isinstance(params, dict) else sorted(params)!r}")
    return (_arr(params["W_x"], "W_x", where, 2).T.copy(),
            _arr(params["W_h"], "W_h", where, 2).T.copy(), _arr(params["b"], "b", where, 1))


def _chw(chw, where):
    chw = tuple(chw)
    if len(chw) != 3 or any(not isinstance(s, (int, np.integer)) or s < 1 for s in chw):
        raise ValueError(f"{where}: chw must be the feature-map shape (C, H, W) before the "
                         f"flatten, three positive ints, got {chw!r}")
    return chw


def dense_after_flatten_from_keras(kernel, chw):
    """Kernel of a Keras Dense reading a flattened NHWC map -> refnets W for a flattened NCHW map.

    Parameters
    ----------
    kernel : array of shape (H*W*C, n_out)
        Rows in Keras' flatten order (h, w, c).
    chw : (C, H, W)
        The feature map's shape before the flatten.

    Returns
    -------
    W : ndarray of shape (n_out, C*H*W), columns in refnets' flatten order (c, h, w).
    """
    where = "dense_after_flatten_from_keras"
    C, H, W_ = _chw(chw, where)
    kernel = _arr(kernel, "kernel", where, 2)
    if kernel.shape[0] != C * H * W_:
        raise ValueError(f"{where}: kernel must have C*H*W = {C * H * W_} rows, got {kernel.shape}")
    n_out = kernel.shape[1]
    return kernel.reshape(H, W_, C, n_out).transpose(3, 2, 0, 1).reshape(n_out, C * H * W_).copy()


def dense_after_flatten_to_keras(W, chw):
    """Inverse of :func:`dense_after_flatten_from_keras`: (n_out, C*H*W) -> (H*W*C, n_out)."""
    where = "dense_after_flatten_to_keras"
    C, H, W_ = _chw(chw, where)
    W = _arr(W, "W", where, 2)
    if W.shape[1] != C * H * W_:
        raise ValueError(f"{where}: W must have C*H*W = {C * H * W_} columns, got {W.shape}")
    n_out = W.shape[0]
    return W.reshape(n_out, C, H, W_).transpose(2, 3, 1, 0).reshape(H * W_ * C, n_out).copy()
