"""Power family through a real exporter: commands run on the host, a YKUSH hub behind a
stand-in hidraw node (a pty that answers with the hub's protocol), an HTTP smart plug
served on 127.0.0.1, and the CLI."""

from __future__ import annotations

import base64
import inspect
import json
import os
import select
import threading
import tty
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from helpers import cli, free_port, process_gone, wait_for
from jumpstarter_lab.client import DriverClient, connect
from jumpstarter_lab.driver import exported_methods
from jumpstarter_lab.wire.errors import (
    AccessDenied,
    DriverError,
    DriverInvalidArgument,
    DriverNotImplemented,
    DriverTimeout,
    ExporterUnavailable,
)
from jumpstarter_lab_driver_power.client import PowerClient
from jumpstarter_lab_driver_power.command import CommandPower
from jumpstarter_lab_driver_power.driver import MockPower
from jumpstarter_lab_driver_power.http_power import HttpPower
from jumpstarter_lab_driver_power.interface import PowerInterface, PowerReading
from jumpstarter_lab_driver_power.ykush import Ykush, find_ykush


def command_export(tmp: Path, **extra: str) -> str:
    log = tmp / "relay.log"
    lines = [
        "relay:",
        "  type: jumpstarter_lab_driver_power.CommandPower",
        "  config:",
        f'    on_command: "echo on >> {log}"',
        f'    off_command: [sh, -c, "echo off >> {log}"]',
        '    read_command: "printf \'12.5 0.25\\n{\\"voltage\\": 11.5, \\"current\\": 0.5}\\n\'"',
    ]
    lines += [f"    {key}: {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


def test_command_power_switches_and_reads(make_config, run_exporter, tmp_path):
    exporter = run_exporter(make_config(command_export(tmp_path)))
    log = tmp_path / "relay.log"
    with connect(exporter.address) as root:
        relay = root.relay
        assert isinstance(relay, PowerClient)
        relay.on()
        relay.off()
        relay.cycle(wait=0)
        assert log.read_text().split() == ["on", "off", "off", "on"]
        assert list(relay.read()) == [PowerReading(12.5, 0.25), PowerReading(11.5, 0.5)]


def test_command_power_errors_name_the_command_and_end_it(make_config, run_exporter, tmp_path):
    pidfile = tmp_path / "pid"
    export = f"""
failing:
  type: jumpstarter_lab_driver_power.CommandPower
  config:
    on_command: "echo 'relay 4 is busy' >&2; exit 3"
    off_command: ["/nonexistent/relayctl", "--off"]
    read_command: "echo not-a-reading"
slow:
  type: jumpstarter_lab_driver_power.CommandPower
  config:
    on_command: "echo $$ > {pidfile}; sleep 60 & wait"
    off_command: "true"
    timeout: 0.5
killed:
  type: jumpstarter_lab_driver_power.CommandPower
  config: {{on_command: "kill -9 $$", off_command: "true"}}
"""
    exporter = run_exporter(make_config(export))
    with connect(exporter.address) as root:
        with pytest.raises(DriverError, match=r"power on: \"echo 'relay 4 is busy' >&2; exit 3\" exited with "
                                              r"status 3: relay 4 is busy"):
            root.failing.on()
        with pytest.raises(ExporterUnavailable, match="power off: cannot run '/nonexistent/relayctl --off': "
                                                      "/nonexistent/relayctl not found"):
            root.failing.off()
        with pytest.raises(DriverError, match="cannot parse 'not-a-reading'"):
            list(root.failing.read())
        with pytest.raises(DriverTimeout, match=r"power on: 'echo \$\$ > .*' did not finish within 0.5s"):
            root.slow.on()
        pid = int(pidfile.read_text())
        wait_for(lambda: process_gone(pid), 10, "the timed-out command to be killed")
        with pytest.raises(DriverError, match="power on: 'kill -9 \\$\\$' was killed by SIGKILL"):
            root.killed.on()
        with pytest.raises(DriverNotImplemented, match="no read_command"):
            list(root.slow.read())
    with connect(exporter.address) as root:  # the exporter carries on after all of that
        with pytest.raises(DriverError, match="exited with status 3"):
            root.failing.on()
    assert "Traceback" not in exporter.logs()


# --- Ykush -------------------------------------------------------------------------

class StandInHub:
    """Plays a YKUSH on the master side of a pty whose slave path the driver opens as its
    hidraw node: it reads each 65-byte output report (report number 0 + 64 bytes) and
    answers with a 64-byte input report, as the hub's firmware does."""

    def __init__(self, answer: bool = True):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.answer = answer
        self.reports: list[bytes] = []
        self.ports = {1: False, 2: False, 3: False}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        pending = b""
        while not self._stop.is_set():
            if not select.select([self.master], [], [], 0.1)[0]:
                continue
            try:
                pending += os.read(self.master, 4096)
            except OSError:
                return
            while len(pending) >= 65:
                report, pending = pending[:65], pending[65:]
                self.reports.append(report)
                if self.answer:
                    os.write(self.master, self._answer(report[1]))

    def _answer(self, cmd: int) -> bytes:
        action, port = cmd >> 4, cmd & 0x0F
        ports = [1, 2, 3] if port == 0x0A else [port]
        if action in (0, 1):
            for p in ports:
                self.ports[p] = action == 1
            return bytes([0x01, cmd]) + bytes(62)
        return bytes([0x01, (int(self.ports[port]) << 4) | port]) + bytes(62)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def hub():
    hubs = []

    def make(**kwargs) -> StandInHub:
        hubs.append(StandInHub(**kwargs))
        return hubs[-1]

    yield make
    for h in hubs:
        h.close()


def test_ykush_speaks_the_hub_protocol_over_hidraw(make_config, run_exporter, hub):
    one, mute = hub(), hub(answer=False)
    exporter = run_exporter(make_config(f"""
port2:
  type: jumpstarter_driver_yepkit.driver.Ykush
  config: {{device: {one.path}, port: 2, timeout: 30}}
all:
  type: jumpstarter_driver_yepkit.driver.Ykush
  config: {{device: {one.path}, timeout: 30}}
mute:
  type: jumpstarter_driver_yepkit.driver.Ykush
  config: {{device: {mute.path}, port: "1", timeout: 0.5}}
missing:
  type: jumpstarter_driver_yepkit.driver.Ykush
  config: {{serial: NOPE-1234}}
"""))
    with connect(exporter.address) as root:
        root.port2.on()
        assert one.ports == {1: False, 2: True, 3: False}
        assert root.port2.call("status") == "on"
        root.port2.off()
        assert root.port2.call("status") == "off"
        root.all.on()
        assert one.ports == {1: True, 2: True, 3: True} and root.all.call("status") == "on"
        root.port2.off()
        assert root.all.call("status") == "mixed"
        with pytest.raises(DriverNotImplemented, match="does not measure voltage or current"):
            list(root.port2.read())
        with pytest.raises(DriverTimeout, match=f"YKUSH at {mute.path} did not answer command 0x11 within 0.5s"):
            root.mute.on()
        with pytest.raises(ExporterUnavailable, match=r"YKUSH with serial NOPE-1234 \(USB 04d8:f2f7\) is not "
                                                      "connected: no such hidraw device under /sys/class/hidraw"):
            root.missing.on()
        root.port2.on()  # unharmed by the failures
    # Every report on the wire: report number 0, the command byte, 63 zero bytes.
    commands = [0x12, 0x22, 0x02, 0x22, 0x1A, 0x21, 0x22, 0x23, 0x02, 0x21, 0x22, 0x23, 0x12]
    assert one.reports == [bytes([0, cmd]) + bytes(63) for cmd in commands]
    wait_for(lambda: mute.reports == [bytes([0, 0x11]) + bytes(63)], 5, "the unanswered report at the mute hub")


def test_ykush_is_found_by_serial_in_sysfs(tmp_path):
    sysfs, dev = tmp_path / "class" / "hidraw", tmp_path / "dev"
    devices = {"hidraw0": ("0003:0000046D:0000C52B", "K1"), "hidraw3": ("0003:000004D8:0000F2F7", "YK42"),
               "hidraw5": ("0003:000004D8:0000F2F7", "YK77")}
    for name, (hid_id, uniq) in devices.items():
        (sysfs / name / "device").mkdir(parents=True)
        (sysfs / name / "device" / "uevent").write_text(f"DRIVER=hid-generic\nHID_ID={hid_id}\nHID_NAME=x\n"
                                                        f"HID_UNIQ={uniq}\n")
    (sysfs / "hidraw9").mkdir()  # a node whose device has gone is skipped
    assert find_ykush("YK77", sysfs, dev).node == str(dev / "hidraw5")
    assert find_ykush(None, sysfs, dev).node == str(dev / "hidraw3")
    with pytest.raises(ExporterUnavailable, match=r"YKUSH with serial YK1 .* \(found: YK42, YK77\)"):
        find_ykush("YK1", sysfs, dev)


# --- HttpPower ---------------------------------------------------------------------

class ShellyPlug(ThreadingHTTPServer):
    """A Shelly Gen2-style plug on 127.0.0.1: Switch.Set / Switch.GetStatus behind basic auth,
    and a Gen1-style POST endpoint; it records every request."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _PlugHandler)
        self.output = False
        self.requests: list[tuple[str, str, str]] = []
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(5)


class _PlugHandler(BaseHTTPRequestHandler):
    server: ShellyPlug

    def log_message(self, *args) -> None:
        pass

    def _reply(self, code: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        self.server.requests.append((self.command, self.path, body))
        if self.path == "/broken":
            return self._reply(500, {"message": "firmware hiccup"})
        if self.headers.get("Authorization") != "Basic " + base64.b64encode(b"admin:s3cret").decode():
            return self._reply(401, {"code": 401, "message": "unauthorized"})
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/rpc/Switch.Set":
            was_on, self.server.output = self.server.output, query["on"] == "true"
            return self._reply(200, {"was_on": was_on})
        if url.path == "/rpc/Switch.GetStatus":
            on = self.server.output
            return self._reply(200, {"id": 0, "output": on, "apower": 57.6 if on else 0,
                                     "voltage": 230.4, "current": 0.25 if on else 0})
        if url.path == "/relay/0" and self.command == "POST":
            self.server.output = body == "turn=on"
            return self._reply(200, {"ison": self.server.output})
        return self._reply(404, {"message": "no such endpoint"})

    do_GET = do_POST = _handle


@pytest.fixture
def plug():
    server = ShellyPlug()
    yield server
    server.stop()


def test_http_power_drives_a_shelly_style_plug(make_config, run_exporter, plug):
    dead = free_port()
    exporter = run_exporter(make_config(f"""
plug:
  type: jumpstarter_driver_http_power.driver.HttpPower
  config:
    name: bench-plug
    power_on: {{url: "{plug.base}/rpc/Switch.Set?id=0&on=true"}}
    power_off: {{url: "{plug.base}/rpc/Switch.Set?id=0&on=false"}}
    power_read: {{url: "{plug.base}/rpc/Switch.GetStatus?id=0", voltage_path: voltage, current_path: current}}
    auth: {{basic: {{user: admin, password: s3cret}}}}
gen1:
  type: jumpstarter_lab_driver_power.HttpPower
  config:
    power_on: {{url: "{plug.base}/relay/0", method: post, data: turn=on}}
    power_off: {{url: "{plug.base}/relay/0", method: POST, data: turn=off}}
    power_read: {{url: "{plug.base}/rpc/Switch.GetStatus?id=0", voltage_path: meters.0.voltage}}
    auth: {{basic: {{user: admin, password: s3cret}}}}
wrongpass:
  type: jumpstarter_driver_http_power.driver.HttpPower
  config:
    power_on: {{url: "http://admin:hunter2@127.0.0.1:{plug.server_address[1]}/rpc/Switch.Set?id=0&on=true"}}
    power_off: {{url: "{plug.base}/broken"}}
unplugged:
  type: jumpstarter_driver_http_power.driver.HttpPower
  config:
    name: dead-plug
    power_on: {{url: "http://127.0.0.1:{dead}/rpc/Switch.Set?id=0&on=true"}}
    power_off: {{url: "http://127.0.0.1:{dead}/rpc/Switch.Set?id=0&on=false"}}
"""))
    with connect(exporter.address) as root:
        root.plug.on()
        assert plug.output is True
        assert list(root.plug.read()) == [PowerReading(230.4, 0.25)]
        root.plug.cycle(wait=0)
        root.plug.off()
        assert plug.output is False
        assert list(root.plug.read()) == [PowerReading(230.4, 0.0)]
        root.gen1.on()
        assert plug.output is True and plug.requests[-1] == ("POST", "/relay/0", "turn=on")
        with pytest.raises(DriverInvalidArgument, match="configured path 'meters.0.voltage' not found"):
            list(root.gen1.read())
        with pytest.raises(AccessDenied, match=r"device power on: GET http://127.0.0.1:\d+/rpc/Switch.Set\?id=0&on=true"
                                               r" answered 401 Unauthorized.*check auth") as denied:
            root.wrongpass.on()
        assert "hunter2" not in str(denied.value)
        assert plug.requests[-1][1] == "/rpc/Switch.Set?id=0&on=true"  # the credentials went as a header
        with pytest.raises(DriverError, match="power off: GET .*/broken answered 500 .*firmware hiccup"):
            root.wrongpass.off()
        with pytest.raises(ExporterUnavailable, match=f"dead-plug power on: GET http://127.0.0.1:{dead}/rpc/"
                                                      "Switch.Set.* cannot reach the device: Connection refused"):
            root.unplugged.on()
        with pytest.raises(DriverInvalidArgument, match="power_read endpoint is not configured"):
            list(root.unplugged.read())
        root.plug.on()  # the exporter is unharmed
    assert "hunter2" not in exporter.logs()
    assert ("GET", "/rpc/Switch.Set?id=0&on=false", "") in plug.requests


def test_http_power_config_errors_name_the_field(make_config):
    for config, message in [
        ({"power_on": {"url": "http://x/on", "metod": "POST"}, "power_off": {"url": "http://x/off"}},
         "power_on: unknown field 'metod' (known: url, method, data, voltage_path, current_path)"),
        ({"power_on": {"url": "ftp://x/on"}, "power_off": {"url": "http://x/off"}},
         "power_on.url: expected an http:// or https:// URL, got 'ftp://x/on'"),
        ({"power_on": {"url": "http://x/on"}, "power_off": {"method": "GET"}},
         "power_off: missing required field 'url'"),
    ]:
        export = "plug:\n  type: jumpstarter_driver_http_power.driver.HttpPower\n  config: " + json.dumps(config)
        path = make_config(export)
        result = cli("exporter", "check", "--config", str(path))
        assert result.returncode == 1
        assert result.stderr.strip() == f"jumpstarter-lab: error: export.plug: {message} ({path}:9)"


# --- the family as a whole ---------------------------------------------------------

def test_cli_calls_a_power_driver(make_config, run_exporter, tmp_path):
    exporter = run_exporter(make_config(command_export(tmp_path)))
    on = cli("call", "--host", exporter.address, "relay.on")
    assert on.returncode == 0, on.stderr
    assert (tmp_path / "relay.log").read_text() == "on\n"
    read = cli("call", "--host", exporter.address, "relay.read")
    assert [json.loads(line) for line in read.stdout.splitlines()] == [
        {"voltage": 12.5, "current": 0.25}, {"voltage": 11.5, "current": 0.5}]


def public_methods(cls: type, base: type) -> set[str]:
    """Methods a class adds on top of `base` (its own and its parents' below base)."""
    return {name for name in dict(inspect.getmembers(cls, inspect.isfunction))
            if not name.startswith("_") and not hasattr(base, name)}


def test_client_interface_and_drivers_agree_on_method_names():
    interface = set(PowerInterface.methods())
    assert interface == {"on", "off", "read"}
    # cycle is composite behaviour that lives client-side, as upstream's; state reads status() or read()
    assert public_methods(PowerClient, DriverClient) == interface | {"cycle", "state"}
    for driver in (MockPower, CommandPower, Ykush, HttpPower):
        assert interface <= set(exported_methods(driver)), driver.__name__
        assert driver.client() == "jumpstarter_driver_power.client.PowerClient"
