"""GitHub's answers kept for hishel in the state's PostgreSQL, shared by every daemon of it."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import replace
from datetime import timedelta
from typing import Any, TypeVar

import psycopg
from githubkit.cache import BaseCacheStrategy
from githubkit.cache.mem_cache import MemCache
from githubkit.exception import CacheUnsupportedError
from hishel import AsyncBaseStorage, Entry, EntryMeta, Request, Response, SyncBaseStorage
from hishel._core._storages._packing import pack, unpack
from psycopg.conninfo import conninfo_to_dict
from psycopg.errors import LockNotAvailable, QueryCanceled
from psycopg.rows import TupleRow

from .github_cache import CACHE_TTL
from .state_pg_conn import merged_options, reason, secrets_of
from .state_pg_schema import advisory_key

log = logging.getLogger(__name__)

Conn = psycopg.AsyncConnection[TupleRow]
T = TypeVar("T")

TABLE = "orchestrator_http_cache"  # made by this module at its first use (CREATE below)
MAX_BODY = 10 * 1024 * 1024  # bytes: a larger answer is passed on whole, but not kept
TIMEOUT = 5.0  # seconds a call of hishel's waits (for the connection too), or a statement
RETRY_AFTER = 30.0  # seconds: a database that is down is not tried again on every read
CLEANUP_INTERVAL = 3600.0  # as hishel's SQLite storage: expired rows go once an hour
CLEANUP_AGAIN = 60.0  # sooner while a batch comes back full, or did not run
CLEANUP_BATCH = 500  # rows per cleanup statement, so none of them holds the table long
REMOVED_KEPT = timedelta(hours=1)  # a removed answer's row outlives it, as in hishel's storages
LONGEST_TTL = timedelta(days=36500)  # a TTL past any date: now() + it must still be a date
CREATE_LOCK = advisory_key(TABLE)
# The session's settings: a cache that is slow to answer is worth less than the read it delays.
SESSION = {"statement_timeout": "5s", "lock_timeout": "2s",
           "idle_in_transaction_session_timeout": "60s", "idle_session_timeout": "0"}  # fmt: skip
# A head that no longer unpacks (another hishel's format): the row is skipped, not served.
_UNREADABLE = (ValueError, KeyError, TypeError, AttributeError)  # msgpack's are ValueErrors

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
# The table's name is written out: statements built from strings are what linters flag.
# One row per key: with two, a 304 that hishel matches by Last-Modified (a weak ETag) matches
# both, and the older body could be served.
SELECT = ("SELECT head, body FROM orchestrator_http_cache WHERE scope = %s AND cache_key = %s "
          "AND deleted_at IS NULL AND expires_at > now() ORDER BY created_at DESC, id DESC "
          "LIMIT 1")
LOCK = ("SELECT head FROM orchestrator_http_cache WHERE id = %s AND scope = %s "
        "AND deleted_at IS NULL FOR UPDATE")
# The TTL counts from the row's creation, or from now when hishel renews it (`created_at`).
UPDATE = ("UPDATE orchestrator_http_cache SET head = %(head)s, cache_key = %(key)s, "
          "created_at = CASE WHEN %(renew)s THEN now() ELSE created_at END, "
          "expires_at = CASE WHEN %(renew)s THEN now() ELSE created_at END + %(ttl)s "
          "WHERE id = %(id)s")
REMOVE = ("UPDATE orchestrator_http_cache SET deleted_at = now(), expires_at = least(expires_at, "
          "now() + %s) WHERE id = %s AND scope = %s AND deleted_at IS NULL")
# The new row, and the key's others removed, in one statement.
INSERT = ("WITH kept AS (INSERT INTO orchestrator_http_cache (id, scope, cache_key, head, body, "
          "created_at, expires_at) VALUES (%(id)s, %(scope)s, %(key)s, %(head)s, %(body)s, "
          "now(), now() + %(ttl)s) ON CONFLICT (id) DO NOTHING) "
          "UPDATE orchestrator_http_cache SET deleted_at = now(), expires_at = least(expires_at, "
          "now() + %(kept)s) WHERE scope = %(scope)s AND cache_key = %(key)s "
          "AND deleted_at IS NULL AND id <> %(id)s")
# One bounded batch, found by the expires index; rows another daemon deletes are skipped.
DELETE = ("DELETE FROM orchestrator_http_cache WHERE id IN (SELECT id FROM "
          "orchestrator_http_cache WHERE expires_at <= now() ORDER BY expires_at LIMIT %s "
          "FOR UPDATE SKIP LOCKED)")
# fmt: on


def token_scope(token: str) -> str:
    """The scope of `token`'s answers: a fingerprint that cannot be turned back into it."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


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


