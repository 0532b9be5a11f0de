"""Figures and tables for tutorials and ``refnets compare``.

matplotlib is imported inside the functions that draw, never at import of
refnets, and only through its object-oriented API (``matplotlib.figure.Figure``,
no pyplot, no global state, no display needed): every figure is saved to a file.

Typical use in a tutorial::

    from refnets import plotting
    fig = plotting.learning_curves({"backprop": history})
    plotting.save(fig, out_dir / "learning_curves.png")
"""

from __future__ import annotations

import math
import os

import numpy as np

__all__ = ["new_figure", "save", "learning_curves", "decision_boundary", "format_table",
           "running_mean"]


def new_figure(nrows=1, ncols=1, width=4.5, height=3.6, **subplot_kw):
    """A Figure with a grid of axes (no pyplot).

    Returns
    -------
    fig : matplotlib.figure.Figure
    axes : ndarray of Axes of shape (nrows, ncols), squeezed like ``plt.subplots``.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=True, subplot_kw=subplot_kw or None)
    return fig, axes


def save(fig, path, dpi=120):
    """Save ``fig`` to ``path`` (parent directories created); return the path."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def running_mean(values, window):
    """Mean over the last ``window`` values at each position (shorter at the start)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return v
    c = np.cumsum(np.insert(v, 0, 0.0))
    idx = np.arange(1, v.size + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def learning_curves(histories, title=None, smooth=None):
    """Training loss per step and accuracy per epoch for several runs.

    Parameters
    ----------
    histories : dict of str -> History
        One curve per entry (label -> :class:`refnets.training.History`).
    title : str, optional
    smooth : int, optional
        Running-mean window of the step losses (default ~ steps_per_epoch / 5).

    Returns
    -------
    matplotlib.figure.Figure with two panels: (left) minibatch loss against
    epochs (fractional), log scale; (right) train (dashed) and test (solid)
    accuracy after each epoch, with the legend (one colour per run).
    """
    from matplotlib.ticker import MaxNLocator

    fig, (ax_loss, ax_acc) = new_figure(1, 2)
    colors = _colors(len(histories))
    # Losses are drawn on a log scale; a method whose objective can be <= 0 (e.g.
    # an HSIC objective rather than a cross-entropy) is left out of that panel.
    not_shown = []
    for (name, h), color in zip(histories.items(), colors):
        steps = max(int(h.steps_per_epoch), 1)
        window = smooth or max(1, steps // 5)
        loss = running_mean(h.step_loss, window)
        epochs = np.arange(1, len(loss) + 1) / steps
        if len(loss) and np.all(np.asarray(h.step_loss) > 0):
            ax_loss.plot(epochs, loss, color=color, label=name, lw=1.2)
        elif len(loss):
            not_shown.append(name)
        e = np.arange(1, len(h.train_acc) + 1)
        marker = "o" if len(e) <= 30 else None
        if h.test_acc:
            ax_acc.plot(e, h.test_acc, color=color, marker=marker, ms=3, label=name)
        if h.train_acc:
            ax_acc.plot(e, h.train_acc, color=color, ls="--", lw=1,
                        label=name if not h.test_acc else "_nolegend_")
    ax_loss.set(xlabel="epoch", ylabel="training loss (running mean)", title="loss")
    if ax_loss.lines:
        ax_loss.set_yscale("log")
    if not_shown:
        ax_loss.text(0.02, 0.02, "loss <= 0, not shown: " + ", ".join(not_shown),
                     transform=ax_loss.transAxes, fontsize=7)
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy (dashed: train)",
               ylim=_accuracy_limits(histories))
    ax_acc.xaxis.set_major_locator(MaxNLocator(integer=True))
    if ax_acc.lines:
        ax_acc.legend(fontsize=7, loc="lower right")   # one entry per run; colours as on the left
    if title:
        fig.suptitle(title)
    return fig


def _accuracy_limits(histories):
    """y-limits that fit every accuracy drawn, with a small margin, inside [0, 1.02]."""
    values = [v for h in histories.values() for v in (*h.train_acc, *h.test_acc)
              if v is not None and math.isfinite(v)]
    if not values:
        return 0.0, 1.02
    lo, hi = min(values), max(values)
    pad = max(0.02, 0.05 * (hi - lo))
    return max(0.0, lo - pad), min(1.02, hi + pad)


def decision_boundary(predict, x, y, ax=None, resolution=200, margin=0.5, title=None):
    """Class regions of a 2-D classifier with the data on top.

    Parameters
    ----------
    predict : callable
        ``predict(points (M, 2)) -> scores (M, C)``; the argmax is the class.
    x : ndarray of shape (N, 2)
    y : int ndarray of shape (N,)
    ax : matplotlib Axes, optional
        Draw into it (default: a new figure).
    resolution : int
        Grid points per axis.
    margin : float
        Added around the data's bounding box.

    Returns
    -------
    matplotlib.figure.Figure
    """
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"decision_boundary: x must have shape (N, 2), got {x.shape}")
    if ax is None:
        fig, ax = new_figure(width=4.5, height=4.5)
    else:
        fig = ax.figure
    lo, hi = x.min(axis=0) - margin, x.max(axis=0) + margin
    g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution))
    grid = np.stack([g0.ravel(), g1.ravel()], axis=1)
    cls = np.argmax(predict(grid), axis=-1).reshape(g0.shape)
    n_classes = int(max(cls.max(), np.max(y))) + 1
    colors = _colors(n_classes)
    from matplotlib.colors import ListedColormap
    ax.contourf(g0, g1, cls, levels=np.arange(n_classes + 1) - 0.5,
                cmap=ListedColormap(colors), alpha=0.25)
    for c in range(n_classes):
        sel = np.asarray(y) == c
        ax.scatter(x[sel, 0], x[sel, 1], s=10, color=colors[c], edgecolors="k", linewidths=0.3,
                   label=f"class {c}")
    ax.set_aspect("equal")
    ax.set(xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]))
    if title:
        ax.set_title(title)
    return fig


def format_table(rows, columns=None, floatfmt=".3f", align_right=()):
    """Plain-text table (for stdout) from a list of dicts.

    Parameters
    ----------
    rows : list of dict
    columns : list of str, optional
        Column order (default: keys of the first row).
    floatfmt : str
        Format of float cells; NaN and None print as "-".
    align_right : iterable of str
        Columns to right-align although they hold text (e.g. pre-formatted
        "0.812 +- 0.004"); numeric columns are right-aligned anyway.
    """
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())

    def cell(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        if isinstance(v, (float, np.floating)):
            return format(float(v), floatfmt)
        return str(v)

    body = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(columns)]
    numeric = [c in align_right or all(_is_number(r.get(c)) for r in rows) for c in columns]

    def line(cells):
        return "  ".join(s.rjust(w) if num else s.ljust(w)
                         for s, w, num in zip(cells, widths, numeric)).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(columns), sep] + [line(b) for b in body])


def _is_number(v):
    return v is None or isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _colors(n):
    """n distinguishable colours (matplotlib's tab10, then tab20)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(max(n, 1))]
