"""The exporter role installs pinned dependencies: its constraints are exactly the versions this project is
tested with, and cover every dependency of the distributions it installs."""

from __future__ import annotations

import re
from importlib.metadata import distribution, version

from helpers import ROOT

CONSTRAINTS = ROOT / "roles" / "exporter" / "files" / "constraints.txt"
OURS = {"jumpstarter-lab", "jumpstarter-lab-driver-power", "jumpstarter-lab-driver-serial",
        "jumpstarter-lab-driver-network", "jumpstarter-lab-driver-storage", "jumpstarter-lab-driver-gpio",
        "jumpstarter-lab-driver-shell", "jumpstarter-lab-driver-sim"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    lines = [line.split("#")[0].strip() for line in CONSTRAINTS.read_text().splitlines()]
    return {canonical(name): value for name, value in (line.split("==") for line in lines if line)}


def requirements_of(name: str) -> set[str]:
    found = set()
    for requirement in distribution(name).requires or ():
        if "extra ==" in requirement:
            continue  # the controller's extra is not installed on exporter hosts
        found.add(canonical(re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)))
    return found


def test_constraints_are_the_tested_versions():
    for name, pinned in pins().items():
        assert version(name) == pinned, f"{name}: constraints.txt pins {pinned}, the tests run {version(name)}"


def test_constraints_cover_every_dependency_of_the_default_packages():
    seen, todo = set(), set(OURS)
    while todo:
        name = todo.pop()
        seen.add(name)
        todo |= requirements_of(name) - seen
    assert seen - OURS == set(pins()), f"unpinned: {sorted(seen - OURS - set(pins()))}, " \
                                       f"pinned but unused: {sorted(set(pins()) - (seen - OURS))}"
