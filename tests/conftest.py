"""Shared fixtures: a seeded generator per test (no global seeding).

``REFNETS_REQUIRE_TORCH=1`` (set by ``.ci/run``) turns every torch skip into a
failure: torch must import, and a test skipped for want of torch fails, so the
PyTorch cross-checks cannot silently not run.
"""

import os

import numpy as np
import pytest

REQUIRE_TORCH = os.environ.get("REFNETS_REQUIRE_TORCH", "") not in ("", "0")


def pytest_configure(config):
    if REQUIRE_TORCH:
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            raise pytest.UsageError(f"REFNETS_REQUIRE_TORCH is set but torch does not import "
                                    f"({exc}); install it: pip install torch==2.13.0") from None


def _torch_skip(report):
    if not report.skipped:
        return False
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    return "torch" in str(reason).lower()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_TORCH and (_torch_skip(report) or (report.skipped and item.get_closest_marker("torch"))):
        report.outcome = "failed"
        report.longrepr = (f"skipped with REFNETS_REQUIRE_TORCH set (torch tests must run): "
                           f"{report.longrepr}")


def pytest_collectreport(report):
    if REQUIRE_TORCH and _torch_skip(report):
        report.outcome = "failed"
        report.longrepr = (f"module skipped with REFNETS_REQUIRE_TORCH set (torch tests must "
                           f"run): {report.longrepr}")


@pytest.fixture
def rng():
    """A fresh, seeded numpy Generator for each test."""
    return np.random.default_rng(1234)
