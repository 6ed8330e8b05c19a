"""Shell family through a real exporter: declared scripts run on the host with streamed
output, arguments and filtered environment; nothing undeclared can run."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from helpers import cli, process_gone, wait_for
from jumpstarter_lab.client import DriverClient, connect
from jumpstarter_lab.driver import exported_methods
from jumpstarter_lab.wire.errors import DriverInvalidArgument, DriverTimeout
from jumpstarter_lab_driver_shell.client import ShellClient, ShellResult
from jumpstarter_lab_driver_shell.driver import Shell
from jumpstarter_lab_driver_shell.interface import ShellInterface


SHELL_EXPORT = """
sh:
  type: jumpstarter_driver_shell.driver.Shell
  config:
    methods:
      greet: 'echo "hello, $1"'
      args: 'printf "<%s>" "$@"; echo " as $0"'
      env: 'echo "board=$BOARD mode=${{MODE:-none}} fixed=$FIXED"'
      fail: 'echo "about to fail" >&2; exit 7'
      unicode: 'printf "h\\303\\251llo \\342\\234\\223\\n"'
      stepwise:
        command: 'echo first; for i in $(seq 300); do [ -e "$1" ] && break; sleep 0.1; done; echo second'
        description: Print, wait for a file, print again
      tree:
        command: 'echo $$ > {tmp}/tree.pid; sleep 60 & echo $! > {tmp}/child.pid; wait'
        timeout: 0.5
      detailed:
        command: 'echo "$FIXED"'
        env: {{FIXED: from-config}}
        description: Uses an environment fixed in the config
restricted:
  type: jumpstarter_lab_driver_shell.Shell
  config:
    shell: [sh, -c]
    allowed_env: ["BOARD", "JMP_*"]
    methods:
      show: 'echo "$BOARD $JMP_X"'
"""


@pytest.fixture
def shell_exporter(make_config, run_exporter, tmp_path):
    return run_exporter(make_config(SHELL_EXPORT.format(tmp=tmp_path)))


def test_declared_methods_run_with_arguments_and_environment(shell_exporter, tmp_path):
    with connect(shell_exporter.address) as root:
        sh = root.sh
        assert isinstance(sh, ShellClient)
        assert sh.get_methods() == ["greet", "args", "env", "fail", "unicode", "stepwise", "tree", "detailed"]
        assert sh.run("greet", "lab") == ShellResult("hello, lab\n", "", 0)
        # arguments reach the script as $1..., never as shell text
        pwned = tmp_path / "pwned"
        assert sh.run("args", "a b", f"$(touch {pwned})", "'; exit 3").stdout == \
            f"<a b><$(touch {pwned})><'; exit 3> as args\n"
        assert not pwned.exists()
        assert sh.run("env", env={"BOARD": "rpi4", "MODE": "fast"}).stdout == "board=rpi4 mode=fast fixed=\n"
        assert sh.run("detailed").stdout == "from-config\n"
        assert sh.run("fail") == ShellResult("", "about to fail\n", 7)
        assert sh.run("unicode").stdout == "h\u00e9llo \u2713\n"
        assert root.restricted.run("show", env={"BOARD": "x", "JMP_X": "y"}).stdout == "x y\n"
        assert sh.methods_description["stepwise"] == "Print, wait for a file, print again"
        assert sh.methods_description["detailed"] == "Uses an environment fixed in the config"


def test_nothing_undeclared_runs_and_dangerous_environment_is_refused(shell_exporter):
    with connect(shell_exporter.address) as root:
        with pytest.raises(DriverInvalidArgument, match=r"Method 'rm' not found in available methods: \['greet'"):
            root.sh.run("rm", "-rf", "/")
        for name in ("LD_PRELOAD", "PATH", "BASH_ENV", "BASH_FUNC_echo%%", "PYTHONPATH", "IFS"):
            with pytest.raises(DriverInvalidArgument, match="blocked for security reasons|invalid environment"):
                root.sh.run("env", env={name: "/tmp/evil"})
        with pytest.raises(DriverInvalidArgument, match="invalid environment variable name: 'A B'"):
            root.sh.run("env", env={"A B": "x"})
        with pytest.raises(DriverInvalidArgument, match=r"'OTHER' is not allowed here \(allowed: BOARD, JMP_\*\)"):
            root.restricted.run("show", env={"OTHER": "x"})
        with pytest.raises(DriverInvalidArgument, match="'FIXED' is fixed by the exporter config for this method"):
            root.sh.run("detailed", env={"FIXED": "from-client"})
        with pytest.raises(DriverInvalidArgument, match="argument 'args': expected str, got dict"):
            root.sh.run("greet", {"not": "a string"})
        with pytest.raises(AttributeError, match=r"method rm not found in \['greet'"):
            root.sh.rm()
        assert root.sh.run("greet", "still here").returncode == 0


def test_output_streams_while_the_script_runs(shell_exporter, tmp_path):
    flag = tmp_path / "go"
    with connect(shell_exporter.address) as root:
        chunks = root.sh.call_method("stepwise", {}, str(flag))
        assert next(chunks) == ("first\n", "", None)  # arrives while the script still waits for the flag
        flag.touch()
        rest = list(chunks)
    assert "".join(out for out, _err, _code in rest) == "second\n"
    assert rest[-1] == ("", "", 0)


def test_timeout_kills_the_whole_process_group(shell_exporter, tmp_path):
    with connect(shell_exporter.address) as root:
        with pytest.raises(DriverTimeout, match="shell method 'tree' did not finish within 0.5s; its processes "
                                                "were killed"):
            root.sh.run("tree")
        for name in ("tree.pid", "child.pid"):
            pid = int((tmp_path / name).read_text())
            wait_for(lambda pid=pid: process_gone(pid), 10, f"{name} to be killed")
        assert root.sh.run("greet", "after").stdout == "hello, after\n"


def test_a_client_that_stops_listening_ends_the_script(shell_exporter, tmp_path):
    flag = tmp_path / "never"
    with connect(shell_exporter.address) as root:
        chunks = root.sh.call_method("stepwise", {}, str(flag))
        assert next(chunks) == ("first\n", "", None)
        assert any(str(flag) in args for args in children_of(shell_exporter.process.pid))
        chunks.close()  # cancels the streaming call; the session (and connection) stay open
        wait_for(lambda: not any(str(flag) in args for args in children_of(shell_exporter.process.pid)), 15,
                 "the script to be ended")
        assert root.sh.run("greet", "next").returncode == 0


def children_of(pid: int) -> list[str]:
    """Command lines of the live (not zombie) child processes of pid."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
            if fields[0] != "Z" and int(fields[1]) == pid:
                found.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, ValueError, IndexError):
            continue
    return found


