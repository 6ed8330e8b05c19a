"""Standalone mode: the exporter on TCP, with TLS and client authentication or, when asked, without."""

from __future__ import annotations

import subprocess

import pytest

from helpers import CLI, STANDARD_EXPORT
from jumpstarter_lab.client import connect
from jumpstarter_lab.controller.tls import issue_client_cert, issue_server_cert, make_ca
from jumpstarter_lab.wire.errors import ConfigError, ExporterUnavailable, NotAuthenticated


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki")
    ca_cert, ca_key = make_ca(directory)
    cert, key = issue_server_cert(directory, ca_cert, ca_key, ["localhost", "127.0.0.1"])
    other_ca, other_key = make_ca(directory / "other")
    alice = issue_client_cert(directory, ca_cert, ca_key, "alice")
    mallory = issue_client_cert(directory / "other", other_ca, other_key, "mallory")
    return {"ca": ca_cert, "cert": cert, "key": key, "other_ca": other_ca, "alice": alice, "mallory": mallory}


def tls_args(pki, *auth: str) -> tuple[str, ...]:
    return ("--listen", "127.0.0.1:0", "--tls-cert", str(pki["cert"]), "--tls-key", str(pki["key"]), *auth)


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "exporter.token"
    path.write_text("s3cret-token-for-the-bench\n")
    path.chmod(0o600)
    return path


def test_tls_exporter_verified_by_its_ca(make_config, run_exporter, pki):
    exporter = run_exporter(make_config(STANDARD_EXPORT), *tls_args(pki, "--no-client-auth"))
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


