"""The inventory plugin, the lease and call modules against a real controller with two sim boards
registered: `ansible-inventory` lists them with their labels, a playbook leases one, powers it on,
runs on its console through the router and gives it back."""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import time

import pytest
import yaml

from conftest import Lab
from helpers import BIN, ControllerLab, cli


@pytest.fixture
def lab_inventory(tmp_path, collections_path):
    lab = ControllerLab(tmp_path, str(tmp_path / "controller.db"), verbose=True)  # debug logs: checked for secrets
    try:
        lab.client("alice")
        image = tmp_path / "image.bin"
        image.write_bytes(b"JUMPSTARTER_MARKER=from-the-controller\n")
        for name, rack in (("sim1", "a"), ("sim2", "b")):
            board = {"type": "jumpstarter_lab_driver_sim.SimBoard",
                     "config": {"password": "s3cret", "image": str(image)}}
            lab.exporter(name, "board=sim", f"rack={rack}", export={"board": board})
        inventory = tmp_path / "lab.jumpstarter.yml"
        inventory.write_text(yaml.safe_dump({
            "plugin": "jumpstarter.lab.jumpstarter",
            "client_config": str(tmp_path / "alice.yaml"),
            "keyed_groups": [{"key": "jumpstarter_labels.rack", "prefix": "rack"}],
            "compose": {"jumpstarter_console": "'board.console'", "ansible_password": "'s3cret'",
                        "ansible_python_interpreter": "'/usr/bin/python3'"},
            "exporters": {"bench1": {"host": str(tmp_path / "bench1.sock"), "labels": {"rack": "c"}}},
        }))
        (tmp_path / "tmp").mkdir()
        yield lab, inventory, Lab(tmp_path, collections_path, None)
    finally:
        lab.stop()


def plain(value):
    """ansible-inventory's JSON without its marks of untrusted text ({"__ansible_unsafe": "x"} -> "x"):
    what an inventory plugin reads from a controller is never templated, which is as it should be."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def run(ansible: Lab, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*args], capture_output=True, text=True, env=ansible.env(), cwd=ansible.workdir,
                          timeout=300, check=False)


def test_inventory_lists_the_controllers_boards_and_the_ones_given(lab_inventory):
    lab, inventory, ansible = lab_inventory
    assert cli("admin", "disable-exporter", "sim2", "--reason", "new SD card", "--db", lab.db).returncode == 0
    listed = run(ansible, str(BIN / "ansible-inventory"), "-i", str(inventory), "--list")
    assert listed.returncode == 0, listed.stderr
    data = plain(json.loads(listed.stdout))
    sim2 = data["_meta"]["hostvars"]["sim2"]
    assert (sim2["jumpstarter_enabled"], sim2["jumpstarter_status_message"]) == (False, "out of service: new SD card")
    assert cli("admin", "enable-exporter", "sim2", "--db", lab.db).returncode == 0
    assert sorted(data["jumpstarter"]["hosts"]) == ["bench1", "sim1", "sim2"]
    assert (data["rack_a"]["hosts"], data["rack_b"]["hosts"], data["rack_c"]["hosts"]) == (["sim1"], ["sim2"], ["bench1"])
    sim1 = data["_meta"]["hostvars"]["sim1"]
    assert sim1["jumpstarter_exporter"] == "sim1" and sim1["jumpstarter_labels"] == {"board": "sim", "rack": "a"}
    assert (sim1["jumpstarter_online"], sim1["jumpstarter_status"], sim1["jumpstarter_enabled"]) == (
        True, "available", True)
    assert sim1["ansible_connection"] == "jumpstarter.lab.jumpstarter"
    assert data["_meta"]["hostvars"]["bench1"]["jumpstarter_host"] == str(lab.workdir / "bench1.sock")


def test_a_playbook_leases_a_board_uses_it_and_gives_it_back(lab_inventory):
    lab, inventory, ansible = lab_inventory
    playbook = ansible.workdir / "lease.yml"
    playbook.write_text("""
- hosts: rack_a
  gather_facts: false
  tasks:
    - jumpstarter.lab.lease: {ttl: 120, tags: {ci-job: 77}}
    - jumpstarter.lab.lease: {ttl: 120}
    - jumpstarter.lab.call: {driver: board.power, method: "on"}
    - ansible.builtin.command: printenv SIM_MARKER
    - jumpstarter.lab.call: {driver: board.storage, method: status}
    - jumpstarter.lab.lease: {state: absent}
    - jumpstarter.lab.lease: {state: absent}
