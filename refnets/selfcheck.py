"""Registry of finite-difference self-checks run by ``refnets gradcheck``.

Any module may register a check of its analytic derivatives::

    from refnets.selfcheck import register_check

    @register_check("hsic/nhsic dZ", group="hsic", tol=1e-4)
    def _check(rng):
        ...                      # build small float64 inputs with rng
        return rel_error(analytic, numerical)

A check returns the relative error (a float); it passes when error < tol.
The test suite runs every registered check too (tests/test_selfcheck.py), so
what a user verifies on their machine is what CI verifies.
"""

from __future__ import annotations

import importlib
import time
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["Check", "register_check", "all_checks", "run_checks", "check_rng", "CHECK_MODULES"]

#: Modules (besides the algorithm registry's) that register checks on import.
CHECK_MODULES = (
    "refnets.layers._checks",
    "refnets.layers._checks_rnn",
    "refnets.layers._checks_conv",
    "refnets.layers.functional.checks",
    "refnets.algorithms.target_propagation.checks",
)


@dataclass(frozen=True)
class Check:
    """One registered derivative check."""

    name: str
    func: Callable[[np.random.Generator], float]
    tol: float
    group: str


_CHECKS: dict = {}


def register_check(name, group="layers", tol=1e-7):
    """Decorator registering ``func(rng) -> relative error`` under ``name``."""
    def deco(func):
        if name in _CHECKS and _CHECKS[name].func.__qualname__ != func.__qualname__:
            raise ValueError(f"register_check: a check named {name!r} already exists")
        _CHECKS[name] = Check(name, func, float(tol), group)
        return func
    return deco


def all_checks():
    """Import every module that registers checks; return the checks by name."""
    for mod in CHECK_MODULES:
        importlib.import_module(mod)
    from . import algorithms
    algorithms.available_methods()  # imports every method module
    return dict(_CHECKS)


def check_rng(name, seed=0):
    """The generator a check named ``name`` runs with: seeded by its name."""
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


def run_checks(seed=0, select=None):
    """Run the registered checks.

    Parameters
    ----------
    seed : int
        Each check gets ``np.random.default_rng([seed, crc32(name)])``: its
        inputs depend on its name only, never on the order checks register in.
    select : str, optional
        Only checks whose name or group contains this substring.

    Returns
    -------
    list of dict with keys name, group, error, tol, passed, seconds, message.
    A check that raises is reported as failed (error NaN) with the exception
    in ``message`` (empty otherwise), so one broken check does not hide the rest.
    """
    rows = []
    for check in all_checks().values():
        if select and select not in check.name and select not in check.group:
            continue
        t0 = time.perf_counter()
        message = ""
        try:
            err = float(check.func(check_rng(check.name, seed)))
        except Exception as exc:  # reported, not raised: the table shows every check
            err, message = float("nan"), f"{type(exc).__name__}: {exc}"
        rows.append({"name": check.name, "group": check.group, "error": err, "tol": check.tol,
                     "passed": bool(err < check.tol), "seconds": time.perf_counter() - t0,
                     "message": message})
    return rows