def test_a_tls_listener_authenticates_its_clients_unless_told_not_to(make_config):
    result = subprocess.run([CLI, "exporter", "run", "--config", str(make_config(STANDARD_EXPORT)),
                             "--listen", "127.0.0.1:0", "--tls-cert", "c.pem", "--tls-key", "k.pem"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == ("jumpstarter-lab: error: a TLS listener needs client authentication: "
                                     "--tls-client-ca (mutual TLS) or --token-file, or --no-client-auth to admit "
                                     "anyone who reaches the port")


def test_mutual_tls_admits_only_certificates_of_the_client_ca(make_config, run_exporter, pki):
    exporter = run_exporter(make_config(STANDARD_EXPORT), *tls_args(pki, "--tls-client-ca", str(pki["ca"])))
    cert, key = (str(p) for p in pki["alice"])
    with connect(exporter.address, tls_ca=str(pki["ca"]), tls_cert=cert, tls_key=key) as root:
        root.power.on()
        assert root.power.call("status") == "on"
        with root.echo.stream() as stream:  # router streams are admitted the same way
            stream.send(b"mutual")
            assert stream.receive_exactly(6, timeout=10) == b"mutual"
    with pytest.raises(ExporterUnavailable, match="cannot reach exporter"):
        with connect(exporter.address, tls_ca=str(pki["ca"]), timeout=3):  # no certificate
            pass
    with pytest.raises(ExporterUnavailable, match="cannot reach exporter"):
        with connect(exporter.address, tls_ca=str(pki["ca"]), tls_cert=str(pki["mallory"][0]),
                     tls_key=str(pki["mallory"][1]), timeout=3):  # signed by another CA
            pass
    with pytest.raises(ConfigError, match="needs both --tls-cert and --tls-key"):
        with connect(exporter.address, tls_ca=str(pki["ca"]), tls_cert=cert):
            pass
    assert exporter.stop() == 0


def test_token_admits_only_clients_that_send_it(make_config, run_exporter, pki, token_file, tmp_path):
    exporter = run_exporter(make_config(STANDARD_EXPORT), *tls_args(pki, "--token-file", str(token_file)))
    with connect(exporter.address, tls_ca=str(pki["ca"]), token_file=str(token_file)) as root:
        root.power.on()
        with root.echo.stream() as stream:
            stream.send(b"token")
            assert stream.receive_exactly(5, timeout=10) == b"token"
    with pytest.raises(NotAuthenticated, match="needs its client token: no token"):
        with connect(exporter.address, tls_ca=str(pki["ca"])):
            pass
    wrong = tmp_path / "wrong.token"
    wrong.write_text("guess")
    wrong.chmod(0o600)
    with pytest.raises(NotAuthenticated, match="needs its client token: a wrong token"):
        with connect(exporter.address, tls_ca=str(pki["ca"]), token_file=str(wrong)):
            pass
    assert "refused /jumpstarter.v1.ExporterService/GetReport: a wrong token" in exporter.logs()
    wrong.chmod(0o644)
    with pytest.raises(ConfigError, match=f"token file {wrong} may be read by others .*chmod 600 {wrong}"):
        with connect(exporter.address, tls_ca=str(pki["ca"]), token_file=str(wrong)):
            pass
    assert exporter.stop() == 0


def test_shell_hands_its_credentials_to_the_commands_it_runs(make_config, run_exporter, pki, token_file):
    exporter = run_exporter(make_config(STANDARD_EXPORT), *tls_args(pki, "--token-file", str(token_file)))
    script = f"{CLI} call power.on && {CLI} call power.status"
    result = subprocess.run([CLI, "shell", "--host", exporter.address, "--tls-ca", str(pki["ca"]),
                             "--token-file", str(token_file), "--", "sh", "-c", script],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "on"


def test_an_exporter_token_file_others_may_read_is_refused(make_config, pki, token_file):
    token_file.chmod(0o640)
    result = subprocess.run([CLI, "exporter", "run", "--config", str(make_config(STANDARD_EXPORT)),
                             *tls_args(pki, "--token-file", str(token_file))],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert f"token file {token_file} may be read by others (mode 640); chmod 600 {token_file}" in result.stderr


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
                             "--tls-key", str(tmp_path / "missing.key"), "--no-client-auth"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "cannot read TLS key" in result.stderr and "missing.key" in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_is_reported(make_config, run_exporter):
    first = run_exporter(make_config(STANDARD_EXPORT), "--listen", "127.0.0.1:0", "--insecure")
    result = subprocess.run([CLI, "exporter", "run", "--config", str(make_config(STANDARD_EXPORT, filename="b.yaml")),
                             "--listen", first.address, "--insecure"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert f"cannot listen on {first.address}" in result.stderr


def test_admin_issues_client_certificates_that_the_cli_presents(make_config, run_exporter, tmp_path):
    pki = tmp_path / "pki"
    for args in (["make-ca"], ["issue-cert", "--host", "127.0.0.1", "--name", "exporter"], ["issue-cert", "--client", "bob"]):
        subprocess.run([CLI, "admin", *args, "--dir", str(pki)], check=True, capture_output=True, timeout=60)
    assert oct((pki / "bob.key").stat().st_mode & 0o777) == "0o600"
    missing = subprocess.run([CLI, "admin", "issue-cert", "--dir", str(pki)], capture_output=True, text=True,
                             timeout=60, check=False)
    assert missing.returncode == 1 and "needs --host (a server certificate) or --client NAME" in missing.stderr
    exporter = run_exporter(make_config(STANDARD_EXPORT), "--listen", "127.0.0.1:0", "--tls-cert",
                            str(pki / "exporter.crt"), "--tls-key", str(pki / "exporter.key"),
                            "--tls-client-ca", str(pki / "ca.crt"))
    common = ["--host", exporter.address, "--tls-ca", str(pki / "ca.crt")]
    called = subprocess.run([CLI, "call", "power.status", *common, "--tls-cert", str(pki / "bob.crt"),
                             "--tls-key", str(pki / "bob.key")], capture_output=True, text=True, timeout=60, check=False)
    assert called.returncode == 0 and called.stdout.strip() == "off", called.stderr
    refused = subprocess.run([CLI, "call", "power.status", *common], capture_output=True, text=True, timeout=60,
                             check=False)
    assert refused.returncode == 1 and "cannot reach exporter" in refused.stderr
