"""Network family through a real exporter: UDP and Unix-socket streams to real local
servers, and client-side port forwarding (TCP and Unix listeners) onto a TcpNetwork
whose target is a real HTTP or echo server started by the test."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import os
import socket
import socketserver
import stat
import subprocess
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from helpers import CLI, free_port, subprocess_env, wait_for
from jumpstarter_lab.client import DriverClient, connect, connect_async
from jumpstarter_lab.driver import STREAM, exported_methods
from jumpstarter_lab.wire.errors import ExporterUnavailable
from jumpstarter_lab_driver_network.adapters import (
    TcpPortforwardAdapter,
    UnixPortforwardAdapter,
)
from jumpstarter_lab_driver_network.client import NetworkClient
from jumpstarter_lab_driver_network.driver import (
    EchoNetwork,
    TcpNetwork,
    UdpNetwork,
    UnixNetwork,
)
from jumpstarter_lab_driver_network.interface import NetworkInterface

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Servers:
    """Real servers on this machine for the drivers to reach, all stopped at the end."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self._stops = []

    def _run(self, server) -> None:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()

        def stop():
            server.shutdown()
            server.server_close()
            thread.join(5)

        self._stops.append(stop)

    def http(self) -> int:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                body = f"you asked for {self.path}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._run(server)
        return server.server_address[1]

    def tcp_echo(self) -> int:
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _EchoThenBye)
        server.daemon_threads = True
        self._run(server)
        return server.server_address[1]

    def unix_echo(self) -> str:
        path = str(self.tmp / "echo.sock")
        server = socketserver.ThreadingUnixStreamServer(path, _EchoThenBye)
        server.daemon_threads = True
        self._run(server)
        return path

    def udp_echo(self) -> int:
        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                data, sock = self.request
                sock.sendto(b"echo:" + data, self.client_address)

        server = socketserver.UDPServer(("127.0.0.1", 0), Handler)
        self._run(server)
        return server.server_address[1]

    def stop(self) -> None:
        for stop in self._stops:
            stop()


class _EchoThenBye(socketserver.StreamRequestHandler):
    """Echoes until the peer's EOF, then says bye: shows that half-close travels through."""

    def handle(self):
        while data := self.request.recv(65536):
            self.request.sendall(data)
        self.request.sendall(b"bye")


@pytest.fixture
def servers(tmp_path):
    s = Servers(tmp_path)
    yield s
    s.stop()


def recv_until_eof(sock: socket.socket) -> bytes:
    sock.settimeout(30)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_udp_keeps_datagram_boundaries(make_config, run_exporter, servers):
    port = servers.udp_echo()
    exporter = run_exporter(make_config(f"""
udp:
  type: jumpstarter_driver_network.driver.UdpNetwork
  config: {{host: 127.0.0.1, port: {port}}}
"""))
    with connect(exporter.address) as root:
        assert isinstance(root.udp, NetworkClient)
        assert root.udp.address() == f"udp://127.0.0.1:{port}"
        datagrams = [b"one", b"two-two", bytes(range(256)) * 4, b"x"]
        with root.udp.stream() as stream:
            for datagram in datagrams:
                stream.send(datagram)
                assert stream.receive(timeout=10) == b"echo:" + datagram
        with root.udp.stream() as stream:  # a second socket works the same after the first closed
            stream.send(b"again")
            assert stream.receive(timeout=10) == b"echo:again"


