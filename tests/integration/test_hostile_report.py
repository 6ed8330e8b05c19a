"""A hostile or broken exporter report ends in one clear error at the client, never a traceback or a
hang: too deep, a driver reusing another's uuid, a uuid that is not one, parents in a cycle, twins."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import uuid

import grpc
import pytest

from helpers import CLI
from jumpstarter_lab.client import connect
from jumpstarter_lab.client.tree import BadReport
from jumpstarter_lab.wire import labels
from jumpstarter_lab.wire.protocol import jumpstarter_pb2, jumpstarter_pb2_grpc

COMPOSITE = {labels.CLIENT: labels.COMPOSITE}


def report(*drivers: tuple[str, str | None, str]) -> jumpstarter_pb2.GetReportResponse:
    """(uuid, parent uuid, name) per driver."""
    reports = []
    for uid, parent, name in drivers:
        r = jumpstarter_pb2.DriverInstanceReport(uuid=uid, labels={**COMPOSITE, labels.NAME: name})
        if parent is not None:
            r.parent_uuid = parent
        reports.append(r)
    return jumpstarter_pb2.GetReportResponse(uuid=drivers[0][0], reports=reports)


def chain(depth: int) -> jumpstarter_pb2.GetReportResponse:
    ids = [str(uuid.uuid4()) for _i in range(depth + 1)]
    return report((ids[0], None, ""), *[(ids[i], ids[i - 1], f"d{i}") for i in range(1, depth + 1)])


ROOT, A, B = (str(uuid.uuid4()) for _i in range(3))
CASES = {
    "3000 deep": (chain(3000), "nests drivers more than 64 deep"),
    "a child reusing the root's uuid": (report((ROOT, None, ""), (ROOT, ROOT, "again")),
                                        f"two drivers with uuid {ROOT}"),
    "a uuid that is not one": (report((ROOT, None, ""), ("not-a-uuid", ROOT, "x")), "'not-a-uuid' is not a UUID"),
    "parents in a cycle": (report((ROOT, None, ""), (A, B, "a"), (B, A, "b")),
                           "2 drivers of the exporter's report are not below its root"),
    "twins": (report((ROOT, None, ""), (A, ROOT, "x"), (B, ROOT, "x")), "two drivers under the root are named 'x'"),
    "two roots": (report((ROOT, None, ""), (A, None, "x")), "has 2 root drivers, expected one"),
}


class Hostile(jumpstarter_pb2_grpc.ExporterServiceServicer):
    def __init__(self):
        self.answer = None

    async def GetReport(self, request, context):  # pylint: disable=invalid-overridden-method
        return self.answer


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile") / "exporter.sock"
    servicer, loop, started = Hostile(), asyncio.new_event_loop(), threading.Event()
    stop = asyncio.Event()

    async def serve():
        server = grpc.aio.server()
        jumpstarter_pb2_grpc.add_ExporterServiceServicer_to_server(servicer, server)
        server.add_insecure_port(f"unix:{path}")
        await server.start()
        started.set()
        await stop.wait()
        await server.stop(grace=None)

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(10)
    yield servicer, str(path)
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)
    loop.close()


def test_a_deep_but_bounded_tree_is_fine(hostile):
    servicer, path = hostile
    servicer.answer = chain(64)
    with connect(path) as root:
        node = root
        for i in range(1, 65):
            node = node.children[f"d{i}"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_report_is_named_by_the_library_and_the_cli(hostile, case):
    servicer, path = hostile
    servicer.answer, message = CASES[case]
    with pytest.raises(BadReport, match=message):
        with connect(path):
            pass
    result = subprocess.run([CLI, "tree", "--host", path], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("jumpstarter-lab: error: ") and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
