"""Dials: a client's Dial leaves a router endpoint and token for the lease's exporter, whose
Listen stream (on whichever replica it is connected to) takes it from here."""

from __future__ import annotations

import sqlalchemy as sa

from .store import Store, dials, now

DIAL_KEEP = 300.0  # seconds a dial nobody took is kept before it is deleted


class Dials:
    def __init__(self, store: Store):
        self.store = store

    def add(self, lease: str, endpoint: str, token: str) -> None:
        with self.store.transaction() as conn:
            conn.execute(dials.insert().values(lease=lease, router_endpoint=endpoint, router_token=token,
                                               created=now(), taken=False))

    def take(self, lease_names: list[str]) -> list[tuple[str, str, str]]:
        """Claim the waiting dials of these leases: [(lease, router endpoint, router token)]."""
        if not lease_names:
            return []
        with self.store.transaction() as conn:
            rows = conn.execute(sa.select(dials).where(dials.c.lease.in_(lease_names) & dials.c.taken.is_(False))
                                .order_by(dials.c.id)).all()
            if rows:
                conn.execute(dials.update().where(dials.c.id.in_([r.id for r in rows]) & dials.c.taken.is_(False))
                             .values(taken=True))
            conn.execute(dials.delete().where(dials.c.created < now() - DIAL_KEEP))
        return [(r.lease, r.router_endpoint, r.router_token) for r in rows]
