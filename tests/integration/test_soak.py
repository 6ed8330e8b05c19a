"""Soak: 100 clients churn leases over 200 exporters for a bounded time (JUMPSTARTER_LAB_SOAK_SECONDS, 60 by
default; longer by hand), every tenth lease used through the router. Afterwards nothing is left behind: no
active lease, and the controller's and the exporters' file descriptors and threads are back where they
were. Memory is printed, not judged: one run is too short to call a trend."""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

import pytest

from helpers import ControllerLab, wait_for
from jumpstarter_lab.client import ControllerClient, connect_lease_async
from jumpstarter_lab.wire.errors import JumpstarterLabError

pytestmark = pytest.mark.slow

CLIENTS, EXPORTERS = 100, 200
SECONDS = float(os.environ.get("JUMPSTARTER_LAB_SOAK_SECONDS", "60"))


def resources(pid: int) -> dict:
    """Open file descriptors, threads and resident memory (MiB) of a process."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {"fds": len(os.listdir(f"/proc/{pid}/fd")), "threads": int(status["Threads"]),
            "rss_mib": round(int(status["VmRSS"].split()[0]) / 1024, 1)}


async def churn(configs: dict, seconds: float) -> dict:
    """Each client: lease an exporter of the pool, hold it a moment (every tenth one: use it through the
    router), give it back, again; until `seconds` have passed. Counts what happened."""
    counts = {"granted": 0, "used": 0, "refused": 0}
    deadline = time.monotonic() + seconds

    async def one(config) -> None:
        client = ControllerClient(config)
        rng = random.Random(config.name)
        try:
            while time.monotonic() < deadline:
                lease = await client.create_lease("pool=soak", 60, ttl=30)
                try:
                    await client.wait_ready(lease.name, 120)
                    counts["granted"] += 1
                    if rng.random() < 0.1:
                        async with connect_lease_async(config, lease.name) as root:
                            await root.power.call_async("on")
                        counts["used"] += 1
                    else:
                        await asyncio.sleep(rng.uniform(0, 0.2))
                except JumpstarterLabError:
                    counts["refused"] += 1  # a lease that could not be waited for: counted, and given back
                finally:
                    await client.release(lease.name)
        finally:
            await client.close()

    await asyncio.gather(*(one(config) for config in configs.values()))
    return counts


def test_a_soak_of_leases_leaves_no_lease_descriptor_or_thread_behind(tmp_path):
    lab = ControllerLab(tmp_path, str(tmp_path / "controller.db"))
    try:
        configs, _names = lab.fleet(EXPORTERS, {"pool": "soak"}, clients=tuple(f"c{i:03d}" for i in range(CLIENTS)))
        controller, fleet = lab.controller_process.process.pid, lab.started[-1].process.pid
        time.sleep(2)  # the fleet's Status streams are all open
        before = {"controller": resources(controller), "exporters": resources(fleet)}
        counts = asyncio.run(churn(configs, SECONDS))

        async def active() -> list:
            found = []
            for config in configs.values():
                client = ControllerClient(config)
                try:
                    found += await client.leases()
                finally:
                    await client.close()
            return found

        def settled() -> dict | None:
            after = {"controller": resources(controller), "exporters": resources(fleet)}
            back = all(after[side][key] <= before[side][key] + slack
                       for side in after for key, slack in (("fds", 8), ("threads", 2)))
            return after if back else None

        after = wait_for(settled, 60, "the controller's and exporters' descriptors and threads to come back")
        print(f"soak: {SECONDS:g}s, {CLIENTS} clients over {EXPORTERS} exporters: {counts['granted']} leases "
              f"granted, {counts['used']} used through the router, {counts['refused']} not waited for; "
              f"before {before}, after {after}")
        assert counts["granted"] > CLIENTS and counts["used"] > 0
        assert counts["refused"] == 0
        assert asyncio.run(active()) == []
        assert lab.controller_process.process.poll() is None and lab.started[-1].process.poll() is None
    finally:
        lab.stop()
