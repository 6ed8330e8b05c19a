"""Typed stream requests and resource handles, as JSON in upstream's shape.

A RouterService.Stream call to an exporter names what it opens in its `request`
metadata: a driver's byte stream (`DriverStreamRequest`) or a byte source the client
pushes for a later driver call (`ResourceStreamRequest`). For the latter the exporter
answers with a `ClientStreamHandle`, which the client passes to the driver call as an
argument (a dict) and the driver redeems for the stream.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Union

from .errors import DriverInvalidArgument


@dataclass(frozen=True)
class DriverStreamRequest:
    uuid: str
    method: str = "connect"
    kind: str = "driver"


@dataclass(frozen=True)
class ResourceStreamRequest:
    uuid: str
    x_jmp_content_encoding: str | None = None
    kind: str = "resource"


@dataclass(frozen=True)
class ClientStreamHandle:
    uuid: str
    x_jmp_content_encoding: str | None = None
    kind: str = "client_stream"

    @classmethod
    def parse(cls, value: Any) -> ClientStreamHandle:
        """A handle as a driver call receives it: a dict, or its JSON text."""
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise DriverInvalidArgument(f"not a client stream resource handle: {value[:80]!r}") from None
        if not isinstance(value, dict) or value.get("kind") != "client_stream" or not isinstance(value.get("uuid"), str):
            raise DriverInvalidArgument(f"not a client stream resource handle: {str(value)[:80]!r}")
        encoding = value.get("x_jmp_content_encoding")
        return cls(uuid=value["uuid"], x_jmp_content_encoding=encoding if isinstance(encoding, str) else None)


StreamRequest = Union[DriverStreamRequest, ResourceStreamRequest]


def to_json(handle: DriverStreamRequest | ResourceStreamRequest | ClientStreamHandle) -> str:
    return json.dumps(asdict(handle))


def to_dict(handle: ClientStreamHandle) -> dict:
    return asdict(handle)


def parse_stream_request(text: str | None) -> StreamRequest:
    """The `request` metadata of a Stream call; ValueError saying what is wrong with it."""
    try:
        data = json.loads(text or "")
    except ValueError:
        raise ValueError("Stream needs a 'request' metadata entry naming a driver stream (JSON)") from None
    if not isinstance(data, dict) or not isinstance(data.get("uuid"), str):
        raise ValueError("Stream's 'request' metadata names no driver uuid")
    kind = data.get("kind")
    if kind == "driver":
        method = data.get("method", "connect")
        if not isinstance(method, str):
            raise ValueError("Stream's 'request' metadata has a method that is not a name")
        return DriverStreamRequest(uuid=data["uuid"], method=method)
    if kind == "resource":
        encoding = data.get("x_jmp_content_encoding")
        return ResourceStreamRequest(uuid=data["uuid"], x_jmp_content_encoding=encoding if isinstance(encoding, str) else None)
    raise ValueError(f"unknown stream kind {kind!r} in Stream's 'request' metadata")