def test_upstream_style_attribute_calls(shell_exporter, capfd):
    with connect(shell_exporter.address) as root:
        assert root.sh.greet("attr") == 0
        assert root.sh.fail() == 7
        assert root.sh.env(BOARD="kw") == 0
    out, err = capfd.readouterr()
    assert "hello, attr\n" in out and "board=kw mode=none fixed=\n" in out
    assert "about to fail\n" in err


def test_config_errors_name_the_method(make_config):
    for methods, message in [
        ("{x: {command: 'true', timout: 3}}",
         "methods.x: unknown field 'timout' (known: command, description, timeout, env)"),
        ("{x: {description: nothing to run}}", "methods.x.command: expected a non-empty script"),
        ("{x: {command: 'true', timeout: -1}}", "methods.x.timeout: expected a positive number of seconds, got -1"),
        ("{}", "methods: declare at least one method (name: script)"),
    ]:
        config = make_config(f"sh:\n  type: jumpstarter_driver_shell.driver.Shell\n  config:\n    methods: {methods}\n")
        result = cli("exporter", "check", "--config", str(config))
        assert result.returncode == 1
        assert result.stderr.strip() == f"jumpstarter-lab: error: export.sh: {message} ({config}:10)"


def test_cli_calls_a_shell_method(shell_exporter):
    result = cli("call", "--host", shell_exporter.address, "sh.call_method", "greet", "{}", "from the cli")
    assert result.returncode == 0, result.stderr
    expected = [["hello, from the cli\n", "", None], ["", "", 0]]
    assert [json.loads(line) for line in result.stdout.splitlines()] == expected


def test_client_interface_and_driver_agree_on_method_names():
    interface = set(ShellInterface.methods())
    assert interface == {"get_methods", "call_method"}
    client_methods = {name for name in dict(inspect.getmembers(ShellClient, inspect.isfunction))
                      if not name.startswith("_") and not hasattr(DriverClient, name)}
    assert client_methods == interface | {"run"}  # run collects call_method's output client-side
    assert set(exported_methods(Shell)) == interface
    assert Shell.client() == "jumpstarter_driver_shell.client.ShellClient"
