"""The action plugins (call, flash, lease) read the host's exporter options as the connection plugin does, join
the connection's session whatever ansible_host says, and take module_defaults of their group."""

from __future__ import annotations

import pytest

from conftest import Lab, start_exporter

SIM = """
board:
  type: jumpstarter_lab_driver_sim.SimBoard
  config:
    password: s3cret
    image: {image}
"""


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory, collections_path):
    """A sim board that nothing has powered on, for a host whose ansible_host names another machine and whose
    jumpstarter_host is templated."""
    workdir = tmp_path_factory.mktemp("elsewhere")
    image = workdir / "image.bin"
    image.write_bytes(b"JUMPSTARTER_MARKER=one-session\n")
    exporter = start_exporter(workdir, SIM.format(image=image), "--session-linger", "600")
    lab = Lab(workdir, collections_path, exporter.address, ansible_host="board1.elsewhere.invalid",
              jumpstarter_host="{{ lab_dir }}/lab.sock", lab_dir=str(workdir), jumpstarter_login_timeout=20)
    yield lab
    exporter.stop()


def test_call_and_the_console_share_the_session_whatever_ansible_host_says(elsewhere):
    result = elsewhere.playbook("""
- hosts: board1
  gather_facts: false
  tasks:
    - name: power on, in the session of the inventory host
      jumpstarter.lab.call: {driver: board.power, method: "on"}
    - name: the console finds the board on, so it is the same session
      ansible.builtin.command: printenv SIM_MARKER
    - jumpstarter.lab.flash: {src: "{{ lab_dir }}/image.bin"}
      check_mode: true
""")
    assert result["rc"] == 0, result
    powered, marker, flashed = (task["hosts"]["board1"] for task in result["plays"][0]["tasks"])
    assert powered["changed"] is True and powered["value"] is None
    assert marker["stdout"] == "one-session"
    assert flashed["msg"].startswith("would flash") and flashed["msg"].endswith("to board.storage")


def test_module_defaults_of_the_group_reach_every_module(elsewhere):
    result = elsewhere.playbook("""
- hosts: board1
  gather_facts: false
  module_defaults:
    group/jumpstarter.lab.jumpstarter: {timeout: soon}
  tasks:
    - jumpstarter.lab.call: {driver: board.power, method: "on"}
      ignore_errors: true
    - jumpstarter.lab.flash: {src: "{{ lab_dir }}/image.bin"}
      check_mode: true
      ignore_errors: true
    - jumpstarter.lab.lease: {selector: board=sim}
      check_mode: true
      ignore_errors: true
- hosts: board1
  gather_facts: false
  module_defaults:
    group/jumpstarter.lab.jumpstarter: {timeout: 20}
  tasks:
    - jumpstarter.lab.call: {driver: board.power, method: "on"}
    - jumpstarter.lab.flash: {src: "{{ lab_dir }}/image.bin"}
      check_mode: true
""")
    refused = [task["hosts"]["board1"] for task in result["plays"][0]["tasks"]]
    assert len(refused) == 3
    for task in refused:  # the one default reached call, flash and lease alike
        assert task["failed"] is True and "timeout" in task["msg"] and "int" in task["msg"], task
    assert result["rc"] == 0 or all(t["hosts"]["board1"].get("failed") is not True
                                    for t in result["plays"][1]["tasks"]), result
    powered, checked = (task["hosts"]["board1"] for task in result["plays"][1]["tasks"])
    assert powered["changed"] is True and checked["msg"].startswith("would flash")


def test_call_returns_a_streaming_methods_values_as_a_list(elsewhere):
    result = elsewhere.playbook("""
- hosts: board1
  gather_facts: false
  tasks:
    - jumpstarter.lab.call: {driver: board.power, method: "on"}
    - jumpstarter.lab.call: {driver: board.power, method: read, count: 1}
    - jumpstarter.lab.call: {driver: board.power, method: read, count: 0}
      ignore_errors: true
""")
    _on, read, refused = (task["hosts"]["board1"] for task in result["plays"][0]["tasks"])
    assert read["value"] == [{"voltage": 5.0, "current": 0.4}], read
    assert refused["failed"] is True and "count must be at least 1, not 0" in refused["msg"], refused


def test_check_mode_calls_read_only_methods_and_flash_is_idempotent(elsewhere):
    new_image = elsewhere.workdir / "new.img"
    new_image.write_bytes(b"JUMPSTARTER_MARKER=idempotent\n")
    (elsewhere.workdir / "third.img").write_bytes(b"JUMPSTARTER_MARKER=third\n")
    result = elsewhere.playbook("""
- hosts: board1
  gather_facts: false
  tasks:
    - jumpstarter.lab.call: {driver: board.power, method: "off"}
    - jumpstarter.lab.call: {driver: board.power, method: "on"}
      check_mode: true
    - jumpstarter.lab.call: {driver: board.power, method: read, count: 1}
      check_mode: true
    - jumpstarter.lab.call: {driver: board.storage, method: status}
    - jumpstarter.lab.flash: {src: "{{ lab_dir }}/new.img"}
    - jumpstarter.lab.flash: {src: "{{ lab_dir }}/new.img"}
      check_mode: true
    - jumpstarter.lab.flash: {src: "{{ lab_dir }}/new.img"}
    - jumpstarter.lab.flash: {src: "{{ lab_dir }}/new.img", force: true}
    - jumpstarter.lab.flash: {src: "{{ lab_dir }}/third.img"}
      check_mode: true
""", "--diff")
    assert result["rc"] == 0, result
    off, on, read, status, first, checked, again, forced, other = (
        task["hosts"]["board1"] for task in result["plays"][0]["tasks"])
    assert off["changed"] is True
    assert on["skipped"] is True and "may change the board" in on["msg"] and on["msg"].endswith("board.power: read)"), on
    assert read["changed"] is False and read["value"] == [{"voltage": 0.0, "current": 0.0}], read  # still off
    assert status["changed"] is False and status["value"] == "dut", status
    assert first["changed"] is True and first["bytes_received"] == new_image.stat().st_size, first
    assert first["diff"]["after"] == f"sha256: {first['sha256']}\n", first
    assert checked["changed"] is False and "holds" in checked["msg"], checked
    assert checked["diff"]["before"] == checked["diff"]["after"], checked
    assert again["changed"] is False and again["bytes_received"] == 0 and again["sha256"] == first["sha256"], again
    assert again["diff"]["before"] == again["diff"]["after"] == f"sha256: {first['sha256']}\n", again
    assert forced["changed"] is True and forced["bytes_received"] == new_image.stat().st_size, forced
    assert forced["diff"]["before"] == forced["diff"]["after"], forced  # the record it held before the write
    assert "(written " in forced["diff"]["before_header"], forced
    assert other["changed"] is True and other["msg"].startswith("would flash"), other
    assert other["diff"]["before"] == f"sha256: {first['sha256']}\n" != other["diff"]["after"], other
