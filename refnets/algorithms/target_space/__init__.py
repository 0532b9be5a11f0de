"""Target Space (Fairbank, Samothrakis and Citi, JMLR 2022; arXiv:2006.01578).

The optimiser moves per-layer targets; each layer's weights follow from a
regularised least-squares solve. The derivation, equation tags (TS-n), reading
guide, map to the authors' code and the deviations are in this package's
README.md.
"""

from . import checks  # noqa: F401  (registers the self-checks of ``refnets gradcheck``)
from .algorithm import FOLLOW, TargetSpace
from .conv import ConvRealiser, nchw_to_rows, rows_to_nchw
from .dense import DenseRealiser, ShortcutMLP, shortcut_mlp, split_blocks
from .init import make_realiser, tf1_weight_init, truncated_normal
from .rnn import RNNRealiser, run_preactivations
from .solve import RidgeSolveWarning, design_matrix, ridge_solve, ridge_solve_vjp

__all__ = ["TargetSpace", "FOLLOW", "ShortcutMLP", "shortcut_mlp", "split_blocks",
           "tf1_weight_init", "truncated_normal", "make_realiser", "DenseRealiser", "ConvRealiser",
           "RNNRealiser", "run_preactivations", "rows_to_nchw", "nchw_to_rows",
           "RidgeSolveWarning", "design_matrix", "ridge_solve", "ridge_solve_vjp"]
