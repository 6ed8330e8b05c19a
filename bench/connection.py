"""Connection plugin figures (issue 5): per-task time over the serial console against ssh, and a file
copy over a console paced at 115200 baud, measured in the same run.

    .venv/bin/python bench/connection.py [--tasks 20] [--runs 3] [--copy-mib 1] [--quick] [--json results.json]

1. Per task: a playbook of 1 + `--tasks` `command: true` tasks, `--runs` times per host; the
   first task (connecting, logging in) is left out and the rest of the play, from the start of
   the second task to the end of the last, is divided by `--tasks` (median over the runs).
   Hosts: `serial` (jumpstarter.lab.jumpstarter on an unpaced sim board), `ssh` (Ansible's own
   ssh connection to a private sshd on loopback, with its defaults: ControlPersist, no
   pipelining), `ssh+pipe` (the same with pipelining, as the serial transport has it on) and
   `tcp` (jumpstarter.lab.jumpstarter with transport=tcp: the same sshd through a TcpNetwork
   driver of an exporter). Also `ansible HOST -m command -a true` wall time, startup included.
   The ratio is serial / the faster ssh; the goal is <= 1.5x.
2. Copy: `copy` of `--copy-mib` MiB of random data to a sim board with `baudrate: 115200`
   (11520 bytes/s each way, 8N1). The throughput is given as a fraction of the line rate after
   base64: (size x 4/3) / elapsed / 11520, for the copy task as Ansible runs it, from its start
   to its result (its stat and copy modules included): alone in its play on a first run ever,
   when the modules' code (about 170 kB each) crosses the line too; alone in a later run, when
   only the bytes of that code that changed since the last run cross (Ansible zips a module
   anew, with new timestamps, in every run); after a small copy in the same play, when the
   board has the code already; and for SerialShell.put alone. The goal is >= 0.9 for the task. Also the time
   of `command: true` tasks at 115200 baud, the first of a play and the next ones.
Nothing here passes or fails on speed; the exit status is non-zero only if a measurement broke.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pwd
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "tests"))
from helpers import listening, load_plugin_util, prepare_sshd, wait_for  # noqa: E402 - the tests' private sshd, shared rather than copied
LINE_RATE = 115200 / 10  # bytes/s of a 115200 baud 8N1 line
SIM_PASSWORD = "s3cret"

CALLBACK = '''
import json, time
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: bench_times
type: stdout
short_description: task start and end times as JSON
description: Prints each task's start time, end time and result as one JSON document.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "bench_times"

    def __init__(self):
        super().__init__()
        self.tasks = []

    def v2_playbook_on_task_start(self, task, is_conditional):
        self.tasks.append({"name": task.get_name(), "start": time.time()})

    def _end(self, result, status):
        if not self.tasks:
            self.tasks.append({"name": result._task.get_name(), "start": None})
        self.tasks[-1].update(end=time.time(), status=status, msg=str(result._result.get("msg", ""))[:500])

    def v2_runner_on_ok(self, result):
        self._end(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._end(result, "failed")

    def v2_runner_on_unreachable(self, result):
        self._end(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        self._display.display(json.dumps({"tasks": self.tasks}))
'''


def exporter_config(export: str) -> str:
    return ("apiVersion: jumpstarter.dev/v1alpha1\nkind: ExporterConfig\nmetadata: {namespace: default, name: bench}\n"
            'endpoint: ""\ntoken: ""\nexport:\n' + export)


class Processes:
    """Servers started for the run, stopped in reverse order at the end."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str], log: Path, ready_line: bool = False) -> str:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE if ready_line else subprocess.DEVNULL,
                                stderr=open(log, "wb"), start_new_session=True)  # noqa: SIM115
        self.procs.append(proc)
        if not ready_line:
            return ""
        line = proc.stdout.readline().decode().strip()
        if not line:
            raise RuntimeError(f"{args[0]} did not start; see {log}")
        return line

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            if proc.stdout:
                proc.stdout.close()


def start_sshd(workdir: Path, procs: Processes) -> tuple[int, Path]:
    """A private sshd on loopback accepting one generated key for the current user."""
    directory = workdir / "sshd"
    directory.mkdir()
    port, key, argv = prepare_sshd(directory)
    procs.start(argv, directory / "sshd.log")
    wait_for(lambda: listening(port), 30, f"sshd to listen on port {port}")
    return port, key


def start_exporter(workdir: Path, name: str, export: str, procs: Processes) -> str:
    config = workdir / f"{name}.yaml"
    config.write_text(exporter_config(export))
    line = procs.start([str(BIN / "jumpstarter-lab"), "exporter", "run", "--config", str(config), "--socket",
                        str(workdir / f"{name}.sock"), "--session-linger", "3600"], workdir / f"{name}.log",
                       ready_line=True)
    return line.removeprefix("listening on ")


