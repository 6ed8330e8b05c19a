"""Which driver client classes a client may load.

An exporter's report names a client class per driver (`jumpstarter.dev/client`).
For the standard interfaces that label is upstream's class path; this project's
packages map those labels to their own classes (entry points in
`jumpstarter_lab.clients`). Either way the class that would be imported is
checked against the allowlist first, and a class that is not allowed is never
imported: a remote exporter cannot make a client run code of its choosing.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable

from ..wire.entrypoints import CLIENT_GROUP, group, import_object
from ..wire.errors import ClientNotAllowed, MissingClient

DEFAULT_ALLOW = ("jumpstarter_lab", "jumpstarter_lab_*")
ENV_ALLOW = "JMP_DRIVERS_ALLOW"  # the same variable upstream's client reads


class Allowlist:
    def __init__(self, patterns: Iterable[str] | None = None, *, from_env: bool = True):
        self.patterns = list(DEFAULT_ALLOW if patterns is None else patterns)
        if from_env and os.environ.get(ENV_ALLOW):
            self.patterns += [p.strip() for p in os.environ[ENV_ALLOW].split(",") if p.strip()]

    def permits(self, class_path: str) -> bool:
        """True when the class's package (or its full path) matches a pattern."""
        package = class_path.split(".", 1)[0].split(":", 1)[0]
        return any(fnmatch.fnmatchcase(package, p) or fnmatch.fnmatchcase(class_path, p) for p in self.patterns)

    def target(self, label: str) -> str:
        """The class path a label resolves to, before any import."""
        entry = group(CLIENT_GROUP).get(label)
        return entry.value.replace(":", ".") if entry else label

    def load(self, label: str) -> type:
        target = self.target(label)
        if not self.permits(target):
            raise ClientNotAllowed(
                f"client class '{target}' is not in the driver allowlist ({', '.join(self.patterns)}); "
                f"allow its package with --allow or {ENV_ALLOW} if you trust it")
        try:
            return import_object(target)
        except ImportError as e:
            raise MissingClient(f"client class '{target}' is allowed but not installed ({e})") from None
