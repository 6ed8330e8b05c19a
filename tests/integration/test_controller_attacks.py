"""An authenticated exporter or client trying what is not theirs, against a real controller process
(issue 18): each is refused, and the lease it aimed at keeps working."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
import yaml

from helpers import ControllerLab, cli
from jumpstarter_lab.client import ControllerClient, connect_lease
from jumpstarter_lab.wire import metadata
from jumpstarter_lab.wire.channels import open_channel
from jumpstarter_lab.wire.protocol import jumpstarter_pb2, jumpstarter_pb2_grpc


@pytest.fixture
def lab(tmp_path):
    lab = ControllerLab(tmp_path, str(tmp_path / "controller.db"))
    yield lab
    lab.stop()


def exporter_token(lab: ControllerLab, name: str) -> str:
    path = lab.workdir / f"{name}-identity.yaml"
    result = cli("admin", "create-exporter", name, "--db", lab.db, "--endpoint", lab.endpoint, "--insecure",
                 "-o", str(path))
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(path.read_text())["token"]


async def listen_as(lab: ControllerLab, token: str, name: str, lease: str) -> grpc.StatusCode:
    async with open_channel(lab.endpoint, insecure=True) as channel:
        stub = jumpstarter_pb2_grpc.ControllerServiceStub(channel)
        call = stub.Listen(jumpstarter_pb2.ListenRequest(lease_name=lease), timeout=10,
                           metadata=metadata.identity_metadata(token, "Exporter", "default", name))
        try:
            async for _dial in call:
                return grpc.StatusCode.OK
        except grpc.aio.AioRpcError as e:
            return e.code()
        return grpc.StatusCode.OK


def test_an_exporter_cannot_listen_on_another_exporters_lease(lab):
    alice = lab.client("alice")
    lab.exporter("bench1", "board=mock")
    intruder = exporter_token(lab, "bench2")

    lease = asyncio.run(_take(alice, "board=mock"))
    for _attempt in range(3):
        assert asyncio.run(listen_as(lab, intruder, "bench2", lease)) == grpc.StatusCode.PERMISSION_DENIED
    with connect_lease(alice, lease) as root:  # bench1 still gets the lease's connections
        root.power.on()
        assert root.power.call("status") == "on"


def test_a_huge_or_pathological_selector_is_refused_shortly_and_the_controller_serves_on(lab):
    from jumpstarter_lab.wire.errors import DriverInvalidArgument

    alice = lab.client("alice")
    lab.exporter("bench1", "board=mock")

    async def scenario():
        client = ControllerClient(alice)
        try:
            for selector in ("a" + " " * 24000 + "!", "board=" + "x" * ((1 << 20) - 16)):
                with pytest.raises(DriverInvalidArgument) as info:
                    await client.exporters(selector)
                assert len(str(info.value)) < 200, str(info.value)[:300]  # never the input echoed back whole
            with pytest.raises(DriverInvalidArgument, match=r"invalid label selector term 'a +\.\.\.'"):
                await client.create_lease("a" + " " * 100 + "!", 60)
            return [e.name for e in await client.exporters("board=mock")]
        finally:
            await client.close()

    assert asyncio.run(scenario()) == ["namespaces/default/exporters/bench1"]


def test_revocation_ends_open_leases_and_takes_an_exporter_out_of_scheduling(lab):
    """`admin revoke` ends what is already open: a revoked client's lease and connections, a revoked
    exporter's place in scheduling and its Status stream, within the trust window (printed)."""

    from jumpstarter_lab.wire.errors import DriverError

    alice = lab.client("alice")
    lab.exporter("bench1", "board=mock", "slot=1")
    bench2 = lab.exporter("bench2", "board=mock", "slot=2")

    async def exporters() -> dict:
        client = ControllerClient(alice)
        try:
            return {e.name.rsplit("/", 1)[-1]: e.online for e in await client.exporters("board=mock")}
        finally:
            await client.close()

    # An exporter revoked: no longer listed (it has left the lab), never granted, its process told so.
    start = time.monotonic()
    assert cli("admin", "revoke", "exporter", "bench2", "--db", lab.db).returncode == 0
    while "bench2" in asyncio.run(exporters()):
        assert time.monotonic() - start < 15, "the revoked exporter stayed listed"
        time.sleep(0.2)
    print(f"revoked exporter gone from the listing {time.monotonic() - start:.1f}s after `admin revoke` began")
    assert bench2.process.wait(timeout=20) != 0  # its Status stream ended: the token is refused
    with pytest.raises(DriverError, match="was not granted within"):
        asyncio.run(_wait(alice, asyncio.run(_create(alice, "slot=2")), 3))

    # A client revoked while it holds a lease and is connected through it.
    name = asyncio.run(_take(alice, "slot=1"))
    with connect_lease(alice, name) as root:
        root.power.on()
        start = time.monotonic()
        assert cli("admin", "revoke", "client", "alice", "--db", lab.db).returncode == 0
        with pytest.raises(DriverError) as refused:
            while time.monotonic() - start < 15:
                root.power.call("status")
                time.sleep(0.2)
        print(f"revoked client's calls refused {time.monotonic() - start:.1f}s after `admin revoke` began "
              f"({refused.value})")
    lab.client("alice")  # re-created: a new identity generation; the old lease stays ended
    assert "revoked" in asyncio.run(_reason(lab.client("alice"), name))


async def _create(config, selector: str) -> str:
    client = ControllerClient(config)
    try:
        return (await client.create_lease(selector, 60, ttl=60)).name
    finally:
        await client.close()


