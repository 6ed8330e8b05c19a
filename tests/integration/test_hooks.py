"""Lease hooks (upstream's ExporterConfig `hooks:`) around real leases: a controller, exporters and clients as
processes, each hook a real shell script that reaches the lease's own drivers through $JUMPSTARTER_HOST."""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest
from google.protobuf import empty_pb2

from helpers import CLI, ControllerLab, cli, process_gone, subprocess_env, wait_for
from jumpstarter_lab.client import ClientConfig
from jumpstarter_lab.client.tunnel import connect_lease_async
from jumpstarter_lab.wire.protocol import common_pb2

pytestmark = pytest.mark.slow


@pytest.fixture
def lab(tmp_path):
    lab = ControllerLab(tmp_path, str(tmp_path / "controller.db"))
    lab.client("alice")
    yield lab
    lab.stop()


def alice(lab, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return cli(*args, "--client-config", str(lab.workdir / "alice.yaml"), timeout=timeout)


def exporters(lab) -> dict[str, dict]:
    listed = alice(lab, "exporters", "list", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    return {e["name"]: e for e in json.loads(listed.stdout)}


def leases(lab) -> list[dict]:
    return json.loads(alice(lab, "lease", "list", "--all", "-o", "json").stdout)


def hook_log(config: ClientConfig, lease: str, wanted: str) -> list[tuple[int, str]]:
    """The lease session's LogStream, read until a line saying `wanted` arrives."""
    async def read():
        entries = []
        async with connect_lease_async(config, lease) as root:
            stream = root.connection.stub.LogStream(empty_pb2.Empty(), metadata=root.connection.metadata)
            async with asyncio.timeout(20):
                async for entry in stream:
                    entries.append((entry.source, entry.message))
                    if entry.message == wanted:
                        stream.cancel()
                        return entries
        return entries
    return asyncio.run(read())


def test_hooks_run_in_order_around_a_lease_with_its_drivers_and_say_so(lab, tmp_path):
    order, go = tmp_path / "order", tmp_path / "go"
    before = (f'echo "before $LEASE_NAME $CLIENT_NAME" >> {order}\n'
              f"while [ ! -e {go} ]; do sleep 0.1; done\n"
              f"{CLI} call power.on\n"
              "echo the board is prepared\n")
    after = f'echo "after $LEASE_NAME $({CLI} call power.status)" >> {order}\n'
    lab.exporter("bench1", "board=mock", hooks={"beforeLease": {"script": before, "timeout": 60},
                                                "afterLease": {"script": after, "onFailure": "warn"}})
    assert exporters(lab)["bench1"]["status"] == "available"
    waiting = subprocess.Popen([CLI, "lease", "create", "-l", "board=mock", "-o", "json", "--client-config",
                                str(lab.workdir / "alice.yaml")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=subprocess_env())
    try:
        # Granted, but not ready while its exporter prepares the board: no client gets it yet.
        (held,) = wait_for(lambda: [lease for lease in leases(lab) if lease["exporter"] == "bench1"], 30, "a grant")
        name = held["name"]
        preparing = f"exporter bench1: running the beforeLease hook of lease {name}"
        assert held["state"] == "waiting" and held["message"].startswith(preparing), held
        assert exporters(lab)["bench1"]["status"] == "before_lease_hook"
        assert order.read_text() == f"before {name} alice\n"
        go.touch()
        out, err = waiting.communicate(timeout=60)
    finally:
        waiting.kill()
    assert waiting.returncode == 0, err
    (lease,) = json.loads(out)
    assert lease["state"] == "ready" and lease["name"] == name
    assert exporters(lab)["bench1"]["status"] == "lease_ready"

    # The client's connections share the session its hook prepared, and its LogStream carries the hook's output.
    status = cli("shell", "--lease", name, "--client-config", str(lab.workdir / "alice.yaml"), "--", CLI, "call",
                 "power.status")
    assert status.stdout.strip() == "on", status.stderr
    entries = hook_log(ClientConfig.load(lab.workdir / "alice.yaml"), name, "the board is prepared")
    assert (common_pb2.LOG_SOURCE_BEFORE_LEASE_HOOK, "the board is prepared") in entries, entries

    assert alice(lab, "lease", "release", name).returncode == 0
    wait_for(lambda: len(order.read_text().splitlines()) == 2, 30, "the afterLease hook")
    assert order.read_text().splitlines()[1] == f"after {name} on"  # the lease's drivers, before they closed
    wait_for(lambda: exporters(lab)["bench1"]["status"] == "available", 30, "the exporter available again")
    log = (lab.workdir / "bench1.log").read_text()
    assert f"beforeLease hook of lease {name}: the board is prepared" in log
    assert f"the afterLease hook of lease {name} succeeded" in log


def test_a_failing_before_lease_hook_ends_the_lease_and_the_exporter_recovers(lab, tmp_path):
    fail, order = tmp_path / "fail", tmp_path / "order"
    before = f"if [ -e {fail} ]; then echo the SD mux does not answer; exit 3; fi\n"
    lab.exporter("bench1", "board=mock", hooks={"beforeLease": {"script": before, "onFailure": "endLease"},
                                                "afterLease": {"script": f"echo after >> {order}"}})
    fail.touch()
    refused = alice(lab, "lease", "create", "-l", "board=mock", "--acquisition-timeout", "60")
    assert refused.returncode == 1
    assert ("ended before it was ready: released by the exporter: beforeLease hook failed with exit code 3"
            in refused.stderr), refused.stderr
    recovered = wait_for(lambda: (e := exporters(lab)["bench1"])["status"] == "available" and e, 30,
                         "the exporter available again")
    assert recovered["message"].endswith("failed: beforeLease hook failed with exit code 3"), recovered
    assert not order.exists()  # no afterLease hook for a lease whose beforeLease failed (as upstream)
    assert "the SD mux does not answer" in (lab.workdir / "bench1.log").read_text()

    fail.unlink()
    (lease,) = json.loads(alice(lab, "lease", "create", "-l", "board=mock", "-o", "json").stdout)
    assert lease["state"] == "ready"


def test_a_hook_past_its_timeout_is_stopped_and_a_failed_cleanup_waits_for_an_admin(lab, tmp_path):
    before_pid, after_pid = tmp_path / "before.pid", tmp_path / "after.pid"
    hooks = {"beforeLease": {"script": f"echo $$ > {before_pid}; exec sleep 600", "timeout": 2},  # warn: goes on
             "afterLease": {"script": f"echo $$ > {after_pid}; sleep 600", "timeout": 2, "onFailure": "endLease"}}
    lab.exporter("bench1", "board=mock", hooks=hooks)
    (lease,) = json.loads(alice(lab, "lease", "create", "-l", "board=mock", "-o", "json").stdout)
    assert lease["state"] == "ready"
    assert process_gone(int(before_pid.read_text()))
    log = lab.workdir / "bench1.log"
    assert "beforeLease hook timed out after 2s and was stopped" in log.read_text()

    assert alice(lab, "lease", "release", lease["name"]).returncode == 0
    failed = wait_for(lambda: (e := exporters(lab)["bench1"])["status"] == "after_lease_hook_failed" and e, 30,
                      "the failed afterLease hook")
    assert failed["message"] == ("afterLease hook timed out after 2s and was stopped: granted to nobody until an "
                                 "admin puts it back in service"), failed
    wait_for(lambda: after_pid.exists() and process_gone(int(after_pid.read_text())), 10, "the hook stopped")
    waited = alice(lab, "lease", "create", "-l", "board=mock", "--acquisition-timeout", "3")
    assert waited.returncode == 1 and "not granted within 3s" in waited.stderr, waited.stderr
    assert cli("admin", "enable-exporter", "bench1", "--db", lab.db).returncode == 0
    (again,) = json.loads(alice(lab, "lease", "create", "-l", "board=mock", "-o", "json").stdout)
    assert again["state"] == "ready" and again["exporter"] == "bench1"


def test_a_hook_with_on_failure_exit_stops_the_exporter(lab):
    exporter = lab.exporter("bench1", "board=mock",
                            hooks={"beforeLease": {"script": "exit 7", "onFailure": "exit"}})
    refused = alice(lab, "lease", "create", "-l", "board=mock", "--acquisition-timeout", "60")
    assert refused.returncode == 1 and "beforeLease hook failed with exit code 7" in refused.stderr, refused.stderr
    assert exporter.process.wait(timeout=30) == 1
    assert ("beforeLease hook failed with exit code 7: the exporter stopped (onFailure: exit)"
            in (lab.workdir / "bench1.log").read_text())
    wait_for(lambda: not exporters(lab)["bench1"]["online"], 30, "the exporter offline")