def sim_export(baudrate: int | None) -> str:
    paced = f"\n      baudrate: {baudrate}" if baudrate else ""
    return f"  board:\n    type: jumpstarter_lab_driver_sim.SimBoard\n    config:\n      password: {SIM_PASSWORD}{paced}\n"


class Board:
    """A sim board flashed and powered on in the exporter session its Ansible host uses, held open."""

    def __init__(self, address: str, session: str, workdir: Path):
        from jumpstarter_lab.client import connect

        self.address, self.session = address, session
        self._holder = connect(address, session=session)
        root = self._holder.__enter__()
        image = workdir / f"{session}.img"
        image.write_bytes(b"JUMPSTARTER_MARKER=bench\n")
        root.board.storage.flash(image)
        root.board.power.on()
        self.root = root

    def close(self) -> None:
        self._holder.__exit__(None, None, None)


class Ansible:
    def __init__(self, workdir: Path, hosts: dict):
        self.workdir = workdir
        collections = workdir / "collections"
        (collections / "ansible_collections" / "jumpstarter").mkdir(parents=True)
        (collections / "ansible_collections" / "jumpstarter" / "lab").symlink_to(ROOT)
        callbacks = workdir / "callbacks"
        callbacks.mkdir()
        (callbacks / "bench_times.py").write_text(CALLBACK)
        (workdir / "tmp").mkdir()
        self.inventory = workdir / "inventory.yml"
        self.inventory.write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
        self.env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_LOCAL_TEMP=str(workdir / "tmp"),
                        ANSIBLE_HOME=str(workdir / "ansible-home"), ANSIBLE_CALLBACK_PLUGINS=str(callbacks),
                        ANSIBLE_STDOUT_CALLBACK="bench_times", ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_NOCOLOR="1",
                        ANSIBLE_SSH_CONTROL_PATH_DIR=str(workdir / "cp"), ANSIBLE_HOST_KEY_CHECKING="0",
                        PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
        for name in ("ANSIBLE_PIPELINING", "ANSIBLE_CONFIG"):
            self.env.pop(name, None)

    def playbook(self, host: str, tasks: list[dict], timeout: float = 1800) -> tuple[list[dict], float]:
        """Run a play of `tasks` on `host`; the tasks' times and the command's wall time."""
        path = self.workdir / "play.yml"
        path.write_text(yaml.safe_dump([{"hosts": host, "gather_facts": False, "tasks": tasks}]))
        return self.run(path, host, timeout=timeout)

    def run(self, path: Path, host: str, *extra: str, timeout: float = 1800) -> tuple[list[dict], float]:
        """ansible-playbook `path` (with `extra` arguments): its tasks' times and its wall time; an error
        naming `host` when it failed or a task did not end ok."""
        start = time.perf_counter()
        result = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(self.inventory), *extra, str(path)],
                                capture_output=True, text=True, env=self.env, timeout=timeout, cwd=self.workdir,
                                check=False)
        wall = time.perf_counter() - start
        times = None
        for line in reversed(result.stdout.splitlines()):
            if line.startswith("{"):
                times = json.loads(line)["tasks"]
                break
        if times is None or result.returncode != 0 or any(t.get("status") != "ok" for t in times):
            raise RuntimeError(f"playbook on {host} failed (rc {result.returncode}): {times or result.stdout[-1000:]}\n"
                               f"{result.stderr[-2000:]}")
        return times, wall

    def adhoc_wall(self, host: str) -> float:
        start = time.perf_counter()
        result = subprocess.run([str(BIN / "ansible"), "-i", str(self.inventory), host, "-m", "command", "-a", "true"],
                                capture_output=True, text=True, env=self.env, timeout=600, cwd=self.workdir,
                                check=False)
        if result.returncode != 0:
            raise RuntimeError(f"ansible {host} -m command failed: {result.stdout[-1000:]}{result.stderr[-1000:]}")
        return time.perf_counter() - start


def per_task(ansible: Ansible, host: str, tasks: int, runs: int) -> dict:
    play = [{"name": f"t{i}", "ansible.builtin.command": "true"} for i in range(tasks + 1)]
    samples, walls = [], []
    for _run in range(runs):
        times, wall = ansible.playbook(host, play)
        samples.append((times[-1]["end"] - times[1]["start"]) / tasks)
        walls.append(wall)
    adhoc = [ansible.adhoc_wall(host) for _run in range(runs)]
    return {"per_task_s": statistics.median(samples), "samples": samples, "playbook_wall_s": statistics.median(walls),
            "adhoc_wall_s": statistics.median(adhoc)}