def test_unix_network_streams_to_a_socket_and_names_a_missing_one(make_config, run_exporter, servers, tmp_path):
    path = servers.unix_echo()
    exporter = run_exporter(make_config(f"""
sock:
  type: jumpstarter_driver_network.driver.UnixNetwork
  config: {{path: {path}}}
gone:
  type: jumpstarter_driver_network.driver.UnixNetwork
  config: {{path: {tmp_path}/absent.sock}}
"""))
    with connect(exporter.address) as root:
        payload = os.urandom(300_000)
        with root.sock.stream() as stream:
            sender = threading.Thread(target=lambda: [stream.send(payload[i:i + 32768])
                                                      for i in range(0, len(payload), 32768)])
            sender.start()
            assert stream.receive_exactly(len(payload), timeout=30) == payload
            sender.join()
            stream.send_eof()
            assert stream.receive_exactly(3, timeout=10) == b"bye"
            assert stream.receive(timeout=10) == b""
        with pytest.raises(ExporterUnavailable, match=f"cannot connect to Unix socket {tmp_path}/absent.sock: "
                                                      "No such file or directory"):
            with root.gone.stream():
                pass
        with root.sock.stream() as stream:  # unharmed by the failed one
            stream.send(b"ok")
            assert stream.receive_exactly(2, timeout=10) == b"ok"


FORWARD_EXPORT = """
web:
  type: jumpstarter_driver_network.driver.TcpNetwork
  config: {{host: 127.0.0.1, port: {http}}}
echo:
  type: jumpstarter_driver_network.driver.TcpNetwork
  config: {{host: 127.0.0.1, port: {echo}}}
down:
  type: jumpstarter_driver_network.driver.TcpNetwork
  config: {{host: 127.0.0.1, port: {dead}}}
"""


@pytest.fixture
def forwarding(make_config, run_exporter, servers):
    return run_exporter(make_config(FORWARD_EXPORT.format(http=servers.http(), echo=servers.tcp_echo(),
                                                          dead=free_port())))


def test_tcp_port_forward_reaches_a_real_http_server(forwarding):
    with connect(forwarding.address) as root:
        with TcpPortforwardAdapter(client=root.web) as (host, port):
            assert host == "127.0.0.1" and port > 0

            def get(path: str) -> str:
                with NO_PROXY.open(f"http://{host}:{port}{path}", timeout=30) as response:
                    return response.read().decode()

            assert get("/hello") == "you asked for /hello"
            with concurrent.futures.ThreadPoolExecutor(4) as pool:  # each connection gets its own stream
                assert list(pool.map(get, [f"/page/{i}" for i in range(8)])) == [
                    f"you asked for /page/{i}" for i in range(8)]
        with pytest.raises(ConnectionRefusedError):  # the listener ends with the adapter
            socket.create_connection((host, port), timeout=10).close()


def test_tcp_port_forward_carries_bulk_data_and_half_close(forwarding):
    payload = os.urandom(2_000_000)
    with connect(forwarding.address) as root:
        with TcpPortforwardAdapter(client=root.echo, local_port=free_port()) as address:
            with socket.create_connection(address, timeout=30) as sock:
                sender = threading.Thread(target=lambda: (sock.sendall(payload), sock.shutdown(socket.SHUT_WR)))
                sender.start()
                assert recv_until_eof(sock) == payload + b"bye"
                sender.join()


def test_port_forward_to_a_dead_target_closes_the_local_connection(forwarding):
    with connect(forwarding.address) as root:
        adapter = TcpPortforwardAdapter(client=root.down)
        with adapter as address:
            with socket.create_connection(address, timeout=30) as sock:
                assert recv_until_eof(sock) == b""
            wait_for(lambda: adapter.last_error is not None, 10, "the adapter to record why")
            assert isinstance(adapter.last_error, ExporterUnavailable)
            assert "cannot connect to 127.0.0.1:" in str(adapter.last_error)
            with TcpPortforwardAdapter(client=root.web) as (host, port):  # the session is fine
                with NO_PROXY.open(f"http://{host}:{port}/x", timeout=30) as response:
                    assert response.read() == b"you asked for /x"


def test_unix_port_forward_is_private_and_cleaned_up(forwarding, tmp_path):
    with connect(forwarding.address) as root:
        with UnixPortforwardAdapter(client=root.echo) as path:
            mode = os.stat(path).st_mode
            assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(path)
                sock.sendall(b"over unix")
                sock.shutdown(socket.SHUT_WR)
                assert recv_until_eof(sock) == b"over unix" + b"bye"
        assert not os.path.exists(path) and not os.path.exists(os.path.dirname(path))
        chosen = tmp_path / "fwd.sock"
        with UnixPortforwardAdapter(client=root.web, path=chosen) as path:
            assert path == str(chosen)
        assert not chosen.exists()


