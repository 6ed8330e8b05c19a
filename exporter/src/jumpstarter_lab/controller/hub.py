"""What one controller replica's streams wait on, kept fresh with a few queries per tick.

Without it, every exporter's Status and Listen stream would poll the database on its
own: a thousand idle exporters would mean thousands of queries a second. Here one task
refreshes the grants of all exporters, claims the dials of every lease listened to on
this replica, and keeps the exporters with open Status streams online, in batches.
Changes made on this replica are seen at once (`poke`); other replicas' within a tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from .leases import Leases, LeaseView

logger = logging.getLogger(__name__)


class Hub:
    def __init__(self, leases: Leases, tick: float = 0.2, heartbeat: float = 2.0):
        self.leases = leases
        self.tick, self.heartbeat = tick, heartbeat
        self.grants: dict[tuple[str, str], LeaseView] = {}
        self.version = 0
        self._changed = asyncio.Event()
        self._poked = asyncio.Event()
        self.connected: dict[tuple[str, str], int] = {}  # exporters with open Status streams here
        self.listeners: dict[str, asyncio.Queue] = {}  # lease name -> dials for its exporter's Listen

    def poke(self) -> None:
        """Something changed here: refresh now rather than at the next tick."""
        self._poked.set()

    async def changed(self, version: int, timeout: float) -> None:
        """Return when the grants moved past `version`, or after `timeout`."""
        if self.version != version:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    @contextlib.contextmanager
    def exporter_connected(self, key: tuple[str, str]):
        self.connected[key] = self.connected.get(key, 0) + 1
        try:
            yield
        finally:
            self.connected[key] -= 1
            if not self.connected[key]:
                del self.connected[key]

    @contextlib.contextmanager
    def listening(self, lease: str):
        queue = self.listeners[lease] = asyncio.Queue()
        self.poke()
        try:
            yield queue
        finally:
            if self.listeners.get(lease) is queue:
                del self.listeners[lease]

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        beat = 0.0
        while True:
            try:
                if loop.time() - beat >= self.heartbeat:
                    beat = loop.time()
                    await asyncio.to_thread(self.leases.heartbeat_many, set(self.connected))
                    await asyncio.to_thread(self.leases.schedule)
                grants = await asyncio.to_thread(self.leases.grants)
                if {k: (v.name, v.epoch) for k, v in grants.items()} != \
                        {k: (v.name, v.epoch) for k, v in self.grants.items()}:
                    self.grants = grants
                    self.version += 1
                    self._changed.set()
                    self._changed = asyncio.Event()
                for lease, endpoint, token in await asyncio.to_thread(self.leases.take_dials, list(self.listeners)):
                    queue = self.listeners.get(lease)
                    if queue is not None:
                        queue.put_nowait((endpoint, token))
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("refreshing the controller's view of leases failed; retrying")
            self._poked.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._poked.wait(), self.tick)
