"""The roles install pinned dependencies (roles/venv/files/constraints.txt): exactly the versions this project
is tested with, covering every dependency of the distributions they install, the controller's extra included."""

from __future__ import annotations

import re
from importlib.metadata import distribution, version

from packaging.requirements import Requirement

from helpers import ROOT

CONSTRAINTS = ROOT / "roles" / "venv" / "files" / "constraints.txt"
OURS = {"jumpstarter-lab", "jumpstarter-lab-driver-power", "jumpstarter-lab-driver-serial",
        "jumpstarter-lab-driver-network", "jumpstarter-lab-driver-storage", "jumpstarter-lab-driver-gpio",
        "jumpstarter-lab-driver-shell", "jumpstarter-lab-driver-sim", "jumpstarter-lab-driver-netboot",
        "jumpstarter-lab-driver-uboot"}
EXTRAS = {"jumpstarter-lab": ("controller",), "psycopg": ("binary",)}  # what the roles ask for


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    lines = [line.split("#")[0].strip() for line in CONSTRAINTS.read_text().splitlines()]
    return {canonical(name): value for name, value in (line.split("==") for line in lines if line)}


def requirements_of(name: str) -> set[str]:
    found = set()
    extras = EXTRAS.get(name, ())
    for text in distribution(name).requires or ():
        requirement = Requirement(text)
        if requirement.marker and not any(requirement.marker.evaluate({"extra": e}) for e in extras or ("",)):
            continue
        found.add(canonical(requirement.name))
    return found


def test_constraints_are_the_tested_versions():
    for name, pinned in pins().items():
        assert version(name) == pinned, f"{name}: constraints.txt pins {pinned}, the tests run {version(name)}"


def test_constraints_cover_every_dependency_of_what_the_roles_install():
    seen, todo = set(), set(OURS)
    while todo:
        name = todo.pop()
        seen.add(name)
        todo |= requirements_of(name) - seen
    assert seen - OURS == set(pins()), f"unpinned: {sorted(seen - OURS - set(pins()))}, " \
                                       f"pinned but unused: {sorted(set(pins()) - (seen - OURS))}"
