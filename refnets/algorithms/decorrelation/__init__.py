"""Decorrelation of each layer's input (Ahmad, 2024; arXiv:2407.10780), with
backprop and with the approximations of backprop the paper studies beside it:
feedback alignment (FA, DFA) and node/weight perturbation (NP, WP).

The derivation, equation tags (DEC-n), reading guide, map to the authors' code
and the deviations are in this package's README.md.
"""

from .algorithm import MODES, DecorrelatedBackprop, Decorrelation, as_decorrelation
from .feedback_alignment import DirectFeedbackAlignment, FAStraightThrough, FeedbackAlignment
from .net import DecorrelatedRule, weight_layer_indices
from .perturbation import NodePerturbation, WeightPerturbation, sample_losses
from .rules import suggest_decor_lr

__all__ = ["MODES", "Decorrelation", "as_decorrelation", "DecorrelatedBackprop",
           "DecorrelatedRule", "weight_layer_indices", "FeedbackAlignment", "FAStraightThrough",
           "DirectFeedbackAlignment", "NodePerturbation", "WeightPerturbation", "sample_losses",
           "suggest_decor_lr"]
