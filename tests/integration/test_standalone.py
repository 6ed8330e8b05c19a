"""Standalone mode: the exporter on TCP, with TLS or, when asked, without."""

from __future__ import annotations

import subprocess

import pytest

from helpers import CLI, STANDARD_EXPORT
from jumpstarter_lab.client import connect
from jumpstarter_lab.wire.errors import ExporterUnavailable
from jumpstarter_lab.controller.tls import issue_server_cert, make_ca


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki")
    ca_cert, ca_key = make_ca(directory)
    cert, key = issue_server_cert(directory, ca_cert, ca_key, ["localhost", "127.0.0.1"])
    other_ca = make_ca(directory / "other")[0]
    return {"ca": ca_cert, "cert": cert, "key": key, "other_ca": other_ca}


def test_tls_exporter_verified_by_its_ca(make_config, run_exporter, pki):
    exporter = run_exporter(make_config(STANDARD_EXPORT), "--listen", "127.0.0.1:0",
                            "--tls-cert", str(pki["cert"]), "--tls-key", str(pki["key"]))
    assert exporter.address.startswith("127.0.0.1:")
    with connect(exporter.address, tls_ca=str(pki["ca"])) as root:
        root.power.on()
        assert root.power.call("status") == "on"
        with root.echo.stream() as stream:
            stream.send(b"over tls")
            assert stream.receive_exactly(8, timeout=10) == b"over tls"
    with pytest.raises(ExporterUnavailable, match="cannot reach exporter"):
        with connect(exporter.address, tls_ca=str(pki["other_ca"]), timeout=3):
            pass
    with pytest.raises(ExporterUnavailable):
        with connect(exporter.address, insecure=True, timeout=3) as root:
            root.power.on()
    assert exporter.stop() == 0


def test_insecure_exporter_only_when_asked(make_config, run_exporter, tmp_path):
    config = make_config(STANDARD_EXPORT)
    refused = subprocess.run([CLI, "exporter", "run", "--config", str(config), "--listen", "127.0.0.1:0"],
                             capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == ("jumpstarter-lab: error: a TCP listener needs --tls-cert and --tls-key, "
                                      "or --insecure to serve without TLS")
    exporter = run_exporter(config, "--listen", "127.0.0.1:0", "--insecure")
    with connect(exporter.address, insecure=True) as a, connect(exporter.address, insecure=True) as b:
        a.power.on()
        assert a.power.call("status") == "on"
        assert b.power.call("status") == "off"  # its own session, its own drivers


def test_shell_insecure_hands_plaintext_to_the_commands_it_runs(make_config, run_exporter):
    """`shell --insecure --host H:P -- CMD`: CMD's own client connects without TLS too (JMP_GRPC_INSECURE),
    in the shell's one session."""
    exporter = run_exporter(make_config(STANDARD_EXPORT), "--listen", "127.0.0.1:0", "--insecure")
    script = f"{CLI} call power.on && {CLI} call power.status"
    result = subprocess.run([CLI, "shell", "--insecure", "--host", exporter.address, "--", "sh", "-c", script],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "on"  # the second command saw the first one's session
    plain = subprocess.run([CLI, "shell", "--host", exporter.address, "--", CLI, "call", "power.status"],
                           capture_output=True, text=True, timeout=60, check=False)
    assert plain.returncode == 1 and "cannot reach exporter" in plain.stderr  # without it, TLS is expected


def test_unreadable_tls_files_are_named(make_config, tmp_path):
    result = subprocess.run([CLI, "exporter", "run", "--config", str(make_config(STANDARD_EXPORT)),
                             "--listen", "127.0.0.1:0", "--tls-cert", str(tmp_path / "missing.crt"),
                             "--tls-key", str(tmp_path / "missing.key")], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "cannot read TLS key" in result.stderr and "missing.key" in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_is_reported(make_config, run_exporter):
    first = run_exporter(make_config(STANDARD_EXPORT), "--listen", "127.0.0.1:0", "--insecure")
    result = subprocess.run([CLI, "exporter", "run", "--config", str(make_config(STANDARD_EXPORT, filename="b.yaml")),
                             "--listen", first.address, "--insecure"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert f"cannot listen on {first.address}" in result.stderr