def direct_put(board: Board, data: bytes, target: str) -> float:
    """SerialShell.put alone on the paced console: the transfer without Ansible around it."""
    serial_shell = load_plugin_util("serial_shell")
    with board.root.board.console.stream() as stream:
        shell = serial_shell.SerialShell(stream)
        shell.attach("root", SIM_PASSWORD, 60)
        start = time.perf_counter()
        shell.put(data, target)
        elapsed = time.perf_counter() - start
        shell.detach()
    return elapsed


def copy_tasks(ansible: Ansible, host: str, sizes: list[int], workdir: Path, name: str) -> list[float]:
    """Seconds of each of a play's `copy` tasks of random files of `sizes`, from a task's start to its result."""
    files, tasks = [], []
    for index, size in enumerate(sizes):
        data = os.urandom(size)
        source, target = workdir / f"{name}{index}.bin", workdir / f"{name}{index}-copied.bin"
        source.write_bytes(data)
        files.append((data, target))  # the sim board's shell shares this machine's filesystem
        tasks.append({"name": f"copy {index}", "ansible.builtin.copy": {"src": str(source), "dest": str(target)}})
    times, _wall = ansible.playbook(host, tasks)
    for data, target in files:
        if hashlib.sha256(target.read_bytes()).digest() != hashlib.sha256(data).digest():
            raise RuntimeError("a copied file differs from its source")
    return [t["end"] - t["start"] for t in times]


def paced_figures(ansible: Ansible, board: Board, size: int, tasks: int, workdir: Path) -> dict:
    """On the 115200 baud board: a play of one copy (the code of Ansible's stat and copy modules crosses
    the line too), a play of a small copy then the measured one (the board keeps the modules' code
    from the first), SerialShell.put alone, a play of `command: true` tasks."""
    forget_module_code(ansible)
    result = {"cold_task_s": copy_tasks(ansible, "paced", [size], workdir, "cold")[0],
              "rerun_task_s": copy_tasks(ansible, "paced", [size], workdir, "rerun")[0],
              "warm_task_s": copy_tasks(ansible, "paced", [1024, size], workdir, "warm")[1]}
    data = os.urandom(size)
    target = workdir / "put.bin"
    result["put_s"] = direct_put(board, data, str(target))
    if target.read_bytes() != data:
        raise RuntimeError("the file written by SerialShell.put differs from the source")
    play = [{"name": f"t{i}", "ansible.builtin.command": "true"} for i in range(tasks + 1)]
    times, _wall = ansible.playbook("paced", play)
    result["first_command_s"] = times[0]["end"] - times[0]["start"]
    result["per_command_s"] = (times[-1]["end"] - times[1]["start"]) / tasks
    return result


def forget_module_code(ansible: Ansible) -> None:
    """As before a first run ever: neither this controller nor the board keeps any module's code."""
    sent_lines = Path(ansible.env["ANSIBLE_HOME"]) / Path(load_plugin_util("serial_cache").SENT_LINES).name
    shutil.rmtree(sent_lines, ignore_errors=True)
    shutil.rmtree(f"/tmp/.jl-cache-{os.getuid()}", ignore_errors=True)  # the sim board shares this filesystem


def fraction(size: int, seconds: float) -> float:
    return size * 4 / 3 / seconds / LINE_RATE


