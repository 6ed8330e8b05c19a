"""Every EXAMPLES block of the collection runs as shown against a lab: a controller with two sim boards
(labelled board=rpi4), a sim board on a local exporter, the collection's inventory plugin over both. Each
module task's result has the keys its RETURN documents as always/success returned, of the documented type."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml
from ansible.parsing.plugin_docs import read_docstring

from conftest import Lab, start_exporter
from helpers import BIN, ROOT, ControllerLab, cli

MODULES = ("call", "flash", "lease", "exporter_info", "lease_info")  # their EXAMPLES run here, on sim boards
ON_THE_UBOOT_BOARD = ("bootloader",)  # its EXAMPLES need U-Boot: tests/ansible/test_uboot_board.py runs them
PASSWORD = "s3cret"
CONSOLE_VARS = {"jumpstarter_console": "'board.console'", "ansible_password": f"'{PASSWORD}'",
                "ansible_python_interpreter": "'/usr/bin/python3'"}
TYPES = {"str": str, "path": str, "int": int, "bool": bool, "float": (int, float), "dict": dict, "list": list}


def docs(path: Path) -> dict:
    """DOCUMENTATION, EXAMPLES and RETURN as Ansible reads them (ansible-doc, the sanity tests)."""
    found = read_docstring(str(path.resolve()))
    assert found["plainexamples"], f"{path} has no EXAMPLES"
    return found


def sim_board(image: Path) -> dict:
    return {"type": "jumpstarter_lab_driver_sim.SimBoard", "config": {"password": PASSWORD, "image": str(image)}}


class ExamplesLab:
    def __init__(self, workdir: Path, ansible: Lab, home: Path, bench_socket: str, controller: ControllerLab):
        self.workdir, self.ansible, self.home, self.bench_socket = workdir, ansible, home, bench_socket
        self.controller = controller
        # boards on the controller: the lease module's examples lease them
        self.lab_inventory = workdir / "lab.jumpstarter.yml"
        self.lab_inventory.write_text(yaml.safe_dump({
            "plugin": "jumpstarter.lab.jumpstarter",
            "client_config": "~/.config/jumpstarter/clients/alice.yaml",
            "keyed_groups": [{"key": "jumpstarter_labels.board", "prefix": "board"}],
            "compose": CONSOLE_VARS}))
        # a board on this desk (local mode, no lease): call and flash work on it as they stand
        self.bench_inventory = workdir / "bench.jumpstarter.yml"
        self.bench_inventory.write_text(yaml.safe_dump({
            "plugin": "jumpstarter.lab.jumpstarter",
            "exporters": {"board1": {"host": bench_socket, "labels": {"board": "sim"}}},
            "compose": CONSOLE_VARS}))

    def env(self) -> dict:
        return self.ansible.env() | {"HOME": str(self.home), "ANSIBLE_INVENTORY_UNPARSED_FAILED": "1"}

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*args], capture_output=True, text=True, env=self.env(), cwd=self.workdir,
                              timeout=300, check=False)


@pytest.fixture(scope="module")
def lab(tmp_path_factory, collections_path):
    workdir = tmp_path_factory.mktemp("examples")
    home = workdir / "home"
    controller = ControllerLab(workdir, str(workdir / "controller.db"))
    bench = None
    try:
        controller.client("alice")
        clients = home / ".config" / "jumpstarter" / "clients"
        clients.mkdir(parents=True)
        shutil.copy2(workdir / "alice.yaml", clients / "alice.yaml")  # 0600, as issued
        for name in ("rack1-board1", "rack1-board2"):
            image = workdir / f"{name}.img"
            image.write_bytes(f"JUMPSTARTER_MARKER={name}\n".encode())
            controller.exporter(name, "board=rpi4", "rack=rack1", export={"board": sim_board(image)})
        bench_dir = workdir / "bench"
        bench_dir.mkdir()
        bench_image = bench_dir / "disk.img"
        bench_image.write_bytes(b"JUMPSTARTER_MARKER=bench\n")
        bench = start_exporter(bench_dir, yaml.safe_dump({"board": sim_board(bench_image)}), "--session-linger", "600")
        (workdir / "tmp").mkdir()
        # the flash example's image: build/image.wic.zst next to the playbook, a zstd-compressed sim-board image
        import zstandard

        (workdir / "build").mkdir()
        (workdir / "build" / "image.wic.zst").write_bytes(
            zstandard.ZstdCompressor().compress(b"JUMPSTARTER_MARKER=from-the-flash-example\n" + bytes(65536)))
        yield ExamplesLab(workdir, Lab(workdir, collections_path, None), home, bench.address, controller)
    finally:
        if bench is not None:
            bench.stop()
        controller.stop()


def playbook_text(examples: str) -> str:
    """The EXAMPLES as they are when they are plays; a list of tasks goes into one play on the jumpstarter group."""
    parsed = yaml.safe_load(examples)
    assert isinstance(parsed, list) and parsed, "EXAMPLES should be a YAML list of plays or of tasks"
    plays = [isinstance(item, dict) and "hosts" in item for item in parsed]
    assert all(plays) or not any(plays), "EXAMPLES mixes plays and tasks"
    if all(plays):
        return examples
    play = "- name: Examples\n  hosts: jumpstarter\n  gather_facts: false\n  tasks:\n"
    return play + textwrap.indent(examples, "    ")


def module_of(task: dict, modules) -> str | None:
    for key in task:
        for module in modules:
            if key in (module, f"jumpstarter.lab.{module}"):
                return module
    return None


def required_returns(returndocs: dict) -> dict:
    """RETURN's keys that every successful run has: returned `always` or `success` (`success, not in check
    mode` included - tasks in check mode are not checked)."""
    return {key: spec for key, spec in (returndocs or {}).items()
            if str(spec.get("returned", "")).strip().lower().startswith(("always", "success"))}


def check_returns(module: str, where: str, result: dict, returndocs: dict) -> list[str]:
    problems = []
    for key, spec in required_returns(returndocs).items():
        if key not in result:
            problems.append(f"{where}: {module} returned no {key!r} (RETURN says returned: {spec['returned']})")
            continue
        wanted = TYPES.get(spec.get("type", "raw"))
        value = result[key]
        if wanted is not None and (not isinstance(value, wanted) or (wanted is int and isinstance(value, bool))):
            problems.append(f"{where}: {module}'s {key} is {value!r} ({type(value).__name__}), "
                            f"RETURN says {spec['type']}")
    return problems


def run_examples(lab: ExamplesLab, name: str, inventory: Path, examples: str) -> tuple[dict, list[dict]]:
    """ansible-playbook on the EXAMPLES; (the lab_json output, the playbook as parsed)."""
    text = playbook_text(examples)
    playbook = lab.workdir / f"{name}-examples.yml"
    playbook.write_text(text)
    played = lab.run(str(BIN / "ansible-playbook"), "-i", str(inventory), str(playbook))
    where = f"{name} EXAMPLES ({playbook})"
    try:
        output = json.loads(played.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"{where}: ansible-playbook printed no JSON:\n{played.stdout}\n{played.stderr}") from None
    assert played.returncode == 0, f"{where}: rc {played.returncode}\n{played.stdout[-6000:]}\n{played.stderr[-3000:]}"
    return output, yaml.safe_load(text)


def assert_ran_and_returned(name: str, output: dict, plays: list[dict], modules: dict) -> dict:
    """Every play ran every task on some host with nothing failed; the collection's module results have their
    RETURN keys. Returns {module: [results]} for what the test prints."""
    assert output["stats"], f"{name}: no host ran anything"
    for host, stats in output["stats"].items():
        assert stats["failures"] == 0 and stats["unreachable"] == 0, f"{name}: {host}: {stats}"
    ran = output["plays"]
    assert len(ran) == len(plays), f"{name}: {len(plays)} plays written, {len(ran)} ran"
    problems, seen = [], {}
    for number, (play, written) in enumerate(zip(ran, plays, strict=True), 1):
        tasks = [task for task in play["tasks"] if task["name"] != "Gathering Facts"]
        assert len(tasks) == len(written["tasks"]), f"{name} play {number}: {len(written['tasks'])} tasks, ran {tasks}"
        for task, source in zip(tasks, written["tasks"], strict=True):
            where = f"{name} play {number} task {task['name']!r}"
            if "name" in source:
                assert task["name"] == source["name"], where
            assert task["hosts"], f"{where}: ran on no host"
            module = module_of(source, modules)
            for host, result in task["hosts"].items():
                items = result["results"] if "results" in result else [result]
                for item in items:
                    assert not item.get("failed") and not item.get("unreachable"), f"{where} on {host}: {item}"
                    if module is None or item.get("skipped") or source.get("check_mode"):
                        continue
                    problems += check_returns(module, f"{where} on {host}", item, modules[module]["returndocs"])
                    seen.setdefault(module, []).append(item)
    assert not problems, "\n".join(problems)
    return seen


@pytest.fixture(scope="module")
def modules() -> dict:
    return module_docs(MODULES)


def module_docs(names) -> dict:
    return {module: docs(ROOT / "plugins" / "modules" / f"{module}.py") for module in names}


def test_every_module_has_its_examples_run():
    assert {path.stem for path in (ROOT / "plugins" / "modules").glob("*.py")} == {*MODULES, *ON_THE_UBOOT_BOARD}


# the call and flash examples reach the board on the desk (no lease needed); the others the controller's
@pytest.mark.parametrize("module", MODULES)
def test_module_examples_run_as_shown_and_return_what_return_documents(module, lab, modules):
    inventory = lab.bench_inventory if module in ("call", "flash") else lab.lab_inventory
    if module == "lease_info":  # what its example gives back: a lease a CI job left
        left = cli("lease", "create", "-l", "board=rpi4", "--tag", "ci-job=1234", "--client-config",
                   str(lab.home / ".config" / "jumpstarter" / "clients" / "alice.yaml"))
        assert left.returncode == 0, left.stderr
    output, plays = run_examples(lab, module, inventory, modules[module]["plainexamples"])
    seen = assert_ran_and_returned(module, output, plays, modules)
    assert module in seen, f"the {module} EXAMPLES ran no {module} task that returned"
    for other, results in seen.items():  # real output, for RETURN's samples
        print(f"{module} EXAMPLES, {other}: {json.dumps(results, default=str)}")
    problems = sample_problems(module, modules[module]["returndocs"], seen[module])
    assert not problems, "\n".join(problems)
    if module == "lease":  # the board given back left its console log where the example said
        saved = [result for result in seen["lease"] if "console_log" in result]
        assert saved, seen["lease"]
        for result in saved:
            log = Path(result["console_log"]).read_text()
            assert result["console_log"].endswith(".log") and len(log.encode()) == result["console_log_bytes"]
            assert "login:" in log, log  # the board booted for uname while the exporter recorded
    if module == "lease_info":
        (found,) = seen["lease_info"][0]["leases"]
        assert found["tags"] == {"ci-job": "1234"} and found["state"] == "ready", found
        assert [item["changed"] for item in seen["lease"]] == [True], seen["lease"]  # the loop released it


def sample_problems(module: str, returndocs: dict, results: list[dict]) -> list[str]:
    """RETURN's samples have the shape of real output: the documented type, and a dict sample's keys are ones
    the module really returned."""
    problems = []
    for key, spec in (returndocs or {}).items():
        if "sample" not in spec:
            problems.append(f"{module}: RETURN {key} has no sample")
            continue
        sample, wanted = spec["sample"], TYPES.get(spec.get("type", "raw"))
        if wanted is not None and (not isinstance(sample, wanted) or (wanted is int and isinstance(sample, bool))):
            problems.append(f"{module}: RETURN {key} sample {sample!r} is not a {spec['type']}")
        real = [result[key] for result in results if isinstance(result.get(key), dict)]
        if isinstance(sample, dict) and real:
            returned = set().union(*real)
            if not set(sample) <= returned:
                problems.append(f"{module}: RETURN {key} sample has {sorted(set(sample) - returned)}, "
                                f"never returned (real keys: {sorted(returned)})")
            for name, value in sample.items():
                seen = [item[name] for item in real if name in item and item[name]]
                unexpanded = isinstance(value, str) and value.startswith("~")
                if unexpanded and seen and not any(str(v).startswith("~") for v in seen):
                    problems.append(f"{module}: RETURN {key}.{name} sample {value!r} is unexpanded, real: {seen[0]!r}")
    return problems


def inventory_examples(text: str) -> list[tuple[str, str]]:
    """The inventory plugin's EXAMPLES: inventory files, each after a `# NAME.jumpstarter.yml: ...` line."""
    files, name = [], None
    for line in text.splitlines(keepends=True):
        header = re.match(r"#\s*(\S+jumpstarter\.ya?ml):", line)
        if header:
            name = header.group(1)
            files.append([name, ""])
        elif files:
            files[-1][1] += line
        else:
            assert not line.strip(), f"inventory EXAMPLES text before the first file's name: {line!r}"
    assert files, "the inventory plugin's EXAMPLES name no *.jumpstarter.yml file"
    return [tuple(pair) for pair in files]


