"""Helpers for drivers that run programs on the exporter host."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

KILL_GRACE = 2.0  # seconds a process group gets after SIGTERM before SIGKILL


async def kill_process_group(process: asyncio.subprocess.Process, grace: float = KILL_GRACE) -> None:
    """SIGTERM a process's group (started with start_new_session), SIGKILL it if it lingers, reap it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), grace)
            return
        except asyncio.TimeoutError:
            continue
