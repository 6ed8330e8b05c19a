"""A real exporter process on a Unix socket, driven by the client library."""

from __future__ import annotations

import grp
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

import pytest
import yaml

from helpers import CLI, FIXTURES, STANDARD_EXPORT, subprocess_env, wait_for
from jumpstarter_lab.client import Allowlist, UnavailableClient, connect
from jumpstarter_lab.wire.errors import (
    ClientNotAllowed,
    DriverError,
    DriverInvalidArgument,
    DriverNotImplemented,
    DriverTimeout,
    ExporterUnavailable,
    MethodNotFound,
)

RECORDER = """
rec:
  type: labtest_drivers.Recorder
  config:
    path: {path}
"""
TRUST_FIXTURES = Allowlist(["jumpstarter_lab*", "labtest_drivers"])


@pytest.fixture
def standard(make_config, run_exporter):
    return run_exporter(make_config(STANDARD_EXPORT))


@pytest.fixture
def recorder(make_config, run_exporter, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURES))
    record = tmp_path / "record.txt"
    exporter = run_exporter(make_config(RECORDER.format(path=record) + STANDARD_EXPORT))
    exporter.record = record
    return exporter


def events(record: Path) -> list[str]:
    return record.read_text().splitlines() if record.exists() else []


def test_socket_is_private_and_removed_on_stop(standard):
    path = Path(standard.address)
    mode = path.stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert standard.stop() == 0
    assert not path.exists()


def test_power_echo_and_serial_through_typed_clients(standard):
    with connect(standard.address) as root:
        assert sorted(root.children) == ["echo", "power", "serial"]
        assert type(root.power).__name__ == "PowerClient"
        root.power.on()
        assert [r.voltage for r in root.power.read()] == [5.0]
        assert root.power.call("status") == "on"
        root.power.off()
        assert root.power.call("status") == "off"
        payload = os.urandom(1 << 20)
        with root.echo.stream() as stream:
            sender = threading.Thread(target=lambda: [stream.send(payload[i:i + 65536])
                                                      for i in range(0, len(payload), 65536)])
            sender.start()
            assert stream.receive_exactly(len(payload), timeout=30) == payload
            sender.join()
        with root.serial.stream() as stream:
            stream.send(b"AT\r\n")
            assert stream.receive_exactly(4, timeout=10) == b"AT\r\n"


def test_each_connection_gets_its_own_drivers_and_named_sessions_share(recorder):
    with connect(recorder.address, allow=TRUST_FIXTURES) as a, connect(recorder.address, allow=TRUST_FIXTURES) as b:
        assert [a.rec.call("counter"), a.rec.call("counter")] == [1, 2]
        assert b.rec.call("counter") == 1
        assert a.rec.note("a") != b.rec.note("b")  # different driver instances
    with connect(recorder.address, allow=TRUST_FIXTURES, session="lab-1") as a:
        assert a.rec.call("counter") == 1
        with connect(recorder.address, allow=TRUST_FIXTURES, session="lab-1") as b:
            assert b.rec.call("counter") == 2
            assert a.rec.note("x") == b.rec.note("y")


def test_session_ends_and_drivers_close_when_client_is_killed(recorder):
    script = textwrap.dedent(f"""
        import sys, time
        from jumpstarter_lab.client import connect, Allowlist
        with connect({recorder.address!r}, allow=Allowlist(["jumpstarter_lab*", "labtest_drivers"])) as root:
            print(root.rec.note("alive"), flush=True)
            with root.rec.stream() as s:
                s.send(b"x"); s.receive(timeout=5)
                print("streaming", flush=True)
                time.sleep(600)
    """)
    client = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=subprocess_env())
    instance = client.stdout.readline().decode().strip()
    assert client.stdout.readline().decode().strip() == "streaming"
    assert f"{instance} closed" not in events(recorder.record)
    client.kill()
    client.wait()
    client.stdout.close()
    wait_for(lambda: f"{instance} closed" in events(recorder.record), 10, "the killed client's session to close")
    assert recorder.stop() == 0
    assert "Traceback" not in recorder.logs()


