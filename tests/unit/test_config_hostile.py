"""Hostile or broken ExporterConfig files end in one ConfigError naming the file (and line), in bounded
time and memory: YAML bombs, self-reference, deep nesting, non-text keys, bad bytes, drivers refusing
values of an unexpected type, and random mutations of a valid config."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import exporter_config
from jumpstarter_lab.exporter import config
from jumpstarter_lab.wire.documents import MAX_BYTES
from jumpstarter_lab.wire.errors import ConfigError

HEADER = "apiVersion: jumpstarter.dev/v1alpha1\nkind: ExporterConfig\nmetadata: {name: x}\n"
VALID = exporter_config("""
power:
  type: jumpstarter_driver_power.driver.MockPower
serial:
  type: jumpstarter_driver_pyserial.driver.PySerial
  config: {url: "loop://", baudrate: 9600}
net:
  type: jumpstarter_driver_network.driver.TcpNetwork
  config: {host: 127.0.0.1, port: 22}
alias:
  ref: power
board:
  description: a board
  children:
    relay: {type: jumpstarter_lab_driver_power.CommandPower, config: {on_command: "true", off_command: "true"}}
""")


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        config.load_text(text, "exporter.yaml")
    return str(info.value)


@pytest.mark.timeout(20)
def test_a_billion_laughs_is_refused_quickly():
    bomb = HEADER + 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for level in "bcdefghi":
        previous = chr(ord(level) - 1)
        bomb += f"{level}: &{level} [{','.join(['*' + previous] * 9)}]\n"
    assert len(bomb) < 1000
    assert "more than 100000 values once its YAML aliases are expanded" in error_of(bomb)


def test_a_value_that_contains_itself_is_refused():
    assert error_of(HEADER + "export: &loop {x: *loop}\n") == (
        "exporter.yaml:4: a YAML alias refers to a value that contains it")


@pytest.mark.parametrize("depth", [65, 500, 5000])
def test_deep_nesting_is_refused(depth):
    message = error_of(HEADER + "description: " + "[" * depth + "]" * depth + "\n")
    assert message.startswith("exporter.yaml") and "nested" in message


@pytest.mark.parametrize("text, message", [
    (HEADER + "export:\n  1: {type: jumpstarter_driver_power.driver.MockPower}\n",
     "exporter.yaml:5: keys must be text, not '1' (quote it)"),
    (HEADER + "export:\n  power:\n    type: jumpstarter_driver_power.driver.MockPower\n    config: {true: 1}\n",
     "exporter.yaml:7: keys must be text, not 'true' (quote it)"),
    (HEADER + "export:\n  ? [a, b]\n  : {}\n", "exporter.yaml:5: keys must be text, not 'a sequence' (quote it)"),
])
def test_keys_that_are_not_text_are_named(text, message):
    assert error_of(text) == message


def test_a_driver_refusing_a_value_of_another_type_is_named():
    text = exporter_config("""
plug:
  type: jumpstarter_driver_http_power.driver.HttpPower
  config: {url: true}
""")
    message = error_of(text)
    assert message.startswith("export.plug") and "(exporter.yaml:" in message


def test_bytes_that_are_not_utf8_are_named(tmp_path):
    path = tmp_path / "exporter.yaml"
    path.write_bytes(VALID.encode() + b"description: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"exporter.yaml:\d+: not UTF-8 text \(byte 0xe9 at offset \d+\)"):
        config.load(path)


def test_a_huge_file_is_refused_without_reading_it_all(tmp_path):
    path = tmp_path / "exporter.yaml"
    with open(path, "wb") as f:
        f.write(VALID.encode())
        f.write(b"# " + b"x" * (MAX_BYTES + 10) + b"\n")
    with pytest.raises(ConfigError, match="more than a config may hold"):
        config.load(path)


def test_the_valid_config_loads():
    loaded = config.load_text(VALID, "exporter.yaml")
    assert sorted(loaded.export) == ["alias", "board", "net", "power", "serial"]


def _mutate(text: str, seed: int) -> str:
    rng = random.Random(seed)
    data = list(text)
    pieces = [":", " ", "\n", "-", "[", "]", "{", "}", "&a", "*a", "'", '"', "!!python/object", "~", "1", "true",
              "\t", "#", "?", "  ", "x" * 50, "\x00", "\u00e9"]
    for _edit in range(rng.randint(1, 6)):
        at = rng.randrange(len(data))
        match rng.randrange(4):
            case 0:
                del data[at:at + rng.randint(1, 8)]
            case 1:
                data[at:at] = list(rng.choice(pieces))
            case 2:
                data[at] = rng.choice(pieces)
            case 3:
                lines = "".join(data).split("\n")
                i = rng.randrange(len(lines))
                lines.insert(i, lines[rng.randrange(len(lines))])
                data = list("\n".join(lines))
    return "".join(data)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(st.integers(min_value=0, max_value=2**32))
def test_random_mutations_load_or_fail_with_one_config_error(seed):
    text = _mutate(VALID, seed)
    try:
        loaded = config.load_text(text, "exporter.yaml")
    except ConfigError as e:
        message = str(e)
        assert "exporter.yaml" in message and "\n" not in message.strip("\n"), message
    else:
        loaded.build().close()


def test_a_config_that_fails_to_build_leaves_no_driver_files_behind(tmp_path, monkeypatch):
    """Drivers built before the one that fails are closed: the sim board's directory goes with them."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    text = exporter_config("""
board:
  type: jumpstarter_lab_driver_sim.SimBoard
broken:
  type: jumpstarter_driver_pyserial.driver.PySerial
  config: {url: "loop://", baudrate: -1}
later:
  ref: nowhere
""")
    assert "baudrate must be positive" in error_of(text)
    text = exporter_config("""
board:
  type: jumpstarter_lab_driver_sim.SimBoard
alias:
  ref: nowhere
""")
    assert "ref 'nowhere' names no driver" in error_of(text)
    assert list(tmp_path.iterdir()) == []
