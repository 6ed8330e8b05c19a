"""What one controller replica's streams wait on, without each of them polling the database.

Exporters' Status streams wait for the grants to change (the lease writer says when);
Listen streams get the dials claimed for their lease here, in one query per tick for
all of them; and the exporters with open Status streams are kept online in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from .dials import Dials
from .lease_record import LeaseRecord, grant_id
from .leases import Leases

logger = logging.getLogger(__name__)


class Subscriptions:
    def __init__(self, leases: Leases, dials: Dials, tick: float = 0.2, heartbeat: float = 2.0):
        self.leases, self.dials = leases, dials
        self.tick, self.heartbeat = tick, heartbeat
        self.grants: dict[tuple[str, str], LeaseRecord] = leases.grants()
        self._waiters: dict[tuple[str, str], asyncio.Event] = {}  # exporter -> wakes its Status stream
        self._poked = asyncio.Event()
        self.connected: dict[tuple[str, str], int] = {}  # exporters with open Status streams here
        self.listeners: dict[str, asyncio.Queue] = {}  # lease name -> dials for its exporter's Listen
        leases.on_change = self._grants_changed

    def _grants_changed(self) -> None:
        """Wake the Status streams of the exporters whose grant changed, and only those."""
        before, self.grants = self.grants, self.leases.grants()
        for key in before.keys() | self.grants.keys():
            if grant_id(before.get(key)) != grant_id(self.grants.get(key)):
                waiter = self._waiters.pop(key, None)
                if waiter:
                    waiter.set()

    def _wake_revoked(self) -> None:
        """Wake the Status streams of connected exporters whose identity was revoked: they end."""
        seen = self.leases.writer.exporters_seen
        for key in list(self.connected):
            if key in seen and seen[key].revoked and (waiter := self._waiters.pop(key, None)):
                waiter.set()

    def _look_every(self) -> float:
        """Seconds between reads of every exporter: each heartbeat, but no more often than one for each 2,000
        exporters (up to a third of their grace): that read was most of an idle controller's work at 10,000."""
        many = len(self.leases.writer.exporters_seen) / 2000
        return max(self.heartbeat, min(self.leases.exporters.grace / 3, many))

    def poke(self) -> None:
        """Something changed here: refresh now rather than at the next tick."""
        self._poked.set()

    async def changed(self, key: tuple[str, str], seen: LeaseRecord | None, timeout: float) -> None:
        """Return when the grant of exporter `key` is no longer `seen`, or after `timeout`."""
        if grant_id(self.grants.get(key)) != grant_id(seen):
            return
        waiter = self._waiters.setdefault(key, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):  # no task per wait, unlike wait_for: this runs per grant
                await waiter.wait()

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
        beat = looked = 0.0
        while True:
            try:
                if loop.time() - beat >= self.heartbeat:
                    beat = loop.time()
                    # the lead: a refresh due just after this beat comes in time at the next
                    lead = max(self.leases.exporters.grace / 2, 2 * self.heartbeat)
                    await asyncio.to_thread(self.leases.exporters.heartbeat_many, set(self.connected), lead)
                    if beat - looked >= self._look_every():
                        looked = beat
                        await self.leases.schedule()  # expire what lapsed, see exporters other replicas serve
                        self._wake_revoked()
                for lease, endpoint, token in await asyncio.to_thread(self.dials.take, list(self.listeners)):
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
