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

import fnmatch
import importlib
import time
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["Check", "register_check", "all_checks", "match_checks", "run_checks", "check_rng",
           "CHECK_MODULES", "GROUPS"]

#: Modules (besides the algorithm registry's) that register checks on import.
CHECK_MODULES = (
    "refnets.layers._checks",
    "refnets.layers._checks_rnn",
    "refnets.layers._checks_conv",
    "refnets.layers.functional.checks",
    "refnets._checks_losses",
    "refnets.algorithms.target_propagation.checks",
)


#: The check groups, one per package: ``refnets gradcheck --select <group>``.
GROUPS = ("layers", "functional", "losses", "target_space", "target_propagation", "hsic",
          "decorrelation", "functional_transfer")


@dataclass(frozen=True)
class Check:
    """One registered derivative check."""

    name: str
    func: Callable[[np.random.Generator], float]
    tol: float
    group: str


_CHECKS: dict = {}


def register_check(name, group="layers", tol=1e-7):
    """Decorator registering ``func(rng) -> relative error`` under ``name``.

    ``group`` is the package the checked code lives in (one of :data:`GROUPS`
    for refnets' own checks; ``refnets gradcheck --select <group>``).
    """
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


def match_checks(select=None):
    """The registered checks ``refnets gradcheck --select`` picks.

    ``select`` is either a group name, matched exactly, or a glob over check
    names (``fnmatch``, case-insensitive: ``"Dense*"``, ``"*BPTT*"``); None
    picks every check. A selection that matches nothing raises ValueError
    listing the groups, so a typo never runs an empty (passing) table.
    """
    checks = all_checks()
    if select is None:
        return list(checks.values())
    groups = sorted({c.group for c in checks.values()})
    if select in groups:
        return [c for c in checks.values() if c.group == select]
    picked = [c for c in checks.values() if fnmatch.fnmatch(c.name.lower(), select.lower())]
    if not picked:
        hint = "" if any(ch in select for ch in "*?[") else f" (inside names: '*{select}*')"
        raise ValueError(f"match_checks: select {select!r} is neither a group ({', '.join(groups)}) "
                         f"nor a glob matching a check name{hint}; see `refnets gradcheck --list`")
    return picked


def run_checks(seed=0, select=None):
    """Run the registered checks.

    Parameters
    ----------
    seed : int
        Each check gets ``np.random.default_rng([seed, crc32(name)])``: its
        inputs depend on its name only, never on the order checks register in.
    select : str, optional
        A group (exactly) or a glob over check names (:func:`match_checks`).

    Returns
    -------
    list of dict with keys name, group, error, tol, passed, seconds, message.
    A check that raises is reported as failed (error NaN) with the exception
    in ``message`` (empty otherwise), so one broken check does not hide the rest.
    """
    rows = []
    for check in match_checks(select):
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
