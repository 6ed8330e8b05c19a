"""Ansible reaches a standalone exporter that authenticates its clients by certificate and token."""

from __future__ import annotations

import pytest

from conftest import Lab
from helpers import STANDARD_EXPORT, ExporterProcess, exporter_config
from jumpstarter_lab.controller.tls import issue_client_cert, issue_server_cert, make_ca


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, collections_path):
    workdir = tmp_path_factory.mktemp("guarded")
    (workdir / "tmp").mkdir()
    ca, ca_key = make_ca(workdir / "pki")
    cert, key = issue_server_cert(workdir / "pki", ca, ca_key, ["127.0.0.1"])
    client_cert, client_key = issue_client_cert(workdir / "pki", ca, ca_key, "ansible")
    token = workdir / "client.token"
    token.write_text("token-of-the-ansible-client")
    token.chmod(0o600)
    config = workdir / "exporter.yaml"
    config.write_text(exporter_config(STANDARD_EXPORT))
    exporter = ExporterProcess(["--config", str(config), "--listen", "127.0.0.1:0", "--tls-cert", str(cert),
                                "--tls-key", str(key), "--tls-client-ca", str(ca), "--token-file", str(token)],
                               workdir / "exporter.log")
    lab = Lab(workdir, collections_path, exporter.address, jumpstarter_tls_ca=str(ca),
              jumpstarter_tls_cert=str(client_cert), jumpstarter_tls_key=str(client_key),
              jumpstarter_token_file="{{ lab_dir }}/client.token", lab_dir=str(workdir))
    yield lab
    exporter.stop()


def test_call_with_certificate_and_token(guarded):
    result = guarded.playbook("""
- hosts: board1
  gather_facts: false
  tasks:
    - jumpstarter.lab.call: {driver: power, method: "on"}
    - jumpstarter.lab.call: {driver: power, method: status}
    - jumpstarter.lab.call: {driver: power, method: status}
      vars: {jumpstarter_token_file: null}
      ignore_errors: true
""")
    powered, status, refused = (task["hosts"]["board1"] for task in result["plays"][0]["tasks"])
    assert powered["changed"] is True, powered
    assert status["value"] == "on"
    assert refused["failed"] is True
    assert "this exporter needs its client token: no token" in refused["msg"]
