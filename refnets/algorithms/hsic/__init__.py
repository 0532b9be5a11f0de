"""HSIC bottleneck (Ma, Lewis and Kleijn, AAAI 2020; arXiv:1908.01580).

Each block is trained on its own objective nHSIC(Z, X) - beta nHSIC(Z, Y),
with the kernel estimates and their gradients written out in ``kernels.py``.
The derivation, equation tags (HSIC-n), reading guide, map to the authors'
code and the deviations are in this package's README.md.
"""

from . import kernels
from .algorithm import FOLLOW, HSICBottleneck
from .format import (FORMAT_MIN_STEPS, HSICFormat, HSICSigmaCombined, combined_format_setup,
                     format_setup, train_format)
from .metrics import (class_means, fit_unit_mapping, greedy_unit_accuracy, greedy_unit_mapping,
                      hungarian_accuracy, linear_probe_accuracy, mapped_accuracy)
from .models import (FOLLOW_MODEL, backward_layers, block_keys, forward_layers, hsic_mlp, hsic_resconv,
                     init_running_stats, recompute_running_stats, running_stats_items,
                     split_blocks, torch_default_init, update_running_stats, uses_stats)
from . import checks  # noqa: E402,F401  (registers the derivative self-checks)

__all__ = ["HSICBottleneck", "FOLLOW", "FOLLOW_MODEL", "kernels", "HSICFormat", "format_setup", "train_format",
           "FORMAT_MIN_STEPS", "HSICSigmaCombined",
           "combined_format_setup", "class_means", "greedy_unit_mapping", "greedy_unit_accuracy",
           "fit_unit_mapping", "mapped_accuracy", "hungarian_accuracy", "linear_probe_accuracy",
           "torch_default_init", "hsic_mlp", "hsic_resconv", "split_blocks", "block_keys",
           "uses_stats", "init_running_stats", "running_stats_items", "forward_layers",
           "backward_layers", "update_running_stats", "recompute_running_stats"]
