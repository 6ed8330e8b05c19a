"""The controller's state: one database (SQLite by default, PostgreSQL by URL), versioned schema.

Every change is one transaction. The lease table carries the invariant that matters
most as a database constraint: a unique index over the exporter of granted leases,
so no exporter is ever granted twice, whichever controller replica asks.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event

from ..wire.errors import ConfigError, JumpstarterLabError

metadata = sa.MetaData()

schema_version = sa.Table("schema_version", metadata, sa.Column("version", sa.Integer, nullable=False))

signing_keys = sa.Table(
    "signing_keys", metadata,
    sa.Column("kid", sa.String(64), primary_key=True),
    sa.Column("private_pem", sa.Text, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
)

identities = sa.Table(
    "identities", metadata,
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("namespace", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("labels", sa.Text, nullable=False, default="{}"),
    sa.Column("capabilities", sa.Text, nullable=False, default="{}"),
    sa.Column("generation", sa.Integer, nullable=False, default=1),
    sa.Column("revoked", sa.Boolean, nullable=False, default=False),
    sa.Column("created", sa.Float, nullable=False),
    # An exporter an admin took out of service: why (NULL while it is in service), and whether its leases end.
    sa.Column("disabled", sa.Text, nullable=True),
    sa.Column("disabled_ends_leases", sa.Boolean, nullable=False, server_default=sa.false()),
)

exporters = sa.Table(
    "exporters", metadata,
    sa.Column("namespace", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("uuid", sa.String(64), nullable=False, default=""),
    sa.Column("labels", sa.Text, nullable=False, default="{}"),
    sa.Column("reports", sa.LargeBinary, nullable=False, default=b""),
    sa.Column("online_until", sa.Float, nullable=False, default=0.0),
    sa.Column("status", sa.Integer, nullable=False, default=0),
    sa.Column("status_message", sa.Text, nullable=False, default=""),
    # The lease hooks it declared at Register, comma-separated (beforeLease, afterLease): the controller holds
    # a lease's readiness and the exporter's next grant for them.
    sa.Column("hooks", sa.Text, nullable=False, server_default=""),
)

leases = sa.Table(
    "leases", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("namespace", sa.String(128), nullable=False),
    sa.Column("client", sa.String(128), nullable=False),
    sa.Column("selector", sa.Text, nullable=False),
    sa.Column("exporter", sa.String(128), nullable=True),
    sa.Column("state", sa.String(16), nullable=False),  # queued, granted, released, expired
    sa.Column("priority", sa.Integer, nullable=False, default=0),
    sa.Column("requested_at", sa.Float, nullable=False),
    sa.Column("granted_at", sa.Float, nullable=True),
    sa.Column("ended_at", sa.Float, nullable=True),
    sa.Column("duration", sa.Float, nullable=False),
    sa.Column("ttl", sa.Float, nullable=False),
    sa.Column("alive_until", sa.Float, nullable=False),
    sa.Column("epoch", sa.Integer, nullable=False, default=0),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    # The one exporter the client asked for by name (upstream's Lease.exporter_name), if it did.
    sa.Column("exporter_name", sa.String(128), nullable=True),
    # The exporter selectors the client's capabilities allow, copied at request time (JSON list).
    sa.Column("allowed", sa.Text, nullable=False, server_default="[]"),
    # The lease clock value of the transaction that last wrote the row: replicas read what changed.
    sa.Column("seq", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("tags", sa.Text, nullable=False, server_default="{}"),  # the client's tags (JSON object)
    sa.Column("begin_at", sa.Float, nullable=True),  # a reservation: granted no earlier (upstream's begin_time)
    sa.Index("one_grant_per_exporter", "namespace", "exporter", unique=True,
             sqlite_where=sa.text("state = 'granted'"), postgresql_where=sa.text("state = 'granted'")),
    sa.Index("leases_by_state", "state", "priority", "requested_at"),
    sa.Index("leases_by_seq", "seq"),
)

# The console log of each lease that ended, as its exporter handed it in, for its client to fetch.
console_logs = sa.Table(
    "console_logs", metadata,
    sa.Column("lease", sa.String(64), primary_key=True),
    sa.Column("namespace", sa.String(128), nullable=False),
    sa.Column("client", sa.String(128), nullable=False),
    sa.Column("exporter", sa.String(128), nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("created", sa.Float, nullable=False, index=True),
)

# One row, incremented first by every transaction that changes leases: writers on every
# replica queue on its row lock, and its value stamps the rows they write.
lease_clock = sa.Table("lease_clock", metadata, sa.Column("seq", sa.BigInteger, nullable=False))

dials = sa.Table(
    "dials", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("lease", sa.String(64), nullable=False, index=True),
    sa.Column("router_endpoint", sa.Text, nullable=False),
    sa.Column("router_token", sa.Text, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("taken", sa.Boolean, nullable=False, default=False),
)

SCHEMA_VERSION = 6
MIGRATIONS: dict[int, list] = {  # version -> SQL (or a function of the connection) to reach it from the one before
    2: ["ALTER TABLE leases ADD COLUMN exporter_name VARCHAR(128)",
        "ALTER TABLE leases ADD COLUMN allowed TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE leases ADD COLUMN seq BIGINT NOT NULL DEFAULT 0",
        "CREATE INDEX leases_by_seq ON leases (seq)",
        "CREATE TABLE lease_clock (seq BIGINT NOT NULL)",
        "INSERT INTO lease_clock (seq) VALUES (0)"],
    3: ["ALTER TABLE identities ADD COLUMN disabled TEXT",
        "ALTER TABLE identities ADD COLUMN disabled_ends_leases BOOLEAN NOT NULL DEFAULT FALSE",
        "ALTER TABLE leases ADD COLUMN tags TEXT NOT NULL DEFAULT '{}'"],
    4: ["ALTER TABLE exporters ADD COLUMN hooks TEXT NOT NULL DEFAULT ''"],
    5: ["ALTER TABLE leases ADD COLUMN begin_at FLOAT"],
    6: [console_logs.create],
}


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for an in-memory database or another engine)."""
    if not url.startswith("sqlite"):
        return None
    database = sa.engine.make_url(url).database
    return Path(database) if database and database != ":memory:" else None


