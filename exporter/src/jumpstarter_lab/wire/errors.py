"""The one error vocabulary of the project, and its mapping to gRPC status codes.

A driver raising ValueError arrives at the client as DriverInvalidArgument (a
ValueError); the table is shared with upstream Jumpstarter so mixed peers agree.
"""

from __future__ import annotations

import grpc


class JumpstarterLabError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(JumpstarterLabError, ValueError):
    """A configuration file or value is wrong; the message names where."""


class DriverError(JumpstarterLabError):
    """A driver call failed on the exporter."""


class DriverNotImplemented(DriverError, NotImplementedError):
    pass


class DriverInvalidArgument(DriverError, ValueError):
    pass


class DriverTimeout(DriverError, TimeoutError):
    pass


class ExporterUnavailable(DriverError, ConnectionError):
    """The exporter (or the device behind a driver) cannot be reached."""


class MethodNotFound(DriverError, AttributeError):
    pass


class ExporterNotReady(DriverError):
    pass


class AccessDenied(DriverError, PermissionError):
    pass


class NotAuthenticated(DriverError, PermissionError):
    pass


class Busy(DriverError):
    """Refused for now: a bound on what one lease or client may hold open was reached."""


class DriverNotFound(JumpstarterLabError, LookupError):
    """A dotted driver path names no driver of the tree."""


class ClientNotAllowed(JumpstarterLabError, PermissionError):
    """A driver client class is not in the client's allowlist, so it was never imported."""


class MissingClient(JumpstarterLabError, ImportError):
    """A driver client class is allowed but cannot be imported here."""


# Exporter side: exception type -> status code. Order matters: first match wins.
_STATUS_FOR_EXCEPTION: list[tuple[type[BaseException], grpc.StatusCode]] = [
    (MethodNotFound, grpc.StatusCode.NOT_FOUND),
    (Busy, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (NotImplementedError, grpc.StatusCode.UNIMPLEMENTED),
    (ValueError, grpc.StatusCode.INVALID_ARGUMENT),
    (TimeoutError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (ConnectionError, grpc.StatusCode.UNAVAILABLE),
    (PermissionError, grpc.StatusCode.PERMISSION_DENIED),
]

# Client side: status code -> exception type.
_EXCEPTION_FOR_STATUS: dict[grpc.StatusCode, type[DriverError]] = {
    grpc.StatusCode.NOT_FOUND: MethodNotFound,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Busy,
    grpc.StatusCode.UNIMPLEMENTED: DriverNotImplemented,
    grpc.StatusCode.INVALID_ARGUMENT: DriverInvalidArgument,
    grpc.StatusCode.DEADLINE_EXCEEDED: DriverTimeout,
    grpc.StatusCode.UNAVAILABLE: ExporterUnavailable,
    grpc.StatusCode.FAILED_PRECONDITION: ExporterNotReady,
    grpc.StatusCode.PERMISSION_DENIED: AccessDenied,
    grpc.StatusCode.UNAUTHENTICATED: NotAuthenticated,
}


def status_for_exception(exc: BaseException) -> grpc.StatusCode:
    for kind, code in _STATUS_FOR_EXCEPTION:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.UNKNOWN


def exception_for_rpc_error(error: grpc.RpcError, what: str) -> DriverError:
    """Turn a failed RPC into the matching DriverError; `what` names the call for the message."""
    return exception_for_status(error.code(), error.details(), what)


def exception_for_status(code: grpc.StatusCode, details: str | None, what: str) -> DriverError:
    details = details or code.name
    if code == grpc.StatusCode.UNAVAILABLE:
        return ExporterUnavailable(f"{what}: unavailable: {details}")
    return _EXCEPTION_FOR_STATUS.get(code, DriverError)(f"{what}: {details}")
