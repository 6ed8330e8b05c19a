"""Netboot family through a real exporter: the client fills a TFTP and an HTTP server's root, boards fetch
over real UDP and TCP sockets (a TFTP client, an HTTP client), nobody uploads, and the root is emptied when
the session ends."""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request

import pytest
import tftpy

from helpers import cli, wait_for
from jumpstarter_lab.client import connect
from jumpstarter_lab.wire.errors import DriverInvalidArgument, MethodNotFound
from jumpstarter_lab_driver_netboot.client import FileServerClient

EXPORT = """
tftp:
  type: jumpstarter_lab_driver_netboot.TftpServer
  config: {{host: 127.0.0.1}}
http:
  type: jumpstarter_lab_driver_netboot.HttpServer
  config: {{host: 127.0.0.1}}
shared:
  type: jumpstarter_lab_driver_netboot.TftpServer
  config: {{host: 127.0.0.1, root_dir: {shared}}}
"""


@pytest.fixture
def exporter(make_config, run_exporter, tmp_path):
    shared = tmp_path / "tftpboot"
    shared.mkdir()
    (shared / "kept.txt").write_text("the lab's own file\n")
    return run_exporter(make_config(EXPORT.format(shared=shared))), shared


def fetch_tftp(port: int, name: str, into) -> bytes:
    tftpy.TftpClient("127.0.0.1", port, options={"blksize": 1428}).download(name, str(into))
    return into.read_bytes()


def test_files_put_are_served_over_tftp_and_http_and_gone_after_the_session(exporter, tmp_path):
    served, shared = exporter
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(os.urandom(3 << 20))
    with connect(served.address) as root:
        assert isinstance(root.tftp, FileServerClient)
        sent = []
        result = root.tftp.put_file(kernel, "boot/vmlinuz", progress=lambda done, total: sent.append(done))
        assert result == {"name": "boot/vmlinuz", "bytes": 3 << 20,
                          "sha256": hashlib.sha256(kernel.read_bytes()).hexdigest()}
        assert sent[-1] == 3 << 20
        assert root.tftp.list_files() == {"boot/vmlinuz": 3 << 20}
        port = root.tftp.get_port()
        assert fetch_tftp(port, "boot/vmlinuz", tmp_path / "got") == kernel.read_bytes()
        with pytest.raises(tftpy.TftpException):  # boards fetch; nobody uploads
            tftpy.TftpClient("127.0.0.1", port).upload("boot/evil", str(kernel))
        assert "boot/evil" not in root.tftp.list_files()

        root.http.put_file(kernel, "vmlinuz")
        url = root.http.get_url("vmlinuz")
        assert url == f"http://127.0.0.1:{root.http.get_port()}/vmlinuz"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.read() == kernel.read_bytes()
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(root.http.get_url("missing"), timeout=10)

        for bad in ("../escape", "/..", "a/../../b", ""):
            with pytest.raises(DriverInvalidArgument, match="is not a file name inside the served root"):
                root.tftp.call("delete_file", bad)
        with pytest.raises(MethodNotFound, match="no file nothing.bin is served"):
            root.tftp.delete_file("nothing.bin")
        root.http.delete_file("vmlinuz")
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(url, timeout=10)

        root.shared.put_file(kernel, "mine.bin")
        assert root.shared.list_files() == {"kept.txt": 19, "mine.bin": 3 << 20}
        assert fetch_tftp(root.shared.get_port(), "kept.txt", tmp_path / "kept") == b"the lab's own file\n"

    # The session ended with its connection: what it put in the shared root goes with it.
    wait_for(lambda: sorted(p.name for p in shared.iterdir()) == ["kept.txt"], 10, "the session's files gone")
    with connect(served.address) as root:  # a new session: its own, empty root; the shared one as it was
        assert root.tftp.list_files() == {}
        assert root.shared.list_files() == {"kept.txt": 19}


def test_the_cli_puts_files_with_progress_into_the_sessions_root(exporter, tmp_path):
    served, _shared = exporter
    kernel, initrd = tmp_path / "vmlinuz", tmp_path / "initrd.img"
    kernel.write_bytes(os.urandom(1 << 20))
    initrd.write_bytes(os.urandom(300_000))
    session = ("--host", served.address, "--session", "netboot-cli")
    put = cli("put", *session, "tftp", str(kernel), str(initrd), "-o", "json")
    assert put.returncode == 0, put.stderr
    assert [(record["name"], record["bytes"]) for record in json.loads(put.stdout)] == [
        ("vmlinuz", 1 << 20), ("initrd.img", 300_000)]
    assert "vmlinuz -> tftp:vmlinuz" in put.stderr and "initrd.img -> tftp:initrd.img" in put.stderr  # progress
    renamed = cli("put", *session, "http", str(kernel), "--name", "boot/bzImage")
    assert renamed.stdout.strip() == (f"http: serving boot/bzImage ({1 << 20} bytes, "
                                      f"sha256 {hashlib.sha256(kernel.read_bytes()).hexdigest()})")
    with connect(served.address, session="netboot-cli") as root:  # what boards of that session fetch
        assert root.tftp.list_files() == {"vmlinuz": 1 << 20, "initrd.img": 300_000}
        assert fetch_tftp(root.tftp.get_port(), "vmlinuz", tmp_path / "got") == kernel.read_bytes()
        assert root.http.list_files() == {"boot/bzImage": 1 << 20}
    for args, message in ((("tftp", str(tmp_path / "absent")), "absent is not a file"),
                          (("tftp", str(kernel), str(initrd), "--name", "x"), "--name renames one file"),
                          (("nothing", str(kernel)), "no driver 'nothing'"),
                          (("tftp", str(kernel), "--name", "../escape"), "is not a file name inside the served root")):
        refused = cli("put", *session, *args)
        assert refused.returncode == 1 and message in refused.stderr, (args, refused.stderr)


def test_a_port_in_use_is_named(make_config, run_exporter, tmp_path):
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        served = run_exporter(make_config(f"tftp:\n  type: jumpstarter_lab_driver_netboot.TftpServer\n"
                                          f"  config: {{host: 127.0.0.1, port: {port}}}\n"))
        with connect(served.address) as root:
            with pytest.raises(Exception, match=f"tftp: cannot listen on 127.0.0.1:{port}: Address already in use"):
                root.tftp.get_port()
