"""The connection plugin in distributed mode: a lease from a real controller, a sim board on a
real exporter registered with it, and ansible reaching the board's console through the router."""

from __future__ import annotations

import asyncio

import pytest

from conftest import Lab
from helpers import ControllerLab, cli
from jumpstarter_lab.client import ClientConfig, ControllerClient, connect_lease


@pytest.fixture
def leased(tmp_path, collections_path):
    lab = ControllerLab(tmp_path, str(tmp_path / "controller.db"))
    try:
        lab.client("alice")
        config = str(tmp_path / "alice.yaml")
        sim = {"board": {"type": "jumpstarter_lab_driver_sim.SimBoard", "config": {"password": "s3cret"}}}
        lab.exporter("sim1", "board=sim", export=sim)
        created = cli("lease", "create", "--client-config", config, "-l", "board=sim", "--acquisition-timeout", "60")
        assert created.returncode == 0, created.stderr
        lease = created.stdout.split()[0]
        image = tmp_path / "image.bin"
        image.write_bytes(b"JUMPSTARTER_MARKER=ansible-lab\n")
        with connect_lease(ClientConfig.load(config), lease) as root:  # the lease's session keeps this
            root.board.storage.flash(image)
            root.board.power.on()
        (tmp_path / "tmp").mkdir()
        yield lab, config, lease, Lab(tmp_path, collections_path, None, jumpstarter_lease=lease,
                                      jumpstarter_client_config=config)
    finally:
        lab.stop()


def test_tasks_run_through_a_lease_and_share_its_session(leased):
    lab, config, lease, ansible = leased
    result = ansible.playbook("""
- hosts: board1
  gather_facts: false
  tasks:
    - name: the console answers through the router
      ansible.builtin.command: echo through-the-lease
      register: echoed
    - name: a file written by one task is read by the next
      ansible.builtin.copy:
        content: "kept between tasks\\n"
        dest: /tmp/lease-check.txt
    - ansible.builtin.slurp:
        src: /tmp/lease-check.txt
      register: slurped
""")
    assert result["rc"] == 0, result
    tasks = result["plays"][0]["tasks"]
    assert tasks[0]["hosts"]["board1"]["stdout"] == "through-the-lease"
    assert tasks[2]["hosts"]["board1"]["content"] == "a2VwdCBiZXR3ZWVuIHRhc2tzCg=="


def test_an_ended_lease_fails_clearly(leased):
    lab, config, lease, ansible = leased

    async def release():
        client = ControllerClient(ClientConfig.load(config))
        try:
            await client.release(lease)
        finally:
            await client.close()

    asyncio.run(release())
    result = ansible.adhoc("command", "true")
    assert result.get("unreachable") is True
    assert f"lease {lease}" in result["msg"] and "is not ready: released by the client" in result["msg"]
