"""The PostgreSQL state's tables, as versioned migrations applied once under an advisory lock."""

from __future__ import annotations

import hashlib
import logging

import psycopg
from psycopg.rows import TupleRow

from .state import StateError

log = logging.getLogger(__name__)

# Every table of the orchestrator starts with this, so it can share a database with others.
PREFIX = "orchestrator_"
VERSION_TABLE = f"{PREFIX}schema_version"

# Version n is MIGRATIONS[n - 1]: its statements run in one transaction with the others due.
# Append only: a released step is never edited, a change is a new step.
# A new version locks every older daemon out at its next connection, so a table older
# daemons can do without (the HTTP cache, `http_cache_pg`) is made by its own module at
# its first use instead: daemons on one database can be upgraded one at a time.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: work items and meta, every row under its repository (`owner/name`). `data` is the
    # item as the JSON file holds it; status and times are copied out of it for queries.
    (
        f"""CREATE TABLE {PREFIX}items (
            repo text NOT NULL,
            kind text NOT NULL,
            number bigint NOT NULL,
            data jsonb NOT NULL,
            status text NOT NULL,
            finished_at timestamptz,
            updated_at timestamptz NOT NULL,
            PRIMARY KEY (repo, kind, number)
        )""",
        f"""CREATE TABLE {PREFIX}meta (
            repo text NOT NULL,
            key text NOT NULL,
            value jsonb NOT NULL,
            PRIMARY KEY (repo, key)
        )""",
    ),
    # 2: several daemons: each repository leased to one daemon at a time (`fence` counts its
    # owners), and each daemon's last heartbeat (how many share the repositories).
    (
        f"""CREATE TABLE {PREFIX}leases (
            repo text PRIMARY KEY,
            owner text NOT NULL,
            expires_at timestamptz NOT NULL,
            fence bigint NOT NULL DEFAULT 1
        )""",
        f"""CREATE TABLE {PREFIX}daemons (
            owner text PRIMARY KEY,
            seen_at timestamptz NOT NULL
        )""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def advisory_key(name: str) -> int:
    """A stable 63-bit advisory lock key for `name`. Computed here rather than with
    PostgreSQL's `hashtext`, which is internal and may change between major versions:
    daemons on different servers' versions must agree on the key."""
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


MIGRATION_LOCK = advisory_key("orchestrator:migrate")


def migrate(conn: psycopg.Connection[TupleRow], where: str) -> int:
    """Bring the database to SCHEMA_VERSION in one transaction; returns the version it had.
    `where` names the database in errors (STATE_URL without its password)."""
    with conn.transaction():
        # Two daemons starting at once: the second waits here, then finds nothing to do.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        if _scalar(conn, "SELECT to_regclass(%s) IS NOT NULL", VERSION_TABLE):
            found = _scalar(conn, f"SELECT coalesce(max(version), 0) FROM {VERSION_TABLE}")  # noqa: S608
        else:
            conn.execute(
                f"""CREATE TABLE {VERSION_TABLE} (
                    version integer PRIMARY KEY,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )"""
            )
            found = 0
        if found > SCHEMA_VERSION:
            raise StateError(
                f"the state database (STATE_URL {where}) has schema version {found}, from a "
                f"newer orchestrator; this one knows versions up to {SCHEMA_VERSION}: upgrade "
                "it, or set STATE_URL to another database"
            )
        for version in range(found + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version - 1]:
                conn.execute(statement)
            conn.execute(f"INSERT INTO {VERSION_TABLE} (version) VALUES (%s)", (version,))  # noqa: S608
    if found < SCHEMA_VERSION:
        log.info("state database %s: schema migrated from version %d to %d", where, found,
                 SCHEMA_VERSION)  # fmt: skip
    return int(found)


def version(conn: psycopg.Connection[TupleRow], where: str) -> int:
    """The database's schema version, reading only (0: no tables yet); a newer one than this
    orchestrator knows is refused, as `migrate` refuses it."""
    if not _scalar(conn, "SELECT to_regclass(%s) IS NOT NULL", VERSION_TABLE):
        return 0
    found = _scalar(conn, f"SELECT coalesce(max(version), 0) FROM {VERSION_TABLE}")  # noqa: S608
    if found > SCHEMA_VERSION:
        raise StateError(
            f"the state database (STATE_URL {where}) has schema version {found}, from a "
            f"newer orchestrator; this one knows versions up to {SCHEMA_VERSION}: upgrade "
            "it, or set STATE_URL to another database"
        )
    return found


def _scalar(conn: psycopg.Connection[TupleRow], query: str, *params: object) -> int:
    row = conn.execute(query, params).fetchone()
    assert row is not None  # a SELECT of one expression has one row
    return int(row[0])
