"""A lab playbook on the QEMU board's Debian guest (real systemd, TCG): over its serial console with
jumpstarter.lab.jumpstarter and over ssh to the same guest through a forwarded port, in one run (issue 15).

    .venv/bin/python bench/playbook.py [--runs 3] [--json results.json]

The guest boots once. Its root logs in over the console and gets an authorized key, then each
transport runs the same playbook (facts, shell with stderr, copy of 1 MiB of random data, template,
lineinfile, fetch, become to create a user and to enable and start a systemd service) on files,
a user and a service of its own: a first run that changes everything, then `--runs` runs that
change nothing (the figure compared: the median of those). Ssh is Ansible's own, pipelining on,
ControlPersist as by default; serial is the jumpstarter connection plugin on `board.console`.
It prints each playbook's wall time, serial/ssh, the goal (second run <= 1.3x), and where each
transport's time went, task by task. Nothing passes or fails on speed; the exit status is non-zero
only if a measurement broke.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from connection import ROOT, Ansible, Processes, start_exporter  # noqa: E402 - the bench's shared runner

sys.path.insert(0, str(ROOT / "tests"))
from helpers import free_port  # noqa: E402
from integration.qemu_helpers import PASSWORD, board_entry, login, shell  # noqa: E402

GOAL = 1.3
TEMPLATE = "# {{ ansible_managed }}\nhost={{ inventory_hostname }}\nkernel={{ ansible_kernel }}\ntag={{ tag }}\n"
UNIT = ("[Unit]\nDescription=bench {tag}\n[Service]\nExecStart=/bin/sleep infinity\n"
        "[Install]\nWantedBy=multi-user.target\n")


def play(workdir: Path) -> list[dict]:
    """The lab playbook; `tag` (the inventory host's name) keeps each transport's files, user and service apart."""
    return [{"hosts": "all", "gather_facts": True, "tasks": [
        {"name": "shell with stderr", "ansible.builtin.shell": "echo out-{{ tag }}; echo err-{{ tag }} >&2",
         "register": "both", "changed_when": False},
        {"name": "both streams came back", "ansible.builtin.assert": {"that": [
            "both.stdout == 'out-' + tag", "both.stderr == 'err-' + tag"]}},
        {"name": "copy 1 MiB", "ansible.builtin.copy": {"src": str(workdir / "random.bin"),
                                                        "dest": "/root/bench-{{ tag }}.bin", "mode": "0600"}},
        {"name": "template", "ansible.builtin.template": {"src": str(workdir / "app.conf.j2"),
                                                          "dest": "/etc/bench-{{ tag }}.conf", "mode": "0644"}},
        {"name": "lineinfile", "ansible.builtin.lineinfile": {"path": "/etc/environment",
                                                              "regexp": "^BENCH_{{ tag | upper }}=",
                                                              "line": "BENCH_{{ tag | upper }}=1"}},
        {"name": "fetch", "ansible.builtin.fetch": {"src": "/etc/bench-{{ tag }}.conf",
                                                    "dest": str(workdir / "fetched") + "/", "flat": False}},
        {"name": "become: a user", "become": True,
         "ansible.builtin.user": {"name": "bench{{ tag }}", "shell": "/bin/sh", "create_home": True}},
        {"name": "become: a unit", "become": True,
         "ansible.builtin.copy": {"dest": "/etc/systemd/system/bench-{{ tag }}.service", "mode": "0644",
                                  "content": UNIT.format(tag="{{ tag }}")}},
        {"name": "become: enabled and started", "become": True,
         "ansible.builtin.systemd_service": {"name": "bench-{{ tag }}", "enabled": True, "state": "started",
                                             "daemon_reload": True}},
    ]}]


class Guest:
    """The QEMU board, booted, in the exporter session the `serial` host uses, with an authorized key for root."""

    def __init__(self, address: str, public_key: str):
        from jumpstarter_lab.client import connect

        self._holder = connect(address, session="ansible-serial")
        root = self._holder.__enter__()
        try:
            with root.board.console.open() as console:
                started = time.monotonic()
                root.board.power.on()
                login(console)
                self.boot_s = time.monotonic() - started
                status, output = shell(console, "install -d -m 700 /root/.ssh && "
                                       f"echo '{public_key}' > /root/.ssh/authorized_keys && "
                                       "chmod 600 /root/.ssh/authorized_keys && systemctl is-active ssh")
                if status != 0:
                    raise RuntimeError(f"cannot authorize the bench's key on the guest: {output}")
                console.sendline("exit")  # the serial transport logs in itself
                console.expect("login: ", timeout=60)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._holder.__exit__(None, None, None)


def report(results: dict) -> None:
    serial, ssh = results["serial"], results["ssh"]
    print(f"A lab playbook on the QEMU board's Debian guest (TCG, {results['cpus']} vCPUs; booted in "
          f"{results['boot_s']:.0f}s); second runs: median of {len(serial['again_s'])}")
    header = f"{'transport':10} {'first run':>10} {'second run':>11} {'runs':>24}"
    print(header)
    print("-" * len(header))
    for name, r in (("serial", serial), ("ssh", ssh)):
        runs = ", ".join(f"{s:.1f}" for s in r["again_s"])
        print(f"{name:10} {r['first_s']:9.1f}s {statistics.median(r['again_s']):10.1f}s {runs:>24}")
    first = serial["first_s"] / ssh["first_s"]
    again = statistics.median(serial["again_s"]) / statistics.median(ssh["again_s"])
    print(f"serial / ssh: first run {first:.2f}x, second run {again:.2f}x; goal second run <= {GOAL}x: "
          f"{'meets goal' if again <= GOAL else 'below goal'}")
    print()
    print("where the time went, the last second run (seconds per task):")
    names = [t["name"] for t in serial["tasks"]]
    print(f"{'task':32} {'serial':>8} {'ssh':>8} {'ratio':>7}")
    for name, a, b in zip(names, serial["tasks"], ssh["tasks"], strict=True):
        sa, sb = a["end"] - a["start"], b["end"] - b["start"]
        print(f"{name:32} {sa:8.2f} {sb:8.2f} {sa / sb if sb else float('inf'):6.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="second runs per transport (the median is compared)")
    parser.add_argument("--cpus", type=int, default=2, help="the guest's vCPUs")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    from jumpstarter_lab_driver_qemu.image import find

    image = find()
    if image is None:
        print("the QEMU board's guest image is not built; scripts/bootstrap.sh builds it", file=sys.stderr)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="jumpstarter-lab-bench-play-"))
    procs, guest = Processes(), None
    try:
        ssh_port = free_port()
        entry = board_entry(image, cpu_cores=args.cpus, hostfwd={"ssh": {"hostport": ssh_port, "guestport": 22}})
        address = start_exporter(workdir, "qemu", "  " + entry.replace("\n", "\n  ").rstrip() + "\n", procs)
        (workdir / "random.bin").write_bytes(os.urandom(1 << 20))
        (workdir / "app.conf.j2").write_text(TEMPLATE)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(workdir / "key")], check=True)
        print("booting the guest ...", file=sys.stderr, flush=True)
        guest = Guest(address, (workdir / "key.pub").read_text().strip())
        python = {"ansible_python_interpreter": "/usr/bin/python3"}
        hosts = {
            "serial": {"ansible_connection": "jumpstarter.lab.jumpstarter", "jumpstarter_host": address,
                       "jumpstarter_console": "board.console", "ansible_user": "root",
                       "ansible_password": PASSWORD, "tag": "serial", **python},
            "ssh": {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": ssh_port,
                    "ansible_user": "root", "ansible_private_key_file": str(workdir / "key"),
                    "ansible_pipelining": True, "tag": "ssh", **python},
        }
        ansible = Ansible(workdir, hosts)
        path = workdir / "lab.yml"
        path.write_text(yaml.safe_dump(play(workdir), sort_keys=False))
        results = {"cpus": args.cpus, "boot_s": guest.boot_s}
        for host in ("serial", "ssh"):
            print(f"first run over {host} ...", file=sys.stderr, flush=True)
            _tasks, first = ansible.run(path, host, "--limit", host, timeout=3600)
            results[host] = {"first_s": first, "again_s": []}
        for index in range(args.runs):  # interleaved: a slow moment of the machine falls on both
            for host in ("serial", "ssh"):
                print(f"second run {index + 1} over {host} ...", file=sys.stderr, flush=True)
                tasks, wall = ansible.run(path, host, "--limit", host, timeout=3600)
                results[host]["again_s"].append(wall)
                results[host]["tasks"] = tasks
    finally:
        if guest is not None:
            guest.close()
        procs.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
