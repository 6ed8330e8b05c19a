"""Trusted tokens are verified again in the background before they expire; a revocation still lands."""

import time

import pytest

from jumpstarter_lab.controller import auth
from jumpstarter_lab.controller.auth import Authority
from jumpstarter_lab.controller.store import Store
from jumpstarter_lab.wire.errors import NotAuthenticated


@pytest.fixture
def clock(monkeypatch):
    t = [time.time()]  # tokens carry real times: start from now
    monkeypatch.setattr(auth, "now", lambda: t[0])
    return t


def test_a_token_in_use_is_refreshed_ahead_of_expiry_and_forgotten_once_revoked(tmp_path, clock):
    authority = Authority(Store(f"sqlite:///{tmp_path}/c.db"))
    token = authority.create("client", "default", "alice")
    identity = authority.verify(token, "client")
    assert authority.verified(token, "client") == identity
    assert not authority.refresh_due(token, "client")  # just verified

    clock[0] += auth.VERIFIED_TTL * auth.REFRESH_AFTER[1] + 0.01
    assert authority.verified(token, "client") == identity  # still trusted: calls do not wait
    assert authority.refresh_due(token, "client")
    assert not authority.refresh_due(token, "client")  # claimed once
    authority.refresh(token, "client")
    clock[0] += auth.VERIFIED_TTL * 0.4
    assert authority.verified(token, "client") == identity  # the refresh extended the trust

    authority.revoke("client", "default", "alice")
    clock[0] += auth.VERIFIED_TTL * auth.REFRESH_AFTER[1]
    assert authority.refresh_due(token, "client")
    authority.refresh(token, "client")
    assert authority.verified(token, "client") is None  # forgotten: the next call is verified in full
    with pytest.raises(NotAuthenticated, match="revoked"):
        authority.verify(token, "client")


def test_an_unused_token_is_trusted_for_verified_ttl_only(tmp_path, clock):
    authority = Authority(Store(f"sqlite:///{tmp_path}/c.db"))
    token = authority.create("client", "default", "bob")
    authority.verify(token, "client")
    authority.revoke("client", "default", "bob")
    clock[0] += auth.VERIFIED_TTL + 0.01
    assert authority.verified(token, "client") is None
    with pytest.raises(NotAuthenticated, match="revoked"):
        authority.verify(token, "client")


def test_a_full_cache_of_trusted_tokens_forgets_the_expired_first(tmp_path, clock, monkeypatch):
    monkeypatch.setattr(auth, "VERIFIED_MAX", 3)
    authority = Authority(Store(f"sqlite:///{tmp_path}/c.db"))
    *old, kept, new = (authority.create("client", "default", name) for name in ("a", "b", "c", "d"))
    for token in old:
        authority.verify(token, "client")
    clock[0] += auth.VERIFIED_TTL + 0.01
    authority.verify(kept, "client")
    authority.verify(new, "client")  # the cache is full here: a and b have expired, c has not
    assert authority.verified(kept, "client") is not None
    assert authority.verified(new, "client") is not None
    assert all(authority.verified(token, "client") is None for token in old)