""")
    played = run(ansible, str(BIN / "ansible-playbook"), "-i", str(inventory), str(playbook), "--diff")
    assert played.returncode == 0, played.stdout + played.stderr
    results = [task["hosts"]["sim1"] for task in json.loads(played.stdout)["plays"][0]["tasks"]]
    taken, kept, powered, marker, storage, released, again = results
    assert taken["changed"] is True and taken["exporter"] == "sim1" and taken["lease"]
    assert taken["diff"]["before"] == "lease: none\nexporter: sim1 (available)\n", taken["diff"]
    assert re.fullmatch(rf"lease: {taken['lease']} until \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC\n"
                        r"exporter: sim1 \(leased by this client\)\n", taken["diff"]["after"]), taken["diff"]
    assert kept["changed"] is False and kept["lease"] == taken["lease"]
    assert powered["changed"] is True and powered["value"] is None
    assert marker["stdout"] == "from-the-controller"
    assert storage["value"] == "dut"
    assert released["changed"] is True and released["ansible_facts"] == {"jumpstarter_lease": ""}
    assert released["diff"] == {"before": taken["diff"]["after"], "after": "lease: none\n"}, released
    assert again["changed"] is False
    listing = cli("lease", "list", "--client-config", str(lab.workdir / "alice.yaml"))
    assert listing.stdout.strip() == ""  # nothing held, nothing waiting
    tagged = cli("lease", "list", "--all", "--tag-filter", "ci-job=77", "-o", "name", "--client-config",
                 str(lab.workdir / "alice.yaml"))
    assert tagged.stdout.split() == [taken["lease"]], tagged  # the module's tags are on the lease


def test_lease_in_check_mode_takes_nothing_and_bad_input_is_named(lab_inventory):
    lab, inventory, ansible = lab_inventory
    playbook = ansible.workdir / "check.yml"
    playbook.write_text("""
- hosts: sim2
  gather_facts: false
  vars:
    ansible_async_dir: "{{ playbook_dir }}/async"
  tasks:
    - jumpstarter.lab.lease: {}
    - jumpstarter.lab.lease: {exporter: sim9}
      ignore_errors: true
    - jumpstarter.lab.lease: {ttl: 7200}
      ignore_errors: true
    - jumpstarter.lab.call: {driver: board.power, method: read}
