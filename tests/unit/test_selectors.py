"""Label selectors: upstream's `k=v,k2!=v2,k3,!k4`, parsed in linear time with bounded input."""

from __future__ import annotations

import pytest

from jumpstarter_lab.controller import selectors
from jumpstarter_lab.wire.errors import DriverInvalidArgument


@pytest.mark.parametrize("text, terms", [
    ("board=rpi4,site!=lab2", (("board", "=", "rpi4"), ("site", "!=", "lab2"))),
    (" a == b , c ,!d", (("a", "=", "b"), ("c", "exists", None), ("d", "!exists", None))),
    ("host=10.0.0.1:22", (("host", "=", "10.0.0.1:22"),)),
    ("", ()),
])
def test_selectors_parse(text, terms):
    assert selectors.parse(text) == terms


@pytest.mark.parametrize("text", ["a b", "=v", "a=b=c", "!", "a!", "x==y==z", "a=b c"])
def test_malformed_terms_are_named(text):
    with pytest.raises(DriverInvalidArgument, match="invalid label selector term"):
        selectors.parse(text)


def test_pathological_input_is_linear_and_its_error_short():
    for size in (10_000, 100_000, 1_000_000):
        with pytest.raises(DriverInvalidArgument) as info:
            selectors.parse("a" + " " * size + "!")
        assert len(str(info.value)) < 200
    assert selectors.parse("a" * 4000 + "=" + "b") == (("a" * 4000, "=", "b"),)


def test_matching():
    labels = {"board": "rpi4", "site": "lab1"}
    assert selectors.matches("board=rpi4,site!=lab2,!broken", labels)
    assert not selectors.matches("board=rpi4,site=lab2", labels)
    assert not selectors.matches("missing", labels)
