"""What the controller's servicers share: authenticating a call, turning its failure into a
status code (in one place, `rpc`), and the Lease message clients are shown."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import inspect
import logging

import grpc
import sqlalchemy as sa
from google.protobuf import timestamp_pb2

from ..wire import metadata, names
from ..wire.errors import JumpstarterLabError, NotAuthenticated, status_for_exception
from ..wire.protocol import client_pb2, kubernetes_pb2
from .auth import Authority, Identity
from .lease_record import LeaseRecord, LeaseState
from .store import database_failure, now

logger = logging.getLogger(__name__)

_refreshes: set[asyncio.Future] = set()  # background token refreshes: held so they are not collected mid-way


async def authenticate(context, authority: Authority, kind: str) -> Identity:
    """The identity the call's bearer token proves, or the call ends UNAUTHENTICATED."""
    token = metadata.bearer(context.invocation_metadata())
    if not token:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"no {kind} token (authorization: Bearer ...)")
    identity = authority.verified(token, kind)
    if identity is not None:
        if authority.refresh_due(token, kind):  # verified again off the call's path
            _refreshes.add(task := asyncio.ensure_future(asyncio.to_thread(authority.refresh, token, kind)))
            task.add_done_callback(_refreshes.discard)
        return identity
    try:
        return await asyncio.to_thread(authority.verify, token, kind)
    except NotAuthenticated as e:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(e))


async def abort(context, exc: Exception):
    """End the call with the status code of `exc` (the wire's error table)."""
    if not isinstance(exc, (JumpstarterLabError, ValueError)):
        logger.exception("controller call failed")
        if isinstance(exc, sa.exc.DBAPIError):
            exc = database_failure(exc)
    await context.abort(status_for_exception(exc), str(exc))


def rpc(kind: str):
    """An RPC method of a servicer with an `authority`, called as method(self, identity, request, context):
    the caller authenticated as `kind` first, and an error of the project or a ValueError becomes the
    call's status code. Works for unary and streaming responses alike."""
    expected = (JumpstarterLabError, ValueError)

    def decorate(method):
        if inspect.isasyncgenfunction(method):
            @functools.wraps(method)
            async def streaming(self, request, context):
                identity = await authenticate(context, self.authority, kind)
                try:
                    async with contextlib.aclosing(method(self, identity, request, context)) as responses:
                        async for response in responses:
                            yield response
                except expected as e:
                    await abort(context, e)
            return streaming

        @functools.wraps(method)
        async def unary(self, request, context):
            identity = await authenticate(context, self.authority, kind)
            try:
                return await method(self, identity, request, context)
            except expected as e:
                await abort(context, e)
        return unary

    return decorate


def timestamp(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    if seconds is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


CONDITION_REASON = {LeaseState.QUEUED: "Pending", LeaseState.GRANTED: "Ready",
                    LeaseState.RELEASED: "Released", LeaseState.EXPIRED: "Expired"}


def lease_message(record: LeaseRecord) -> client_pb2.Lease:
    lease = client_pb2.Lease(name=names.lease(record.namespace, record.name), selector=record.selector,
                             client=names.client(record.namespace, record.client), tags=dict(record.tags))
    lease.duration.FromSeconds(int(record.duration))
    held = (record.ended_at or now()) - record.granted_at if record.granted_at else 0
    lease.effective_duration.FromSeconds(int(held))
    lease.begin_time.CopyFrom(timestamp(record.queued_at))
    if record.granted_at:
        lease.effective_begin_time.CopyFrom(timestamp(record.granted_at))
        lease.end_time.CopyFrom(timestamp(record.end_time))
    if record.ended_at:
        lease.effective_end_time.CopyFrom(timestamp(record.ended_at))
    if record.exporter:
        lease.exporter = names.exporter(record.namespace, record.exporter)
    reason = CONDITION_REASON[record.state]
    ready = record.state == LeaseState.GRANTED and not record.waiting
    if record.state == LeaseState.QUEUED and record.queued_at > now():
        begins = datetime.datetime.fromtimestamp(record.queued_at, datetime.UTC).isoformat(timespec="seconds")
        message = f"reserved from {begins.replace('+00:00', 'Z')}"
    elif record.state == LeaseState.QUEUED:
        message = f"waiting, position {record.position} in the queue" + (f" ({record.reason})" if record.reason else "")
    elif record.waiting:  # granted, while its exporter's beforeLease hook prepares the board
        reason, message = "BeforeLeaseHook", record.waiting
    else:
        message = record.reason or f"granted, epoch {record.epoch}"
    lease.conditions.append(kubernetes_pb2.Condition(type="Ready", status="True" if ready else "False",
                                                     reason=reason, message=message))
    if not record.active:
        lease.conditions.append(kubernetes_pb2.Condition(type="Ended", status="True", reason=reason, message=message))
    return lease
