"""Which driver client classes a client may load, and from which installed code.

An exporter's report names a client class per driver (`jumpstarter.dev/client`).
For the standard interfaces that label is upstream's class path; this project's
packages map those labels to their own classes (entry points in
`jumpstarter_lab.clients`). The class that would be imported is checked first,
and a class that is not allowed is never imported: a remote exporter cannot make
a client run code of its choosing.

- Trusted by default: exactly the classes installed distributions declare as
  entry points, and only when their package would be imported from that
  distribution's own files (a same-named module earlier on the path is refused).
- Patterns (`--allow`, $JMP_DRIVERS_ALLOW, a client config's `drivers.allow`)
  trust further packages or class paths by name; `unsafe` trusts any.
- Pins (`drivers.pins`: distribution -> `sha256:...`, printed by
  `jumpstarter-lab drivers pins`): when any is given, a class is loaded only
  from a pinned distribution whose files hash to its pin.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Mapping

from ..wire.entrypoints import CLIENT_GROUP, group, import_object
from ..wire.errors import ClientNotAllowed, MissingClient
from . import provenance

ENV_ALLOW = "JMP_DRIVERS_ALLOW"  # the same variable upstream's client reads; "UNSAFE" trusts any class
UNSAFE = "UNSAFE"

# The client packages of the upstream interfaces this project's drivers serve: their reports name these
# classes. New client configs allow them, so that upstream's client (`jmp shell`, `j`) loads its own classes for
# them (it trusts nothing by default); this project's client loads its declared classes for those labels, and
# upstream's only where its own are not installed. Kept in step with the driver families' declarations by
# tests/unit/test_allowlist.py.
UPSTREAM_INTERFACES = (
    "jumpstarter_driver_composite.client.*",
    "jumpstarter_driver_gpiod.client.*",
    "jumpstarter_driver_network.client.*",
    "jumpstarter_driver_opendal.client.*",
    "jumpstarter_driver_power.client.*",
    "jumpstarter_driver_pyserial.client.*",
    "jumpstarter_driver_shell.client.*",
    "jumpstarter_driver_uboot.client.*",
)


class Allowlist:
    def __init__(self, patterns: Iterable[str] | None = None, *, pins: Mapping[str, str] | None = None,
                 unsafe: bool = False, from_env: bool = True):
        self.patterns = list(patterns or ())
        if from_env and os.environ.get(ENV_ALLOW):
            self.patterns += [p.strip() for p in os.environ[ENV_ALLOW].split(",") if p.strip()]
        self.unsafe = unsafe or UNSAFE in self.patterns
        self.pins = {provenance.canonical(name): value.strip() for name, value in (pins or {}).items()}
        self._verified: set[str] = set()

    def describe(self) -> str:
        trusted = ["installed entry points"] + self.patterns
        return ", ".join(trusted) + ("; pinned" if self.pins else "")

    def target(self, label: str) -> str:
        """The class path a label resolves to, before any import."""
        entry = group(CLIENT_GROUP).get(label)
        return entry.value.replace(":", ".") if entry else label

    def permits(self, class_path: str) -> bool:
        """True for a declared class, or one whose package (or full path) matches a pattern."""
        if class_path in provenance.declared_clients() or self.unsafe:
            return True
        package = class_path.split(".", 1)[0]
        return any(fnmatch.fnmatchcase(package, p) or fnmatch.fnmatchcase(class_path, p) for p in self.patterns)

    def load(self, label: str) -> type:
        target = self.target(label)
        if not self.permits(target):
            raise ClientNotAllowed(
                f"client class '{target}' is not in the driver allowlist ({self.describe()}); "
                f"allow its package with --allow or {ENV_ALLOW} if you trust it")
        self._check_source(target)
        try:
            return import_object(target)
        except ImportError as e:
            raise MissingClient(f"client class '{target}' is allowed but not installed ({e})") from None

    def _check_source(self, target: str) -> None:
        """Refuse code that is not the declaring distribution's, or that does not match its pin."""
        top = target.split(".", 1)[0]
        location = provenance.package_location(top)
        if location is None:
            return  # nothing to import: load() reports it missing
        declared = provenance.declared_clients().get(target)
        owner = declared or provenance.owner_of(top)
        if declared and not provenance.belongs_to(location, declared):
            raise ClientNotAllowed(f"client class '{target}' would be imported from {location}, which is not "
                                   f"part of the installed distribution '{declared}' that declares it")
        if not self.pins or owner == provenance.SELF:
            return
        if owner is None or not provenance.belongs_to(location, owner):
            raise ClientNotAllowed(f"client class '{target}' comes from {location}, which no installed "
                                   "distribution holds, so it cannot match a pin")
        if owner in self._verified:
            return
        pin = self.pins.get(owner)
        if pin is None:
            raise ClientNotAllowed(f"client class '{target}' is from distribution '{owner}', which has no pin "
                                   f"(pinned: {', '.join(sorted(self.pins))})")
        actual = provenance.digest(owner)
        if actual != pin:
            raise ClientNotAllowed(f"distribution '{owner}' does not match its pin: its files hash to {actual}, "
                                   f"the pin is {pin}")
        self._verified.add(owner)
