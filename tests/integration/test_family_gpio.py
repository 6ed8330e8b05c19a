"""GPIO family through a real exporter: the mock chip (an output and an input on one
simulated wire), and the libgpiod drivers' own path to the kernel, which must name a
missing or wrong chip at call time without harming the exporter.

No real GPIO chip is tested here: this kernel has neither gpio-sim nor gpio-mockup
(CONFIG_GPIO_SIM unset, no module support, no configfs), so no /dev/gpiochip* exists."""

from __future__ import annotations

import inspect
import subprocess
import threading
import time

import pytest

from helpers import CLI, subprocess_env
from jumpstarter_lab.client import DriverClient, connect
from jumpstarter_lab.driver import exported_methods
from jumpstarter_lab.wire.errors import (
    DriverInvalidArgument,
    DriverNotImplemented,
    DriverTimeout,
    ExporterUnavailable,
)
from jumpstarter_lab_driver_gpio.client import (
    DigitalInputClient,
    DigitalOutputClient,
    PinState,
)
from jumpstarter_lab_driver_gpio.driver import (
    DigitalInput,
    DigitalOutput,
    MockDigitalInput,
    MockDigitalOutput,
    PowerSwitch,
)
from jumpstarter_lab_driver_gpio.interface import (
    DigitalInputInterface,
    DigitalOutputInterface,
)
from jumpstarter_lab_driver_power.client import PowerClient
from jumpstarter_lab_driver_power.interface import PowerInterface

MOCK_EXPORT = """
relay:
  type: jumpstarter_lab_driver_gpio.MockDigitalOutput
  config: {device: mockchip, line: 5}
sense:
  type: jumpstarter_lab_driver_gpio.MockDigitalInput
  config: {device: mockchip, line: 5}
sense_low:
  type: jumpstarter_lab_driver_gpio.MockDigitalInput
  config: {device: mockchip, line: 5, active_low: true}
preset:
  type: jumpstarter_lab_driver_gpio.MockDigitalOutput
  config: {device: mockchip, line: 6, initial_value: active}
pulled:
  type: jumpstarter_lab_driver_gpio.MockDigitalInput
  config: {device: mockchip, line: 7, bias: pull_up}
"""


@pytest.fixture
def mock_exporter(make_config, run_exporter):
    return run_exporter(make_config(MOCK_EXPORT))


def test_mock_output_drives_a_mock_input(mock_exporter):
    with connect(mock_exporter.address) as root:
        relay, sense = root.relay, root.sense
        assert isinstance(relay, DigitalOutputClient) and isinstance(sense, DigitalInputClient)
        assert sense.read_pin() is PinState.INACTIVE
        relay.on()
        assert relay.read() is PinState.ACTIVE and str(relay.read()) == "active"
        assert sense.read() is PinState.ACTIVE
        assert root.sense_low.read_pin() is PinState.INACTIVE  # the same wire, read active-low
        sense.wait_for_active(timeout=5)  # already active: returns at once
        relay.cycle(wait=0)
        assert sense.read_pin() is PinState.ACTIVE
        relay.off()
        sense.wait_for_inactive(timeout=5)
        root.sense_low.wait_for_active(timeout=5)
        assert root.preset.read_pin() is PinState.ACTIVE  # initial_value applies when the line is requested
        assert root.pulled.read_pin() is PinState.ACTIVE  # an undriven wire rests where its bias pulls it


def toggle_until_done(relay: DigitalOutputClient, waiter: threading.Thread, deadline: float = 10) -> None:
    """Toggle the output until the waiting thread returns; no assumption on when its wait began."""
    end = time.monotonic() + deadline
    while waiter.is_alive() and time.monotonic() < end:
        relay.on()
        relay.off()
    waiter.join(5)
    assert not waiter.is_alive(), "the wait did not see any edge"


def test_edges_wake_a_waiting_input(mock_exporter):
    with connect(mock_exporter.address) as root:
        results = {}

        def wait(name: str, *args) -> None:
            try:
                (root.sense if name != "low" else root.sense_low).wait_for_edge(*args)
                results[name] = "edge"
            except Exception as e:  # noqa: BLE001 - reported by the assertion below
                results[name] = e

        for name, edge in (("rising", "rising"), ("falling", "falling"), ("low", "rising")):
            waiter = threading.Thread(target=wait, args=(name, edge, 30))
            waiter.start()
            toggle_until_done(root.relay, waiter)
        assert results == {"rising": "edge", "falling": "edge", "low": "edge"}
        with pytest.raises(DriverTimeout, match="no rising edge on line 5 of mockchip within 0.2s"):
            root.sense.wait_for_edge("rising", 0.2)
        with pytest.raises(DriverInvalidArgument, match="Invalid edge type: sideways"):
            root.sense.wait_for_edge("sideways", 1)