def secure_sqlite_file(path: Path) -> None:
    """The database holds the key that signs every token: it must be this user's alone.

    A new database is created 0600 (its -wal and -shm files take the same mode) in a directory
    made 0700; an existing one that others may read, or that sits in a directory others may
    write, is refused with the command that fixes it, as ssh refuses a readable key."""
    directory = path.parent
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True)
    where = directory.stat()
    if where.st_mode & 0o022 and not where.st_mode & stat.S_ISVTX:
        raise ConfigError(f"{directory} may be written by other users (mode {stat.filemode(where.st_mode)}), who could "
                          f"replace the controller's database {path.name}; keep it in a directory only you may "
                          f"write (chmod go-w {directory})")
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            info = file.stat()
        except FileNotFoundError:
            continue
        if info.st_uid != os.geteuid():
            raise ConfigError(f"{file} belongs to uid {info.st_uid}, not to this user (uid {os.geteuid()})")
        if info.st_mode & 0o077:
            raise ConfigError(f"{file} may be read by other users (mode {stat.filemode(info.st_mode)}); it holds the "
                              f"key that signs every token: chmod 600 {file}")


def engine_for(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        if path is not None:
            secure_sqlite_file(path)
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection, _record):
            dbapi_connection.isolation_level = None  # transactions are begun below, as IMMEDIATE
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
            # WAL with synchronous=NORMAL never corrupts; a power cut may lose the last commits.
            dbapi_connection.execute("PRAGMA synchronous=NORMAL")
            dbapi_connection.execute("PRAGMA busy_timeout=30000")

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection):
            # Writers queue up instead of failing to upgrade; readers (WAL) need no lock.
            read_only = connection.get_execution_options().get("read_only")
            connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return sa.create_engine(url, pool_pre_ping=True)


class Store:
    def __init__(self, url: str):
        self.url = url
        self.engine = engine_for(url)
        # SQLite allows one writer: queue writers here, in order, rather than in SQLite's busy
        # handler, whose sleeps (up to 100 ms each) would set the latency tail.
        self._serial = threading.Lock() if url.startswith("sqlite") else contextlib.nullcontext()
        self._migrate()

    def _migrate(self) -> None:
        with self.transaction() as conn:
            inspector = sa.inspect(conn)
            if not inspector.has_table("schema_version"):
                metadata.create_all(conn)
                conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))
                conn.execute(lease_clock.insert().values(seq=0))
                return
            current = conn.execute(sa.select(schema_version.c.version)).scalar_one()
            if current > SCHEMA_VERSION:
                raise RuntimeError(f"database schema {current} is newer than this controller ({SCHEMA_VERSION})")
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[version]:
                    statement(conn) if callable(statement) else conn.exec_driver_sql(statement)
                conn.execute(schema_version.update().values(version=version))

    @contextmanager
    def transaction(self, read_only: bool = False) -> Iterator[sa.Connection]:
        if read_only:  # a consistent read that waits for no writer
            with self.engine.connect() as conn, conn.execution_options(read_only=True).begin():
                yield conn
            return
        with self._serial, self.engine.begin() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()


def database_failure(error: Exception) -> JumpstarterLabError:
    """A database error as clients are told it: the database's own words (SQLite's "database or disk is
    full"), without SQLAlchemy's statement and documentation link."""
    return JumpstarterLabError(f"the controller's database failed: {getattr(error, 'orig', None) or error}")


def parameter_mark(dialect) -> str:
    """The database driver's placeholder for a parameter in SQL written for it (sqlite3: ?, psycopg: %s)."""
    return "?" if dialect.paramstyle == "qmark" else "%s"


def loads(text: str | None) -> dict:
    return json.loads(text) if text else {}


def now() -> float:
    return time.time()