""")
    played = run(ansible, str(BIN / "ansible-playbook"), "-i", str(inventory), str(playbook), "--check")
    results = [task["hosts"]["sim2"] for task in json.loads(played.stdout)["plays"][0]["tasks"]]
    assert results[0]["changed"] is True and results[0]["lease"] == ""
    assert cli("lease", "list", "--client-config", str(lab.workdir / "alice.yaml")).stdout.strip() == ""
    assert results[1]["failed"] is True and "no exporter sim9" in results[1]["msg"]
    assert results[2]["failed"] is True and "ttl must be between 1 and 3600" in results[2]["msg"]
    assert results[3]["skipped"] is True and "holds no lease" in results[3]["msg"], results[3]
    broken = ansible.workdir / "broken.jumpstarter.yml"
    broken.write_text(yaml.safe_dump({"plugin": "jumpstarter.lab.jumpstarter", "exporters": {"b1": {"hots": "x"}}}))
    listed = run(ansible, str(BIN / "ansible-inventory"), "-i", str(broken), "--list")
    assert "exporters.b1 needs a 'host'" in listed.stderr
    malformed = ansible.workdir / "malformed.jumpstarter.yml"
    malformed.write_text(yaml.safe_dump({**yaml.safe_load(inventory.read_text()), "selector": "board=sim=x"}))
    listed = run(ansible, str(BIN / "ansible-inventory"), "-i", str(malformed), "--list")
    assert "invalid label selector term 'board=sim=x'" in " ".join(listed.stderr.split()), listed.stderr


def test_flash_checks_and_refuses_clearly(lab_inventory):
    lab, inventory, ansible = lab_inventory
    medium = lab.workdir / "image.bin"  # the sim boards' storage
    before = medium.read_bytes()
    image = ansible.workdir / "new.img"
    image.write_bytes(b"JUMPSTARTER_MARKER=second\n")

    def play(*tasks: str) -> list[dict]:
        playbook = ansible.workdir / "flash.yml"
        playbook.write_text("- hosts: sim2\n  gather_facts: false\n  tasks:\n    - jumpstarter.lab.lease: {}\n"
                            + "".join(f"    - {task}\n" for task in tasks)
                            + "    - jumpstarter.lab.lease: {state: absent}\n")
        played = run(ansible, str(BIN / "ansible-playbook"), "-i", str(inventory), str(playbook))
        return [task["hosts"]["sim2"] for task in json.loads(played.stdout)["plays"][0]["tasks"]][1:-1]

    (checked,) = play(f"{{jumpstarter.lab.flash: {{src: {image}}}, check_mode: true}}")
    assert checked["changed"] is True and checked["msg"].startswith("would flash"), checked
    assert medium.read_bytes() == before  # check mode wrote nothing
    flashed, missing, nowhere = play(
        f"jumpstarter.lab.flash: {{src: {image}}}",
        f"{{jumpstarter.lab.flash: {{src: {ansible.workdir / 'missing.img'}}}, ignore_errors: true}}",
        f"{{jumpstarter.lab.flash: {{src: {image}, storage: board.nothing}}, ignore_errors: true}}")
    assert (flashed["bytes_received"], flashed["compression"]) == (image.stat().st_size, "raw")
    assert medium.read_bytes() == image.read_bytes()
    assert missing["failed"] is True and "missing.img" in missing["msg"]
    assert nowhere["failed"] is True and "no driver 'board.nothing'" in nowhere["msg"]


def test_a_cached_inventory_needs_no_controller(lab_inventory):
    lab, inventory, ansible = lab_inventory
    settings = yaml.safe_load(inventory.read_text())
    cached = ansible.workdir / "cached.jumpstarter.yml"
    cached.write_text(yaml.safe_dump(settings | {"cache": True, "cache_plugin": "ansible.builtin.jsonfile",
                                                 "cache_connection": str(ansible.workdir / "inventory-cache"),
                                                 "cache_timeout": 600}))
    uncached = ansible.workdir / "uncached.jumpstarter.yml"
    uncached.write_text(yaml.safe_dump(settings))

    def listed(path):
        result = run(ansible, "env", "ANSIBLE_INVENTORY_UNPARSED_FAILED=1", str(BIN / "ansible-inventory"),
                     "-i", str(path), "--list")
        return result, plain(json.loads(result.stdout)) if result.returncode == 0 else None

    first, before = listed(cached)
    assert first.returncode == 0, first.stderr
    assert sorted(before["jumpstarter"]["hosts"]) == ["bench1", "sim1", "sim2"]
    assert list((ansible.workdir / "inventory-cache").iterdir())  # kept by the jsonfile cache plugin

    lab.controller_process.stop()
    second, after = listed(cached)
    assert second.returncode == 0, second.stderr
    assert after == before  # the same hosts and variables, with no controller to ask

    refused, nothing = listed(uncached)
    assert refused.returncode != 0 and nothing is None
    assert f"listing exporters from the controller in {ansible.workdir / 'alice.yaml'}" in refused.stderr, refused.stderr
    assert "unavailable" in refused.stderr  # and why: the controller is not there


def test_a_silent_controller_fails_the_inventory_after_its_timeout_naming_it(tmp_path, collections_path):
    """A controller port that accepts connections and never answers (a hung process, a firewall's tarpit)."""
    import socket

    from jumpstarter_lab.client import ClientConfig

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # never accepted, never answered: the handshake completes in the kernel, then nothing
    endpoint = f"127.0.0.1:{silent.getsockname()[1]}"
    try:
        config = tmp_path / "alice.yaml"
        config.write_text(ClientConfig.issued("alice", "default", endpoint, "x.y.z", {"insecure": True}).dump())
        config.chmod(0o600)
        inventory = tmp_path / "lab.jumpstarter.yml"
        inventory.write_text(yaml.safe_dump({"plugin": "jumpstarter.lab.jumpstarter", "client_config": str(config),
                                             "timeout": 2}))
        (tmp_path / "tmp").mkdir()
        ansible = Lab(tmp_path, collections_path, None)
        result = run(ansible, "env", "ANSIBLE_INVENTORY_UNPARSED_FAILED=1", str(BIN / "ansible-inventory"),
                     "-i", str(inventory), "--list")
        assert result.returncode != 0
        assert f"the controller at {endpoint} did not answer within 2s" in result.stderr, result.stderr
    finally:
        silent.close()


def test_a_lease_taken_on_localhost_with_a_client_config_serves_the_tasks_that_follow(lab_inventory):
    """The lease module's second example: no inventory of boards, a client config given to the module."""
    lab, _inventory, ansible = lab_inventory
    playbook = ansible.workdir / "localhost.yml"
    playbook.write_text(f"""
- hosts: localhost
  gather_facts: false
  tasks:
    - jumpstarter.lab.lease: {{selector: rack=b, client_config: {lab.workdir / 'alice.yaml'}}}
    - jumpstarter.lab.call: {{driver: board.power, method: "on"}}
    - jumpstarter.lab.call: {{driver: board.power, method: "off"}}
    - jumpstarter.lab.lease: {{state: absent}}
""")
    played = run(ansible, str(BIN / "ansible-playbook"), "-i", "localhost,", str(playbook))
    assert played.returncode == 0, played.stdout[-3000:] + played.stderr[-3000:]
    leased, on, off, released = [task["hosts"]["localhost"] for task in json.loads(played.stdout)["plays"][0]["tasks"]]
    assert leased["exporter"] == "sim2" and leased["ansible_facts"]["jumpstarter_client_config"]
    assert on["changed"] and off["changed"] and "failed" not in on and "failed" not in off
    assert released["changed"] is True and released["lease"] == ""
    assert cli("lease", "list", "--client-config", str(lab.workdir / "alice.yaml")).stdout.strip() == ""


def test_flash_and_call_run_as_async_jobs_where_async_status_can_find_them(lab_inventory):
    """On localhost (or delegated there), async: polled by Ansible, or fire-and-forget then async_status;
    on a board's own connection, refused with a message saying why."""
    lab, inventory, ansible = lab_inventory
    image = ansible.workdir / "async.img"
    image.write_bytes(b"JUMPSTARTER_MARKER=async\n" + bytes(200_000))
    config = lab.workdir / "alice.yaml"
    localhost = ansible.workdir / "async.yml"
    localhost.write_text(f"""
- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"
    ansible_async_dir: "{{{{ playbook_dir }}}}/async"
  tasks:
    - jumpstarter.lab.lease: {{selector: rack=b, client_config: {config}}}
    - jumpstarter.lab.flash: {{src: {image}}}
      async: 120
      poll: 1
    - jumpstarter.lab.call: {{driver: board.power, method: "on"}}
      async: 60
      poll: 0
      register: started
    - ansible.builtin.async_status: {{jid: "{{{{ started.ansible_job_id }}}}"}}
      register: job
      until: job.finished
      retries: 60
      delay: 1
    - jumpstarter.lab.flash: {{src: {ansible.workdir / 'missing.img'}}}
      async: 60
      poll: 1
      ignore_errors: true
    - jumpstarter.lab.lease: {{state: absent}}
""")
    played = run(ansible, str(BIN / "ansible-playbook"), "-i", "localhost,", str(localhost))
    assert played.returncode == 0, played.stdout[-3000:] + played.stderr[-3000:]
    _leased, flashed, started, job, missing, _released = [
        task["hosts"]["localhost"] for task in json.loads(played.stdout)["plays"][0]["tasks"]]
    assert flashed["finished"] and flashed["changed"] and flashed["bytes_written"] == image.stat().st_size, flashed
    assert started["started"] and not started["finished"], started
    assert job["finished"] and job["changed"] and job["value"] is None, job
    assert missing["failed"] and "missing.img" in missing["msg"], missing
    assert (lab.workdir / "image.bin").read_bytes() == image.read_bytes()  # sim2's storage, both boards' image
    assert list((ansible.workdir / "async").iterdir()), "the jobs' files are in the play's async_dir"

    board = ansible.workdir / "board-async.yml"
    board.write_text("""
- hosts: sim2
  gather_facts: false
  vars:
    ansible_async_dir: "{{ playbook_dir }}/async"
  tasks:
    - jumpstarter.lab.lease: {}
    - jumpstarter.lab.call: {driver: board.power, method: "off"}
      async: 60
      poll: 1
      ignore_errors: true
    - jumpstarter.lab.call: {driver: board.power, method: "off"}
      async: 60
      poll: 1
      delegate_to: localhost
      vars:
        ansible_python_interpreter: "{{ ansible_playbook_python }}"
    - jumpstarter.lab.lease: {state: absent}
""")
    played = run(ansible, str(BIN / "ansible-playbook"), "-i", str(inventory), str(board))
    _leased, refused, delegated, _released = [
        task["hosts"]["sim2"] for task in json.loads(played.stdout)["plays"][0]["tasks"]]
    assert refused["failed"] and "needs the task's connection to be local (add delegate_to: localhost)" \
        in refused["msg"], refused
    assert delegated["finished"] and "failed" not in delegated, delegated


def test_info_modules_report_exporters_and_leases_in_check_mode_too(lab_inventory):
    lab, _inventory, ansible = lab_inventory
    config = lab.workdir / "alice.yaml"
    assert cli("admin", "disable-exporter", "sim1", "--reason", "bench move", "--db", lab.db).returncode == 0
    playbook = ansible.workdir / "info.yml"
    playbook.write_text(f"""
- hosts: localhost
  connection: local
  gather_facts: false
  module_defaults:
    group/jumpstarter.lab.jumpstarter: {{client_config: {config}}}
  tasks:
    - jumpstarter.lab.exporter_info: {{}}
      check_mode: true
    - jumpstarter.lab.exporter_info: {{selector: rack=b}}
    - jumpstarter.lab.exporter_info: {{name: sim9}}
      ignore_errors: true
    - jumpstarter.lab.lease: {{selector: rack=b, tags: {{purpose: info-test}}}}
    - jumpstarter.lab.call: {{driver: board.power, method: read, count: 1}}  # the group's client_config too
    - jumpstarter.lab.lease_info: {{}}
      check_mode: true
    - jumpstarter.lab.lease_info: {{name: "{{{{ jumpstarter_lease }}}}"}}
    - jumpstarter.lab.lease: {{state: absent}}
    - jumpstarter.lab.lease_info: {{all: true, tag_filter: purpose=info-test}}
""")
    played = run(ansible, str(BIN / "ansible-playbook"), "-i", "localhost,", str(playbook))
    assert played.returncode == 0, played.stdout[-3000:] + played.stderr[-3000:]
    every, rack_b, missing, _lease, read, held, named, _released, ended = [
        task["hosts"]["localhost"] for task in json.loads(played.stdout)["plays"][0]["tasks"]]
    assert {e["name"]: e["enabled"] for e in every["exporters"]} == {"sim1": False, "sim2": True}, every
    assert every["changed"] is False and every["exporters"][0]["message"] == "out of service: bench move"
    assert [e["name"] for e in rack_b["exporters"]] == ["sim2"] and rack_b["exporters"][0]["status"] == "available"
    assert missing["failed"] and "no exporter sim9" in missing["msg"], missing
    assert read["value"] == [{"voltage": 0.0, "current": 0.0}], read
    (lease,) = held["leases"]
    assert (lease["state"], lease["exporter"], lease["tags"]) == ("ready", "sim2", {"purpose": "info-test"}), lease
    assert named["leases"] == [lease | {"message": named["leases"][0]["message"]}], named
    assert [(e["name"], e["state"]) for e in ended["leases"]] == [(lease["name"], "ended")], ended


def test_a_reserved_lease_is_waited_for_and_granted_at_its_time(lab_inventory):
    lab, inventory, ansible = lab_inventory
    playbook = ansible.workdir / "reserve.yml"
    playbook.write_text("""
- hosts: sim1
  gather_facts: false
  tasks:
    - jumpstarter.lab.lease: {begin_time: "{{ reserve_at }}", acquisition_timeout: 30}
    - jumpstarter.lab.lease_info: {name: "{{ jumpstarter_lease }}"}
    - jumpstarter.lab.lease: {state: absent}
    - jumpstarter.lab.lease: {begin_time: "at eight", acquisition_timeout: 1}
      ignore_errors: true
""")
    begin = time.time() + 4
    at = datetime.datetime.fromtimestamp(begin, datetime.UTC).isoformat()
    played = run(ansible, str(BIN / "ansible-playbook"), "-i", str(inventory), str(playbook), "-e",
                 f"reserve_at={at}")
    results = [task["hosts"]["sim1"] for task in json.loads(played.stdout)["plays"][0]["tasks"]]
    assert results[0]["changed"] is True and results[0]["exporter"] == "sim1", results[0]
    (held,) = results[1]["leases"]
    assert held["state"] == "ready" and held["ends"] - 1800 >= begin - 1, held  # granted at its time (ends is whole seconds)
    assert abs(held["begins"] - begin) < 1
    assert results[3]["failed"] is True and "begin_time 'at eight' is not a date and time" in results[3]["msg"]


JWT = re.compile(r"eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]*")  # any token: a client's, an exporter's, a router's


def test_no_token_or_password_shows_in_logs_or_output(lab_inventory):
    """A whole lease's work at -vvvv with --diff, the inventory, the CLI with -v, the lease's console log as
    kept by the controller, and the controller's and exporters' debug logs: no token of any kind appears, and
    the board's password only where the user wrote it (the inventory's own variables)."""
    lab, inventory, ansible = lab_inventory
    playbook = ansible.workdir / "secrets.yml"
    playbook.write_text("""
- hosts: sim1
  gather_facts: false
  tasks:
    - jumpstarter.lab.lease: {ttl: 120}
    - jumpstarter.lab.call: {driver: board.power, method: "on"}
    - ansible.builtin.command: printenv SIM_MARKER
    - jumpstarter.lab.lease_info: {}
    - jumpstarter.lab.lease: {state: absent}
""")
    env = ansible.env() | {"ANSIBLE_STDOUT_CALLBACK": "default"}  # the output people read, all of it
    played = subprocess.run([str(BIN / "ansible-playbook"), "-vvvv", "--diff", "-i", str(inventory), str(playbook)],
                            capture_output=True, text=True, env=env, cwd=ansible.workdir, timeout=300, check=False)
    assert played.returncode == 0, played.stdout[-4000:] + played.stderr[-2000:]
    assert "from-the-controller" in played.stdout  # the command ran on the board, over its console
    listed = subprocess.run([str(BIN / "ansible-inventory"), "-vvvv", "-i", str(inventory), "--list"],
                            capture_output=True, text=True, env=env, cwd=ansible.workdir, timeout=300, check=False)
    assert listed.returncode == 0, listed.stderr
    config = str(lab.workdir / "alice.yaml")
    commands = [cli("-v", "exporters", "list", "-o", "yaml", "--client-config", config),
                cli("-v", "shell", "--client-config", config, "--selector", "rack=b", "--", str(BIN / "jumpstarter-lab"),
                    "-v", "call", "board.storage.status"),
                cli("-v", "lease", "list", "--all", "-o", "yaml", "--client-config", config)]
    lease = yaml.safe_load(commands[2].stdout)[0]["name"]  # the playbook's, ended: its console log is kept
    commands.append(cli("-v", "lease", "console-log", lease, "--client-config", config))
    assert [c.returncode for c in commands] == [0, 0, 0, 0], [c.stderr[-2000:] for c in commands]
    assert commands[1].stdout.strip() == "dut"
    assert "login:" in commands[3].stdout  # the board's console as the playbook logged in

    tokens = [yaml.safe_load(path.read_text())["token"] for path in lab.workdir.glob("*.yaml")
              if path.name in ("alice.yaml", "sim1.yaml", "sim2.yaml")]
    assert len(tokens) == 3
    shown = {"ansible-playbook -vvvv": played.stdout + played.stderr, "ansible-inventory -vvvv": listed.stderr,
             **{" ".join(c.args[1:4]): c.stdout + c.stderr for c in commands},
             **{path.name: path.read_text() for path in lab.workdir.glob("*.log")}}
    assert any("DEBUG" in text for name, text in shown.items() if name.endswith(".log"))  # debug logs were on
    for name, text in shown.items():
        assert not JWT.search(text), f"{name} shows a token: {JWT.search(text).group(0)[:40]}..."
        assert not any(token[-20:] in text for token in tokens), name
        if name != "ansible-inventory -vvvv":
            assert "s3cret" not in text, f"{name} shows the board's password"
    print({name: len(text) for name, text in shown.items()})