def test_end_session_gives_fresh_drivers(recorder):
    with connect(recorder.address, allow=TRUST_FIXTURES, session="s") as root:
        first = root.rec.note("one")
        root.connection.portal.call(root.connection.end_session())
        wait_for(lambda: f"{first} closed" in events(recorder.record), 5, "EndSession to close the drivers")
        assert root.rec.call("counter") == 1
        assert root.rec.note("two") != first


def test_status_is_ready_for_a_session_and_available_once_its_client_ended_it(recorder):
    """What upstream's client polls (GetStatus) around a session; asking starts no session (no drivers built)."""
    from jumpstarter_lab.wire.protocol import common_pb2, jumpstarter_pb2

    with connect(recorder.address, allow=TRUST_FIXTURES, session="s") as root:
        connection = root.connection

        async def get_status():
            return await connection.stub.GetStatus(jumpstarter_pb2.GetStatusRequest(), metadata=connection.metadata,
                                                   timeout=10)

        def status():
            return connection.portal.call(get_status())

        first = root.rec.note("one")
        assert status().status == common_pb2.EXPORTER_STATUS_LEASE_READY
        connection.portal.call(connection.end_session())
        wait_for(lambda: f"{first} closed" in events(recorder.record), 5, "EndSession to close the drivers")
        ended = status()
        assert (ended.status, ended.previous_status) == (common_pb2.EXPORTER_STATUS_AVAILABLE,
                                                         common_pb2.EXPORTER_STATUS_LEASE_READY)
        assert ended.status_version > 1
        assert status().status == common_pb2.EXPORTER_STATUS_AVAILABLE  # asking again started no session
        assert root.rec.note("two") != first  # a call starts the next session: ready again
        assert status().status == common_pb2.EXPORTER_STATUS_LEASE_READY


def test_errors_arrive_as_the_matching_exceptions(recorder):
    with connect(recorder.address, allow=TRUST_FIXTURES) as root:
        rec = root.rec
        expected = {"value": DriverInvalidArgument, "timeout": DriverTimeout, "notimpl": DriverNotImplemented,
                    "conn": ExporterUnavailable, "runtime": DriverError}
        for kind, error in expected.items():
            with pytest.raises(error, match=f"boom-{kind}"):
                rec.call("fail", kind)
        assert issubclass(DriverInvalidArgument, ValueError) and issubclass(DriverTimeout, TimeoutError)
        with pytest.raises(MethodNotFound, match=r"no exported method 'not_exported' \(it has: .*counter"):
            rec.call("not_exported")
        with pytest.raises(MethodNotFound, match="ticks is a streaming method"):
            rec.call("ticks", 3)
        with pytest.raises(DriverInvalidArgument, match=r"wrong arguments for greet\(name, punctuation='!'\)"):
            rec.call("greet")
        with pytest.raises(DriverInvalidArgument, match="base64"):
            rec.call("reverse", "%%%")
        # the session survives its errors
        assert rec.call("greet", "lab") == "hello, lab!"
        assert rec.call("greet", "lab", "?") == "hello, lab?"
        assert rec.call("reverse", b"abc") == "Y2Jh"  # bytes come back base64, as upstream sends them
        assert list(rec.streamingcall("ticks", 4)) == [0, 1, 2, 3]
    assert "Traceback" not in recorder.logs() or "boom-runtime" in recorder.logs()


def test_client_class_outside_allowlist_is_refused_and_never_imported(recorder):
    sys.modules.pop("labtest_drivers", None)
    with connect(recorder.address) as root:
        rec = root.rec
        assert isinstance(rec, UnavailableClient)
        assert "labtest_drivers" not in sys.modules
        with pytest.raises(ClientNotAllowed, match="'labtest_drivers.RecorderClient' is not in the driver allowlist"):
            rec.call("counter")
        root.power.on()  # the rest of the tree still works
    with connect(recorder.address, allow=TRUST_FIXTURES) as root:
        assert type(root.rec).__name__ == "RecorderClient"


