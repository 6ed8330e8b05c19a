"""Identities and their tokens: ES256 JWTs signed with keys the controller keeps in its database.

A token names its kind (client or exporter) in the `kind` claim and in its audience,
so one kind never passes as the other; its `gen` claim must equal the identity's
generation, so revoking an identity (a new generation) voids every token it had.
Router tokens are short-lived and name one lease and its epoch.
"""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass, field

import jwt
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..wire.errors import ConfigError, NotAuthenticated
from ..wire.protocol import common_pb2
from .store import Store, exporters, identities, loads, now, signing_keys

ISSUER = "jumpstarter-lab"
KINDS = ("client", "exporter")
ROUTER_AUDIENCE = "jumpstarter-lab:router"


def audience(kind: str) -> str:
    return f"jumpstarter-lab:{kind}"


@dataclass(frozen=True)
class Identity:
    kind: str
    namespace: str
    name: str
    labels: dict = field(default_factory=dict, hash=False, compare=False)
    capabilities: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def allowed_exporters(self) -> tuple[str, ...]:
        """The exporter selectors a client's capabilities allow it to lease (empty: any)."""
        return tuple(self.capabilities.get("exporters") or ())

    @property
    def max_priority(self) -> int:
        """The highest queue priority a client may ask for (0 unless an admin allowed more)."""
        return int(self.capabilities.get("priority") or 0)


VERIFIED_TTL = 5.0  # seconds a verified token is trusted without asking the database again
# A token in use is verified again in the background once 50-90% of VERIFIED_TTL has passed (jittered),
# so calls do not wait for the database and a revocation still lands in time.
REFRESH_AFTER = (0.5, 0.9)
VERIFIED_MAX = 20000  # trusted tokens kept at most (a bound on memory: ~2 kB each)


