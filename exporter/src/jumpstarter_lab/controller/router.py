"""RouterService: the rendezvous of a client's stream and an exporter's stream for one dial.

Both sides present the same router token; the first to arrive waits (with a deadline)
for the other, then frames are copied both ways until either side ends. A token is good
for one meeting of a dial this router booked, while the grant it was issued for lasts:
a token kept past its lease's release, or replayed, opens nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

import grpc

from ..wire import defaults, metadata
from ..wire.errors import Busy
from ..wire.protocol import router_pb2

logger = logging.getLogger(__name__)


class _Meeting:
    def __init__(self):
        self.arrived = asyncio.Event()
        self.peer: grpc.aio.ServicerContext | None = None
        self.done = asyncio.Event()


MAX_PENDING_DIALS = 32  # dials of one lease whose two sides have not met yet


class Router:
    def __init__(self, verify: Callable[[str], dict], granted: Callable[[str, int], Awaitable[bool]],
                 deadline: float = defaults.ROUTER_DEADLINE):
        self._verify = verify
        self._granted = granted  # (lease, epoch) -> whether that grant still holds
        self._deadline = deadline
        self._meetings: dict[str, _Meeting] = {}
        self._expected: dict[str, tuple[str, float]] = {}  # router token jti -> (lease, until when it may meet)

    def expect(self, lease: str) -> str:
        """Book a dial of `lease`: the jti its router token is to carry. Busy when the lease already has
        MAX_PENDING_DIALS whose sides have not met: each costs its exporter a connection until they do,
        or until the meeting deadline."""
        now = time.monotonic()
        self._expected = {jti: entry for jti, entry in self._expected.items() if entry[1] > now}
        pending = sum(1 for booked, _until in self._expected.values() if booked == lease)
        if pending >= MAX_PENDING_DIALS:
            raise Busy(f"lease {lease} has {pending} connections being set up, the most it may have; "
                       f"try again when they are through (at most {self._deadline:g}s)")
        jti = str(uuid.uuid4())
        self._expected[jti] = (lease, now + self._deadline * 2)  # time to reach the router, then to meet
        return jti

    async def Stream(self, request_iterator, context):
        token = metadata.bearer(context.invocation_metadata())
        try:
            claims = await asyncio.to_thread(self._verify, token)
        except Exception as e:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(e))
        key, lease = claims.get("jti"), claims.get("lease")
        booked = self._expected.get(key)
        if booked is None or booked[1] < time.monotonic():  # not booked here, met already, or unmet past its time
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"this router token for lease {lease} is not expected here: it was used "
                                "already, or its dial is older than the time given to meet")
        if not await self._granted(lease, claims.get("epoch", -1)):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"lease {lease} has ended since this router token was issued")
        meeting = self._meetings.get(key)
        if meeting is None:  # first side: wait for the other
            meeting = self._meetings[key] = _Meeting()
            meeting.peer = context
            try:
                await asyncio.wait_for(meeting.arrived.wait(), self._deadline)
            except asyncio.TimeoutError:
                await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                                    f"the other side of lease {lease} did not arrive in {self._deadline:g}s")
            finally:  # met, timed out or cancelled (this side went away): the meeting is no longer waited at
                if self._meetings.get(key) is meeting:
                    del self._meetings[key]
                if not meeting.arrived.is_set():  # the dial failed: its other side is refused at once if it comes
                    self._expected.pop(key, None)
            await meeting.done.wait()  # the second side's handler copies both ways
            return
        if meeting.arrived.is_set():
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, "this router token was already used by both sides")
        meeting.arrived.set()
        self._meetings.pop(key, None)
        self._expected.pop(key, None)
        try:
            await _splice(meeting.peer, context)
        finally:
            meeting.done.set()


async def _copy(src: grpc.aio.ServicerContext, dst: grpc.aio.ServicerContext) -> None:
    with contextlib.suppress(Exception):
        while True:
            frame = await src.read()
            if frame is grpc.aio.EOF:
                break
            await dst.write(router_pb2.StreamResponse(payload=frame.payload, frame_type=frame.frame_type))
            if frame.frame_type == router_pb2.FRAME_TYPE_GOAWAY:
                break


async def _splice(a: grpc.aio.ServicerContext, b: grpc.aio.ServicerContext) -> None:
    first = asyncio.ensure_future(_copy(a, b))
    second = asyncio.ensure_future(_copy(b, a))
    done, pending = await asyncio.wait([first, second], return_when=asyncio.FIRST_COMPLETED)
    # One side ended: give the other direction a moment to drain, then stop.
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.gather(*pending), 5)
    for task in pending:
        task.cancel()