def test_inventory_examples_list_the_lab(lab):
    found = docs(ROOT / "plugins" / "inventory" / "jumpstarter.py")
    directory = lab.workdir / "inventory-examples"
    directory.mkdir()
    listed = {}
    for name, body in inventory_examples(found["plainexamples"]):
        path = directory / name
        path.write_text(body)
        result = lab.run(str(BIN / "ansible-inventory"), "-i", str(path), "--list")
        assert result.returncode == 0, f"{name}:\n{body}\n{result.stderr}"
        data = json.loads(result.stdout)
        assert data.get("jumpstarter", {}).get("hosts"), f"{name} listed no hosts: {data}"
        listed[name] = data
    for name, data in listed.items():
        print(name, json.dumps({group: value.get("hosts") for group, value in data.items() if group != "_meta"}))
    # what the lab has: the controller's two boards labelled board=rpi4 for the files that name alice's config
    for name, data in listed.items():
        settings = yaml.safe_load((directory / name).read_text())
        expected = set(settings.get("exporters") or {})
        if settings.get("client_config"):
            expected |= {"rack1-board1", "rack1-board2"}
        assert set(data["jumpstarter"]["hosts"]) == expected, (name, data)
        for group in settings.get("keyed_groups") or []:
            if group["key"] == "jumpstarter_labels.board" and settings.get("client_config"):
                assert set(data[f"{group['prefix']}_rpi4"]["hosts"]) >= {"rack1-board1", "rack1-board2"}, data


