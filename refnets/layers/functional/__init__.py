"""Functional-transfer layers (Cai et al., 2017): a learnable function
f(x; theta) on every connection instead of a weight.

- ``dense.py``: :class:`FunctionalDense` and the function registry;
- ``functions.py`` / ``functions_generic.py``: the function catalogue F01-F20 and LIN;
- ``conv.py``: :class:`FunctionalConv2D`; ``recurrent.py``: :class:`MemoryFunctional`,
  :class:`FunctionalRNN`; ``checks.py``: their derivative self-checks.

The equations (FTM-n tags) are derived in
``refnets/algorithms/functional_transfer/README.md``.
"""

from .conv import FunctionalConv2D
from .dense import (DEFAULT_MAX_ELEMENTS, FUNCTION_NAMES, FUNCTIONS, MEMORY_BLOCKS, FunctionType,
                    FunctionalDense, get_function)
from .recurrent import FunctionalRNN, MemoryFunctional

__all__ = ["FunctionalDense", "FunctionalConv2D", "FunctionalRNN", "MemoryFunctional",
           "FunctionType", "FUNCTIONS", "FUNCTION_NAMES", "get_function", "DEFAULT_MAX_ELEMENTS",
           "MEMORY_BLOCKS"]
