"""The one client library: the CLI, modules, inventory and connection plugins all use it.

connect / connect_async reach an exporter (a socket or HOST:PORT); ClientConfig and
ControllerClient reach a controller; connect_lease reaches a leased exporter through it.
"""

from .allowlist import Allowlist
from .base import DriverClient, UnavailableClient
from .config import ClientConfig, load_client_config
from .connect import connect, connect_async
from .controller import ControllerClient, LeaseStatus, exporter_record, lease_record
from .tunnel import connect_lease, connect_lease_async

__all__ = ["Allowlist", "ClientConfig", "ControllerClient", "DriverClient", "LeaseStatus", "UnavailableClient",
           "connect", "connect_async", "connect_lease", "connect_lease_async", "exporter_record", "lease_record",
           "load_client_config"]
