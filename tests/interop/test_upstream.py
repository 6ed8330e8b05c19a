"""Upstream Jumpstarter 0.9.0 as a real peer, in both directions (its client against our exporter and our
controller, our client against its exporter), and its protocol descriptors."""

from __future__ import annotations

import datetime
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import yaml

from helpers import CLI, ROOT, STANDARD_EXPORT, ControllerLab, cli, exporter_config, free_port, upstream_venv, wait_for
from jumpstarter_lab.client import connect
from jumpstarter_lab.wire.errors import MethodNotFound

DESCRIBE = textwrap.dedent("""
    import json, sys
    from google.protobuf import descriptor_pb2
    if sys.argv[1] == "upstream":
        from jumpstarter_protocol.jumpstarter.v1 import common_pb2, jumpstarter_pb2, kubernetes_pb2, router_pb2
        from jumpstarter_protocol.jumpstarter.client.v1 import client_pb2
    else:
        from jumpstarter_lab.wire.protocol import common_pb2, jumpstarter_pb2, kubernetes_pb2, router_pb2, client_pb2

    def fields(message, prefix=""):
        out = {}
        for m in message.message_type if hasattr(message, "message_type") else message.nested_type:
            name = prefix + m.name
            out[name] = [(f.name, f.number, f.type, f.label, f.type_name, f.proto3_optional) for f in m.field]
            out.update(fields(m, name + "."))
        return out

    result = {}
    for module in (common_pb2, jumpstarter_pb2, kubernetes_pb2, router_pb2, client_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        result[proto.name] = {
            "package": proto.package,
            "messages": fields(proto),
            "enums": {e.name: [(v.name, v.number) for v in e.value] for e in proto.enum_type},
            "services": {s.name: [(m.name, m.input_type, m.output_type, m.client_streaming, m.server_streaming)
                                  for m in s.method] for s in proto.service},
        }
    print(json.dumps(result, sort_keys=True))
""")


def describe(python: str, which: str) -> dict:
    out = subprocess.run([python, "-c", DESCRIBE, which], capture_output=True, text=True, check=True, timeout=60)
    return json.loads(out.stdout)


def test_protocol_descriptors_match_upstream_field_for_field():
    ours = describe(sys.executable, "ours")
    theirs = describe(str(upstream_venv() / "bin" / "python"), "upstream")
    assert ours.keys() == theirs.keys()
    for name in theirs:
        assert ours[name] == theirs[name], f"{name} differs from upstream"


