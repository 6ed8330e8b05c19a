"""The driver layer: the Driver base, `@export` / `@exportstream`, the per-session context, the registry.

A driver is a class implementing an interface; its config parameters are its dataclass
fields (or its __init__ keywords). Drivers import this layer and the wire layer, never
the exporter that serves them.
"""

from .base import CALL, STREAM, STREAMING_CALL, Composite, CompositeInterface, Driver, Proxy, export, exported_methods, exportstream
from .context import DriverContext

__all__ = ["CALL", "STREAM", "STREAMING_CALL", "Composite", "CompositeInterface", "Driver", "DriverContext", "Proxy",
           "export", "exported_methods", "exportstream"]