class PgCacheStorage(AsyncBaseStorage):
    """hishel's storage over one PostgreSQL connection, opened at the first use. A daemon that
    takes a repository over finds the other's validators and bodies: its first reads are
    answered 304. Rows are scoped (a fingerprint of the token): one token's answers are never
    served for another; the token itself is added below hishel, so no row holds it.

    A row is written once its body was read whole, head and body in one statement, so no
    half-kept answer is ever seen; bodies are read with their rows, so serving one never waits
    on the database. Its faults cost the cache, never the read: each call of hishel's waits at
    most `timeout`, then goes on as if nothing were kept; a database that fails is logged once
    and tried again `retry_after` later."""

    def __init__(
        self,
        url: str,
        scope: str,
        *,
        default_ttl: float = CACHE_TTL,
        max_body: int = MAX_BODY,
        timeout: float = TIMEOUT,
        retry_after: float = RETRY_AFTER,
        cleanup_interval: float = CLEANUP_INTERVAL,
    ) -> None:
        self._url, self._scope = url, scope
        self._secrets = secrets_of(url)
        self._default_ttl, self._max_body = default_ttl, max_body
        self._timeout, self._retry_after = timeout, retry_after
        self._cleanup_interval = cleanup_interval
        # At the first use too: a daemon run --once would never clean up otherwise.
        self._next_cleanup = 0.0
        self._conn: Conn | None = None
        self._created = False  # the table seen or made: once per storage
        self._lock = asyncio.Lock()  # one statement (or transaction) at a time on the connection
        self._down_until = 0.0
        self._faulted = False
        self._closed = False
        self._pending: set[asyncio.Future[Any]] = set()  # its work, close() waits for it
        self._abandoned: set[asyncio.Future[Any]] = set()

    # -- hishel's storage API -----------------------------------------------------------------

    async def create_entry(
        self, request: Request, response: Response, key: str, id_: uuid.UUID | None = None
    ) -> Entry:
        meta = EntryMeta(created_at=time.time())
        entry = Entry(id_ or uuid.uuid4(), request, meta, response, key.encode())
        stream = response.stream
        assert isinstance(stream, AsyncIterable), "hishel's async clients stream asynchronously"
        saving = self._save(stream, entry, pack(entry, kind="pair"))
        return replace(entry, response=replace(response, stream=saving))

    async def get_entries(self, key: str) -> list[Entry]:
        async def fetch(conn: Conn) -> list[TupleRow]:
            return await (await conn.execute(SELECT, (self._scope, key))).fetchall()

        found = await self._db(fetch, list[TupleRow]())
        if self._created and time.monotonic() >= self._next_cleanup:
            self._next_cleanup = time.monotonic() + self._cleanup_interval
            self._spawn(self._cleanup())  # after the read's own statement, not waited for
        entries = []
        for head, body in found:
            if (entry := _unpacked(bytes(head))) is not None:
                stream = _chunks(bytes(body))
                entries.append(replace(entry, response=replace(entry.response, stream=stream)))
        return entries

    async def update_entry(
        self, id: uuid.UUID, new_entry: Entry | Callable[[Entry], Entry]
    ) -> Entry | None:
        async def update(conn: Conn) -> Entry | None:
            async with conn.transaction():
                row = await (await conn.execute(LOCK, (id, self._scope))).fetchone()
                current = _unpacked(bytes(row[0])) if row is not None else None
                if current is None:
                    return None
                updated = new_entry if isinstance(new_entry, Entry) else new_entry(current)
                if updated.id != current.id:
                    raise ValueError("Pair ID mismatch")  # as hishel's storages: a caller's bug
                await conn.execute(UPDATE, {
                    "head": pack(updated, kind="pair"), "key": updated.cache_key.decode(),
                    "renew": updated.meta.created_at != current.meta.created_at,
                    "ttl": _interval(self._ttl(updated.request)), "id": id,
                })  # fmt: skip
                return updated

        return await self._db(update, None)

    async def remove_entry(self, id: uuid.UUID) -> None:
        async def remove(conn: Conn) -> None:
            await conn.execute(REMOVE, (REMOVED_KEPT, id, self._scope))

        await self._db(remove, None)

    async def refresh_entry_ttl(self, id: uuid.UUID) -> None:
        # As hishel's SQLite storage: the TTL counts from the entry's creation time.
        await self.update_entry(
            id, lambda entry: replace(entry, meta=replace(entry.meta, created_at=time.time()))
        )

    async def close(self) -> None:
        self._closed = True
        if self._pending:  # each ends by its deadline, or its statements' timeouts
            await asyncio.wait(set(self._pending))
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await conn.close()
        if self._abandoned:  # their connections close as they end: bounded by the timeouts
            await asyncio.wait(set(self._abandoned), timeout=self._timeout)

    # -- the rows -----------------------------------------------------------------------------

    async def _save(
        self, stream: AsyncIterable[bytes], entry: Entry, head: bytes
    ) -> AsyncIterator[bytes]:
        """`stream` passed on unchanged, and kept once the caller has read it whole."""
        body: bytearray | None = bytearray()
        async for chunk in stream:
            if body is not None:
                body += chunk
                if len(body) > self._max_body:
                    body = None  # not kept: let the memory go now
            yield chunk
        # Reached only when the caller read to the end: a body read in part is never kept.
        if body is None:
            return
        row = {"id": entry.id, "scope": self._scope, "key": entry.cache_key.decode(),
               "head": head, "body": bytes(body), "ttl": _interval(self._ttl(entry.request)),
               "kept": REMOVED_KEPT}  # fmt: skip

        async def insert(conn: Conn) -> None:
            await conn.execute(INSERT, row)

        await self._db(insert, None)

    async def _cleanup(self) -> None:
        """Delete one batch of expired (and long removed) rows, of every scope: an index
        finds them, so the table is never scanned."""

        async def delete(conn: Conn) -> int | None:
            return (await conn.execute(DELETE, (CLEANUP_BATCH,))).rowcount

        # Not through _db: begun before close(), it is not given up when close() begins.
        deleted = await self._run(delete, None, time.monotonic() + self._timeout)
        if deleted is None or deleted >= CLEANUP_BATCH:  # more to delete, or none deleted
            self._next_cleanup = time.monotonic() + min(CLEANUP_AGAIN, self._cleanup_interval)

    def _ttl(self, request: Request) -> float:
        ttl = request.metadata.get("hishel_ttl")
        return self._default_ttl if ttl is None else float(ttl)

    # -- the connection -----------------------------------------------------------------------

    async def _db(self, op: Callable[[Conn], Awaitable[T]], fallback: T) -> T:
        """`op` on the connection, or `fallback` when the database cannot do it within the
        timeout, the wait for the connection included. Work under way at the deadline ends on
        its own, each statement bounded: a busy connection costs this call the cache, and the
        cache is off for a while only when the database fails (a statement that overruns the
        timeout on its own included)."""
        if self._closed or time.monotonic() < self._down_until:
            return fallback
        deadline = time.monotonic() + self._timeout
        work = self._spawn(self._run(op, fallback, deadline))
        done, _ = await asyncio.wait({work}, timeout=deadline - time.monotonic())
        if not done:
            log.debug("the cache is skipped for one call: no answer within %g s", self._timeout)
            return fallback
        return work.result()

    async def _run(self, op: Callable[[Conn], Awaitable[T]], fallback: T, deadline: float) -> T:
        acquiring = asyncio.ensure_future(self._lock.acquire())
        if not (await asyncio.wait({acquiring}, timeout=deadline - time.monotonic()))[0]:
            acquiring.cancel()  # a waiter cancelled never takes the lock
            return fallback  # the connection busy the whole time: a miss, the database is fine
        try:
            if time.monotonic() < self._down_until:
                return fallback
            for attempt in (1, 2):
                old = self._conn if self._conn is not None and not self._conn.closed else None
                try:
                    conn = old if old is not None else await self._bounded(self._connect(), None)
                    self._conn = conn
                    if not self._created:
                        await self._bounded(_create(conn), conn)
                        self._created = True
                    result = await self._bounded(op(conn), conn)
                except (LockNotAvailable, QueryCanceled) as exc:
                    # A row another daemon holds, or one statement the server found too slow:
                    # the database answers, so only this call goes without the cache.
                    log.debug("the cache is skipped for one call: %s", reason(exc, self._secrets))
                    return fallback
                except (psycopg.Error, OSError, TimeoutError) as exc:
                    if attempt == 1 and old is not None and old.broken:
                        # An idle connection the server ended (a restart, a failover, an idle
                        # timeout): the database may well be up, so once more on a new one.
                        await old.close()
                        continue
                    await self._fault(exc)
                    return fallback
                break
        finally:
            self._lock.release()
        if self._faulted:
            self._faulted = False
            log.info("GitHub's answers are kept in PostgreSQL again")
        return result

    def _spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        # Kept until it ends, so that close() waits for it and its failure is retrieved.
        task = asyncio.ensure_future(work)
        self._pending.add(task)
        task.add_done_callback(self._settled)
        return task

    def _settled(self, task: asyncio.Future[Any]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and (failure := task.exception()) is not None:
            log.debug("cache work ended with %r", failure)  # raised to its caller, if waiting

    async def _connect(self) -> Conn:
        options = connect_options(self._url)
        return await psycopg.AsyncConnection.connect(self._url, autocommit=True, **options)

    async def _bounded(self, work: Awaitable[T], conn: Conn | None) -> T:
        """`work` within the timeout. Work that overruns it is left to end on its own rather
        than cancelled: psycopg answers a cancellation by asking the server to cancel, which
        a database that does not answer makes the read wait for as well."""
        task = asyncio.ensure_future(work)
        try:
            done, _ = await asyncio.wait({task}, timeout=self._timeout)
        except BaseException:
            self._abandon(task, conn)
            raise
        if not done:
            self._abandon(task, conn)
            raise TimeoutError(f"no answer within {self._timeout:g} s")
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
            log.debug("late database work ended: %s", reason(failure, self._secrets))
        elif not task.cancelled() and isinstance(task.result(), psycopg.AsyncConnection):
            conn = task.result()  # a connection that came too late
        if conn is not None:
            conn.pgconn.finish()  # its async close() would do only this, from a task

    async def _fault(self, exc: BaseException) -> None:
        self._down_until = time.monotonic() + self._retry_after
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
        if not self._faulted:  # once per outage, however many reads go on without
            self._faulted = True
            log.warning("GitHub's answers cannot be kept in PostgreSQL (%s); reads go on "
                        "without them, tried again in %g s", reason(exc, self._secrets),
                        self._retry_after)  # fmt: skip


class PgCacheStrategy(BaseCacheStrategy):
    """githubkit's cache, with hishel's answers in the state's PostgreSQL database."""

    def __init__(self, url: str, scope: str) -> None:
        self._url = url  # holds the password: kept out of any repr
        self.scope = scope
        self._cache = MemCache()  # type: ignore[no-untyped-call]  # githubkit's own small values (App tokens): never used here

    def get_cache_storage(self) -> MemCache:
        return self._cache

    async def get_async_cache_storage(self) -> MemCache:
        return self._cache

    def get_hishel_storage(self) -> SyncBaseStorage:
        raise CacheUnsupportedError("the daemon's GitHub client is asynchronous")

    async def get_async_hishel_storage(self) -> AsyncBaseStorage:
        # A new storage per client: hishel closes it with the client.
        return PgCacheStorage(self._url, self.scope)


async def _create(conn: Conn) -> None:
    """The table, unless it is there. Daemons starting at once take turns under the lock:
    CREATE ... IF NOT EXISTS at the same time can still collide in the catalog."""
    if (await (await conn.execute(CREATED)).fetchone()) == (True,):
        return  # the usual case: no lock taken (CREATE INDEX would lock the table)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (CREATE_LOCK,))
        for statement in CREATE:
            await conn.execute(statement)


def _interval(seconds: float) -> timedelta:
    if not seconds < LONGEST_TTL.total_seconds():  # NaN too
        return LONGEST_TTL
    return timedelta(seconds=max(seconds, 0.0))


def _unpacked(head: bytes) -> Entry | None:
    try:
        return unpack(head, kind="pair")
    except _UNREADABLE as exc:
        log.debug("a cached answer that cannot be read is skipped: %s", exc)
        return None


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    if body:
        yield body
