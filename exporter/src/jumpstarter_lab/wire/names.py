"""Resource names as the protocol spells them (`namespaces/NS/leases/NAME`), and dotted driver paths."""

from __future__ import annotations

from typing import Protocol

from .errors import DriverNotFound


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