class Authority:
    def __init__(self, store: Store):
        self.store = store
        self._kid, self._key = self._signing_key()
        self._public = {}
        self._verified: dict[tuple[str, str], tuple[float, float, Identity]] = {}  # -> (refresh at, expires, identity)
        self._refreshing: set[tuple[str, str]] = set()

    def _signing_key(self):
        with self.store.transaction() as conn:
            row = conn.execute(sa.select(signing_keys).order_by(signing_keys.c.created.desc()).limit(1)).first()
            if row is None:
                key = ec.generate_private_key(ec.SECP256R1())
                pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode()
                kid = secrets.token_hex(8)
                conn.execute(signing_keys.insert().values(kid=kid, private_pem=pem, created=now()))
                return kid, key
            return row.kid, serialization.load_pem_private_key(row.private_pem.encode(), password=None)

    def _public_key(self, kid: str):
        if kid not in self._public:
            with self.store.transaction() as conn:
                row = conn.execute(sa.select(signing_keys).where(signing_keys.c.kid == kid)).first()
            if row is None:
                raise NotAuthenticated("token signed by an unknown key")
            self._public[kid] = serialization.load_pem_private_key(row.private_pem.encode(), password=None).public_key()
        return self._public[kid]

    def _sign(self, claims: dict) -> str:
        return jwt.encode(claims, self._key, algorithm="ES256", headers={"kid": self._kid})

    # --- identities ---------------------------------------------------------------------

    def create(self, kind: str, namespace: str, name: str, labels: dict | None = None,
               capabilities: dict | None = None, ttl_days: float = 365) -> str:
        """Create (or re-issue) an identity and return a fresh token for it."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        with self.store.transaction() as conn:
            row = conn.execute(sa.select(identities).where(identities.c.kind == kind,
                                                           identities.c.namespace == namespace,
                                                           identities.c.name == name)).first()
            values = {"labels": json.dumps(labels or {}), "capabilities": json.dumps(capabilities or {}),
                      "revoked": False}
            if row is None:
                conn.execute(identities.insert().values(kind=kind, namespace=namespace, name=name, generation=1,
                                                        created=now(), **values))
                generation = 1
            else:
                generation = row.generation
                conn.execute(identities.update().where(identities.c.kind == kind, identities.c.namespace == namespace,
                                                       identities.c.name == name).values(**values))
        return self.token(kind, namespace, name, generation, ttl_days)

    def declare(self, kind: str, namespace: str, name: str, labels: dict | None = None,
                capabilities: dict | None = None) -> tuple[str, int]:
        """Make the identity exist with these labels and capabilities, issuing no token.

        Returns ("created" | "updated" | "unchanged", generation); a revoked identity comes back as
        created, in the generation its revocation began (its old tokens stay void)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        values = {"labels": json.dumps(labels or {}, sort_keys=True),
                  "capabilities": json.dumps(capabilities or {}, sort_keys=True), "revoked": False}
        key = ((identities.c.kind == kind) & (identities.c.namespace == namespace) & (identities.c.name == name))
        with self.store.transaction() as conn:
            row = conn.execute(sa.select(identities).where(key)).first()
            if row is None:
                conn.execute(identities.insert().values(kind=kind, namespace=namespace, name=name, generation=1,
                                                        created=now(), **values))
                return "created", 1
            same = (not row.revoked and loads(row.labels) == (labels or {})
                    and loads(row.capabilities) == (capabilities or {}))
            if same:
                return "unchanged", row.generation
            conn.execute(identities.update().where(key).values(**values))
            return ("created" if row.revoked else "updated"), row.generation

    def exists(self, kind: str, namespace: str, name: str) -> bool:
        """Whether the identity is known and not revoked."""
        with self.store.transaction() as conn:
            row = conn.execute(sa.select(identities.c.revoked).where(
                identities.c.kind == kind, identities.c.namespace == namespace, identities.c.name == name)).first()
        return row is not None and not row.revoked

    def identity(self, kind: str, namespace: str, name: str) -> Identity | None:
        """The identity as the database holds it (labels, capabilities), None when unknown or revoked."""
        with self.store.transaction(read_only=True) as conn:
            row = conn.execute(sa.select(identities).where(
                identities.c.kind == kind, identities.c.namespace == namespace, identities.c.name == name)).first()
        if row is None or row.revoked:
            return None
        return Identity(kind, row.namespace, row.name, loads(row.labels), loads(row.capabilities))

    def token(self, kind: str, namespace: str, name: str, generation: int, ttl_days: float = 365) -> str:
        issued = int(now())
        return self._sign({"iss": ISSUER, "aud": audience(kind), "sub": f"{kind}:{namespace}/{name}",
                           "kind": kind, "namespace": namespace, "name": name, "gen": generation,
                           "iat": issued, "exp": issued + int(ttl_days * 86400), "jti": str(uuid.uuid4())})

    def revoke(self, kind: str, namespace: str, name: str) -> None:
        with self.store.transaction() as conn:
            done = conn.execute(identities.update().where(identities.c.kind == kind, identities.c.namespace == namespace,
                                                          identities.c.name == name)
                                .values(revoked=True, generation=identities.c.generation + 1))
        if done.rowcount == 0:
            raise ConfigError(f"no {kind} {namespace}/{name} in the controller's database")

    def set_service(self, namespace: str, name: str, disabled: str | None, ends_leases: bool = False) -> None:
        """Take an exporter out of service (`disabled`: why; its lease ends too with `ends_leases`) or, with None,
        put it back. Its tokens stay valid: it stays registered and online, it is only never granted."""
        if disabled is not None and not disabled.strip():
            raise ConfigError("say why the exporter is out of service (a reason, e.g. 'flaky SD mux, ticket 42')")
        with self.store.transaction() as conn:
            done = conn.execute(identities.update().where(identities.c.kind == "exporter",
                                                          identities.c.namespace == namespace,
                                                          identities.c.name == name)
                                .values(disabled=disabled, disabled_ends_leases=bool(disabled and ends_leases)))
            if disabled is None:  # back in service: a failed afterLease hook no longer keeps it from grants
                failed = common_pb2.EXPORTER_STATUS_AFTER_LEASE_HOOK_FAILED
                conn.execute(exporters.update().where((exporters.c.namespace == namespace) & (exporters.c.name == name)
                                                      & (exporters.c.status == failed))
                             .values(status=common_pb2.EXPORTER_STATUS_AVAILABLE, status_message="put back in service"))
        if done.rowcount == 0:
            raise ConfigError(f"no exporter {namespace}/{name} in the controller's database")

    def rotate(self, identity: Identity, ttl_days: float = 365) -> tuple[str, float]:
        """Void the identity's tokens and issue its next one; returns (token, expiry)."""
        with self.store.transaction() as conn:
            key = ((identities.c.kind == identity.kind) & (identities.c.namespace == identity.namespace)
                   & (identities.c.name == identity.name))
            conn.execute(identities.update().where(key).values(generation=identities.c.generation + 1))
            generation = conn.execute(sa.select(identities.c.generation).where(key)).scalar_one()
        token = self.token(identity.kind, identity.namespace, identity.name, generation, ttl_days)
        return token, now() + ttl_days * 86400

    def verify(self, token: str, kind: str) -> Identity:
        """The identity a token proves, or NotAuthenticated saying why not.

        A token verified in the last VERIFIED_TTL seconds is trusted without a database
        read, so a revocation takes effect within that time.
        """
        return self.verified(token, kind) or self._remember(token, kind)

    def _remember(self, token: str, kind: str) -> Identity:
        identity = self._verify(token, kind)
        t = now()
        if len(self._verified) >= VERIFIED_MAX:
            # The expired go first: a lab of 10,000 exporters keeps that many tokens trusted, and forgetting
            # every one would send each next call through a full verification.
            for key, (_refresh, expires, _identity) in list(self._verified.items()):
                if expires <= t:
                    self._verified.pop(key, None)
            if len(self._verified) >= VERIFIED_MAX:  # that many in use at once: memory is bounded all the same
                self._verified.clear()
        # Jittered: tokens verified together (a restart) should not all be verified again together.
        low, high = REFRESH_AFTER
        refresh = t + VERIFIED_TTL * (low + (high - low) * secrets.randbelow(1000) / 1000)
        self._verified[(token, kind)] = (refresh, t + VERIFIED_TTL, identity)
        return identity

    def verified(self, token: str, kind: str) -> Identity | None:
        """The identity of a token verified in the last VERIFIED_TTL seconds (no I/O), else None."""
        cached = self._verified.get((token, kind))
        return cached[2] if cached and cached[1] > now() else None

    def refresh_due(self, token: str, kind: str) -> bool:
        """Whether a trusted token is old enough to be verified again ahead of its expiry, and no one
        is doing it yet; True claims the refresh (call refresh())."""
        key = (token, kind)
        cached = self._verified.get(key)
        if not cached or cached[0] > now() or key in self._refreshing:
            return False
        self._refreshing.add(key)
        return True

    def refresh(self, token: str, kind: str) -> None:
        """Verify a trusted token again: trusted for another VERIFIED_TTL, or forgotten (revoked or
        expired since), so its next call is verified in full and refused."""
        try:
            self._remember(token, kind)
        except NotAuthenticated:
            self._verified.pop((token, kind), None)
        finally:
            self._refreshing.discard((token, kind))

    def _verify(self, token: str, kind: str) -> Identity:
        claims = self._decode(token, audience(kind), f"{kind} token")
        if claims.get("kind") != kind:
            raise NotAuthenticated(f"a {str(claims.get('kind'))[:20]} token cannot be used as a {kind} token")
        shapes = {"namespace": str, "name": str, "gen": int}
        wrong = [claim for claim, shape in shapes.items()
                 if not isinstance(claims.get(claim), shape) or isinstance(claims.get(claim), bool)]
        if wrong:  # signed by us, yet not what we sign: refuse before it reaches the database
            raise NotAuthenticated(f"{kind} token with malformed claims: {', '.join(wrong)}")
        with self.store.transaction(read_only=True) as conn:
            row = conn.execute(sa.select(identities).where(identities.c.kind == kind,
                                                           identities.c.namespace == claims.get("namespace"),
                                                           identities.c.name == claims.get("name"))).first()
        if row is None or row.revoked or row.generation != claims.get("gen"):
            raise NotAuthenticated(f"the token of {kind} {claims.get('namespace')}/{claims.get('name')} was revoked")
        return Identity(kind, row.namespace, row.name, loads(row.labels), loads(row.capabilities))

    def _decode(self, token: str, expected_audience: str, what: str) -> dict:
        try:
            header = jwt.get_unverified_header(token)
            key = self._public_key(header.get("kid", ""))
            return jwt.decode(token, key, algorithms=["ES256"], audience=expected_audience, issuer=ISSUER,
                              options={"require": ["exp", "iat", "aud", "iss", "sub"]})
        except jwt.ExpiredSignatureError:
            raise NotAuthenticated(f"{what} has expired") from None
        except jwt.InvalidAudienceError:
            raise NotAuthenticated(f"{what} was issued for another audience") from None
        except jwt.InvalidTokenError as e:
            raise NotAuthenticated(f"invalid {what}: {e}") from None

    # --- router ---------------------------------------------------------------------------

    def router_token(self, lease: str, epoch: int, client: str, capabilities: dict, ttl: float = 60,
                     jti: str | None = None) -> str:
        issued = int(now())
        return self._sign({"iss": ISSUER, "aud": ROUTER_AUDIENCE, "sub": f"lease:{lease}", "lease": lease,
                           "epoch": epoch, "client": client, "capabilities": capabilities,
                           "iat": issued, "exp": issued + int(ttl), "jti": jti or str(uuid.uuid4())})

    def verify_router(self, token: str) -> dict:
        claims = self._decode(token, ROUTER_AUDIENCE, "router token")
        # signed by this key, yet not as router_token() makes them: refused like any token with malformed claims
        if not (isinstance(claims.get("jti"), str) and isinstance(claims.get("lease"), str)
                and isinstance(claims.get("epoch"), int)):
            raise NotAuthenticated("invalid router token: it names no dial (jti), lease and grant (epoch)")
        return claims
