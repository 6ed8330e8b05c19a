"""Network: byte streams to TCP, UDP and Unix-socket services next to the exporter, an echo
for tests, and client-side port forwarding (`adapters`) onto any of them."""
