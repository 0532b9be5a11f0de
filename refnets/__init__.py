"""refnets: NumPy reference implementations of training methods beside backprop.

Target Space, Difference Target Propagation, the HSIC bottleneck,
decorrelation with backprop approximations (FA, DFA, node/weight perturbation)
and functional transfer matrices, on hand-written dense, conv and recurrent
layers, each derivative checked by finite differences.

Importing refnets loads NumPy and SciPy only (matplotlib is imported lazily,
where a figure is drawn).
"""

__version__ = "0.1.0"

from . import gradcheck, layers, losses, optim  # noqa: E402,F401
from .models import Sequential, mlp  # noqa: E402,F401

__all__ = ["layers", "losses", "optim", "gradcheck", "Sequential", "mlp", "__version__"]