def test_pinned_clients_from_drivers_pins(standard):
    """`drivers pins` prints what a client config's drivers.pins takes; a wrong pin makes only that driver
    unavailable, naming the digest it found."""
    printed = subprocess.run([CLI, "drivers", "pins"], capture_output=True, text=True, timeout=60, check=True)
    pins = yaml.safe_load(printed.stdout)["drivers"]["pins"]
    assert {"jumpstarter-lab-driver-power", "jumpstarter-lab-driver-network"} <= set(pins)
    with connect(standard.address, allow=Allowlist(pins=pins)) as root:
        root.power.on()
        assert root.power.call("status") == "on"
    wrong = "sha256:" + "0" * 64
    tree = subprocess.run([CLI, "tree", "--host", standard.address, "--pin", f"jumpstarter-lab-driver-power={wrong}",
                           *[f"--pin={name}={value}" for name, value in pins.items() if "power" not in name]],
                          capture_output=True, text=True, timeout=60, check=True)
    assert f"does not match its pin: its files hash to {pins['jumpstarter-lab-driver-power']}" in tree.stdout
    assert tree.stdout.count("unavailable") == 1  # echo and serial still load
    bad = subprocess.run([CLI, "tree", "--host", standard.address, "--pin", "power=md5:1"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "'power=md5:1': expected DISTRIBUTION=sha256:<64 hex digits>" in bad.stderr


# Speaks just enough HTTP/2 to see whether the exporter answers: a refused peer gets EOF.
PROBE = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
try:
    s.sendall(b"PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
    print("answered" if s.recv(64) else "closed")
except (ConnectionResetError, BrokenPipeError):
    print("closed")
"""


def test_refuses_a_peer_of_another_uid(make_config, run_exporter, tmp_path):
    if os.geteuid() != 0:
        pytest.fail("this test switches to uid 65534 and must run as root (as CI does)")
    public = Path(tempfile.mkdtemp(prefix="peercred-"))
    try:
        public.chmod(0o755)
        exporter = run_exporter(make_config(STANDARD_EXPORT), "--socket", str(public / "e.sock"))
        os.chmod(exporter.address, 0o666)  # leave only SO_PEERCRED between the peer and the exporter

        def probe(**user) -> str:
            result = subprocess.run(["/usr/bin/python3", "-c", PROBE, exporter.address], capture_output=True,
                                    text=True, timeout=60, cwd="/", **user, check=False)
            return result.stdout.strip() or result.stderr

        assert probe(user=65534, group=65534) == "closed"
        wait_for(lambda: "refused a connection from uid 65534" in exporter.logs(), 5, "the refusal in the log")
        assert probe() == "answered"
        with connect(exporter.address) as root:  # the owner still gets in
            root.power.on()
    finally:
        shutil.rmtree(public, ignore_errors=True)


def test_a_socket_group_admits_its_members_and_no_one_else(make_config, run_exporter):
    if os.geteuid() != 0:
        pytest.fail("this test switches to other uids and must run as root (as CI does)")
    public = Path(tempfile.mkdtemp(prefix="peercred-"))
    try:
        public.chmod(0o755)
        exporter = run_exporter(make_config(STANDARD_EXPORT), "--socket", str(public / "e.sock"),
                                "--socket-group", "nogroup")
        mode = os.stat(exporter.address)
        assert stat.S_IMODE(mode.st_mode) == 0o660 and mode.st_gid == grp.getgrnam("nogroup").gr_gid

        def probe(**user) -> str:
            result = subprocess.run(["/usr/bin/python3", "-c", PROBE, exporter.address], capture_output=True,
                                    text=True, timeout=60, cwd="/", **user, check=False)
            return result.stdout.strip() or result.stderr

        assert probe(user=65534, group=65534) == "answered"  # nobody, whose group is nogroup
        os.chmod(exporter.address, 0o666)  # leave only SO_PEERCRED between a stranger and the exporter
        assert probe(user=4321, group=4321) == "closed"
        wait_for(lambda: "only uid 0 and members of group 65534 may use this socket" in exporter.logs(), 5,
                 "the refusal in the log")
    finally:
        shutil.rmtree(public, ignore_errors=True)
    refused = subprocess.run([CLI, "exporter", "run", "--config", str(make_config(STANDARD_EXPORT)), "--socket",
                              str(public / "x.sock"), "--socket-group", "no-such-group-here"],
                             capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 1 and "no group named 'no-such-group-here'" in refused.stderr


def test_second_exporter_on_a_live_socket_is_refused(standard, make_config, tmp_path):
    from helpers import CLI

    result = subprocess.run([CLI, "exporter", "run", "--config", str(make_config(STANDARD_EXPORT, filename="b.yaml")),
                             "--socket", standard.address], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().endswith(f"{standard.address} is in use by another exporter")
    with connect(standard.address) as root:  # the first one is untouched
        root.power.on()


def test_missing_socket_is_reported_at_once(tmp_path):
    with pytest.raises(ExporterUnavailable, match="no exporter socket at"):
        with connect(str(tmp_path / "absent.sock")):
            pass


def test_exporter_killed_mid_stream_fails_the_client_and_restart_reclaims_the_socket(make_config, run_exporter):
    config = make_config(STANDARD_EXPORT)
    exporter = run_exporter(config)
    with connect(exporter.address) as root:
        with root.echo.stream() as stream:
            stream.send(b"ping")
            assert stream.receive_exactly(4, timeout=10) == b"ping"
            exporter.process.kill()
            exporter.process.wait()
            with pytest.raises((ExporterUnavailable, EOFError)):
                stream.receive_exactly(1, timeout=10)
        with pytest.raises(ExporterUnavailable):
            root.power.on()
    assert Path(exporter.address).exists()  # SIGKILL leaves the file; the next exporter takes it over
    again = run_exporter(config, "--socket", exporter.address)
    with connect(again.address) as root:
        root.power.on()
    assert again.stop() == 0 and not Path(again.address).exists()


def test_log_stream_carries_driver_logs(standard):
    from google.protobuf import empty_pb2

    async def first_driver_log(connection):
        async for entry in connection.stub.LogStream(empty_pb2.Empty(), metadata=connection.metadata, timeout=10):
            if "power on" in entry.message:
                return entry

    with connect(standard.address, session="logs") as root:
        root.power.on()
        entry = root.connection.portal.call(first_driver_log(root.connection))
        assert entry.severity == "INFO" and entry.message == "power on"


def test_private_directory_of_a_killed_exporter_is_swept(make_config, run_exporter):
    config = make_config(STANDARD_EXPORT)
    first = run_exporter(config)
    private = list(Path(tempfile.gettempdir()).glob(f"jumpstarter-lab-{first.process.pid}-*"))
    assert len(private) == 1 and (private[0] / "grpc.sock").exists()
    first.process.kill()
    first.process.wait()
    second = run_exporter(config)
    assert not private[0].exists()
    assert second.stop() == 0
    assert not list(Path(tempfile.gettempdir()).glob(f"jumpstarter-lab-{second.process.pid}-*"))


def test_a_ref_entry_drives_the_same_instance(make_config, run_exporter):
    exporter = run_exporter(make_config("""
board:
  children:
    power:
      type: jumpstarter_driver_power.driver.MockPower
dut_power:
  ref: board.power
"""))
    with connect(exporter.address) as root:
        assert type(root.dut_power).__name__ == "PowerClient"
        root.dut_power.on()
        assert root.board.power.call("status") == "on"  # one driver, two names
        assert [r.voltage for r in root.dut_power.read()] == [5.0]
