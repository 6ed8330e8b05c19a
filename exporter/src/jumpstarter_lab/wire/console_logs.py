"""The console-log service (ours; upstream has none): an exporter hands the controller the console log
of a lease that ended, and the lease's client fetches it there, after the lease, as labgrid and LAVA
leave the boot log of a failed run behind.

No generated code: its messages are protobuf's well-known BytesValue and StringValue.

    Put  (exporter)  stream BytesValue -> Empty      the lease named in metadata LEASE
    Get  (client)    StringValue (lease) -> stream BytesValue
"""

from __future__ import annotations

from google.protobuf import empty_pb2, wrappers_pb2

SERVICE = "jumpstarter_lab.v1.ConsoleLogService"
PUT, GET = f"/{SERVICE}/Put", f"/{SERVICE}/Get"
LEASE = "x-jumpstarter-lab-lease"  # metadata of Put: whose log it is
CHUNK = 1 << 20  # bytes per message
LIMIT = 8 << 20  # bytes a lease's log keeps at most (its start and its end; what lies between is dropped)
KEEP_DAYS = 7  # how long the controller keeps a log

Bytes, Name, Empty = wrappers_pb2.BytesValue, wrappers_pb2.StringValue, empty_pb2.Empty


def chunks(data: bytes):
    """`data` as the messages of a stream."""
    for start in range(0, len(data), CHUNK):
        yield Bytes(value=data[start:start + CHUNK])
