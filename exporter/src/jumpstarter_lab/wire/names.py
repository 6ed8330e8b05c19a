"""Resource names as the protocol spells them (`namespaces/NS/leases/NAME`), dotted driver paths, and
the exporter statuses as words."""

from __future__ import annotations

import re
from typing import Protocol

from .errors import DriverInvalidArgument, DriverNotFound

MAX_NAME = 253
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,251}[A-Za-z0-9])?")


def check(name: str, what: str) -> str:
    """`name` if it can be a namespace, lease, exporter or client name (as a Kubernetes object's:
    letters, digits, '-', '_', '.', starting and ending with a letter or digit, at most 253
    characters; never a '/', which would make its resource name unreadable); else
    DriverInvalidArgument saying so."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        shown = repr(name if not isinstance(name, str) or len(name) <= 40 else name[:37] + "...")
        raise DriverInvalidArgument(f"{what} {shown} is not a valid name: letters, digits, '-', '_' and '.', "
                                    f"starting and ending with a letter or digit, at most {MAX_NAME} characters")
    return name


def namespace(ns: str) -> str:
    return f"namespaces/{ns}"


def lease(ns: str, name: str) -> str:
    return f"namespaces/{ns}/leases/{name}"


def exporter(ns: str, name: str) -> str:
    return f"namespaces/{ns}/exporters/{name}"


def client(ns: str, name: str) -> str:
    return f"namespaces/{ns}/clients/{name}"


def short(resource: str) -> str:
    """`namespaces/ns/leases/x` -> `x` (a bare name passes through)."""
    return resource.rsplit("/", 1)[-1]


class Node(Protocol):
    children: dict


def walk_path(root: Node, dotted: str, root_name: str = "the exporter") -> Node:
    """The node at a dotted path (`board.power`) below `root`; DriverNotFound naming the missing part."""
    node, where = root, root_name
    for part in [p for p in dotted.split(".") if p]:
        if part not in node.children:
            raise DriverNotFound(f"no driver '{part}' under {where} (has: {', '.join(node.children) or 'none'})")
        node, where = node.children[part], f"'{part}'"
    return node


def status_name(value: int) -> str:
    """`EXPORTER_STATUS_LEASE_READY` -> `lease_ready`: an ExporterStatus as the CLI and the inventory show it."""
    from .protocol import common_pb2

    try:
        return common_pb2.ExporterStatus.Name(value).removeprefix("EXPORTER_STATUS_").lower()
    except ValueError:
        return "unspecified"