async def _wait(config, name: str, timeout: float):
    client = ControllerClient(config)
    try:
        return await client.wait_ready(name, timeout)
    finally:
        await client.close()


async def _reason(config, name: str) -> str:
    client = ControllerClient(config)
    try:
        return (await client.get_lease(name)).message
    finally:
        await client.close()


def test_reset_needs_every_drivers_reset_to_be_allowed(lab):
    """Reset acts on every driver (a Ykush's switches port power): a lease limited to some methods may
    not reset, an unrestricted one may."""
    alice = lab.client("alice")
    carol = lab.client("carol", "--allow-methods", "power.status")
    lab.exporter("bench1", "board=mock")
    for config, expected in ((carol, grpc.StatusCode.PERMISSION_DENIED), (alice, grpc.StatusCode.OK)):
        name = asyncio.run(_take(config, "board=mock"))
        with connect_lease(config, name) as root:
            connection = root.connection

            async def reset():
                try:
                    await connection.stub.Reset(jumpstarter_pb2.ResetRequest(), metadata=connection.metadata,
                                                timeout=10)
                except grpc.aio.AioRpcError as e:
                    return e.code(), e.details()
                return grpc.StatusCode.OK, ""

            code, details = connection.portal.call(reset())
            assert code == expected, details
            if expected != grpc.StatusCode.OK:
                assert "this lease may not call " in details and ".reset (allowed: power.status)" in details
        asyncio.run(_release(config, name))


def test_names_that_cannot_be_addressed_are_refused(lab):
    alice = lab.client("alice")

    async def create(lease_id: str):
        async with open_channel(lab.endpoint, insecure=True) as channel:
            from jumpstarter_lab.wire.protocol import client_pb2, client_pb2_grpc

            stub = client_pb2_grpc.ClientServiceStub(channel)
            request = client_pb2.CreateLeaseRequest(parent="namespaces/default", lease_id=lease_id,
                                                    lease=client_pb2.Lease(selector="board=mock"))
            try:
                await stub.CreateLease(request, timeout=10, metadata=metadata.identity_metadata(
                    alice.token, "Client", "default", "alice"))
            except grpc.aio.AioRpcError as e:
                return e.code(), e.details()
            return grpc.StatusCode.OK, ""

    for bad in ("a/b", "x" * 200_000, "-leading", ""):
        code, details = asyncio.run(create(bad))
        if bad:
            assert code == grpc.StatusCode.INVALID_ARGUMENT and "is not a valid name" in details, details
            assert len(details) < 300
    assert asyncio.run(create("my-lease.1"))[0] == grpc.StatusCode.OK
    bad_admin = cli("admin", "create-client", "bad/name", "--db", lab.db, "--endpoint", lab.endpoint, "--insecure")
    assert bad_admin.returncode == 1 and "'bad/name' is not a valid name" in bad_admin.stderr


def test_a_signed_token_with_malformed_claims_is_refused_as_unauthenticated(lab):
    from jumpstarter_lab.controller.auth import ISSUER, Authority, audience
    from jumpstarter_lab.controller.store import Store

    lab.client("alice")
    store = Store(f"sqlite:///{lab.db}")
    authority = Authority(store)
    forged = authority._sign({"iss": ISSUER, "aud": audience("client"), "sub": "client:x", "kind": "client",
                              "namespace": {"not": "a string"}, "name": ["alice"], "gen": "1",
                              "iat": 0, "exp": 2**40, "jti": "j"})
    store.close()

    async def listing():
        async with open_channel(lab.endpoint, insecure=True) as channel:
            from jumpstarter_lab.wire.protocol import client_pb2, client_pb2_grpc

            try:
                await client_pb2_grpc.ClientServiceStub(channel).ListExporters(
                    client_pb2.ListExportersRequest(parent="namespaces/default"), timeout=10,
                    metadata=metadata.bearer_metadata(forged))
            except grpc.aio.AioRpcError as e:
                return e.code(), e.details()
            return grpc.StatusCode.OK, ""

    code, details = asyncio.run(listing())
    assert code == grpc.StatusCode.UNAUTHENTICATED and "malformed claims: namespace, name, gen" in details, details


async def _take(config, selector: str) -> str:
    client = ControllerClient(config)
    try:
        created = await client.create_lease(selector, 600, ttl=60)
        return (await client.wait_ready(created.name, 30)).name
    finally:
        await client.close()


async def _release(config, name: str) -> None:
    client = ControllerClient(config)
    try:
        await client.release(name)
    finally:
        await client.close()


def test_dials_a_lease_has_not_completed_are_bounded(lab):
    """Each Dial makes the lease's exporter open a connection to the router until both sides meet (or the
    meeting deadline passes): a client dialing without connecting is refused after 32, and the exporter's
    file descriptors stay bounded (300 Dials in a second took it from 16 to 616 fds)."""
    import os

    from jumpstarter_lab.wire.errors import Busy

    alice = lab.client("alice")
    exporter = lab.exporter("bench1", "board=mock")
    name = asyncio.run(_take(alice, "board=mock"))

    def fds() -> int:
        return len(os.listdir(f"/proc/{exporter.process.pid}/fd"))

    before = fds()

    async def flood():
        client = ControllerClient(alice)
        granted, refused = 0, None
        try:
            for _dial in range(300):
                try:
                    await client.dial(name)
                    granted += 1
                except Busy as e:
                    refused = str(e)
        finally:
            await client.close()
        return granted, refused

    granted, refused = asyncio.run(flood())
    assert granted == 32 and "the most it may have" in refused
    time.sleep(2)  # the exporter's bridges for the granted dials are up by now
    assert fds() <= before + 32 * 4, (before, fds())
