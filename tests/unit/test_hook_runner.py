"""Lease hooks as the exporter runs them: real processes, their output, exit codes and timeouts."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from helpers import process_gone
from jumpstarter_lab.exporter.hooks import Hook, HookFailed, parse


def run(hook: Hook, env: dict | None = None) -> list[str]:
    lines: list[str] = []
    asyncio.run(hook.run(dict(os.environ, **(env or {})), lines.append))
    return lines


def test_inline_script_runs_in_sh_with_its_environment_and_every_line_arrives():
    hook = Hook("beforeLease", 'echo "lease $LEASE_NAME"\necho to stderr >&2\nprintf "no newline"')
    assert run(hook, {"LEASE_NAME": "l1"}) == ["lease l1", "to stderr", "no newline"]


def test_a_script_file_runs_by_its_interpreter(tmp_path):
    script = tmp_path / "prepare.py"
    script.write_text("import sys\nprint(sys.executable)\n")
    assert run(Hook("afterLease", f"  {script}\n")) == [sys.executable]
    shell = tmp_path / "prepare.sh"
    shell.write_text("echo $0\n")
    assert run(Hook("afterLease", str(shell))) == [str(shell)]
    assert Hook("afterLease", str(shell), interpreter="/bin/bash").argv() == ["/bin/bash", str(shell)]


def test_failures_name_the_hook_and_why():
    with pytest.raises(HookFailed, match="^beforeLease hook failed with exit code 3$"):
        run(Hook("beforeLease", "exit 3"))
    with pytest.raises(HookFailed, match="^afterLease hook was killed by signal 9$"):
        run(Hook("afterLease", "kill -9 $$"))
    with pytest.raises(HookFailed, match="^beforeLease hook could not start /no/such/shell: No such file"):
        run(Hook("beforeLease", "true", interpreter="/no/such/shell"))


def test_past_its_timeout_the_whole_process_group_is_stopped(tmp_path):
    pids = tmp_path / "pids"
    script = f"sleep 600 & echo $! > {pids}; trap '' TERM; echo $$ >> {pids}; while true; do sleep 0.1; done"
    with pytest.raises(HookFailed, match="^beforeLease hook timed out after 1s and was stopped$"):
        run(Hook("beforeLease", script, timeout=1))
    child, shell = map(int, pids.read_text().split())
    assert process_gone(shell)  # it ignored SIGTERM: SIGKILL after the grace
    assert process_gone(child)  # what it left running in the background went with it


def test_parse_takes_upstreams_names_and_defaults():
    hooks = parse({"beforeLease": {"script": "j power on"},
                   "afterLease": {"script": "x", "exec": "/bin/bash", "timeout": 5, "onFailure": "endLease"}})
    assert hooks["beforeLease"] == Hook("beforeLease", "j power on", None, 120, "warn")
    assert hooks["afterLease"] == Hook("afterLease", "x", "/bin/bash", 5, "endLease")
    assert parse(None) == {} and parse({"beforeLease": None}) == {}
