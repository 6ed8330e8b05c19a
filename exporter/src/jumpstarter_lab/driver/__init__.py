"""The driver layer: the Driver base, `@export` / `@exportstream`, interfaces, the per-session
context, Composite and Proxy, and the registry of driver types.

Drivers import this layer and the wire layer, never the exporter that serves them.
"""

from .base import CALL, STREAM, STREAMING_CALL, Driver, export, exported_methods, exportstream, read_only_methods
from .composite import Composite, CompositeInterface, Proxy
from .context import DriverContext
from .interface import Interface, Method, call, stream, streaming_call

__all__ = ["CALL", "STREAM", "STREAMING_CALL", "Composite", "CompositeInterface", "Driver", "DriverContext",
           "Interface", "Method", "Proxy", "call", "export", "exported_methods", "exportstream",
           "read_only_methods", "stream", "streaming_call"]
