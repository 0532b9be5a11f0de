"""Networks of the HSIC-bottleneck experiments and their block structure.

Builders (authors' ``model/mhlinear.py`` and ``model/mresconv.py``):

* :func:`hsic_mlp` -- ``ModelLinear``: blocks Linear -> BatchNorm(affine=False) -> ReLU.
  ``sizes = [784, 256, 256, 256, 256, 256, 256, 10]`` is the official 7-block
  net (input block, 5 middle blocks, output block) at width 256.
* :func:`hsic_resconv` -- ``ModelResConv``: Conv(5x5, stride 2) + BN + ReLU, residual
  conv blocks (two 5x5 convs, see :class:`refnets.layers.residual.Residual`),
  Flatten, Linear + BN + ReLU.

Blocks. HSIC trains each *block* on its own objective. A block is a run of
layers that ends with a nonlinearity: an :class:`~refnets.layers.activations.Activation`
or a :class:`~refnets.layers.residual.Residual` layer (:func:`split_blocks`).
Parameter-free layers in between (Flatten) join the block that follows.

Running statistics. Layers with batch norm (``init_running_stats``) take
``running_stats`` in ``forward``: None means training mode (batch statistics).
:func:`forward_layers` threads a dict ``{layer index: stats}`` through a range
of layers; :func:`update_running_stats` returns the updated dict. The
algorithm keeps that dict in its ``state`` (never on the layers).
"""

from __future__ import annotations

import numpy as np

from ...layers.activations import Activation, get_activation
from ...layers.conv import Conv2D
from ...layers.dense import Dense
from ...layers.init import fans
from ...layers.normalization import BatchNorm
from ...layers.pooling import Flatten
from ...layers.residual import Residual
from ...models import Sequential
from ...validation import check_bool, check_choice

__all__ = ["FOLLOW_MODEL", "torch_default_init", "hsic_mlp", "hsic_resconv", "split_blocks", "block_keys",
           "uses_stats", "init_running_stats", "running_stats_items", "forward_layers",
           "backward_layers", "update_running_stats", "recompute_running_stats"]


def torch_default_init(shape, rng):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default Linear/Conv2d weight init.

    The authors' nets use it; under batch norm the weight scale does not change
    the forward pass but sets the effective learning rate (the BN backward
    scales dW by 1/std of the pre-activation), so lr = 1e-3 only matches the
    authors' with their initial scale.
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"torch_default_init: rng must be a numpy.random.Generator, "
                         f"got {type(rng).__name__}")
    bound = 1.0 / np.sqrt(fans(shape)[0])
    return rng.uniform(-bound, bound, size=shape)


def _act(activation):
    return get_activation(activation) if isinstance(activation, str) else activation


#: ``follow=`` presets of the builders: the authors' nets keep the Linear/Conv bias.
FOLLOW_MODEL = {"choasma/HSIC-bottleneck": {"bias": True}}


def _follow(follow, bias, where):
    """``bias`` as given, else the preset's, else False (refnets' default)."""
    if follow is not None:
        check_choice(follow, "follow", tuple(FOLLOW_MODEL), where)
        if bias is None:
            bias = FOLLOW_MODEL[follow]["bias"]
    return False if bias is None else check_bool(bias, "bias", where)


def hsic_mlp(sizes, rng, activation="relu", affine=False, bias=None, init=torch_default_init,
             output_activation=None, follow=None):
    """Dense HSIC net: [Dense, BatchNorm, activation] per block (authors' ``ModelLinear``).

    Parameters
    ----------
    sizes : list of int
        Input width, then one width per block, e.g. ``[784, 256, ..., 256, 10]``;
        the last block (width = number of classes) is the "unformatted" output.
    rng : numpy.random.Generator
    activation : str, default 'relu'
    affine : bool, default False
        BatchNorm without (authors') or with learnable gamma/beta.
    bias : bool, default False
        The Dense bias is dead under batch norm (zero gradient, HSIC-8a): it
        is dropped (the authors keep it; it only decays by weight decay).
    follow : {None, 'choasma/HSIC-bottleneck'}
        Preset of the conventions above (``FOLLOW_MODEL``): the authors' nets
        have ``bias=True``. An explicit ``bias`` wins.
    init : callable, default :func:`torch_default_init`
    output_activation : str, optional
        Nonlinearity of the last block (default: ``activation``). The
        unformatted output works best with 'relu' (class units >= 0 that
        switch on for their class).

    Returns
    -------
    Sequential with 3 * (len(sizes) - 1) layers.
    """
    bias = _follow(follow, bias, "hsic_mlp")
    sizes = list(sizes)
    if len(sizes) < 2 or any(not isinstance(s, (int, np.integer)) or s < 1 for s in sizes):
        raise ValueError(f"hsic_mlp: sizes must be a list of >= 2 positive ints, got {sizes!r}")
    layers = []
    last = len(sizes) - 2
    for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        act = activation if k < last or output_activation is None else output_activation
        layers += [Dense(n_in, n_out, rng, init=init, bias=bias),
                   BatchNorm(n_out, affine=affine), _act(act)]
    return Sequential(layers)


