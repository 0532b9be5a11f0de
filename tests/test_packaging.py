"""Packaging metadata: the data files ship, the dependencies are the documented ones."""

import configparser
import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cfg():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg


def test_every_data_file_is_package_data():
    patterns = [p.strip() for p in _cfg()["options.package_data"]["refnets"].split(",")]
    data_files = [p.relative_to(ROOT / "refnets").as_posix()
                  for p in (ROOT / "refnets" / "data").iterdir()
                  if p.is_file() and p.suffix not in (".py", ".pyc")]
    assert "data/fashion_mnist_small.npz" in data_files
    for f in data_files:
        assert any(fnmatch.fnmatch(f, pat) for pat in patterns), f"{f} is not in package_data"


def test_dependencies():
    opts = _cfg()["options"]
    requires = [line.split(">")[0].split("=")[0].strip()
                for line in opts["install_requires"].strip().splitlines()]
    assert sorted(requires) == ["matplotlib", "numpy", "scipy"]
    extras = _cfg()["options.extras_require"]
    assert {"plot", "test", "torch"} <= set(extras)
    assert "pytest" in extras["test"] and "matplotlib" in extras["test"]
    assert "refnets = refnets.cli:main" in _cfg()["options.entry_points"]["console_scripts"]
