"""The exporter: serves a driver tree per session, locally, standalone or for a controller's leases."""

from .config import ExporterConfig, load, load_text
from .server import Exporter, Listen, parse_address

__all__ = ["Exporter", "ExporterConfig", "Listen", "load", "load_text", "parse_address"]