def connection_examples(text: str) -> tuple[dict, str]:
    """The connection plugin's EXAMPLES: an inventory in comments (each block's first line says what it is),
    then plays."""
    inventory, plays, block_start = [], [], True
    for line in text.splitlines(keepends=True):
        if not line.strip():
            block_start = True
            continue
        if line.startswith("#"):
            if not block_start:
                inventory.append(line[2:] if line.startswith("# ") else line[1:])
            block_start = False
        else:
            plays.append(line)
    return yaml.safe_load("".join(inventory)), "".join(plays)


def test_connection_examples_run_on_the_board(lab, modules):
    from jumpstarter_lab.client import connect

    found = docs(ROOT / "plugins" / "connection" / "jumpstarter.py")
    inventory, plays = connection_examples(found["plainexamples"])
    assert inventory and plays, found["plainexamples"]
    # filled in from this lab: the desk's exporter stands for /run/jumpstarter/board1.sock, the vault's password
    for host in inventory["all"]["hosts"].values():
        host["jumpstarter_host"] = lab.bench_socket
    inventory["all"]["vars"] = {"vault_board_password": PASSWORD, "ansible_python_interpreter": "/usr/bin/python3"}
    path = lab.workdir / "connection-inventory.yml"
    path.write_text(yaml.safe_dump(inventory))
    with connect(lab.bench_socket, session="ansible-board1") as root:  # the session the connection plugin joins
        root.board.power.on()
    output, parsed = run_examples(lab, "connection", path, plays)
    assert_ran_and_returned("connection", output, parsed, modules)
    results = [task["hosts"] for play in output["plays"] for task in play["tasks"]]
    assert results and all("board1" in hosts for hosts in results), results
    print("connection EXAMPLES:", json.dumps(results, default=str))
