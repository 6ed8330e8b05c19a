"""Interfaces are checked when a driver class is defined: a missing or wrong-kind method is an error
at import, not at a client's call; sync and async implementations are both accepted."""

from __future__ import annotations

import contextlib

import pytest

from jumpstarter_lab.driver import Driver, Interface, call, export, exportstream, stream, streaming_call
from jumpstarter_lab.wire import labels


class Fan(Interface):
    label = labels.POWER
    on = call("Spin")
    read = streaming_call("Speeds")
    wind = stream("Air")


def test_sync_and_async_implementations_both_satisfy_an_interface():
    class AsyncFan(Fan, Driver):
        @export
        async def on(self) -> None: ...

        @export
        async def read(self):
            yield 1

        @exportstream
        @contextlib.asynccontextmanager
        async def wind(self):
            yield None

    class SyncFan(Fan, Driver):
        @export
        def on(self) -> None: ...

        @export
        def read(self):
            yield 1

        @exportstream
        @contextlib.asynccontextmanager
        async def wind(self):
            yield None

    assert AsyncFan.client() == SyncFan.client() == labels.POWER
    assert set(Fan.methods()) == set(SyncFan.methods()) == {"on", "read", "wind"}


def test_a_missing_method_fails_the_class_definition():
    with pytest.raises(TypeError, match="HalfFan implements Fan but does not export 'read' as an @export generator"):
        class HalfFan(Fan, Driver):
            @export
            def on(self) -> None: ...

            @exportstream
            @contextlib.asynccontextmanager
            async def wind(self):
                yield None


def test_a_method_of_the_wrong_kind_or_not_exported_fails_the_class_definition():
    with pytest.raises(TypeError, match=r"does not export 'on' as an @export method \(it has a @exportstream"):
        class StreamFan(Fan, Driver):
            @exportstream
            @contextlib.asynccontextmanager
            async def on(self):
                yield None

            @export
            def read(self):
                yield 1

            wind = on
    with pytest.raises(TypeError, match=r"does not export 'on' as an @export method \(it has none\)"):
        class ForgetfulFan(Fan, Driver):
            def on(self) -> None: ...  # not marked: clients could not call it

            @export
            def read(self):
                yield 1

            @exportstream
            @contextlib.asynccontextmanager
            async def wind(self):
                yield None


def test_a_partial_base_leaves_methods_to_its_subclasses():
    class FanBase(Fan, Driver, partial=True):
        @export
        def read(self):
            yield 1

        @exportstream
        @contextlib.asynccontextmanager
        async def wind(self):
            yield None

    class DeskFan(FanBase):
        @export
        def on(self) -> None: ...

    assert set(DeskFan.methods()) == {"on", "read", "wind"}
    with pytest.raises(TypeError, match="CeilingFan implements Fan but does not export 'on'"):
        class CeilingFan(FanBase):
            pass


def test_every_installed_driver_implements_its_interfaces():
    """Importing every driver family's modules defines their classes, and so checks them."""
    from jumpstarter_lab.driver.registry import driver_entry_points

    for name, entry in driver_entry_points().items():
        cls = entry.load()
        assert issubclass(cls, Driver), name


def test_read_only_methods_come_from_marks_and_interfaces_and_reach_the_report():
    import uuid

    class Gauge(Interface):
        label = labels.POWER
        level = call("How full", read_only=True)
        fill = call("Fill it")

    class Tank(Gauge, Driver):
        @export
        def level(self) -> int:
            return 3

        @export
        def fill(self) -> None: ...

        @export(read_only=True)
        def temperature(self) -> float:
            return 20.0

        @export
        def drain(self) -> None: ...

    from jumpstarter_lab.driver import read_only_methods

    assert read_only_methods(Tank) == {"level", "temperature"}
    report = Tank().bind(uuid=uuid.uuid4()).report(None, None)
    assert report.labels[labels.READ_ONLY] == "level,temperature"

    class Plain(Driver):
        @classmethod
        def client(cls) -> str:
            return labels.COMPOSITE

        @export
        def poke(self) -> None: ...

    assert labels.READ_ONLY not in Plain().bind(uuid=uuid.uuid4()).report(None, None).labels
