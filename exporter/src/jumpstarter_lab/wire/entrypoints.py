"""Names that resolve to classes: this project's entry-point groups and dotted import paths."""

from __future__ import annotations

import functools
import importlib
from importlib.metadata import EntryPoint, entry_points

DRIVER_GROUP = "jumpstarter_lab.drivers"  # config `type` names -> driver classes
CLIENT_GROUP = "jumpstarter_lab.clients"  # `jumpstarter.dev/client` labels -> client classes


@functools.cache
def group(name: str) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=name)}


def import_object(path: str):
    """Import `package.module.Name` (or `package.module:Name`)."""
    module_name, sep, attr = path.replace(":", ".").rpartition(".")
    if not sep or not module_name:
        raise ImportError(f"'{path}' is not a dotted path")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ImportError(f"module '{module_name}' has no attribute '{attr}'") from None