@pytest.fixture
def upstream_exporter(tmp_path):
    config = tmp_path / "upstream.yaml"
    config.write_text(exporter_config(STANDARD_EXPORT, name="upstream") + 'endpoint: ""\ntoken: ""\n')
    port = free_port()
    log = open(tmp_path / "upstream.log", "wb")  # noqa: SIM115
    process = subprocess.Popen([str(upstream_venv() / "bin" / "jmp"), "run", "--exporter-config", str(config),
                                "--tls-grpc-listener", f"127.0.0.1:{port}", "--tls-grpc-insecure"],
                               stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, HOME=str(tmp_path)),
                               start_new_session=True)

    def listening():
        if process.poll() is not None:
            raise AssertionError(f"upstream exporter exited: {(tmp_path / 'upstream.log').read_text()}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(listening, 60, "the upstream exporter to listen", interval=0.2)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)
        log.close()


def test_our_client_drives_an_upstream_exporter(upstream_exporter):
    with connect(upstream_exporter, insecure=True) as root:
        assert {name: type(c).__name__ for name, c in root.children.items()} == {
            "power": "PowerClient", "echo": "NetworkClient", "serial": "SerialClient"}
        root.power.on()
        readings = list(root.power.read())
        assert [(r.voltage, r.current) for r in readings] == [(0.0, 0.0), (5.0, 2.0)]
        root.power.off()
        with root.echo.stream() as stream:
            stream.send(b"hello upstream")
            assert stream.receive_exactly(14, timeout=10) == b"hello upstream"
        with root.serial.stream() as stream:
            stream.send(b"serial bytes")
            assert stream.receive_exactly(12, timeout=10) == b"serial bytes"
        with pytest.raises(MethodNotFound):
            root.power.call("explode")


UPSTREAM_CLIENT = textwrap.dedent("""
    from jumpstarter.utils.env import env
    with env() as client:
        print("children", ",".join(sorted(client.children)))
        client.power.on()
        print("read", [(r.voltage, r.current) for r in client.power.read()])
        client.power.off()
        with client.echo.stream() as s:
            s.send(b"echo from upstream")
            got = b""
            while len(got) < 18:
                got += s.receive()
            print("echo", got.decode())
        with client.serial.stream() as s:
            s.send(b"serial from upstream")
            got = b""
            while len(got) < 20:
                got += s.receive()
            print("serial", got.decode())
""")


def test_upstream_client_drives_our_exporter(make_config, run_exporter, tmp_path):
    exporter = run_exporter(make_config(STANDARD_EXPORT), "--listen", "127.0.0.1:0", "--insecure")
    script = tmp_path / "upstream_client.py"
    script.write_text(UPSTREAM_CLIENT)
    venv = upstream_venv()
    result = subprocess.run([str(venv / "bin" / "jmp"), "shell", "--tls-grpc", exporter.address, "--tls-grpc-insecure",
                             "--", str(venv / "bin" / "python"), str(script)],
                            capture_output=True, text=True, timeout=120, env=dict(os.environ, HOME=str(tmp_path)),
                            cwd=ROOT, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    ours = [line for line in result.stdout.splitlines() if line.split(" ", 1)[0] in ("children", "read", "echo", "serial")]
    assert ours == [
        "children echo,power,serial",
        "read [(5.0, 2.0)]",
        "echo echo from upstream",
        "serial serial from upstream",
    ]


def tls_lab(tmp_path) -> tuple[ControllerLab, Path]:
    """A controller serving TLS with a lab CA made by `admin`, as upstream's peers need (they speak only TLS);
    and the directory of the CA."""
    pki = tmp_path / "pki"
    assert cli("admin", "make-ca", "--dir", str(pki)).returncode == 0
    assert cli("admin", "issue-cert", "--dir", str(pki), "--host", "127.0.0.1").returncode == 0
    lab = ControllerLab(tmp_path, str(tmp_path / "controller.db"),
                        serve=("--tls-cert", str(pki / "controller.crt"), "--tls-key", str(pki / "controller.key")),
                        trust=("--ca", str(pki / "ca.crt")))
    return lab, pki


def test_upstream_client_uses_our_controller_with_the_config_admin_wrote(tmp_path):
    """Upstream's jmp with a client config from `admin create-client`, over TLS with the lab's CA inline: lists
    the exporters, takes a lease, runs `j` through our router in `jmp shell` (which ends the session and
    waits for the exporter to say it is available again) and gives the lease back."""
    lab, pki = tls_lab(tmp_path)
    venv = upstream_venv()
    env = dict(os.environ, HOME=str(tmp_path), PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}")

    def jmp(*args: str, timeout: float = 60) -> str:
        verb = 1 if args[0] == "shell" else 2  # the options go before a shell's command
        command = [*args[:verb], "--client-config", str(tmp_path / "alice.yaml"), *args[verb:]]
        result = subprocess.run([str(venv / "bin" / "jmp"), *command],
                                capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp_path, check=False)
        assert result.returncode == 0, f"jmp {' '.join(args)}: {result.stdout}{result.stderr}"
        return result.stdout

    try:
        lab.client("alice")
        hooked = tmp_path / "hooks.log"  # upstream's client waits through our beforeLease hook's phase
        lab.exporter("bench1", "board=mock", hooks={
            "beforeLease": {"script": f"sleep 2; echo before $CLIENT_NAME >> {hooked}", "onFailure": "endLease"},
            "afterLease": {"script": f"echo after >> {hooked}"}})
        listed = yaml.safe_load(jmp("get", "exporters", "-o", "yaml", "--with", "online"))
        assert [(e["name"], e["online"], e["labels"]) for e in listed["exporters"]] == [
            ("bench1", True, {"board": "mock"})], listed
        lease = jmp("create", "lease", "-l", "board=mock", "--duration", "10m", "-o", "name").strip()
        assert lease in jmp("get", "leases")
        # Before the exporter answered GetStatus after EndSession, jmp shell waited 300 s for it here.
        shell = jmp("shell", "--lease", lease, "--", "sh", "-c", "j power on && j power off && echo done", timeout=120)
        assert "done" in shell
        assert hooked.read_text() == "before alice\n"
        extended = yaml.safe_load(jmp("update", "lease", lease, "--duration", "1h", "-o", "yaml"))
        assert extended["duration"] == 3600.0 and extended["client"] == "alice", extended
        jmp("delete", "lease", lease)
        assert lease not in jmp("get", "leases")
        wait_for(lambda: hooked.read_text() == "before alice\nafter\n", 30, "the afterLease hook")
        # A reservation with upstream's --begin-time: queued for its time, not granted before it.
        begin = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
        later = jmp("create", "lease", "-l", "board=mock", "--begin-time", begin.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "--duration", "10m", "-o", "name").strip()
        ours = json.loads(cli("lease", "list", "-o", "json", "--client-config", str(tmp_path / "alice.yaml")).stdout)
        assert [(r["name"], r["state"], r["message"][:14]) for r in ours] == [(later, "waiting", "reserved from ")]
        assert abs(ours[0]["begins"] - begin.timestamp()) < 1, ours
        jmp("delete", "lease", later)
    finally:
        lab.stop()


def test_an_upstream_exporter_with_hooks_serves_our_controllers_leases(tmp_path):
    """Upstream's exporter (`jmp run`) registered with our controller, its config written by our `admin`, with
    upstream hooks of its own: our client leases it and drives it through our router, the hooks run around the
    lease and the statuses it reports show in our listing."""
    lab, pki = tls_lab(tmp_path)
    hooked = tmp_path / "hooks.log"
    export = tmp_path / "export.yaml"
    export.write_text(yaml.safe_dump({"export": {"power": {"type": "jumpstarter_driver_power.driver.MockPower"}}}))
    config = tmp_path / "up1.yaml"
    process = None
    try:
        alice = str(lab.workdir / "alice.yaml")
        lab.client("alice")
        assert cli("admin", "create-exporter", "up1", "--db", lab.db, "--endpoint", lab.endpoint, "--ca",
                   str(pki / "ca.crt"), "--label", "board=upstream", "--export-from", str(export), "-o",
                   str(config)).returncode == 0
        config.write_text(yaml.safe_dump(yaml.safe_load(config.read_text()) | {"hooks": {
            "beforeLease": {"script": f"echo before $LEASE_NAME $CLIENT_NAME >> {hooked}; j power on"},
            "afterLease": {"script": f"echo after >> {hooked}"}}}))
        with open(tmp_path / "upstream.log", "wb") as log:
            process = subprocess.Popen([str(upstream_venv() / "bin" / "jmp"), "run", "--exporter-config",
                                        str(config)], stdout=log, stderr=subprocess.STDOUT,
                                       env=dict(os.environ, HOME=str(tmp_path)), start_new_session=True)

        def listed() -> dict:
            rows = json.loads(cli("exporters", "list", "-o", "json", "--client-config", alice).stdout)
            return rows[0] if rows else {}

        wait_for(lambda: listed().get("online"), 60, "the upstream exporter to register", interval=0.5)
        assert listed()["message"] == "Exporter registered and available"  # what it reported
        shell = cli("shell", "--client-config", alice, "-l", "board=upstream", "--", CLI, "call", "power.on")
        assert shell.returncode == 0, shell.stderr + (tmp_path / "upstream.log").read_text()[-3000:]
        wait_for(lambda: hooked.exists() and hooked.read_text().endswith("after\n"), 30, "the afterLease hook")
        before, after = hooked.read_text().splitlines()
        assert before.startswith("before ") and before.endswith(" alice") and after == "after"
        wait_for(lambda: listed()["status"] == "available", 30, "the upstream exporter available again")
    finally:
        if process is not None:
            os.killpg(process.pid, 15)
            process.wait(timeout=30)
        lab.stop()


def test_fields_newer_than_upstream_0_9_0_are_accepted_and_ignored(tmp_path):
    """Upstream's main has added fields since 0.9.0 (a lease context, a report's motd): messages that carry
    fields this build does not know, on the exporter's and the client's calls to our controller, are served
    as if those fields were not there."""
    import grpc

    from jumpstarter_lab.wire.metadata import identity_metadata
    from jumpstarter_lab.wire.protocol import client_pb2, jumpstarter_pb2

    def unknown(message) -> bytes:  # the message, plus field 99 (a string) that no 0.9.0 message has
        return message.SerializeToString() + b"\x9a\x06\x0bfrom-main-1"

    lab = ControllerLab(tmp_path, str(tmp_path / "controller.db"))
    try:
        alice = lab.client("alice")
        lab.exporter("bench1", "board=mock")
        exporter_token = yaml.safe_load((tmp_path / "bench1.yaml").read_text())["token"]
        with grpc.insecure_channel(lab.endpoint) as channel:
            def call(path: str, request: bytes, token: str, kind: str, name: str, reply):
                method = channel.unary_unary(path, request_serializer=lambda raw: raw,
                                             response_deserializer=reply.FromString)
                return method(request, metadata=identity_metadata(token, kind, "default", name), timeout=10)

            call("/jumpstarter.v1.ControllerService/ReportStatus",
                 unknown(jumpstarter_pb2.ReportStatusRequest(status=2, message="with a field from main")),
                 exporter_token, "Exporter", "bench1", jumpstarter_pb2.ReportStatusResponse)
            lease = client_pb2.Lease(selector="board=mock")
            lease.duration.FromSeconds(60)
            request = client_pb2.CreateLeaseRequest(parent="namespaces/default")
            request.lease.ParseFromString(unknown(lease))  # kept as an unknown field, and sent on
            created = call("/jumpstarter.client.v1.ClientService/CreateLease", request.SerializeToString(),
                           alice.token, "Client", "alice", client_pb2.Lease)
        assert created.exporter.endswith("bench1") and created.selector == "board=mock", created
        listed = json.loads(cli("exporters", "list", "-o", "json", "--client-config",
                                str(tmp_path / "alice.yaml")).stdout)
        assert listed[0]["status"] == "lease_ready", listed
    finally:
        lab.stop()
    report = jumpstarter_pb2.GetReportResponse()
    report.ParseFromString(unknown(jumpstarter_pb2.GetReportResponse(uuid="u1")))  # what our client reads
    assert report.uuid == "u1"
