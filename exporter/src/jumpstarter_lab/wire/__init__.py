"""The wire layer: what every side of a lab agrees on, and nothing that only one side does.

The protocol (generated), the error table, driver-call values, resource names, labels,
metadata keys, router frames, stream and resource handles, channel construction, and
the YAML documents both sides read. Client, exporter, controller and drivers import it;
it imports none of them.
"""
