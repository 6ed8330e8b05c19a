"""An authenticated exporter or client trying what is not theirs, against a real controller process
(issue 18): each is refused, and the lease it aimed at keeps working."""

from __future__ import annotations

import asyncio

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

    async def take():
        client = ControllerClient(alice)
        try:
            lease = await client.create_lease("board=mock", 600, ttl=60)
            return (await client.wait_ready(lease.name, 30)).name
        finally:
            await client.close()

    lease = asyncio.run(take())
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
