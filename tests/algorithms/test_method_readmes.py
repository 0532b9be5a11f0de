"""Each method package's README keeps its promises.

* every equation tag cited anywhere in the repo (``(TS-3)``, ``DTP-4a``, ...)
  is defined in section 3 ("Equations") of the README of the package that
  owns its prefix;
* every function named in the README's section 4 table exists, and every test
  named there exists;
* the README has the eight sections, in order.
"""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALGOS = ROOT / "refnets" / "algorithms"

#: tag prefix -> package
PACKAGES = {"TS": "target_space", "DTP": "target_propagation", "HSIC": "hsic",
            "DEC": "decorrelation", "FTM": "functional_transfer"}
TAG = re.compile(r"\b(" + "|".join(PACKAGES) + r")-(\d+[a-z]?)\b")
SECTIONS = ["What the method does", "Symbols", "Equations", "Where each equation lives",
            "Reading guide", "The authors' code", "Deviations", "Measured here"]


def _sections(text):
    """``{number: body}`` of the ``## N. Title`` sections."""
    parts = re.split(r"^## (\d+)\. (.*)$", text, flags=re.M)
    return {int(parts[i]): (parts[i + 1].strip(), parts[i + 2]) for i in range(1, len(parts), 3)}


def _readme(pkg):
    path = ALGOS / pkg / "README.md"
    if not path.exists():
        pytest.fail(f"{path.relative_to(ROOT)} is missing")
    return _sections(path.read_text())


def _defined_tags(pkg):
    prefix = next(p for p, name in PACKAGES.items() if name == pkg)
    _, body = _readme(pkg)[3]
    return {f"{prefix}-{m.group(2)}" for m in TAG.finditer(body) if m.group(1) == prefix}


def _repo_files():
    for top in ("refnets", "tests", "tutorials", "benchmarks"):
        for path in (ROOT / top).rglob("*"):
            if path.suffix in (".py", ".md") and "__pycache__" not in path.parts:
                yield path
    yield ROOT / "README.md"


@pytest.mark.parametrize("pkg", sorted(PACKAGES.values()))
def test_readme_has_the_sections_in_order(pkg):
    titles = [title for _, (title, _) in sorted(_readme(pkg).items())]
    assert titles == SECTIONS, f"{pkg}/README.md sections: {titles}"


@pytest.mark.parametrize("pkg", sorted(PACKAGES.values()))
def test_every_cited_tag_is_defined(pkg):
    prefix = next(p for p, name in PACKAGES.items() if name == pkg)
    defined = _defined_tags(pkg)
    assert defined, f"{pkg}/README.md section 3 defines no {prefix}-n tag"
    missing = []
    for path in _repo_files():
        for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for m in TAG.finditer(line):
                if m.group(1) == prefix and m.group(0) not in defined:
                    missing.append(f"{path.relative_to(ROOT)}:{lineno}: {m.group(0)}")
    assert not missing, "tags cited but not defined in the README:\n" + "\n".join(missing)


def _names_in_module(path):
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


@pytest.mark.parametrize("pkg", sorted(PACKAGES.values()))
def test_table_names_exist(pkg):
    _, body = _readme(pkg)[4]
    rows = [line for line in body.splitlines() if TAG.search(line.split("|")[1] if "|" in line else "")]
    assert rows, f"{pkg}/README.md section 4 has no table rows"
    problems = []
    for row in rows:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) < 3:
            problems.append(f"row with fewer than 3 cells: {row}")
            continue
        for ref in re.findall(r"`([^`]+)`", cells[1]):
            # `file.py: name` relative to the package, or `refnets/...py: name`
            m = re.fullmatch(r"([\w/.]+\.py):\s*([\w.]+)", ref)
            if not m:
                problems.append(f"{pkg}: implementation cell not `file.py: name`: {ref!r}")
                continue
            file = ROOT / m.group(1) if m.group(1).startswith("refnets/") else ALGOS / pkg / m.group(1)
            if not file.exists():
                problems.append(f"{pkg}: {ref}: no file {file.relative_to(ROOT)}")
                continue
            head = m.group(2).split(".")[0]
            if head not in _names_in_module(file):
                problems.append(f"{pkg}: {ref}: {head} is not defined in {file.relative_to(ROOT)}")
        tests = re.findall(r"`([^`]+)`", cells[2])
        if not tests:
            problems.append(f"{pkg}: row names no test: {row}")
        for ref in tests:
            m = re.fullmatch(r"(tests/[\w/]+\.py)::(\w+)(?:\[.*\])?", ref)
            if not m:
                problems.append(f"{pkg}: test cell not `tests/...py::test_name`: {ref!r}")
                continue
            file = ROOT / m.group(1)
            if not file.exists() or m.group(2) not in _names_in_module(file):
                problems.append(f"{pkg}: {ref}: no such test")
    assert not problems, "\n".join(problems)
