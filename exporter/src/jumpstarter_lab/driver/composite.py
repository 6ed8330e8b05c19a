"""Composite (a node that groups children) and Proxy (a second name for a driver of the tree)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from ..wire import labels, names
from ..wire.protocol import jumpstarter_pb2
from .base import Driver
from .interface import Interface


class CompositeInterface(Interface):
    """A node grouping child drivers; it exports nothing of its own."""

    label = labels.COMPOSITE


class Composite(CompositeInterface, Driver):
    """A node grouping child drivers."""


class Proxy(Driver):
    """Another driver of the tree, reachable under a second name (a config entry with `ref`)."""

    def __init__(self, ref: str):
        self.ref = ref
        self.target: Driver | None = None

    @classmethod
    def client(cls) -> str:
        return labels.PROXY  # never sent: a proxy reports its target's label

    def resolve(self, root: Driver, where: str) -> None:
        try:
            node = names.walk_path(root, self.ref)
        except LookupError as e:
            raise ValueError(f"{where}: ref '{self.ref}' names no driver in the export tree: {e}") from None
        if isinstance(node, Proxy):
            raise ValueError(f"{where}: ref '{self.ref}' is itself a ref; name the driver it refers to")
        self.target = node

    def report(self, parent: Driver | None, name: str | None) -> jumpstarter_pb2.DriverInstanceReport:
        report = self.target.report(parent, name)  # the target's client label, methods and description
        report.uuid = str(self.uuid)
        return report

    async def call(self, name: str, args: list[Any]) -> Any:
        return await self.target.call(name, args)

    async def streaming_call(self, name: str, args: list[Any]) -> AsyncIterator[Any]:
        async for item in self.target.streaming_call(name, args):
            yield item

    @contextlib.asynccontextmanager
    async def open_stream(self, name: str):
        async with self.target.open_stream(name) as stream:
            yield stream

    def close(self) -> None:
        pass  # the target is closed where it stands in the tree
