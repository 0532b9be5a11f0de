"""Every check `refnets gradcheck` runs must pass here too."""

import numpy as np
import pytest

from refnets.selfcheck import all_checks

CHECKS = all_checks()


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_registered_check_passes(name):
    check = CHECKS[name]
    err = check.func(np.random.default_rng(0))
    assert np.isfinite(err) and err < check.tol, f"{name}: relative error {err:.3e} >= {check.tol:.1e}"
