"""What a lease lets through, with real processes: a client's method restrictions hold on every way into a
driver (calls, streaming calls, byte and resource streams, reset, `ref` aliases, uuids), a dial needs a
lease of one's own that is granted, a router token opens nothing once used, stale or of an ended lease,
a meeting at the router whose other side never comes ends at its deadline, and a killed client's lease
is freed when its ttl runs out. Each prints what it measured; the bounds asserted are liveness deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import time

import grpc
import pytest
from google.protobuf import empty_pb2

from helpers import CLI, ControllerLab, subprocess_env, wait_for
from jumpstarter_lab.client import ControllerClient, connect_lease
from jumpstarter_lab.client.tunnel import lease_socket
from jumpstarter_lab.wire import call_values, handles
from jumpstarter_lab.wire import metadata as wire_metadata
from jumpstarter_lab.wire.channels import channel_for
from jumpstarter_lab.wire.errors import DriverError, JumpstarterLabError
from jumpstarter_lab.wire.metadata import bearer_metadata
from jumpstarter_lab.wire.protocol import jumpstarter_pb2, jumpstarter_pb2_grpc, router_pb2_grpc

ROUTER_DEADLINE = 2.0
# A board whose power is also reachable as `dut_power` (a `ref` alias: one driver, two names).
ALIASED = {"board": {"children": {"power": {"type": "jumpstarter_driver_power.driver.MockPower"},
                                  "echo": {"type": "jumpstarter_driver_network.driver.EchoNetwork"}}},
           "dut_power": {"ref": "board.power"}}


@pytest.fixture
def lab(tmp_path):
    lab = ControllerLab(tmp_path, str(tmp_path / "controller.db"), options=("--router-deadline", str(ROUTER_DEADLINE)))
    yield lab
    lab.stop()


async def _take(config, selector: str = "board=mock", ttl: float = 60) -> str:
    client = ControllerClient(config)
    try:
        return (await client.wait_ready((await client.create_lease(selector, 600, ttl=ttl)).name, 30)).name
    finally:
        await client.close()


async def _with_client(config, action):
    client = ControllerClient(config)
    try:
        return await action(client)
    finally:
        await client.close()


def _fds(pid: int) -> int:
    """The process's descriptors but its database files: the controller's connection pool opens a connection
    (the database and its -wal) when two threads first need one at once, and keeps it, by design."""
    return sum(count for kind, count in _fd_kinds(pid).items() if not kind.endswith((".db", ".db-wal", ".db-shm")))


def _fd_kinds(pid: int) -> dict[str, int]:
    """How many of each kind of descriptor (socket, anon_inode:[eventfd], a path) the process holds."""
    kinds: dict[str, int] = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):
            target = re.sub(r"\[\d+\]$", "", os.readlink(f"/proc/{pid}/fd/{name}"))
            kinds[target] = kinds.get(target, 0) + 1
    return kinds


# --- method restrictions on every way into a driver -------------------------------------------------------

async def _every_way_in(config, lease: str) -> dict[str, str]:
    """Each way into the board's power and echo drivers, through the lease's router connection, as raw gRPC:
    what each answered ("ok", or the status code and details of its refusal)."""
    client = ControllerClient(config)
    answers = {}
    try:
        async with lease_socket(client, lease) as path, grpc.aio.insecure_channel(f"unix:{path}") as channel:
            exporter = jumpstarter_pb2_grpc.ExporterServiceStub(channel)
            router = router_pb2_grpc.RouterServiceStub(channel)
            reports = {r.labels.get("jumpstarter.dev/name"): r.uuid
                       for r in (await exporter.GetReport(empty_pb2.Empty(), timeout=10)).reports}
            power, alias, echo = reports["power"], reports["dut_power"], reports["echo"]

            async def answer(name, call):
                try:
                    result = await call
                    if hasattr(result, "__aiter__"):
                        async for _item in result:
                            pass
                    elif isinstance(result, jumpstarter_pb2.DriverCallResponse):
                        answers[name] = f"ok {call_values.decode(result.result)}"
                        return
                    answers[name] = "ok"
                except grpc.aio.AioRpcError as e:
                    answers[name] = f"{e.code().name}: {e.details()}"

            def call(uuid, method):
                return exporter.DriverCall(jumpstarter_pb2.DriverCallRequest(uuid=uuid, method=method), timeout=10)

            async def streaming(uuid, method):
                return exporter.StreamingDriverCall(jumpstarter_pb2.StreamingDriverCallRequest(uuid=uuid, method=method),
                                                    timeout=10)

            async def stream(request):
                opened = router.Stream(timeout=10, metadata=((wire_metadata.STREAM_REQUEST, handles.to_json(request)),))
                if wire_metadata.RESOURCE in dict(await opened.initial_metadata()):  # accepted: a handle to push to
                    opened.cancel()
                    return
                await opened.done_writing()
                async for _frame in opened:
                    pass

            await answer("power.status", call(power, "status"))
            await answer("power.on", call(power, "on"))
            await answer("dut_power.on", call(alias, "on"))
            await answer("power.read (streaming)", streaming(power, "read"))
            await answer("echo.connect (byte stream)", stream(handles.DriverStreamRequest(uuid=echo)))
            await answer("power resource stream", stream(handles.ResourceStreamRequest(uuid=power)))
            await answer("reset", exporter.Reset(jumpstarter_pb2.ResetRequest(), timeout=10))
            await answer("unknown uuid", call("6d7c0d5e-0000-4000-8000-000000000000", "on"))
            await answer("power.status after", call(power, "status"))
    finally:
        await client.close()
    return answers


def test_method_restrictions_hold_on_every_way_into_a_driver(lab):
    """A client allowed only `board.power.status` reaches nothing else, whichever RPC, name or uuid it uses;
    one allowed `dut_power.*` may switch the power through either name, since a `ref` entry and its target
    are one driver."""
    lab.exporter("bench1", "board=mock", export=ALIASED)
    status_only = lab.client("carol", "--allow-methods", "board.power.status")
    aliased = lab.client("dave", "--allow-methods", "dut_power.*")

    answers = asyncio.run(_every_way_in(status_only, asyncio.run(_take(status_only))))
    print("allowed board.power.status:", answers)
    refused = "PERMISSION_DENIED: this lease may not call"
    assert answers["power.status"] == "ok off" and answers["power.status after"] == "ok off"
    assert answers["power.on"].startswith(f"{refused} board.power.on or dut_power.on")
    assert answers["dut_power.on"] == answers["power.on"]
    assert answers["power.read (streaming)"].startswith(f"{refused} board.power.read or dut_power.read")
    assert answers["echo.connect (byte stream)"].startswith(f"{refused} board.echo.connect")
    assert answers["power resource stream"].startswith(f"{refused} board.power.resource or dut_power.resource")
    assert answers["reset"].startswith(refused)
    assert answers["unknown uuid"].startswith("NOT_FOUND: no driver with uuid")

    async def release_all(client):
        for lease in await client.leases():
            await client.release(lease.name)

    asyncio.run(_with_client(status_only, release_all))
    answers = asyncio.run(_every_way_in(aliased, asyncio.run(_take(aliased))))
    print("allowed dut_power.*:", answers)
    assert answers["power.on"] == answers["dut_power.on"] == "ok None" and answers["power.status after"] == "ok on"
    assert answers["power.read (streaming)"] == answers["power resource stream"] == "ok"
    assert answers["echo.connect (byte stream)"].startswith(f"{refused} board.echo.connect")


# --- dials and router tokens -----------------------------------------------------------------------------

async def _router_answer(config, endpoint: str, token: str) -> tuple[str, float]:
    """Open a router stream with `token` and read from it: the status it ended with, and after how long."""
    started = time.monotonic()
    async with channel_for(endpoint, config.tls) as channel:
        call = router_pb2_grpc.RouterServiceStub(channel).Stream(metadata=bearer_metadata(token), timeout=60)
        try:
            async for _frame in call:
                pass
            return "OK", time.monotonic() - started
        except grpc.aio.AioRpcError as e:
            return f"{e.code().name}: {e.details()}", time.monotonic() - started


def test_a_dial_needs_a_granted_lease_of_ones_own_and_a_router_token_dies_with_its_lease(lab):
    """Another client's lease or a made-up one: no dial. Released: no dial, and a router token booked before
    the release (its exporter stopped, so the meeting is still open) or already used opens nothing."""
    alice, bob = lab.client("alice"), lab.client("bob")
    exporter = lab.exporter("bench1", "board=mock")
    lease = asyncio.run(_take(alice))

    async def bob_dials(client):
        with pytest.raises(DriverError) as others:
            await client.dial(lease)
        with pytest.raises(DriverError) as unknown:
            await client.dial("0190d5e3-0000-7000-8000-000000000000")
        return str(others.value), str(unknown.value)

    others, unknown = asyncio.run(_with_client(bob, bob_dials))
    assert f"lease {lease} belongs to another client" in others, others
    assert unknown.endswith("no lease 0190d5e3-0000-7000-8000-000000000000"), unknown

    async def dial_then_release(client):
        used = await _router_answer_after_use(client, lease)
        os.kill(exporter.process.pid, signal.SIGSTOP)  # it takes no dial: the next one stays open at the router
        try:
            kept = await client.dial(lease)
            await client.release(lease)
            stale, _seconds = await _router_answer(alice, *kept)
        finally:
            os.kill(exporter.process.pid, signal.SIGCONT)
        with pytest.raises(DriverError) as released:
            await client.dial(lease)
        replayed, _seconds = await _router_answer(alice, *used)
        return stale, replayed, str(released.value)

    stale, replayed, released = asyncio.run(_with_client(alice, dial_then_release))
    assert f"lease {lease} is released, not ready: released by the client" in released, released
    assert stale == f"FAILED_PRECONDITION: lease {lease} has ended since this router token was issued", stale
    assert replayed.startswith("PERMISSION_DENIED: this router token for lease"), replayed
    print(f"after release: a kept router token -> {stale!r}; a used one -> {replayed!r}")


async def _router_answer_after_use(client: ControllerClient, lease: str) -> tuple[str, str]:
    """A dial used for one connection that made a call: its (endpoint, token), now spent."""
    endpoint, token = await client.dial(lease)
    async with channel_for(endpoint, client.config.tls) as channel:
        call = router_pb2_grpc.RouterServiceStub(channel).Stream(metadata=bearer_metadata(token), timeout=30)
        await call.done_writing()
        with contextlib.suppress(grpc.aio.AioRpcError):
            async for _frame in call:
                pass
    return endpoint, token


def test_a_connection_through_the_router_ends_when_its_lease_does(lab):
    """Released from elsewhere while a client is connected: the client's next call fails at once (the exporter
    closes the lease's connections; the error says the stream was removed, not why)."""
    alice = lab.client("alice")
    lab.exporter("bench1", "board=mock")
    lease = asyncio.run(_take(alice))
    with connect_lease(alice, lease) as root:
        assert root.power.call("status") == "off"
        asyncio.run(_with_client(alice, lambda client: client.release(lease)))
        released = time.monotonic()
        with pytest.raises(JumpstarterLabError) as ended:
            while time.monotonic() - released < 30:
                root.power.call("status")
                time.sleep(0.1)
        print(f"a call {time.monotonic() - released:.1f}s after the release failed with {ended.value!r}")


