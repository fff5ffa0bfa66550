"""State on PostgreSQL: the `StateStore` of one repository, in a database several can share."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Collection, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import psycopg
from pydantic import ValidationError

from .core.work import WorkItem, WorkItemType, utcnow
from .state import StateError, StateLockedError, prunable
from .state_pg_conn import Connection, open_connection, probe, reason, redacted, secrets_of
from .state_pg_schema import SCHEMA_VERSION, advisory_key, migrate
from .state_pg_schema import version as _version

log = logging.getLogger(__name__)

__all__ = ["SCHEMA_VERSION", "PgState", "probe", "redacted", "secrets_of"]

T = TypeVar("T")
SESSION_ENDED = ("57P01", "57P02", "57P03")  # admin shutdown, crash shutdown, cannot connect now
ITEMS = "orchestrator_items"  # the tables: state_pg_schema.py

GET = "SELECT data::text FROM orchestrator_items WHERE repo = %s AND kind = %s AND number = %s"
ALL = (
    "SELECT kind, number, data::text FROM orchestrator_items WHERE repo = %s ORDER BY kind, number"
)
OF_KIND = (
    "SELECT kind, number, data::text FROM orchestrator_items WHERE repo = %s AND kind = %s "
    "ORDER BY number"
)
LOCK_ALL = "SELECT kind, number, data::text FROM orchestrator_items WHERE repo = %s FOR UPDATE"
PUT = (
    "INSERT INTO orchestrator_items (repo, kind, number, data, status, finished_at, updated_at) "
    "VALUES (%s, %s, %s, %s::jsonb, %s, %s, %s) ON CONFLICT (repo, kind, number) DO UPDATE SET "
    "data = excluded.data, status = excluded.status, finished_at = excluded.finished_at, "
    "updated_at = excluded.updated_at"
)
DELETE = "DELETE FROM orchestrator_items WHERE repo = %s AND kind = %s AND number = %s"
DELETE_MANY = (
    "DELETE FROM orchestrator_items WHERE repo = %s AND (kind, number) IN "
    "(SELECT * FROM unnest(%s::text[], %s::bigint[]))"
)
GET_META = "SELECT value::text FROM orchestrator_meta WHERE repo = %s AND key = %s"
LEASED = (
    "SELECT 1 FROM orchestrator_leases WHERE repo = %s AND owner = %s AND expires_at > now() "
    "FOR SHARE"
)
META_KEYS = "SELECT key FROM orchestrator_meta WHERE repo = %s ORDER BY key"
SET_META = (
    "INSERT INTO orchestrator_meta (repo, key, value) VALUES (%s, %s, %s::jsonb) "
    "ON CONFLICT (repo, key) DO UPDATE SET value = excluded.value"
)


class PgState:
    """A PostgreSQL `StateStore` for one repository (`owner/name`): one owner at a time (a
    session advisory lock per repository), each write committed at return, a batch one
    transaction. Reads go to the database each time: nothing is cached.

    A connection lost outside a batch is opened again once, taking the lock again, and the
    read or write is retried (the writes are upserts and deletes, so a retry is harmless).
    Inside a batch it is a `StateError`: the transaction is gone, and so are its writes."""

    def __init__(self, url: str, repo: str, *, lock: bool = True, lease: str | None = None) -> None:
        """Connect to `url` (STATE_URL), migrate its tables, and with `lock` become the one
        owner of `repo`; `StateLockedError` if another orchestrator is. With `lease` (a
        daemon's lease owner, `leases_pg`) several daemons share the repository instead: no
        lock is taken, and every write is kept only while that daemon holds its lease on the
        repository (checked in the write's own transaction, so a daemon that lost it, cut off
        for longer than the lease lasts, cannot overwrite its successor's work).
        `repo` may also be a daemon's own key (`*...`): its records, beside the repositories'."""
        owner, _, name = repo.partition("/")
        if not repo.startswith("*") and (not owner or not name or "/" in name):
            raise StateError(f"GITHUB_REPO={repo!r} is not valid: expected owner/name")
        # GitHub's names ignore case: `Owner/Repo` and `owner/repo` are one repository's state.
        self.repo = repo.lower()
        self.where = redacted(url)  # the URL for messages: never its password
        self._url = url
        self._secrets = secrets_of(url)
        self._lock = lock
        self._lease = lease
        self._mutex = threading.RLock()
        self._depth = 0
        self._closed = False
        self._backend: int | None = None  # the server process of the connection
        self._tables = True  # False: a reader found no tables yet (an empty state)
        self._conn: Connection | None = self._connect()

    # -- the spec's API -------------------------------------------------------------------

    def clear_item(self, kind: WorkItemType, number: int) -> bool:
        """Forget an item so it can be processed again; True if it was there."""
        cursor = self._write("clear an item", lambda c: c.execute(DELETE, self._key(kind, number)))
        return cursor.rowcount > 0

    def prune(
        self,
        older_than: timedelta,
        open_pulls: Collection[int] = (),
        *,
        now: datetime | None = None,
    ) -> int:
        """Forget the finished items that ended more than `older_than` ago and that exactly-once
        needs no more (`state.prunable`); `open_pulls` are the pull requests open now. Returns
        how many went."""
        before = (now or utcnow()) - older_than
        with self.batch():
            rows = self._run(
                "read the items", lambda c: c.execute(LOCK_ALL, (self.repo,)).fetchall()
            )
            gone = [
                (kind, number)
                for kind, number, data in rows
                if prunable(self._item(kind, number, data), before, open_pulls)
            ]
            if gone:
                params = (self.repo, [k for k, _ in gone], [n for _, n in gone])
                self._write("forget items", lambda c: c.execute(DELETE_MANY, params))
        if gone:
            log.info("state of %s: forgot %d item(s) finished more than %g days ago", self.repo,
                     len(gone), older_than.total_seconds() / 86_400)  # fmt: skip
        return len(gone)

    # -- StateStore -----------------------------------------------------------------------

    def get(self, kind: WorkItemType, number: int) -> WorkItem | None:
        if not self._tables:
            return None
        key = self._key(kind, number)
        row = self._run("read an item", lambda c: c.execute(GET, key).fetchone())
        return None if row is None else self._item(kind.value, number, row[0])

    def put(self, item: WorkItem) -> None:
        params = (*self._key(item.type, item.number), _storable(item.model_dump_json()),
                  item.status.value, _utc(item.finished_at), _utc(item.updated_at))  # fmt: skip
        self._write("write an item", lambda c: c.execute(PUT, params))

    def items(self, kind: WorkItemType | None = None) -> list[WorkItem]:
        if not self._tables:
            return []
        if kind is None:
            rows = self._run("read the items", lambda c: c.execute(ALL, (self.repo,)).fetchall())
        else:
            params = (self.repo, kind.value)
            rows = self._run("read the items", lambda c: c.execute(OF_KIND, params).fetchall())
        return [self._item(k, n, data) for k, n, data in rows]

    def meta_keys(self) -> list[str]:
        """The repository's records' names (for `migrate-state`)."""
        if not self._tables:
            return []
        rows = self._run("read meta", lambda c: c.execute(META_KEYS, (self.repo,)).fetchall())
        return [str(row[0]) for row in rows]

    def get_meta(self, key: str, default: Any = None) -> Any:
        if not self._tables:
            return default
        row = self._run("read meta", lambda c: c.execute(GET_META, (self.repo, key)).fetchone())
        return default if row is None else json.loads(row[0])

    def set_meta(self, key: str, value: Any) -> None:
        text = _storable(json.dumps(value))  # fails here, as in `State`, if it cannot be stored
        self._write("write meta", lambda c: c.execute(SET_META, (self.repo, key, text)))

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Group several changes into one transaction: all of them, or (on an exception,
        which is raised again) none. A nested batch joins the outer one."""
        with self._mutex:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            try:
                with contextlib.ExitStack() as stack:
                    # A connection lost while idle is found (and opened again) here.
                    self._run("start a batch", lambda c: c.execute("SELECT 1"))
                    # From here a lost connection is an error, never a retry: a retry would
                    # run the rest outside the transaction (and outside the lease's check).
                    self._depth = 1
                    try:
                        self._run("start a batch", lambda c: stack.enter_context(c.transaction()))
                        if self._lease is not None:
                            self._run("check the lease", self._check_lease)
                        yield
                        if self._conn is not None and (
                            self._conn.info.transaction_status
                            is psycopg.pq.TransactionStatus.INERROR
                        ):
                            # A write failed and its error was caught in the batch: the
                            # commit would quietly be a rollback. Said, never silent.
                            raise StateError(
                                f"a batch of writes to the state of {self.repo} failed part "
                                "way; none of it was kept"
                            )
                    finally:
                        self._depth = 0
            except psycopg.Error as exc:  # the commit: the body's own errors are StateErrors
                raise self._error("commit a batch", exc) from None

    def save(self) -> None:
        """Nothing to do: every write is committed when it returns (a batch, at its end)."""

    def close(self) -> None:
        """Release the repository and the connection (closing it drops the advisory lock)."""
        with self._mutex:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> PgState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------

    def _key(self, kind: WorkItemType, number: int) -> tuple[str, str, int]:
        return self.repo, kind.value, number

    def _item(self, kind: str, number: int, data: str) -> WorkItem:
        try:
            return WorkItem.model_validate_json(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "document"
            raise StateError(
                f"the state database (STATE_URL {self.where}) holds a corrupted item {kind}:"
                f"{number} of {self.repo} ({where}: {first['msg']}); delete its row from {ITEMS}"
            ) from None

    def _write(self, what: str, operation: Callable[[Connection], T]) -> T:
        """A write: with a lease, in one transaction with the lease's check (a batch checked
        it at its start and holds the lease's row until it commits)."""
        if self._lease is None or self._depth:
            return self._run(what, operation)

        def fenced(conn: Connection) -> T:
            with conn.transaction():
                self._check_lease(conn)
                return operation(conn)

        return self._run(what, fenced)

    def _check_lease(self, conn: Connection) -> None:
        """Hold the lease's row until the transaction ends (a daemon taking the repository
        over waits for it), or refuse: this daemon no longer holds the repository."""
        row = conn.execute(LEASED, (self.repo, self._lease)).fetchone()
        if row is None:
            raise StateLockedError(
                f"this daemon no longer holds {self.repo} (its lease ended, and another daemon "
                "may have taken it over): the write was not kept",
                "",
            )

    def _run(self, what: str, operation: Callable[[Connection], T]) -> T:
        """`operation` on the connection. Outside a batch, a lost connection is opened again
        (before, if it is known to be lost; after a failure, once)."""
        with self._mutex:
            if self._closed:
                raise StateError(f"the state of {self.repo} is closed; cannot {what}")
            if self._conn is None or (not self._depth and self._lost()):
                self._reconnect()
            assert self._conn is not None  # _reconnect raises or connects
            try:
                return operation(self._conn)
            except psycopg.Error as exc:
                if self._depth or not self._lost(exc):
                    raise self._error(what, exc) from None
                log.warning("state database %s: connection lost (%s); connecting again",
                            self.where, self._reason(exc))  # fmt: skip
            self._reconnect()
            assert self._conn is not None
            try:
                return operation(self._conn)
            except psycopg.Error as exc:
                raise self._error(what, exc) from None

    def _lost(self, exc: psycopg.Error | None = None) -> bool:
        if self._conn is None or self._conn.closed or self._conn.broken:
            return True
        # The server's "terminating connection" may be read before libpq sees the socket close.
        state = exc.sqlstate if exc is not None else None
        return state is not None and (state.startswith("08") or state in SESSION_ENDED)

    def _reconnect(self) -> None:
        """A new connection, and the repository's lock again: another orchestrator may have
        taken it while this one was away (`StateLockedError`)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._conn = self._connect(stale=self._backend)

    def _connect(self, stale: int | None = None) -> Connection:
        """A connection, migrated, holding the repository's lock; `stale` is the server
        process of this store's lost connection, which may still hold the lock."""
        try:
            conn = open_connection(self._url)
        except psycopg.Error as exc:
            raise StateError(
                f"cannot connect to the state database (STATE_URL {self.where}): "
                f"{self._reason(exc)}"
            ) from None
        except (ValueError, UnicodeError):  # a URL libpq could not read at all
            raise StateError(
                f"STATE_URL is not valid: it cannot be read as a PostgreSQL URL ({self.where})"
            ) from None
        try:
            if self._lock or self._lease is not None:  # a reader (status) writes nothing
                migrate(conn, self.where)
            if self._lock and self._lease is None:
                self._take_lock(conn, stale)
            if not self._lock and self._lease is None:
                self._tables = _version(conn, self.where) > 0
            self._backend = conn.info.backend_pid
        except psycopg.Error as exc:
            conn.close()
            raise self._error("prepare the database", exc) from None
        except BaseException:
            conn.close()
            raise
        return conn

    def _take_lock(self, conn: Connection, stale: int | None = None) -> None:
        key = advisory_key(f"orchestrator:{self.repo}")
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if row is not None and row[0]:
            return
        if stale is not None and self._holder(conn, key)[0] == stale:
            # This store's own lost session, which the server has not noticed is gone (a
            # half-open connection): ended, so its lock is ours again, not a lockout.
            log.warning("state database %s: ending this daemon's lost session %d, which "
                        "still held %s", self.where, stale, self.repo)  # fmt: skip
            conn.execute("SELECT pg_terminate_backend(%s, 10000)", (stale,))
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            if row is not None and row[0]:
                return
        name = self._holder(conn, key)[1]
        # Our application_name: "claude-orchestrator pid N on HOST"; another client's: unknown.
        prefix = "claude-orchestrator pid "
        who = name.removeprefix(prefix) if name.startswith(prefix) else "unknown"
        pid = who.split(" ", 1)[0]
        raise StateLockedError(
            f"repository {self.repo} in the state database (STATE_URL {self.where}) is in use by "
            f"another orchestrator (pid {who}); stop it first, or set STATE_URL to another "
            "database",
            pid,
        )

    def _holder(self, conn: Connection, key: int) -> tuple[int | None, str]:
        """The server process holding the advisory lock `key`, and its application name."""
        # A bigint key shows in pg_locks as its high and low halves, objsubid 1.
        holder = conn.execute(
            "SELECT a.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a "
            "USING (pid) WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid",
            (key >> 32, key & 0xFFFFFFFF),
        ).fetchone()
        if holder is None:
            return None, ""
        return int(holder[0]), str(holder[1] or "")

    def _error(self, what: str, exc: psycopg.Error) -> StateError:
        return StateError(
            f"the state database (STATE_URL {self.where}) failed to {what} for {self.repo}: "
            f"{self._reason(exc)}"
        )

    def _reason(self, exc: BaseException) -> str:
        return reason(exc, self._secrets)


def _storable(text: str) -> str:
    """JSON text as `jsonb` takes it: a NUL character (in a command's output, say) becomes
    U+FFFD, where the JSON file would have kept it."""
    return text.replace("\\u0000", "\\ufffd")


def _utc(moment: datetime | None) -> datetime | None:
    """A naive time is UTC, as `state.prunable` reads it (a hand-edited state)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=timezone.utc)
