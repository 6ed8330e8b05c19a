"""Interfaces: the contract a driver family's drivers and clients share.

An interface class names its client label and declares its methods with their kind,
not their code, so a driver may implement each one sync or async:

    class PowerInterface(Interface):
        label = labels.POWER
        on = call("Power on")
        read = streaming_call("Readings of voltage and current", read_only=True)

A driver class deriving from an interface must export every declared method with the
declared kind (`@export` for calls and streaming calls, `@exportstream` for streams);
this is checked when the class is defined, so a missing method is an error at import,
not at a client's call. A base class that leaves methods to its subclasses says so with
`partial=True` (`class ImageStorage(StorageMuxInterface, Driver, partial=True)`).
A method declared `read_only=True` only observes the board, in every driver of the
interface (Ansible's check mode calls it).
"""

from __future__ import annotations

from typing import ClassVar

from .base import CALL, STREAM, STREAMING_CALL, Driver, exported_methods

_WORDS = {CALL: "@export method", STREAMING_CALL: "@export generator (a streaming call)",
          STREAM: "@exportstream context manager"}


class Method:
    """One method an interface requires: its kind and what it does."""

    def __init__(self, kind: str, doc: str = "", read_only: bool = False):
        self.kind, self.doc, self.read_only = kind, doc, read_only
        self.name = ""

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.kind} {self.name}: {self.doc}>"


def call(doc: str = "", *, read_only: bool = False) -> Method:
    """A method called with DriverCall (a plain or async function marked @export)."""
    return Method(CALL, doc, read_only)


def streaming_call(doc: str = "", *, read_only: bool = False) -> Method:
    """A method called with StreamingDriverCall (a generator or async generator marked @export)."""
    return Method(STREAMING_CALL, doc, read_only)


def stream(doc: str = "") -> Method:
    """A byte stream opened with RouterService.Stream (an async context manager marked @exportstream)."""
    return Method(STREAM, doc)


class Interface:
    """Base of interface classes (see the module's docstring)."""

    label: ClassVar[str]  # the `jumpstarter.dev/client` label: upstream's client class for the interface
    _read_only_declared: ClassVar[frozenset[str]] = frozenset()  # what read_only_methods() adds to the marks

    def __init_subclass__(cls, partial: bool = False, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._read_only_declared = frozenset(name for name, method in cls.methods().items() if method.read_only)
        if not issubclass(cls, Driver) or partial:
            return
        exported = exported_methods(cls)
        for name, method in cls.methods().items():
            if exported.get(name) != method.kind:
                owner = next(base.__name__ for base in cls.__mro__ if isinstance(base.__dict__.get(name), Method))
                have = f"it has a {_WORDS[exported[name]]}" if name in exported else "it has none"
                raise TypeError(f"{cls.__qualname__} implements {owner} but does not export '{name}' as an "
                                f"{_WORDS[method.kind]} ({have}); implement it or declare the class partial=True")

    @classmethod
    def client(cls) -> str:
        return cls.label

    @classmethod
    def methods(cls) -> dict[str, Method]:
        """Every method the interfaces of this class declare, by name."""
        found: dict[str, Method] = {}
        for base in reversed(cls.__mro__):
            found.update({name: value for name, value in vars(base).items() if isinstance(value, Method)})
        return found