def test_port_forward_from_async_code(forwarding):
    async def main() -> bytes:
        async with connect_async(forwarding.address) as root:
            async with TcpPortforwardAdapter(client=root.echo) as (host, port):
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(b"async")
                writer.write_eof()
                data = await asyncio.wait_for(reader.read(), 30)
                writer.close()
                await writer.wait_closed()
                return data

    assert asyncio.run(main()) == b"asyncbye"


def test_ssh_style_hand_over_through_a_forwarded_port(forwarding, tmp_path):
    """What the connection plugin's TCP transport does: a child process connects to the local port."""
    with connect(forwarding.address) as root:
        with TcpPortforwardAdapter(client=root.web) as (host, port):
            script = ("import socket, sys; s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30);"
                      "s.sendall(b'GET /ssh HTTP/1.0\\r\\n\\r\\n'); data = b''\n"
                      "while chunk := s.recv(4096): data += chunk\n"
                      "print(data.split(b'\\r\\n\\r\\n', 1)[1].decode())")
            result = subprocess.run(["python3", "-c", script, host, str(port)], capture_output=True, text=True,
                                    timeout=60, check=False)
            assert result.returncode == 0, result.stderr
            assert result.stdout.strip() == "you asked for /ssh"


def test_cli_calls_a_network_driver(make_config, run_exporter):
    exporter = run_exporter(make_config("""
udp:
  type: jumpstarter_lab_driver_network.UdpNetwork
  config: {host: "::1", port: 5353}
"""))
    result = subprocess.run([CLI, "call", "--host", exporter.address, "udp.address"], capture_output=True, text=True,
                            timeout=60, env=subprocess_env(), check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "udp://[::1]:5353"


def test_client_interface_and_drivers_agree_on_method_names():
    assert set(NetworkInterface.methods()) == {"connect"}
    client_methods = {name for name in dict(inspect.getmembers(NetworkClient, inspect.isfunction))
                      if not name.startswith("_") and not hasattr(DriverClient, name)}
    assert client_methods == {"address"}  # connect is a stream: clients open it with stream()
    for driver in (TcpNetwork, UdpNetwork, UnixNetwork, EchoNetwork):
        methods = exported_methods(driver)
        assert methods["connect"] == STREAM, driver.__name__
        assert set(methods) - {"connect"} <= client_methods, driver.__name__
        assert driver.client() == "jumpstarter_driver_network.client.NetworkClient"
    assert "address" in exported_methods(TcpNetwork) and "address" in exported_methods(UdpNetwork)


def test_tcp_connect_has_a_deadline(make_config, run_exporter):
    """A target that never answers (its accept queue is full, so the kernel drops our SYNs) fails
    within connect_timeout, naming the target, and the exporter goes on serving."""
    deaf = socket.socket()
    deaf.bind(("127.0.0.1", 0))
    deaf.listen(0)
    port = deaf.getsockname()[1]
    queued = []
    for _attempt in range(3):  # fill the accept queue; nobody ever accepts
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        queued.append(s)
    exporter = run_exporter(make_config(f"""
deaf:
  type: jumpstarter_driver_network.driver.TcpNetwork
  config: {{host: 127.0.0.1, port: {port}, connect_timeout: 1}}
echo:
  type: jumpstarter_driver_network.driver.EchoNetwork
"""))
    try:
        with connect(exporter.address) as root:
            with pytest.raises(ExporterUnavailable, match=f"cannot connect to 127.0.0.1:{port}: no answer within 1s"):
                with root.deaf.stream():
                    pass
            with root.echo.stream() as stream:
                stream.send(b"still here")
                assert stream.receive_exactly(10, timeout=10) == b"still here"
    finally:
        for s in queued:
            s.close()
        deaf.close()
