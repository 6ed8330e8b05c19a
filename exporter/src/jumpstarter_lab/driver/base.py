"""The Driver base, `@export` and `@exportstream`.

A driver is a class implementing an interface; its config parameters are its
dataclass fields (or, for plain classes, its __init__ keywords). Only methods
marked with `@export` (calls, including generators for streaming calls) or
`@exportstream` (async context managers yielding a ByteStream) are reachable
from a client: the mark is an allowlist checked on every call.

`@export(read_only=True)` (or an interface declaring the method read-only) says
the method only observes the board, so Ansible's check mode may call it; the
report lists such methods in the `jumpstarter.lab/read-only` label.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import typing
import uuid as uuidlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

from ..wire import call_values, labels
from ..wire.errors import DriverInvalidArgument, MethodNotFound
from ..wire.handles import ClientStreamHandle
from ..wire.protocol import jumpstarter_pb2
from .context import DriverContext

_MARK = "__jumpstarter_lab_export__"
_READ_ONLY = "__jumpstarter_lab_read_only__"
CALL, STREAMING_CALL, STREAM = "call", "streaming_call", "stream"
_KINDS = {CALL: "method (DriverCall)", STREAMING_CALL: "streaming method (StreamingDriverCall)",
          STREAM: "byte stream (Stream)"}


def export(func=None, *, read_only: bool = False):
    """Make a method callable by clients (DriverCall, or StreamingDriverCall for generators).

    As `@export(read_only=True)`, also declare that calling it changes nothing."""
    if func is None:
        return functools.partial(export, read_only=read_only)
    if inspect.isasyncgenfunction(func) or inspect.isgeneratorfunction(func):
        setattr(func, _MARK, STREAMING_CALL)
    elif inspect.iscoroutinefunction(func) or inspect.isfunction(func):
        setattr(func, _MARK, CALL)
    else:
        raise TypeError(f"@export cannot mark {func!r}")
    if read_only:
        setattr(func, _READ_ONLY, True)
    return func


def exportstream(func):
    """Make an async context manager method that yields a ByteStream openable by clients."""
    setattr(func, _MARK, STREAM)
    return func


@functools.cache
def exported_methods(cls: type) -> dict[str, str]:
    """Name -> kind for every exported method of a driver class (computed once per class)."""
    found = {}
    for name in dir(cls):
        kind = getattr(getattr(cls, name, None), _MARK, None)
        if kind:
            found[name] = kind
    return found


@functools.cache
def read_only_methods(cls: type) -> frozenset[str]:
    """The exported methods of a driver class that only observe: marked `@export(read_only=True)`, or
    declared read-only by one of its interfaces (which list theirs in `_read_only_declared`)."""
    exported = exported_methods(cls)
    declared = getattr(cls, "_read_only_declared", frozenset())
    return frozenset(name for name in exported
                     if name in declared or getattr(getattr(cls, name), _READ_ONLY, False))


class Driver:
    """Base class of exporter-side drivers.

    Subclasses implement `client()` (usually through an interface class) and mark
    their methods. Construction must not touch hardware: a device that is missing
    should fail the call that needs it, with a message naming the device.
    """

    uuid: uuidlib.UUID
    children: dict[str, Driver]
    description: str | None = None
    methods_description: dict[str, str]
    logger: logging.Logger
    context: DriverContext

    @classmethod
    def client(cls) -> str:
        """Import path of the client class, sent as the `jumpstarter.dev/client` label."""
        raise NotImplementedError(f"{cls.__name__} does not name a client class")

    def bind(self, *, uuid: uuidlib.UUID, children: dict[str, Driver] | None = None,
             description: str | None = None, methods_description: dict[str, str] | None = None,
             context: DriverContext | None = None) -> Driver:
        """Place this instance in a tree; called by whoever builds the tree (children are bound first,
        with the same context)."""
        self.uuid = uuid
        self.context = context or DriverContext()
        builtin = {name: child.bind(uuid=uuidlib.uuid5(uuid, name), context=self.context)
                   for name, child in self.make_children().items()}
        self.children = builtin | dict(children or {})
        self.description = description
        self.methods_description = dict(methods_description or {})
        self.logger = logging.getLogger(f"driver.{type(self).__name__}")
        return self

    def make_children(self) -> dict[str, Driver]:
        """Children a driver brings itself (a board's power, console...), beside configured ones."""
        return {}

    def extra_labels(self) -> dict[str, str]:
        return {}

    def reset(self) -> None:
        for child in self.children.values():
            child.reset()

    def close(self) -> None:
        """Release what the driver holds. Called once when its session ends."""
        for child in self.children.values():
            child.close()

    def console_output(self):
        """A console's output, as a streams.Fanout the exporter records a lease's console log from; None
        for a driver that is no console."""
        return None

    # --- what the exporter needs -------------------------------------------------

    def walk(self, parent: Driver | None = None, name: str | None = None) -> Iterator[tuple[Driver, Driver | None, str | None]]:
        """Depth-first (self, parent, name) for the whole subtree, parents before children."""
        yield self, parent, name
        for child_name, child in self.children.items():
            yield from child.walk(self, child_name)

    def report(self, parent: Driver | None, name: str | None) -> jumpstarter_pb2.DriverInstanceReport:
        report_labels = dict(self.extra_labels())
        report_labels[labels.CLIENT] = self.client()
        if name is not None:
            report_labels[labels.NAME] = name
        methods = {m: _first_line(getattr(type(self), m).__doc__) for m in exported_methods(type(self))}
        methods = {m: d for m, d in methods.items() if d} | self.methods_description
        read_only = read_only_methods(type(self))
        if read_only:
            report_labels[labels.READ_ONLY] = ",".join(sorted(read_only))
        report = jumpstarter_pb2.DriverInstanceReport(uuid=str(self.uuid), labels=report_labels,
                                                      methods_description=methods)
        if parent is not None:
            report.parent_uuid = str(parent.uuid)
        description = self.description or _first_line(type(self).__doc__)
        if description:
            report.description = description
        return report

    def _exported(self, name: str, kind: str):
        exported = exported_methods(type(self))
        if name not in exported or name.startswith("_"):
            raise MethodNotFound(f"{type(self).__name__} has no exported method '{name}'"
                                 f" (it has: {', '.join(sorted(exported)) or 'none'})")
        if exported[name] != kind:
            raise MethodNotFound(f"{type(self).__name__}.{name} is a {_KINDS[exported[name]]}, not a {_KINDS[kind]}")
        return getattr(self, name)

    async def call(self, name: str, args: list[Any]) -> Any:
        method = self._exported(name, CALL)
        bound = _bind(method, name, args)
        if inspect.iscoroutinefunction(method):
            return await method(*bound)
        return await asyncio.to_thread(method, *bound)

    async def streaming_call(self, name: str, args: list[Any]) -> AsyncIterator[Any]:
        method = self._exported(name, STREAMING_CALL)
        bound = _bind(method, name, args)
        if inspect.isasyncgenfunction(method):
            async for item in method(*bound):
                yield item
            return
        iterator = method(*bound)
        done = object()
        try:
            while (item := await asyncio.to_thread(next, iterator, done)) is not done:
                yield item
        finally:
            iterator.close()

    @contextlib.asynccontextmanager
    async def resource(self, handle: dict | str | ClientStreamHandle):
        """The byte stream a client pushed for this call (see DriverClient.resource_async)."""
        if not isinstance(handle, ClientStreamHandle):
            handle = ClientStreamHandle.parse(handle)
        stream = self.context.take_resource(handle.uuid)
        try:
            yield stream
        finally:
            await stream.aclose()

    @contextlib.asynccontextmanager
    async def open_stream(self, name: str):
        method = self._exported(name, STREAM)
        async with method() as stream:
            yield stream


def _first_line(doc: str | None) -> str:
    return inspect.cleandoc(doc).splitlines()[0] if doc and doc.strip() else ""


@functools.cache
def _signature(function) -> tuple[inspect.Signature, dict[str, Any]]:
    """Signature (without self) and type hints of an exported function, computed once."""
    signature = inspect.signature(function)
    signature = signature.replace(parameters=list(signature.parameters.values())[1:])
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # unresolvable annotations: pass arguments as they came
        hints = {}
    return signature, hints


def _bind(method, name: str, args: list[Any]) -> list[Any]:
    """Check the argument count, shape each argument to the method's type hints and check it fits them
    (DriverInvalidArgument naming the parameter, before the driver sees anything)."""
    signature, hints = _signature(method.__func__)
    if not args and not signature.parameters:
        return []  # the common case of a call without arguments
    try:
        bound = signature.bind(*args)
    except TypeError as e:
        params = ", ".join(str(p.replace(annotation=inspect.Parameter.empty)) for p in signature.parameters.values())
        raise DriverInvalidArgument(f"wrong arguments for {name}({params}): {e}") from None
    shaped = []
    for param_name, value in bound.arguments.items():
        param = signature.parameters[param_name]
        hint = hints.get(param_name, Any)
        values = value if param.kind is inspect.Parameter.VAR_POSITIONAL else [value]
        for item in values:
            try:
                item = call_values.coerce(item, hint)
            except (TypeError, ValueError) as e:
                raise DriverInvalidArgument(f"{name}() argument '{param_name}': {e}") from None
            problem = call_values.mismatch(item, hint)
            if problem:
                raise DriverInvalidArgument(f"{name}() argument '{param_name}': {problem}")
            shaped.append(item)
    return shaped
