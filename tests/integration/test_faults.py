"""Faults with real processes on loopback: a controller killed under load, an exporter cut off from its
controller while leased, a full disk under the controller's database. Each prints what it measured; the
bounds asserted are liveness deadlines, not speed goals."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from helpers import CLI, ControllerLab, cli, free_port, subprocess_env, wait_for
from jumpstarter_lab.client import ControllerClient, connect_lease
from jumpstarter_lab.wire.errors import JumpstarterLabError

FLEET = 50


@pytest.fixture
def lab(tmp_path):
    lab = ControllerLab(tmp_path, str(tmp_path / "controller.db"))
    yield lab
    lab.stop()


async def online(client: ControllerClient) -> set[str]:
    return {exporter.name.rsplit("/", 1)[-1] for exporter in await client.exporters() if exporter.online}


def test_a_controller_killed_with_50_leases_loses_none_and_its_exporters_come_back(lab):
    clients, names = lab.fleet(FLEET, {"pool": "faults"})
    alice = clients["alice"]
    client_config = str(lab.workdir / "configs" / "clients" / "default" / "alice.yaml")

    async def take() -> dict[str, str]:
        client = ControllerClient(alice)
        try:
            asked = await asyncio.gather(*(client.create_lease("pool=faults", 600, ttl=120) for _board in names))
            ready = await asyncio.gather(*(client.wait_ready(lease.name, 60) for lease in asked))
            return {lease.name: lease.exporter for lease in ready}
        finally:
            await client.close()

    held = asyncio.run(take())
    assert sorted(held.values()) == names  # each board leased once
    log = lab.controller_process.log
    lab.controller_process.stop(signal.SIGKILL)
    before = log.stat().st_size
    lab.controller_process = lab.controller()
    restarted = time.monotonic()

    def registered_again() -> set[str]:
        with open(log, "rb") as text:
            text.seek(before)
            return set(re.findall(r"exporter default/(board\d+) registered", text.read().decode(errors="replace")))

    async def after_restart() -> float:
        client = ControllerClient(alice)
        try:
            while (back := registered_again()) != set(names):
                assert time.monotonic() - restarted < 60, f"exporters not back: {sorted(set(names) - back)}"
                await asyncio.sleep(0.1)
            all_back = time.monotonic() - restarted
            await asyncio.sleep(lab.GRACE + 1)  # online now only if their Status streams keep them so
            assert await online(client) == set(names)
            leases = {lease.name: lease for lease in await client.leases()}
            lost = {name: exporter for name, exporter in held.items()
                    if name not in leases or not leases[name].ready or leases[name].exporter != exporter}
            assert not lost, f"leases lost or moved by the restart: {lost}"
            return all_back
        finally:
            await client.close()

    seconds = asyncio.run(after_restart())
    print(f"controller kill -9 with {FLEET} leases held: 0 lost, all {FLEET} exporters registered again "
          f"{seconds:.1f}s after it was restarted")
    lease = next(iter(held))  # and a lease reaches its board through the new controller's router
    script = f"{CLI} call power.on && {CLI} call power.status"
    used = cli("shell", "--client-config", client_config, "--lease", lease, "--", "sh", "-c", script)
    assert used.returncode == 0 and used.stdout.split() == ["on"], used.stderr


class Relay:
    """A TCP relay the test can partition: while cut, nothing crosses either way and the bytes wait, as they do
    in a real partition (no reset, no close; TCP retransmits); once healed, everything goes on."""

    def __init__(self, target_port: int):
        self.target_port, self.port = target_port, free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="relay", daemon=True)
        self.thread.start()
        self.flowing = self._run(self._event())
        self.server = self._run(asyncio.start_server(self._accept, "127.0.0.1", self.port))

    async def _event(self) -> asyncio.Event:
        flowing = asyncio.Event()
        flowing.set()
        return flowing

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.flowing.wait()  # a connection made during the partition gets nowhere until it heals
        try:
            upstream = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, upstream[1]), self._pipe(upstream[0], writer), return_exceptions=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self.flowing.wait()
                writer.write(data)
                await writer.drain()
            await self.flowing.wait()  # a close crosses no partition either
        finally:
            writer.close()

    def cut(self) -> None:
        self.loop.call_soon_threadsafe(self.flowing.clear)

    def heal(self) -> None:
        self.loop.call_soon_threadsafe(self.flowing.set)

    def stop(self) -> None:
        self.heal()
        self._run(self._close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _close(self) -> None:
        self.server.close()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def test_an_exporter_cut_off_from_its_controller_while_leased_is_never_granted_twice(lab):
    """The exporter reaches the controller, and the router, only through a relay. A short partition (less than
    the exporter's grace) loses nothing; a long one with no word from either side (no reset: a pulled cable)
    ends the lease on the controller's side, the exporter drops it too, and after the heal the board goes to
    the client that waited: one holder at a time."""
    relay = Relay(lab.port)
    try:
        lab.controller_process.stop()  # the router is given to clients and exporters at the relay's address
        lab.controller_process = lab.controller(None, "--advertise", f"127.0.0.1:{relay.port}")
        alice, bob = lab.client("alice"), lab.client("bob")
        exporter = lab.exporter("bench1", "board=mock", endpoint=f"127.0.0.1:{relay.port}")

        async def scenario() -> dict:
            a, b = ControllerClient(alice), ControllerClient(bob)
            try:
                held = await a.wait_ready((await a.create_lease("board=mock", 600, ttl=300)).name, 30)
                relay.cut()
                await asyncio.sleep(lab.GRACE / 2)  # short: within the grace
                relay.heal()
                await asyncio.sleep(1)
                assert (await a.get_lease(held.name)).ready, "a short partition ended the lease"
                waiting = await b.create_lease("board=mock", 600, ttl=300)
                relay.cut()
                cut = time.monotonic()
                while not (status := await a.get_lease(held.name)).ended:
                    assert time.monotonic() - cut < 90, "the controller still counts a silent exporter as online"
                    assert not (await b.get_lease(waiting.name)).ready, "granted while its holder's lease goes on"
                    await asyncio.sleep(0.5)
                noticed = time.monotonic() - cut
                assert status.message == "the exporter went offline", status
                await asyncio.sleep(3)
                assert not (await b.get_lease(waiting.name)).ready, "granted to bob while the exporter is cut off"
                relay.heal()
                healed = time.monotonic()
                granted = await b.wait_ready(waiting.name, 60)
                return {"noticed": noticed, "regranted": time.monotonic() - healed, "exporter": granted.exporter,
                        "lease": waiting.name}
            finally:
                await a.close()
                await b.close()

        figures = asyncio.run(scenario())
        assert figures["exporter"] == "bench1"
        print(f"partition: the controller ended the lease of an exporter cut off without a reset "
              f"{figures['noticed']:.1f}s after the cut; bob got the board {figures['regranted']:.1f}s after the heal")
        bob_config = str(lab.workdir / "bob.yaml")
        used = cli("shell", "--client-config", bob_config, "--lease", figures["lease"], "--", CLI, "call",
                   "power.status")
        assert used.returncode == 0 and used.stdout.strip() == "off", used.stderr  # fresh drivers for bob
        assert exporter.process.poll() is None
    finally:
        relay.stop()


@contextlib.contextmanager
def small_disk(path: Path, size: str):
    """A tmpfs of `size` mounted at `path` (the test runs as root, as CI does), gone afterwards."""
    path.mkdir(mode=0o700)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                             capture_output=True, text=True, check=False)
    assert mounted.returncode == 0, f"a full-disk test needs to mount a tmpfs (as root): {mounted.stderr}"
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Fill the filesystem of `directory` to the last byte; the file that holds it."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as out:
        for size in (1 << 16, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    out.write(b"\0" * size)
    return filler


def test_a_full_disk_under_the_database_fails_requests_clearly_and_loses_nothing(tmp_path):
    with small_disk(tmp_path / "disk", "8M") as disk:
        lab = ControllerLab(tmp_path, str(disk / "controller.db"))
        try:
            alice = lab.client("alice")
            lab.exporter("bench1", "board=mock")
            lab.exporter("bench2", "board=mock")

            async def scenario() -> str:
                client = ControllerClient(alice)
                try:
                    held = await client.wait_ready((await client.create_lease("board=mock", 600, ttl=300)).name, 30)
                    filler = fill(disk)
                    started = time.monotonic()
                    with pytest.raises(JumpstarterLabError) as refused:
                        for _attempt in range(20):  # a request that writes more than the last page fails
                            await client.wait_ready((await client.create_lease("board=mock", 600, ttl=300)).name, 5)
                    assert time.monotonic() - started < 60
                    filler.unlink()
                    assert (await client.get_lease(held.name)).ready  # nothing lost meanwhile
                    second = await client.wait_ready((await client.create_lease("board=mock", 600)).name, 30)
                    assert {held.exporter, second.exporter} == {"bench1", "bench2"}
                    for lease in (held, second):
                        await client.release(lease.name)
                    return str(refused.value)
                finally:
                    await client.close()

            message = asyncio.run(scenario())
            print(f"disk full under the controller's database: {message}")
            assert message.endswith("the controller's database failed: database or disk is full"), message
            assert lab.controller_process.process.poll() is None  # it served on
            with sqlite3.connect(disk / "controller.db") as db:
                assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        finally:
            lab.stop()


def slow_and_streaming(started: Path) -> dict:
    """An exporter's tree with a method that takes two minutes (saying when it began) and an echo stream."""
    return {"tools": {"type": "jumpstarter_driver_shell.driver.Shell",
                      "config": {"methods": {"wait": f"touch {started}; sleep 120"}}},
            "echo": {"type": "jumpstarter_driver_network.driver.EchoNetwork"}}


def test_an_exporter_killed_mid_call_and_mid_stream_ends_both_with_a_clear_error(lab):
    """A call under way (a shell method, through the CLI in the lease's shell) and a byte stream (through the
    library), both through the router, when the exporter is killed: each ends with an error that says the
    exporter went away, in seconds, and the lease ends with the reason."""
    alice = lab.client("alice")
    started = lab.workdir / "wait-started"
    exporter = lab.exporter("bench1", "board=mock", export=slow_and_streaming(started))

    async def take() -> str:
        client = ControllerClient(alice)
        try:
            return (await client.wait_ready((await client.create_lease("board=mock", 600, ttl=60)).name, 30)).name
        finally:
            await client.close()

    lease = asyncio.run(take())
    config = str(lab.workdir / "alice.yaml")
    call = subprocess.Popen([CLI, "shell", "--client-config", config, "--lease", lease, "--", CLI, "call",
                             "tools.call_method", "wait"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=subprocess_env())
    try:
        with connect_lease(alice, lease) as root, root.echo.stream() as stream:
            stream.send(b"ping")
            assert stream.receive(timeout=10) == b"ping"
            wait_for(lambda: started.exists() or call.poll() is not None, 30, "the call to start")
            assert call.poll() is None, call.communicate()
            exporter.stop(signal.SIGKILL)
            killed = time.monotonic()
            with pytest.raises(JumpstarterLabError) as broken:
                while stream.receive(timeout=60):
                    pass
            stream_ended = time.monotonic() - killed
        _out, err = call.communicate(timeout=60)
        call_ended = time.monotonic() - killed
    finally:
        if call.poll() is None:
            call.kill()
    assert call.returncode not in (0, None), err
    print(f"exporter killed: the stream failed {stream_ended:.1f}s after, with {broken.value!r}; "
          f"the call {call_ended:.1f}s after, with {err.strip().splitlines()[-1]!r}")

    async def ended() -> str:
        client = ControllerClient(alice)
        try:
            while not (status := await client.get_lease(lease)).ended:
                await asyncio.sleep(0.2)
            return status.message
        finally:
            await client.close()

    assert asyncio.run(asyncio.wait_for(ended(), 30)) == "the exporter went offline"
