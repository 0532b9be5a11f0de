"""Functional transfer matrices (Cai et al., 2017): a learnable function on
every connection instead of a weight. The layers are in
:mod:`refnets.layers.functional`; this package holds the networks built from
them and their training. The derivation, equation tags (FTM-n), reading guide,
map to the authors' code and the deviations are in this package's README.md.
"""

from .algorithm import (DEFAULT_FUNCTION, FOLLOW, FunctionalTransfer, ftnn, train_ftnn,
                        train_layerwise)

__all__ = ["DEFAULT_FUNCTION", "FOLLOW", "ftnn", "FunctionalTransfer", "train_layerwise",
           "train_ftnn"]
