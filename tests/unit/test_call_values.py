from dataclasses import dataclass

import pytest

from jumpstarter_lab.wire import call_values


@dataclass
class Reading:
    voltage: float
    current: float


def roundtrip(value):
    return call_values.decode(call_values.encode(value))


@pytest.mark.parametrize("value", [None, True, False, 0, 7, -3, 2.5, "text", [1, "a", None], {"a": {"b": [1, 2]}}])
def test_plain_values_survive_the_wire(value):
    assert roundtrip(value) == value
    assert type(roundtrip(value)) is type(value)


def test_dataclasses_and_tuples_become_objects_and_lists():
    assert roundtrip(Reading(5.0, 2.0)) == {"voltage": 5, "current": 2}
    assert roundtrip((1, 2)) == [1, 2]


def test_bytes_travel_as_base64_and_are_restored_by_hint():
    wire = roundtrip(b"\x00\xffabc")
    assert wire == "AP9hYmM="
    assert call_values.coerce(wire, bytes) == b"\x00\xffabc"


def test_coerce_builds_dataclasses_and_rejects_unknown_fields():
    assert call_values.coerce({"voltage": 5, "current": 1}, Reading) == Reading(5.0, 1.0)
    assert isinstance(call_values.coerce({"voltage": 5, "current": 1}, Reading).voltage, float)
    with pytest.raises(ValueError, match="unknown field.*watts"):
        call_values.coerce({"voltage": 1, "current": 1, "watts": 3}, Reading)


def test_coerce_handles_optional_and_containers():
    assert call_values.coerce("AQI=", bytes | None) == b"\x01\x02"
    assert call_values.coerce(None, bytes | None) is None
    assert call_values.coerce(["AQ=="], list[bytes]) == [b"\x01"]
    with pytest.raises(ValueError, match="base64"):
        call_values.coerce("not base64!", bytes)


def test_unsendable_values_are_named():
    with pytest.raises(TypeError, match="object"):
        call_values.encode(object())
