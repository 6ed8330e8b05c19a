"""ExporterConfig validation: every error names the path, what was wrong, the file and line."""

import pytest

from helpers import FIXTURES, STANDARD_EXPORT, exporter_config
from jumpstarter_lab.exporter import config
from jumpstarter_lab.wire.errors import ConfigError


@pytest.fixture(autouse=True)
def _fixture_drivers(monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURES))


def load(text):
    return config.load_text(text, "exporter.yaml")


def error_of(text) -> str:
    with pytest.raises(ConfigError) as info:
        load(text)
    return str(info.value)


def test_seed_config_with_upstream_type_names_loads():
    seed = """\
apiVersion: jumpstarter.dev/v1alpha1
kind: ExporterConfig
metadata:
  namespace: default
  name: demo
endpoint: grpc.jumpstarter.example.com:443
token: xxxxx
export:
  power:
    type: jumpstarter_driver_power.driver.MockPower
  serial:
    type: "jumpstarter_driver_pyserial.driver.PySerial"
    config:
      url: "/dev/ttyUSB0"
      baudrate: 115200
  net:
    type: jumpstarter_driver_network.driver.TcpNetwork
    config: {host: 127.0.0.1, port: 22}
"""
    loaded = load(seed)
    assert loaded.name == "demo" and loaded.endpoint == "grpc.jumpstarter.example.com:443"
    root = loaded.build()
    assert [type(c).__name__ for c in root.children.values()] == ["MockPower", "PySerial", "TcpNetwork"]
    # constructing a driver must not touch the device: /dev/ttyUSB0 does not exist here


def test_wrong_parameter_type_names_path_file_and_line():
    text = exporter_config("""
serial:
  type: jumpstarter_driver_pyserial.driver.PySerial
  config:
    url: loop://
    baudrate: fast
""")
    assert error_of(text) == 'export.serial.config.baudrate: expected integer, got "fast" (exporter.yaml:11)'


def test_unknown_parameter_suggests_the_close_one():
    text = exporter_config("""
serial:
  type: jumpstarter_driver_pyserial.driver.PySerial
  config:
    url: loop://
    baudrat: 9600
""")
    assert error_of(text) == "export.serial.config.baudrat: unknown field 'baudrat'; did you mean 'baudrate'? (exporter.yaml:11)"


def test_missing_required_parameter():
    text = exporter_config("""
net:
  type: jumpstarter_driver_network.driver.TcpNetwork
  config:
    host: localhost
""")
    assert error_of(text) == "export.net.config.port: missing required field (exporter.yaml:10)"


def test_unknown_driver_type_suggests_known_ones():
    text = exporter_config("""
power:
  type: jumpstarter_driver_power.driver.MockPowr
""")
    message = error_of(text)
    assert message.startswith("export.power.type: unknown driver type 'jumpstarter_driver_power.driver.MockPowr'")
    assert "did you mean jumpstarter_driver_power.driver.MockPower" in message
    assert "No module named" not in message
    assert message.endswith("(exporter.yaml:8)")


def test_driver_constructor_rejects_bad_value():
    text = exporter_config("""
net:
  type: jumpstarter_driver_network.driver.TcpNetwork
  config: {host: localhost, port: 70000}
""")
    assert error_of(text) == "export.net: port must be 1-65535, got 70000 (exporter.yaml:9)"


def test_a_value_of_neither_allowed_type_lists_them():
    text = exporter_config("""
board:
  type: jumpstarter_lab_driver_sim.SimBoard
  config:
    baudrate: fast
""")
    assert error_of(text) == 'export.board.config.baudrate: expected integer or null, got "fast" (exporter.yaml:10)'


def test_a_sim_board_login_must_be_a_user_name():
    text = exporter_config("""
board:
  type: jumpstarter_lab_driver_sim.SimBoard
  config:
    login: "a:b"
""")
    assert error_of(text).startswith("export.board: login 'a:b' is not a user name")


def test_broken_yaml_names_the_line():
    assert error_of("apiVersion: jumpstarter.dev/v1alpha1\nkind: [unclosed\n").startswith("exporter.yaml:3: invalid YAML")


def test_wrong_kind_and_unknown_top_level_field():
    text = exporter_config(STANDARD_EXPORT).replace("kind: ExporterConfig", "kind: Exporter")
    assert error_of(text) == 'kind: expected "ExporterConfig", got "Exporter" (exporter.yaml:2)'
    text = exporter_config(STANDARD_EXPORT) + "exprot: {}\n"
    assert "unknown field 'exprot'; did you mean 'export'?" in error_of(text)


def test_custom_driver_by_dotted_path_and_composite_children():
    text = exporter_config("""
board:
  children:
    rec:
      type: labtest_drivers.Recorder
      config: {path: /tmp/x}
    power:
      type: jumpstarter_driver_power.driver.MockPower
""")
    root = load(text).build()
    board = root.children["board"]
    assert type(board).__name__ == "Composite"
    assert sorted(board.children) == ["power", "rec"]
    reports = [d.report(p, n) for d, p, n in root.walk()]
    assert [r.labels.get("jumpstarter.dev/name") for r in reports] == [None, "board", "rec", "power"]
    assert reports[2].parent_uuid == reports[1].uuid


def test_driver_uuids_are_stable_across_builds():
    loaded = load(exporter_config(STANDARD_EXPORT))
    first = [str(node[0].uuid) for node in loaded.build().walk()]
    second = [str(node[0].uuid) for node in loaded.build().walk()]
    assert first == second and len(set(first)) == len(first)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="cannot read exporter config .*nope.yaml"):
        config.load(tmp_path / "nope.yaml")


def test_ref_entries_reach_the_driver_they_name():
    text = exporter_config("""
board:
  children:
    power:
      type: jumpstarter_driver_power.driver.MockPower
dut_power:
  ref: board.power
  description: the board's power, at the top
""")
    root = load(text).build()
    proxy, target = root.children["dut_power"], root.children["board"].children["power"]
    assert proxy.target is target
    report = proxy.report(root, "dut_power")
    assert report.labels["jumpstarter.dev/client"] == "jumpstarter_driver_power.client.PowerClient"
    assert report.uuid != str(target.uuid)


def test_ref_to_nothing_names_the_entry_and_line():
    text = exporter_config("""
power:
  type: jumpstarter_driver_power.driver.MockPower
alias:
  ref: board.power
""")
    assert error_of(text) == ("export.alias: ref 'board.power' names no driver in the export tree: "
                              "no driver 'board' under the exporter (has: power, alias) (exporter.yaml:10)")