def test_a_meeting_whose_other_side_never_comes_ends_at_the_deadline_and_frees_everything(lab):
    """The exporter arrives for a dial its client never uses; a client arrives for one its exporter (stopped)
    never takes. Each waiting side ends at the router's deadline with a message naming it, the late side
    is refused at once, descriptors on both processes go back to where they were, and the lease goes on."""
    alice = lab.client("alice")
    exporter = lab.exporter("bench1", "board=mock")
    lease = asyncio.run(_take(alice))
    with connect_lease(alice, lease) as root:  # one whole connection first: every lazy import and channel done
        assert root.power.call("status") == "off"
    controller = lab.controller_process.process.pid
    before = _fds(controller), _fds(exporter.process.pid)
    kinds_before = _fd_kinds(controller), _fd_kinds(exporter.process.pid)

    endpoint, token = asyncio.run(_with_client(alice, lambda client: client.dial(lease)))
    dialed = time.monotonic()
    wait_for(lambda: "did not arrive" in exporter.log.read_text(), 30, "the exporter's side to time out")
    exporter_waited = time.monotonic() - dialed
    assert f"the other side of lease {lease} did not arrive in {ROUTER_DEADLINE:g}s" in exporter.log.read_text()
    late, late_after = asyncio.run(_router_answer(alice, endpoint, token))
    assert late.startswith(f"PERMISSION_DENIED: this router token for lease {lease} is not expected here"), late

    os.kill(exporter.process.pid, signal.SIGSTOP)
    try:
        endpoint, token = asyncio.run(_with_client(alice, lambda client: client.dial(lease)))
        client_side, client_waited = asyncio.run(_router_answer(alice, endpoint, token))
    finally:
        os.kill(exporter.process.pid, signal.SIGCONT)
    assert client_side == (f"DEADLINE_EXCEEDED: the other side of lease {lease} did not arrive in "
                           f"{ROUTER_DEADLINE:g}s"), client_side
    wait_for(lambda: exporter.log.read_text().count("is not expected here") >= 1, 30,
             "the exporter's late side to be refused")
    # The exporter's descriptors come back exactly (an unmet dial's bridge and session connection are closed); the
    # controller may keep one more: the stopped exporter's controller connection, dropped by keepalive and made anew.
    try:
        wait_for(lambda: _fds(exporter.process.pid) <= before[1] and _fds(controller) <= before[0] + 1, 30,
                 f"descriptors back to {before}", interval=0.5)
    except AssertionError as timed_out:
        kinds_after = _fd_kinds(controller), _fd_kinds(exporter.process.pid)
        raise AssertionError(f"{timed_out}: (controller, exporter) went from {kinds_before} to {kinds_after}") \
            from None
    with connect_lease(alice, lease) as root:
        assert root.power.call("status") == "off"
    print(f"router deadline {ROUTER_DEADLINE:g}s: the exporter's side ended {exporter_waited:.1f}s after the dial, "
          f"the client's after {client_waited:.1f}s; a late side was refused in {late_after * 1000:.0f} ms; "
          f"fds (controller, exporter) {before} -> {(_fds(controller), _fds(exporter.process.pid))}")


