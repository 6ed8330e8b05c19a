"""jumpstarter.lab: drivers, exporter, client library and CLI shared by every side."""

__version__ = "0.1.0"
