"""gRPC metadata keys of the protocol and of this project's extensions, and who-am-I headers."""

from __future__ import annotations

AUTHORIZATION = "authorization"
STREAM_REQUEST = "request"  # RouterService.Stream on an exporter: which driver stream (upstream's key)
RESOURCE = "resource"  # the handle of a client-pushed stream, in the exporter's initial metadata
SESSION = "x-jumpstarter-lab-session"  # a named exporter session, shared by every connection naming it
LEASE_TTL = "x-jumpstarter-lab-lease-ttl"  # keepalive period a client promises; upstream clients send none
LEASE_PRIORITY = "x-jumpstarter-lab-lease-priority"  # a new lease's place in the queue (upstream has none): 0 default


def bearer(metadata) -> str:
    """The token of an `authorization: Bearer ...` entry ("" when there is none)."""
    return dict(metadata or ()).get(AUTHORIZATION, "").removeprefix("Bearer ").strip()


def bearer_metadata(token: str) -> tuple:
    return ((AUTHORIZATION, f"Bearer {token}"),)


def identity_metadata(token: str, kind: str, namespace: str, name: str) -> tuple:
    """What upstream's peers send too: a bearer token and who they say they are."""
    return (*bearer_metadata(token), ("jumpstarter-kind", kind), ("jumpstarter-namespace", namespace),
            ("jumpstarter-name", name))