def hsic_resconv(input_shape, rng, channels=64, n_blocks=5, width=512, kernel_size=5,
                 activation="relu", affine=False, bias=None, init=torch_default_init,
                 follow=None):
    """Residual conv HSIC net (authors' ``ModelResConv``).

    Conv2D(C_in -> channels, k, stride 2, no padding) + BN + act; ``n_blocks``
    residual blocks act(BN(conv(act(BN(conv x)))) + x) with 'same' padding;
    Flatten; Dense(-> width) + BN + act. HSIC trains every one of these
    ``n_blocks + 2`` blocks.

    Parameters
    ----------
    input_shape : tuple (C, H, W)
    rng : numpy.random.Generator
    channels, n_blocks, width, kernel_size : int
    activation, affine, bias, init, follow : as in :func:`hsic_mlp`
    """
    where = "hsic_resconv"
    bias = _follow(follow, bias, where)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"{where}: input_shape must be (C, H, W), got {input_shape!r}")
    for name, v in (("channels", channels), ("width", width), ("kernel_size", kernel_size)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{where}: {name} must be a positive int, got {v!r}")
    if not isinstance(n_blocks, (int, np.integer)) or n_blocks < 0:
        raise ValueError(f"{where}: n_blocks must be an int >= 0, got {n_blocks!r}")
    k = kernel_size
    first = Conv2D(input_shape[0], channels, k, stride=2, padding=0, rng=rng, init=init, bias=bias)
    shape = first.output_shape(input_shape)
    layers = [first, BatchNorm(channels, affine=affine), _act(activation)]
    for _ in range(n_blocks):
        branch = [Conv2D(channels, channels, k, padding="same", rng=rng, init=init, bias=bias),
                  BatchNorm(channels, affine=affine), _act(activation),
                  Conv2D(channels, channels, k, padding="same", rng=rng, init=init, bias=bias),
                  BatchNorm(channels, affine=affine)]
        layers.append(Residual(branch, _act(activation)))
    layers += [Flatten(), Dense(int(np.prod(shape)), width, rng, init=init, bias=bias),
               BatchNorm(width, affine=affine), _act(activation)]
    return Sequential(layers)


# ----------------------------------------------------------------------------
# blocks and running statistics
# ----------------------------------------------------------------------------
def split_blocks(model):
    """Layer ranges ``[(lo, hi), ...]`` of the HSIC blocks of ``model``.

    A block ends after each Activation or Residual layer. Raises ValueError
    if layers with parameters follow the last nonlinearity (HSIC has no
    objective for them) or if a block has no parameters.
    """
    blocks, lo = [], 0
    for k, layer in enumerate(model.layers):
        if isinstance(layer, (Activation, Residual)):
            blocks.append((lo, k + 1))
            lo = k + 1
    if lo != len(model.layers):
        raise ValueError(f"split_blocks: the model must end with a nonlinearity (Activation or "
                         f"Residual); layers {lo}..{len(model.layers) - 1} "
                         f"({model.layers[lo:]!r}) follow the last one")
    for lo, hi in blocks:
        if not any(model.layers[k].params for k in range(lo, hi)):
            raise ValueError(f"split_blocks: block of layers {lo}..{hi - 1} has no parameters "
                             f"({model.layers[lo:hi]!r}); every HSIC block needs weights")
    return blocks


def block_keys(model):
    """The model layer index k of each block's last layer, in block order.

    Block b's trace entries (its output Z, kernel K_Z, nHSIC terms, ...) are
    keyed ``"{k}.{name}"`` with ``k = block_keys(model)[b]``: the index of the
    layer whose output is Z_b (``hi - 1`` of :func:`split_blocks`).
    """
    return [hi - 1 for _, hi in split_blocks(model)]


def running_stats_items(running_stats):
    """Flat ``[("{k}.running_mean", array), ("{k}.running_var", array), ...]``.

    ``running_stats`` is ``{k: {"mean", "var"}}`` (k the model layer index); a
    residual layer's nested ``{k: {i: {"mean", "var"}}}`` gives
    ``"{k}.{i}.running_mean"`` (i the index inside its branch), like its
    parameters ``"{k}.{i}.W"``.
    """
    items = []
    for k in sorted(running_stats):
        stats = running_stats[k]
        if set(stats) == {"mean", "var"}:
            items += [(f"{k}.running_mean", stats["mean"]), (f"{k}.running_var", stats["var"])]
        else:
            items += [(f"{k}.{key}", value) for key, value in running_stats_items(stats)]
    return items


def uses_stats(layer):
    """True for layers with explicit running statistics (BatchNorm, Residual)."""
    return hasattr(layer, "init_running_stats")


def init_running_stats(model):
    """``{k: layer.init_running_stats()}`` for every layer k with statistics."""
    return {k: layer.init_running_stats() for k, layer in enumerate(model.layers)
            if uses_stats(layer)}


def forward_layers(model, lo, hi, h, running_stats=None):
    """Run layers lo..hi-1 of ``model`` on ``h``.

    Parameters
    ----------
    model : Sequential
    lo, hi : int
    h : ndarray, the input of layer lo
    running_stats : dict {k: stats}, optional
        None: training mode (batch statistics in every batch norm).
        Given: evaluation mode with these statistics.

    Returns
    -------
    h : ndarray, the output of layer hi-1
    caches : list of dict, one per layer
    """
    caches = []
    for k in range(lo, hi):
        layer = model.layers[k]
        if uses_stats(layer):
            h, cache = layer.forward(h, running_stats=None if running_stats is None
                                     else running_stats[k])
        else:
            h, cache = layer.forward(h)
        caches.append(cache)
    return h, caches


def backward_layers(model, lo, hi, dh, caches):
    """Back-propagate ``dh`` through layers hi-1..lo; return (dx, flat grads "k.name") (HSIC-8)."""
    grads = {}
    for k in range(hi - 1, lo - 1, -1):
        dh, g = model.layers[k].backward(dh, caches[k - lo])
        grads.update({f"{k}.{name}": value for name, value in g.items()})
    return dh, grads


def update_running_stats(model, lo, hi, running_stats, caches, momentum=None):
    """New running statistics of layers lo..hi-1 from their training-mode caches (HSIC-10).

    ``momentum`` overrides the layers' own (see BatchNorm.update_running_stats).
    Returns a new dict (entries of other layers are carried over unchanged).
    """
    new = dict(running_stats)
    for k in range(lo, hi):
        if k in running_stats:
            new[k] = model.layers[k].update_running_stats(running_stats[k], caches[k - lo],
                                                          momentum)
    return new


def recompute_running_stats(model, x, batch_size=1000):
    """Batch-norm statistics of ``model`` on data ``x`` with its current weights ("precise BN").

    One pass over ``x`` in batches (in order) in training mode; every batch
    norm's statistics are the cumulative average of the batch means and
    unbiased batch variances (momentum 1/(i+1) at batch i). Running averages
    collected during training lag behind weights that move fast (under
    batch norm the first blocks' pre-activations drift); this replaces them
    by the statistics of the final network.

    Parameters
    ----------
    model : Sequential
    x : ndarray, inputs (N, ...); N >= 2
    batch_size : int

    Returns
    -------
    dict {k: stats} for every layer k with statistics.
    """
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 2:
        raise ValueError(f"recompute_running_stats: batch_size must be an int >= 2, "
                         f"got {batch_size!r}")
    running = init_running_stats(model)
    n = len(x)
    starts = [s for s in range(0, n, batch_size) if n - s >= 2]   # skip a last single sample
    for i, s in enumerate(starts):
        _, caches = forward_layers(model, 0, len(model.layers), x[s:s + batch_size])
        running = update_running_stats(model, 0, len(model.layers), running, caches,
                                       momentum=1.0 / (i + 1))
    return running
