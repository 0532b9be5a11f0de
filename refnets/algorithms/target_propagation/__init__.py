"""Difference Target Propagation (Lee, Zhang, Fischer and Bengio, ECML-PKDD 2015;
arXiv:1412.7525) and its variants (DRL, L-DRL, fixed-weight DTP, direct DTP,
conv DTP, target propagation through time).

The derivation, equation tags (DTP-n), reading guide, map to the authors' code
and the deviations are in this package's README.md.
"""

from .algorithm import (LEE_HYPERPARAMETERS, DifferenceTargetPropagation, lee_recipe,
                        train_epoch_alternating)
from .blocks import (Block, SoftmaxOutput, apply_block, block_param_grads, dense_blocks,
                     difference_target, dtp_feedback_loss, local_loss, reconstruction_error)
from .conv import (ConvBlock, ConvDifferenceTargetPropagation, Feedback, conv_blocks,
                   conv_dtp_feedback_loss, conv_ldrl_feedback_loss)
from .rnn import TargetPropagationThroughTime, one_step, tptt_feedback_loss, tptt_local_loss
from .variants import (DifferenceReconstructionLoss, DirectDTP, FixedWeightDTP,
                       LocalDifferenceReconstructionLoss, ddtp_feedback_loss, drl_feedback_loss,
                       jacobian_trace, ldrl_feedback_loss)
from . import checks  # noqa: E402,F401  (registers the derivative self-checks)

__all__ = ["DifferenceTargetPropagation", "train_epoch_alternating", "lee_recipe",
           "LEE_HYPERPARAMETERS", "Block", "SoftmaxOutput", "dense_blocks", "apply_block",
           "block_param_grads", "local_loss", "difference_target", "dtp_feedback_loss",
           "reconstruction_error", "ConvBlock", "conv_blocks", "Feedback",
           "conv_dtp_feedback_loss", "conv_ldrl_feedback_loss",
           "ConvDifferenceTargetPropagation", "one_step", "tptt_local_loss",
           "tptt_feedback_loss", "TargetPropagationThroughTime", "drl_feedback_loss",
           "ldrl_feedback_loss", "ddtp_feedback_loss", "DifferenceReconstructionLoss",
           "LocalDifferenceReconstructionLoss", "FixedWeightDTP", "DirectDTP", "jacobian_trace"]