# --- a killed client --------------------------------------------------------------------------------------

def test_a_killed_clients_lease_is_freed_when_its_ttl_runs_out(lab):
    """`shell` holds a lease (ttl 4 s) and is killed with SIGKILL: nobody renews it, it ends with the reason
    within its ttl and the controller's check, and the next client gets the board."""
    alice, bob = lab.client("alice"), lab.client("bob")
    lab.exporter("bench1", "board=mock")
    shell = subprocess.Popen([CLI, "shell", "--client-config", str(lab.workdir / "alice.yaml"), "--selector",
                              "board=mock", "--ttl", "4", "--", "sleep", "600"], env=subprocess_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        def held():
            leases = asyncio.run(_with_client(alice, lambda client: client.leases()))
            return leases and leases[0].ready and leases[0]

        lease = wait_for(held, 30, "the shell's lease").name
        time.sleep(6)  # longer than the ttl: the shell renews it
        assert not asyncio.run(_with_client(alice, lambda client: client.get_lease(lease))).ended
        os.killpg(shell.pid, signal.SIGKILL)
        killed = time.monotonic()
    finally:
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGKILL)
        shell.wait(timeout=30)

    async def ended(client):
        while not (status := await client.get_lease(lease)).ended:
            await asyncio.sleep(0.2)
        return status.message

    reason = asyncio.run(asyncio.wait_for(_with_client(alice, ended), 30))
    freed = time.monotonic() - killed
    assert reason == "the client stopped renewing the lease"
    assert asyncio.run(_take(bob))
    print(f"a client killed with its lease (ttl 4 s): the lease ended {freed:.1f}s after, and bob got the board")
