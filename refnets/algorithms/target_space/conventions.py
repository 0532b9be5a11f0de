"""The conventions of the authors' codebases that Target Space can follow.

``TargetSpace(..., follow="dlts-tf2")`` (the authors' TF2/Keras
``ts_layers.py``) or ``follow="dlts-tf1"`` (their TF1 scripts, which produced
the paper's results) sets the keywords below; refnets' defaults stay its own.
Each convention is described in the package README's section 6.
"""

from __future__ import annotations

from ...validation import check_number

__all__ = ["FOLLOW", "INIT_GIVEN"]


class _Default:
    """A convention keyword the caller did not pass: ``follow`` may set it."""

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return repr(self.value)


#: Conventions of the authors' codebases that refnets' defaults do not follow
#: (README section 6). ``follow=NAME`` sets these keywords; a keyword passed
#: explicitly wins over the preset.
FOLLOW = {
    "refnets": {},
    "dlts-tf2": {"projection": "layer", "shared_initial_targets": True,
                 "zero_lam_solver": "cholesky", "realisation_selection": "first",
                 "target_init_std": {"dense": 1.0, "conv": 0.1, "rnn": 1.0}},
    "dlts-tf1": {"projection": "simultaneous", "shared_initial_targets": False,
                 "zero_lam_solver": "cholesky", "realisation_selection": "first",
                 "target_init_std": None},
}

#: given-value keywords of :meth:`TargetSpace.init_state` (step draws nothing)
INIT_GIVEN = ("realisation_rows", "targets")


def _check_std(std, where):
    """target_init_std: None, a positive number, or a dict by layer kind."""
    if std is None:
        return None
    if isinstance(std, dict):
        kinds = ("dense", "conv", "rnn")
        bad = set(std) - set(kinds)
        if bad:
            raise ValueError(f"{where}: target_init_std keys must be among {list(kinds)}, "
                             f"got {sorted(bad)}")
        return {kind: check_number(v, f"target_init_std[{kind!r}]", where, low=0.0,
                                   low_open=True) for kind, v in std.items()}
    return check_number(std, "target_init_std", where, low=0.0, low_open=True)
