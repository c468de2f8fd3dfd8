"""pyproject.toml against the tree: package data names files that exist, and every
third-party module ``mtlsearch`` imports comes from a declared distribution."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement string (PEP 503)."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0)
    return re.sub(r"[-_.]+", "-", name).lower()


def test_package_data_globs_match_files() -> None:
    for package, globs in PYPROJECT["tool"]["setuptools"]["package-data"].items():
        for glob in globs:
            assert list((ROOT / package).glob(glob)), f"package-data {package}/{glob} matches nothing"


def test_imported_third_party_modules_are_declared() -> None:
    project = PYPROJECT["project"]
    declared = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        declared |= {_name(r) for r in extra}
    modules: set[str] = set()
    for path in (ROOT / "mtlsearch").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    third_party = modules - set(sys.stdlib_module_names) - {"mtlsearch", "__future__"}
    dists = packages_distributions()
    undeclared = {}
    for module in sorted(third_party):
        names = {_name(d) for d in dists.get(module, [])}
        if not names:
            continue  # not installed here (an optional extra): nothing to map it through
        if not names & declared:
            undeclared[module] = sorted(names)
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


LOCK = ROOT / "requirements.lock"


def _locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[_name(name)] = version.strip()
    return pins


def test_the_lock_pins_every_declared_dependency_within_its_range() -> None:
    """requirements.lock holds every runtime and dev requirement of pyproject.toml at one
    exact version that the range admits (``make lock`` re-resolves)."""
    from packaging.requirements import Requirement

    pins = _locked()
    project = PYPROJECT["project"]
    for text in [*project["dependencies"], *project["optional-dependencies"]["dev"]]:
        req = Requirement(text)
        name = _name(req.name)
        assert name in pins, f"{name} is not in requirements.lock"
        assert req.specifier.contains(pins[name], prereleases=True), (name, pins[name], str(req.specifier))


def test_the_installed_packages_are_the_locked_ones() -> None:
    """What the tests run on is what the lock says (make install installs from it)."""
    from importlib.metadata import PackageNotFoundError, version

    wrong = {}
    for name, pinned in _locked().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = None
        if installed != pinned:
            wrong[name] = (pinned, installed)
    assert not wrong, f"installed versions differ from requirements.lock (pinned, installed): {wrong}"