def test_a_second_wait_on_one_input_is_refused(mock_exporter):
    """One line request has one event queue: a concurrent second wait is refused, naming the line."""
    with connect(mock_exporter.address) as root:
        outcome: dict[str, str] = {}

        def first() -> None:
            try:
                root.sense.wait_for_edge("rising", 30)
                outcome["first"] = "edge"
            except DriverInvalidArgument:
                outcome["first"] = "refused"  # a probe below got in first: it is started again

        refused, end = None, time.monotonic() + 20
        while refused is None and time.monotonic() < end:
            waiter = threading.Thread(target=first)
            waiter.start()
            while refused is None and waiter.is_alive() and time.monotonic() < end:
                try:
                    root.sense.wait_for_edge("rising", 0)
                except DriverInvalidArgument as e:
                    refused = e
                except DriverTimeout:
                    pass
            if refused is None:
                waiter.join(10)
        assert refused is not None, "no second wait was ever refused"
        assert "line 5 of mockchip already has a wait in progress in this session" in str(refused)
        toggle_until_done(root.relay, waiter)
        assert outcome["first"] == "edge"


def test_mock_wire_outlives_sessions_like_hardware(mock_exporter):
    with connect(mock_exporter.address) as root:
        root.relay.on()
    with connect(mock_exporter.address) as root:  # a new session, new driver instances, the same wire
        assert root.sense.read_pin() is PinState.ACTIVE
        root.relay.off()
        assert root.sense.read_pin() is PinState.INACTIVE


def test_libgpiod_drivers_name_a_missing_or_wrong_chip(make_config, run_exporter, tmp_path):
    not_a_chip = tmp_path / "gpiochip-file"
    not_a_chip.write_text("")
    exporter = run_exporter(make_config(f"""
missing:
  type: jumpstarter_driver_gpiod.driver.DigitalOutput
  config: {{device: /dev/gpiochip-nope, line: 3}}
wrong:
  type: jumpstarter_driver_gpiod.driver.DigitalInput
  config: {{device: {not_a_chip}, line: 1}}
power:
  type: jumpstarter_driver_gpiod.driver.PowerSwitch
  config: {{device: /dev/gpiochip-nope, line: 4}}
relay:
  type: jumpstarter_lab_driver_gpio.MockDigitalOutput
  config: {{device: other, line: 0}}
"""))
    with connect(exporter.address) as root:
        with pytest.raises(ExporterUnavailable, match=r"GPIO chip /dev/gpiochip-nope does not exist \(wanted for "
                                                      r"line 3\)"):
            root.missing.on()
        with pytest.raises(ExporterUnavailable, match=f"{not_a_chip} is not a usable GPIO chip \\(wanted for line 1\\):"
                                                      " Inappropriate ioctl for device"):
            root.wrong.wait_for_active(1)
        assert root.power.__class__ is PowerClient  # a power switch speaks the power interface
        with pytest.raises(ExporterUnavailable, match="GPIO chip /dev/gpiochip-nope does not exist"):
            root.power.cycle(wait=0)
        with pytest.raises(DriverNotImplemented, match="does not measure voltage or current"):
            list(root.power.read())
        root.relay.on()  # the exporter is unharmed
        assert root.relay.read_pin() is PinState.ACTIVE
    assert "Traceback" not in exporter.logs()


def test_config_values_are_checked_with_file_and_line(make_config):
    config = make_config("""
out:
  type: jumpstarter_driver_gpiod.driver.DigitalOutput
  config: {line: 3, bias: pullup}
""")
    result = subprocess.run([CLI, "exporter", "check", "--config", str(config)], capture_output=True, text=True,
                            timeout=60, env=subprocess_env(), check=False)
    line = config.read_text().splitlines().index("    config: {line: 3, bias: pullup}") + 1
    assert result.returncode == 1
    assert result.stderr.strip() == ('jumpstarter-lab: error: export.out.config.bias: expected "as_is" or "pull_up" '
                                     f'or "pull_down" or "disabled" or null, got "pullup" ({config}:{line})')


def test_cli_calls_a_gpio_driver(mock_exporter):
    def call(target: str) -> str:
        result = subprocess.run([CLI, "call", "--host", mock_exporter.address, target], capture_output=True,
                                text=True, timeout=60, env=subprocess_env(), check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert call("relay.on") == ""
    assert call("sense.read_pin") == "1"  # each CLI call is its own session; the wire is shared
    assert call("relay.off") == ""
    assert call("sense.read_pin") == "0"


def client_methods(cls: type, base: type) -> set[str]:
    return {name for name in dict(inspect.getmembers(cls, inspect.isfunction))
            if not name.startswith("_") and not hasattr(base, name)}


def test_clients_interfaces_and_drivers_agree_on_method_names():
    output, inputs = set(DigitalOutputInterface.methods()), set(DigitalInputInterface.methods())
    assert output == {"on", "off", "read_pin"}
    assert inputs == {"read_pin", "wait_for_active", "wait_for_inactive", "wait_for_edge"}
    # read is upstream's client name for read_pin; cycle and state come from the power client
    assert client_methods(DigitalOutputClient, DriverClient) == output | {"read", "cycle", "state"}
    assert client_methods(DigitalInputClient, DriverClient) == inputs | {"read"}
    for driver in (DigitalOutput, MockDigitalOutput):
        assert set(exported_methods(driver)) == output, driver.__name__
        assert driver.client() == "jumpstarter_driver_gpiod.client.DigitalOutputClient"
    for driver in (DigitalInput, MockDigitalInput):
        assert set(exported_methods(driver)) == inputs, driver.__name__
        assert driver.client() == "jumpstarter_driver_gpiod.client.DigitalInputClient"
    assert set(exported_methods(PowerSwitch)) == output | set(PowerInterface.methods())
    assert PowerSwitch.client() == "jumpstarter_driver_power.client.PowerClient"