def report(results: dict, args) -> None:
    tasks = results["per_task"]
    ssh_best = min(tasks["ssh"]["per_task_s"], tasks["ssh+pipe"]["per_task_s"])
    header = f"{'host':10} {'per task':>10} {'ratio/ssh':>10} {'play wall':>10} {'adhoc wall':>11}  transport"
    print(f"1. per-task time of `command: true` ({args.tasks} tasks after a first one, median of {args.runs} runs)")
    print(header)
    print("-" * len(header))
    what = {"serial": "jumpstarter.lab.jumpstarter, serial console of an unpaced sim board",
            "ssh": "ansible's ssh to a private sshd on loopback (ControlPersist, no pipelining)",
            "ssh+pipe": "the same with pipelining",
            "tcp": "jumpstarter.lab.jumpstarter transport=tcp: that sshd through a TcpNetwork driver"}
    for host, r in tasks.items():
        print(f"{host:10} {r['per_task_s'] * 1000:8.0f}ms {r['per_task_s'] / ssh_best:9.2f}x {r['playbook_wall_s']:9.1f}s "
              f"{r['adhoc_wall_s']:10.2f}s  {what[host]}")
    ratio = tasks["serial"]["per_task_s"] / ssh_best
    print(f"serial / ssh (the faster of ssh, ssh+pipe): {ratio:.2f}x; goal <= 1.5x: "
          f"{'meets goal' if ratio <= 1.5 else 'below goal'}")
    size = results["copy"]["bytes"]
    paced = results["copy"]["paced"]
    print()
    print(f"2. copy of {size / 2**20:g} MiB of random data; line: 115200 baud 8N1 = {LINE_RATE:.0f} bytes/s each way; "
          f"its base64 takes {size * 4 / 3 / LINE_RATE:.1f} s at line rate")
    header = f"{'measured':58} {'seconds':>8} {'of line rate':>13}  goal"
    print(header)
    print("-" * len(header))
    rows = [("copy task alone in its play, first run ever (+ module code)", paced["cold_task_s"], True),
            ("copy task alone in its play, a later run", paced["rerun_task_s"], True),
            ("copy task after a small copy in the same play", paced["warm_task_s"], True),
            ("SerialShell.put alone (the file transfer)", paced["put_s"], False),
            ("copy task, unpaced sim board", results["copy"]["unpaced_task_s"], False)]
    for label, seconds, goal in rows:
        frac = fraction(size, seconds)
        verdict = (">= 0.90: " + ("meets goal" if frac >= 0.9 else "below goal")) if goal else ""
        print(f"{label:58} {seconds:8.1f} {frac:12.0%}  {verdict}")
    print(f"`command: true` at 115200 baud: {paced['first_command_s']:.1f} s the first task (the module's code crosses "
          f"the line), {paced['per_command_s']:.2f} s per task after it")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20, help="measured command tasks per playbook")
    parser.add_argument("--runs", type=int, default=3, help="playbook runs per host (the median is reported)")
    parser.add_argument("--copy-mib", type=float, default=1.0, help="size of the copied file")
    parser.add_argument("--quick", action="store_true", help="5 tasks, 1 run, 64 KiB copy: a smoke test")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.runs, args.copy_mib = 5, 1, 1 / 16
    if not Path("/usr/sbin/sshd").exists():
        print("sshd is not installed; scripts/bootstrap.sh installs openssh-server", file=sys.stderr)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="jumpstarter-lab-bench-conn-"))
    procs = Processes()
    boards: list[Board] = []
    try:
        port, key = start_sshd(workdir, procs)
        serial_address = start_exporter(workdir, "serial", sim_export(None), procs)
        paced_address = start_exporter(workdir, "paced", sim_export(115200), procs)
        tcp_address = start_exporter(workdir, "tcp", "  board:\n    children:\n      ssh:\n"
                                     "        type: jumpstarter_driver_network.driver.TcpNetwork\n"
                                     f"        config: {{host: 127.0.0.1, port: {port}}}\n", procs)
        user = os.environ.get("USER") or pwd.getpwuid(os.getuid()).pw_name
        python = {"ansible_python_interpreter": "/usr/bin/python3"}
        ssh = {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": port, "ansible_user": user,
               "ansible_private_key_file": str(key), **python}
        serial = {"ansible_connection": "jumpstarter.lab.jumpstarter", "jumpstarter_console": "board.console",
                  "ansible_user": "root", "ansible_password": SIM_PASSWORD, **python}
        hosts = {
            "serial": dict(serial, jumpstarter_host=serial_address),
            "paced": dict(serial, jumpstarter_host=paced_address),
            "ssh": ssh,
            "ssh+pipe": dict(ssh, ansible_pipelining=True),
            "tcp": {"ansible_connection": "jumpstarter.lab.jumpstarter", "jumpstarter_host": tcp_address,
                    "jumpstarter_transport": "tcp", "ansible_user": user, "ansible_private_key_file": str(key), **python},
        }
        ansible = Ansible(workdir, hosts)
        boards.append(Board(serial_address, "ansible-serial", workdir))
        paced_board = Board(paced_address, "ansible-paced", workdir)
        boards.append(paced_board)
        results = {"per_task": {}, "copy": {}}
        for host in ("serial", "ssh", "ssh+pipe", "tcp"):
            print(f"measuring per-task time on {host} ...", file=sys.stderr, flush=True)
            results["per_task"][host] = per_task(ansible, host, args.tasks, args.runs)
        size = int(args.copy_mib * 2**20)
        results["copy"]["bytes"] = size
        print("measuring the copy on the unpaced board ...", file=sys.stderr, flush=True)
        results["copy"]["unpaced_task_s"] = copy_tasks(ansible, "serial", [size], workdir, "unpaced")[0]
        print(f"measuring at 115200 baud (about {(4 * size * 4 / 3 + 60000) / LINE_RATE:.0f} s) ...", file=sys.stderr,
              flush=True)
        results["copy"]["paced"] = paced_figures(ansible, paced_board, size, min(args.tasks, 5), workdir)
    finally:
        for board in boards:
            board.close()
        procs.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    report(results, args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
