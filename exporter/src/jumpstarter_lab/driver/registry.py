"""Finding driver classes for a config's `type`.

Drivers come from the `jumpstarter_lab.drivers` entry-point group (whose names include
upstream type names such as `jumpstarter_driver_power.driver.MockPower`, mapped to
this project's equivalents) or from a dotted import path: a custom driver is an
ordinary Python package.
"""

from __future__ import annotations

import difflib
from importlib.metadata import EntryPoint

from ..wire.entrypoints import DRIVER_GROUP, group, import_object
from ..wire.errors import ConfigError
from .base import Driver


def driver_entry_points() -> dict[str, EntryPoint]:
    return group(DRIVER_GROUP)


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
