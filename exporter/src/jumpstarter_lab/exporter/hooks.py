"""Lease hooks, as upstream's ExporterConfig writes them (`hooks: beforeLease/afterLease`): a script the
exporter runs before a lease is handed to its client and after the lease ended, with the lease's own
drivers at $JUMPSTARTER_HOST.

    hooks:
      beforeLease: {script: "j power on", timeout: 60, onFailure: endLease}
      afterLease: {script: /usr/local/bin/clean-board.sh, exec: /bin/bash}

`onFailure` says what a failure (non-zero exit, no start, past its timeout) does: `warn` goes on
with a warning, `endLease` ends the lease (beforeLease) or keeps the exporter out of grants until
an admin puts it back (afterLease), `exit` also stops the exporter with exit code 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass

from ..wire.errors import JumpstarterLabError

logger = logging.getLogger(__name__)

BEFORE_LEASE, AFTER_LEASE = "beforeLease", "afterLease"
ON_FAILURE = ("warn", "endLease", "exit")
DEFAULT_TIMEOUT = 120  # seconds, as upstream
KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL of a hook's process group
DRAIN = 2.0  # seconds its output may still arrive after it exited (a child it left behind may hold the pipe)

_HOOK = {
    "type": "object",
    "required": ["script"],
    "properties": {
        "script": {"type": "string"},
        "exec": {"type": ["string", "null"], "minLength": 1},
        "timeout": {"type": "integer", "minimum": 1},
        "onFailure": {"enum": list(ON_FAILURE)},
    },
    "additionalProperties": False,
}
SCHEMA = {"type": "object", "properties": {BEFORE_LEASE: _HOOK, AFTER_LEASE: _HOOK}, "additionalProperties": False}


class HookFailed(JumpstarterLabError):
    """A hook exited non-zero, could not start or outlived its timeout."""


@dataclass(frozen=True)
class Hook:
    point: str  # beforeLease or afterLease
    script: str  # inline shell, or the path of a script file
    interpreter: str | None = None  # upstream's `exec`
    timeout: int = DEFAULT_TIMEOUT
    on_failure: str = "warn"

    @classmethod
    def parse(cls, point: str, data: dict) -> Hook:
        """From a validated `hooks.<point>` mapping."""
        return cls(point=point, script=data["script"], interpreter=data.get("exec"),
                   timeout=data.get("timeout", DEFAULT_TIMEOUT), on_failure=data.get("onFailure", "warn"))

    def argv(self) -> list[str]:
        """A script file runs by its interpreter (a .py file by this Python, else /bin/sh); inline text by `sh -c`."""
        script = self.script.strip()
        if "\n" not in script and os.path.isfile(script):
            return [self.interpreter or (sys.executable if script.endswith(".py") else "/bin/sh"), script]
        return [self.interpreter or "/bin/sh", "-c", self.script]

    async def run(self, env: dict[str, str], on_line: Callable[[str], None]) -> None:
        """Run the hook to its end, each line it prints handed to `on_line`; HookFailed naming why it failed.
        Past its timeout, or when the caller is cancelled, its whole process group is stopped."""
        if not self.script.strip():
            return
        try:
            process = await asyncio.create_subprocess_exec(
                *self.argv(), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, env=env, start_new_session=True)
        except OSError as e:
            raise HookFailed(f"{self.point} hook could not start {self.argv()[0]}: {e.strerror or e}") from None
        reader = asyncio.ensure_future(_lines(process.stdout, on_line))
        try:
            async with asyncio.timeout(self.timeout):
                code = await process.wait()
        except TimeoutError:
            await _stop(process)
            raise HookFailed(f"{self.point} hook timed out after {self.timeout}s and was stopped") from None
        except asyncio.CancelledError:
            await _stop(process)
            raise
        finally:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(reader), DRAIN)
            reader.cancel()
        if code != 0:
            how = f"was killed by signal {-code}" if code < 0 else f"failed with exit code {code}"
            raise HookFailed(f"{self.point} hook {how}")


async def _lines(stream: asyncio.StreamReader, on_line: Callable[[str], None]) -> None:
    while line := await stream.readline():
        text = line.decode(errors="replace").rstrip()
        if text:
            on_line(text)


async def _stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM to the hook's process group, SIGKILL after a grace: nothing it started outlives it."""
    for sig, grace in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        if grace is None:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), grace)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # its children, should they have ignored SIGTERM
            return
    await process.wait()


def parse(data: dict | None) -> dict[str, Hook]:
    """The hooks of a validated config, by point."""
    return {point: Hook.parse(point, spec) for point, spec in (data or {}).items() if spec}
