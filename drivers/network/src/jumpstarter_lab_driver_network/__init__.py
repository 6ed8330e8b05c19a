"""Network: byte streams to TCP services next to the exporter, and an echo for tests."""
