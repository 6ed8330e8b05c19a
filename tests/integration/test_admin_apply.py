"""`admin apply`: declared identities made idempotently, their configs written once and usable."""

from __future__ import annotations

import asyncio
import json

import yaml

from helpers import DISTRIBUTED_EXPORT, ControllerLab, Process, cli
from jumpstarter_lab.client import ClientConfig, connect_lease
from jumpstarter_lab.client.controller import ControllerClient


def apply(lab: ControllerLab, declaration: dict, out) -> dict:
    path = lab.workdir / "identities.yaml"
    path.write_text(yaml.safe_dump(declaration))
    result = cli("admin", "apply", "--db", lab.db, "--file", str(path), "--out-dir", str(out))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_apply_creates_once_updates_in_place_and_revokes(tmp_path):
    lab = ControllerLab(tmp_path, str(tmp_path / "controller.db"))
    out = tmp_path / "identities"
    declaration = {"endpoint": lab.endpoint, "tls": {"insecure": True},
                   "exporters": [{"name": "board1", "labels": {"board": "sim"}}],
                   "clients": [{"name": "alice", "exporters": ["board=sim"], "methods": ["power.*"]},
                               {"name": "bob"}]}
    try:
        first = apply(lab, declaration, out)
        assert first["changed"] and sorted(first["created"]) == ["client default/alice", "client default/bob",
                                                                 "exporter default/board1"]
        exporter_config = out / "exporters" / "default" / "board1.yaml"
        alice_config = out / "clients" / "default" / "alice.yaml"
        assert oct(exporter_config.stat().st_mode & 0o777) == "0o600"
        before = {p: p.read_text() for p in out.rglob("*.yaml")}

        assert apply(lab, declaration, out) == {"changed": False, "created": [], "updated": [], "written": [],
                                                "revoked": []}
        assert {p: p.read_text() for p in out.rglob("*.yaml")} == before  # no new tokens

        # The written exporter config, with an export added, registers; alice leases it within her methods.
        config = yaml.safe_load(exporter_config.read_text()) | {"export": DISTRIBUTED_EXPORT}
        served = tmp_path / "board1.yaml"
        served.write_text(yaml.safe_dump(config))
        lab.started.append(Process(["exporter", "run", "--config", str(served)], tmp_path / "board1.log",
                                   "registered with"))
        alice = ClientConfig.load(alice_config)
        with connect_lease(alice, asyncio.run(_lease(alice))) as root:
            root.power.on()
            assert root.power.call("status") == "on"

        # Labels change in place; a removed file is written again; bob is revoked and his config removed.
        declaration["exporters"][0]["labels"] = {"board": "sim", "rack": "1"}
        declaration["clients"][1]["state"] = "absent"
        declaration["clients"][0]["priority"] = 3  # alice may now jump the queue, by as much
        alice_config.unlink()
        third = apply(lab, declaration, out)
        assert sorted(third["updated"]) == ["client default/alice", "exporter default/board1"], third
        assert third["revoked"] == ["client default/bob"]
        urgent = cli("lease", "create", "-l", "board=sim", "--priority", "3", "--acquisition-timeout", "0",
                     "--client-config", str(alice_config))  # queued behind her own lease still held, not refused
        assert urgent.returncode == 0, urgent.stderr
        assert third["written"] == [str(alice_config)] and third["created"] == []
        assert exporter_config.read_text() == before[exporter_config]
        assert not (out / "clients" / "default" / "bob.yaml").exists()
        bad = tmp_path / "bad.yaml"
        bad.write_text(yaml.safe_dump({"endpoint": lab.endpoint, "clients": [{"name": "../escape"}]}))
        refused = cli("admin", "apply", "--db", lab.db, "--file", str(bad), "--out-dir", str(out))
        assert refused.returncode == 1 and "../escape" in refused.stderr and "Traceback" not in refused.stderr
    finally:
        lab.stop()


async def _lease(config: ClientConfig):
    client = ControllerClient(config)
    try:
        status = await client.create_lease("board=sim", 120)
        await client.wait_ready(status.name, 60)
        return status.name
    finally:
        await client.close()
