"""Arguments of a driver call are checked against the method's signature and type hints before the
driver runs: a wrong type or an over-nested value is DriverInvalidArgument naming the parameter,
never a traceback in the driver."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from jumpstarter_lab.driver import Driver, export
from jumpstarter_lab.wire import call_values
from jumpstarter_lab.wire.errors import DriverInvalidArgument


@dataclass
class Point:
    x: int
    y: int = 0


class Target(Driver):
    @classmethod
    def client(cls) -> str:
        return "x"

    @export
    def set_dtr(self, value: bool) -> bool:
        return value

    @export
    def run(self, method: str, env: dict[str, str] | None = None, *args: str) -> list:
        return [method, env, list(args)]

    @export
    def move(self, to: Point, speed: float = 1.0) -> list:
        return [to.x, to.y, speed]

    @export
    def anything(self, value) -> object:
        return value


def call(name: str, *args):
    driver = Target()
    return asyncio.run(driver.call(name, list(args)))


def test_arguments_that_fit_arrive_shaped():
    assert call("set_dtr", True) is True
    assert call("run", "x", {"A": "1"}, "a", "b") == ["x", {"A": "1"}, ["a", "b"]]
    assert call("move", {"x": 3}, 2) == [3, 0, 2.0]
    deep = [[[["fine"]]]]
    assert call("anything", deep) == deep


@pytest.mark.parametrize("name, args, message", [
    ("set_dtr", ["yes"], "set_dtr() argument 'value': expected true or false, got str 'yes'"),
    ("run", ["x", "notadict"], "run() argument 'env': expected dict[str, str] | None, got str 'notadict'"),
    ("run", ["x", {"A": 1}], "run() argument 'env': expected dict[str, str] | None, got dict {'A': 1}"),
    ("run", ["x", None, "a", 2], "run() argument 'args': expected str, got int 2"),
    ("move", [{"x": 1, "z": 2}], "move() argument 'to': unknown field(s) for Point: z"),
    ("move", [{"x": "far"}], "move() argument 'to': field 'x': expected an integer, got str 'far'"),
    ("move", [{"y": 1}], "move() argument 'to': "),
    ("set_dtr", [], "wrong arguments for set_dtr(value)"),
])
def test_arguments_that_do_not_fit_are_named(name, args, message):
    with pytest.raises(DriverInvalidArgument) as info:
        call(name, *args)
    assert message in str(info.value)


def test_values_nested_too_deep_are_refused_when_decoded():
    value = "bottom"
    for _level in range(call_values.MAX_DEPTH + 2):
        value = [value]
    with pytest.raises(DriverInvalidArgument, match="nested more than 32 deep"):
        call_values.decode(call_values.encode(value))
