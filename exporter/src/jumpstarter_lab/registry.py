"""Finding driver classes (exporter side) and driver client classes (client side).

Drivers come from the `jumpstarter_lab.drivers` entry-point group (whose names
include upstream type names such as `jumpstarter_driver_power.driver.MockPower`,
mapped to this project's equivalents) or from a dotted import path: a custom
driver is an ordinary Python package. Clients come from `jumpstarter_lab.clients`,
keyed by the `jumpstarter.dev/client` label; see client.allowlist for the rules.
"""

from __future__ import annotations

import difflib
import functools
import importlib
from importlib.metadata import EntryPoint, entry_points

from .driver import Driver
from .errors import ConfigError

DRIVER_GROUP = "jumpstarter_lab.drivers"
CLIENT_GROUP = "jumpstarter_lab.clients"


@functools.cache
def _group(group: str) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=group)}


def driver_entry_points() -> dict[str, EntryPoint]:
    return _group(DRIVER_GROUP)


def client_entry_points() -> dict[str, EntryPoint]:
    return _group(CLIENT_GROUP)


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


def resolve_driver(type_name: str) -> type[Driver]:
    """The driver class for a config `type`, or ConfigError saying why not."""
    entry = driver_entry_points().get(type_name)
    try:
        cls = entry.load() if entry else import_object(type_name)
    except ImportError as e:
        known = sorted(driver_entry_points())
        close = difflib.get_close_matches(type_name, known, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; run 'jumpstarter-lab drivers' for the list"
        # A module that is simply not there says nothing new; a module that fails to import does.
        absent = isinstance(e, ModuleNotFoundError) and e.name and type_name.startswith(e.name)
        detail = "" if absent or "has no attribute" in str(e) else f" ({e})"
        raise ConfigError(f"unknown driver type '{type_name}'{detail}{hint}") from None
    if not (isinstance(cls, type) and issubclass(cls, Driver)):
        raise ConfigError(f"'{type_name}' is not a jumpstarter.lab driver class")
    return cls
