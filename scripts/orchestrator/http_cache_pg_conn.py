"""The HTTP cache's one PostgreSQL connection per URL and event loop, shared by its storages."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.errors import LockNotAvailable, QueryCanceled
from psycopg.rows import TupleRow

from .state_pg_conn import merged_options, reason, secrets_of
from .state_pg_schema import advisory_key

# The cache's messages under the cache's name, whichever of its modules says them.
log = logging.getLogger(__name__.removesuffix("_conn"))

Conn = psycopg.AsyncConnection[TupleRow]
T = TypeVar("T")

TABLE = "orchestrator_http_cache"  # made at the connection's first use (CREATE below)
TIMEOUT = 5.0  # seconds a call of hishel's waits (for the connection too), or a statement
CREATE_LOCK = advisory_key(TABLE)
# The session's settings: a cache that is slow to answer is worth less than the read it delays.
SESSION = {"statement_timeout": "5s", "lock_timeout": "2s",
           "idle_in_transaction_session_timeout": "60s", "idle_session_timeout": "0"}  # fmt: skip

# fmt: off
# Not one of the state's migrations: a new schema version would lock out the daemons not yet
# upgraded, which never use this table. `scope` is a fingerprint of the token; `head` is
# hishel's packed request and response head, `body` the whole body. Times are the database's
# (now()): the hosts' clocks may differ. Expired rows are found by the expires index.
CREATE = (
    "CREATE TABLE IF NOT EXISTS orchestrator_http_cache (id uuid PRIMARY KEY, scope text NOT "
    "NULL, cache_key text NOT NULL, head bytea NOT NULL, body bytea NOT NULL, created_at "
    "timestamptz NOT NULL, expires_at timestamptz NOT NULL, deleted_at timestamptz)",
    "CREATE INDEX IF NOT EXISTS orchestrator_http_cache_key ON orchestrator_http_cache "
    "(scope, cache_key, created_at) WHERE deleted_at IS NULL",
    "CREATE INDEX IF NOT EXISTS orchestrator_http_cache_expires ON orchestrator_http_cache "
    "(expires_at)",
)
CREATED = "SELECT to_regclass('orchestrator_http_cache_expires') IS NOT NULL"  # CREATE's last
# fmt: on

# The connections in use: one per URL and event loop (a connection serves only the loop that
# opened it), each dropped from here when its last storage lets it go.
_SHARED: dict[tuple[str, asyncio.AbstractEventLoop], SharedConnection] = {}


def connect_options(url: str) -> dict[str, Any]:
    """As `state_pg_conn.open_connection`'s, tighter. What `url` sets itself is left as it says
    (its `options` merged with SESSION, its own settings first)."""
    given = conninfo_to_dict(url)
    defaults: dict[str, Any] = {
        "connect_timeout": max(2, round(TIMEOUT)),  # libpq's smallest
        "application_name": f"claude-orchestrator pid {os.getpid()} on {socket.gethostname()}"[:63],
        "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
        "tcp_user_timeout": 15_000,
    }  # fmt: skip
    options = {k: v for k, v in defaults.items() if k not in given}
    return options | {"options": merged_options(str(given.get("options") or ""), SESSION)}


def shared_connection(url: str) -> SharedConnection:
    """The connection to `url` of the running event loop, with one more storage using it:
    each storage that takes it gives it back once with `release()`."""
    loop = asyncio.get_running_loop()
    for (_, of), stale in list(_SHARED.items()):
        if of.is_closed():  # a loop ended with storages never closed: nothing can use it now
            stale._forget()
    key = (url, loop)
    shared = _SHARED.get(key)
    if shared is None:
        shared = _SHARED[key] = SharedConnection(url, key)
    shared._users += 1
    return shared


class SharedConnection:
    """One PostgreSQL connection, opened at its first use and closed when the last storage
    using it lets it go, and what goes with it: one statement (or transaction) at a time under
    its lock, each within a deadline; the table made once; an outage seen by one storage
    spares the others the tries; the cleanup's schedule (`next_cleanup`)."""

    def __init__(self, url: str, key: tuple[str, asyncio.AbstractEventLoop]) -> None:
        self._url, self._key = url, key  # the URL holds the password: kept out of any repr
        self.secrets = secrets_of(url)
        self._users = 0
        self._conn: Conn | None = None
        self.created = False  # the table seen or made: once per connection
        self._lock = asyncio.Lock()
        self.down_until = 0.0
        self._faulted = False
        # At the first use too: a daemon run --once would never clean up otherwise.
        self.next_cleanup = 0.0
        self._abandoned: set[asyncio.Future[Any]] = set()

    async def release(self, timeout: float) -> None:
        """One storage less; the last closes the connection, and waits for the work left on
        the ones given up (each bounded by its statements' timeouts) at most `timeout`."""
        self._users -= 1
        if self._users > 0:
            return
        if _SHARED.get(self._key) is self:  # at once: a storage opened from now on opens anew
            del _SHARED[self._key]
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await conn.close()
        if self._abandoned:  # their connections close as they end: bounded by the timeouts
            await asyncio.wait(set(self._abandoned), timeout=timeout)

    async def run(
        self,
        op: Callable[[Conn], Awaitable[T]],
        fallback: T,
        deadline: float,
        *,
        timeout: float,
        retry_after: float,
    ) -> T:
        """`op` on the connection, or `fallback` when it cannot be done by `deadline` (the
        wait for the lock) or each step within `timeout`; a database that fails is not tried
        again for `retry_after`."""
        acquiring = asyncio.ensure_future(self._lock.acquire())
        if not (await asyncio.wait({acquiring}, timeout=deadline - time.monotonic()))[0]:
            acquiring.cancel()  # a waiter cancelled never takes the lock
            return fallback  # the connection busy the whole time: a miss, the database is fine
        try:
            if time.monotonic() < self.down_until:
                return fallback
            for attempt in (1, 2):
                old = self._conn if self._conn is not None and not self._conn.closed else None
                try:
                    conn = old
                    if conn is None:
                        conn = await self._bounded(self._connect(), None, timeout)
                    self._conn = conn
                    if not self.created:
                        await self._bounded(_create(conn), conn, timeout)
                        self.created = True
                    result = await self._bounded(op(conn), conn, timeout)
                except (LockNotAvailable, QueryCanceled) as exc:
                    # A row another daemon holds, or one statement the server found too slow:
                    # the database answers, so only this call goes without the cache.
                    log.debug("the cache is skipped for one call: %s", reason(exc, self.secrets))
                    return fallback
                except (psycopg.Error, OSError, TimeoutError) as exc:
                    if attempt == 1 and old is not None and old.broken:
                        # An idle connection the server ended (a restart, a failover, an idle
                        # timeout): the database may well be up, so once more on a new one.
                        await old.close()
                        continue
                    await self._fault(exc, retry_after)
                    return fallback
                break
        finally:
            self._lock.release()
        if self._faulted:
            self._faulted = False
            log.info("GitHub's answers are kept in PostgreSQL again")
        return result

    async def _connect(self) -> Conn:
        options = connect_options(self._url)
        return await psycopg.AsyncConnection.connect(self._url, autocommit=True, **options)

    async def _bounded(self, work: Awaitable[T], conn: Conn | None, timeout: float) -> T:
        """`work` within `timeout`. Work that overruns it is left to end on its own rather
        than cancelled: psycopg answers a cancellation by asking the server to cancel, which
        a database that does not answer makes the read wait for as well."""
        task = asyncio.ensure_future(work)
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout)
        except BaseException:
            self._abandon(task, conn)
            raise
        if not done:
            self._abandon(task, conn)
            raise TimeoutError(f"no answer within {timeout:g} s")
        return task.result()

    def _abandon(self, task: asyncio.Future[Any], conn: Conn | None) -> None:
        # The connection is never used again; it is closed once the work on it ends, not
        # before: closing it under a waiting psycopg call would leave that call on a dead
        # socket, and its descriptor number free for the next connection.
        if conn is not None and conn is self._conn:
            self._conn = None
        self._abandoned.add(task)
        task.add_done_callback(functools.partial(self._ended, conn))

    def _ended(self, conn: Conn | None, task: asyncio.Future[Any]) -> None:
        self._abandoned.discard(task)
        failure = None if task.cancelled() else task.exception()
        if failure is not None:  # retrieved, or asyncio would log it as never retrieved
            log.debug("late database work ended: %s", reason(failure, self.secrets))
        elif not task.cancelled() and isinstance(task.result(), psycopg.AsyncConnection):
            conn = task.result()  # a connection that came too late
        if conn is not None:
            conn.pgconn.finish()  # its async close() would do only this, from a task

    async def _fault(self, exc: BaseException, retry_after: float) -> None:
        self.down_until = time.monotonic() + retry_after
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
        if not self._faulted:  # once per outage, however many reads go on without
            self._faulted = True
            log.warning("GitHub's answers cannot be kept in PostgreSQL (%s); reads go on "
                        "without them, tried again in %g s", reason(exc, self.secrets),
                        retry_after)  # fmt: skip

    def _forget(self) -> None:
        """Dropped with its event loop, which ended first: the socket closed without it."""
        if _SHARED.get(self._key) is self:
            del _SHARED[self._key]
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.pgconn.finish()


async def _create(conn: Conn) -> None:
    """The table, unless it is there. Daemons starting at once take turns under the lock:
    CREATE ... IF NOT EXISTS at the same time can still collide in the catalog."""
    if (await (await conn.execute(CREATED)).fetchone()) == (True,):
        return  # the usual case: no lock taken (CREATE INDEX would lock the table)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (CREATE_LOCK,))
        for statement in CREATE:
            await conn.execute(statement)
