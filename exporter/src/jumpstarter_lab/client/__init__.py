"""The one client library: the CLI, modules, inventory and connection plugins all use it."""

from .allowlist import Allowlist
from .connect import connect, connect_async
from .core import DriverClient, UnavailableClient

__all__ = ["Allowlist", "DriverClient", "UnavailableClient", "connect", "connect_async"]
