"""requirements.lock is the environment CI tests: it satisfies pyproject.toml, holds every dependency of what it
pins (for the extras asked for), the installed environment is exactly it, and the README installs through it."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def locked_versions() -> dict[str, Version]:
    """name → pinned version, for the lines whose markers hold on this machine (a universal lock has per-platform
    and per-Python lines)."""
    pins: dict[str, Version] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"not a pin: {line}"
        name = canonicalize_name(requirement.name)
        assert name not in pins, f"{name} pinned twice for this machine"
        pins[name] = Version(specifier.version)
    return pins


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def applies(requirement: Requirement, extras: set[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({**default_environment(), "extra": extra}) for extra in extras or {""})


@pytest.fixture(scope="module")
def pins() -> dict[str, Version]:
    return locked_versions()


def test_every_pyproject_requirement_is_pinned_within_its_range(pins):
    requirements = [Requirement(r) for r in project()["dependencies"]]
    for extra, entries in project()["optional-dependencies"].items():
        requirements += [(extra, Requirement(r)) for r in entries]
    for entry in requirements:
        extra, requirement = entry if isinstance(entry, tuple) else ("", entry)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} ({extra or 'dependencies'}) is not in requirements.lock: refresh it"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name]}, outside pyproject.toml's {requirement}: refresh the lock"
        )


def test_policy_pins_are_in_the_lock(pins):
    for line in (ROOT / "constraints.in").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            assert requirement.specifier.contains(pins[canonicalize_name(requirement.name)]), line


def test_the_lock_is_closed_and_is_what_is_installed(pins):
    """From pyproject's requirements (with their extras), every dependency of every installed package is pinned,
    the pin satisfies what asks for it, and the installed version is the pinned one (local labels such as +cpu
    aside: the README installs torch's CPU build first)."""
    roots = [Requirement(r) for r in project()["dependencies"]]
    for entries in project()["optional-dependencies"].values():
        roots += [Requirement(r) for r in entries]
    pending = [(requirement, "pyproject.toml") for requirement in roots]
    visited: set[tuple[str, frozenset[str]]] = set()
    while pending:
        requirement, asked_by = pending.pop()
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} (asked for by {asked_by}: {requirement}) is missing from requirements.lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{asked_by} asks for {requirement}; the lock pins {pins[name]}"
        )
        key = (name, frozenset(requirement.extras))
        if key in visited:
            continue
        visited.add(key)
        installed = Version(metadata.version(name))
        assert Version(installed.public) == pins[name], (
            f"{name} {installed} is installed, the lock pins {pins[name]}: install with `-c requirements.lock`"
        )
        for line in metadata.requires(name) or []:
            dependency = Requirement(line)
            if applies(dependency, set(requirement.extras)):
                pending.append((dependency, f"{name} {installed}"))


def test_readme_commands_install_through_the_lock():
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block, "the README starts with a bash block of two commands"
    commands = block.group(1).strip().splitlines()
    assert len(commands) == 2, commands
    for command in commands:
        torch_first = command.index("pip install torch==2.13.0")
        assert command.index("pip install -c requirements.lock -e ") > torch_first, command
    assert commands[0].endswith("diffgraph serve") and commands[1].endswith("python -m pytest -q tests")


def test_tests_cite_only_files_in_the_repository():
    """Provenance notes in tests name files a reader of this repository can open."""
    for test_file in sorted((ROOT / "tests").rglob("*.py")):
        for cited in re.findall(r"\b([A-Z][A-Z_]+\.md)\b", test_file.read_text()):
            assert list(ROOT.rglob(cited)), f"{test_file.name} cites {cited}, which is not in the repository"
