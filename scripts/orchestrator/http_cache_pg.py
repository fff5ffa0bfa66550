"""GitHub's answers kept for hishel in the state's PostgreSQL, shared by every daemon of it."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import replace
from datetime import timedelta
from typing import Any, TypeVar

from hishel import AsyncBaseStorage, Entry, EntryMeta, Request, Response
from hishel._core._storages._packing import pack, unpack
from psycopg.rows import TupleRow

from .github_cache import CACHE_TTL, AsyncCacheStrategy
from .http_cache_pg_conn import TIMEOUT, Conn, SharedConnection, shared_connection

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_BODY = 10 * 1024 * 1024  # bytes: a larger answer is passed on whole, but not kept
RETRY_AFTER = 30.0  # seconds: a database that is down is not tried again on every read
CLEANUP_INTERVAL = 3600.0  # as hishel's SQLite storage: expired rows go once an hour
CLEANUP_AGAIN = 60.0  # sooner while a batch comes back full, or did not run
CLEANUP_BATCH = 500  # rows per cleanup statement, so none of them holds the table long
REMOVED_KEPT = timedelta(hours=1)  # a removed answer's row outlives it, as in hishel's storages
LONGEST_TTL = timedelta(days=36500)  # a TTL past any date: now() + it must still be a date
# A head that no longer unpacks (another hishel's format): the row is skipped, not served.
_UNREADABLE = (ValueError, KeyError, TypeError, AttributeError)  # msgpack's are ValueErrors

# fmt: off
# The table's name (http_cache_pg_conn's TABLE) is written out: statements built from strings
# are what linters flag.
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


class PgCacheStorage(AsyncBaseStorage):
    """hishel's storage over one PostgreSQL connection, opened at the first use, which every
    storage of the process on `url` (and event loop) shares, and the last closed closes
    (`http_cache_pg_conn`): a daemon's clients, one per repository, hold one connection for
    their cache, not one each. A daemon that takes a repository over finds the other's
    validators and bodies: its first reads are answered 304. Rows are scoped (a fingerprint of
    the token): one token's answers are never served for another, whatever connection they
    share; the token itself is added below hishel, so no row holds it.

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
        self._url, self._scope = url, scope  # the URL holds the password: kept out of any repr
        self._default_ttl, self._max_body = default_ttl, max_body
        self._timeout, self._retry_after = timeout, retry_after
        self._cleanup_interval = cleanup_interval
        self._shared: SharedConnection | None = None  # taken at the first use, given back at close
        self._closed = False
        self._pending: set[asyncio.Future[Any]] = set()  # its work, close() waits for it

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
        # The schedule is the connection's: many storages of one URL clean up as one would.
        shared = self._shared
        if shared is not None and shared.created and time.monotonic() >= shared.next_cleanup:
            shared.next_cleanup = time.monotonic() + self._cleanup_interval
            self._spawn(self._cleanup(shared))  # after the read's own statement, not waited for
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
        # Once: the connection is closed with the last storage using it, not before.
        shared, self._shared = self._shared, None
        if shared is not None:
            await shared.release(self._timeout)

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

    async def _cleanup(self, shared: SharedConnection) -> None:
        """Delete one batch of expired (and long removed) rows, of every scope: an index
        finds them, so the table is never scanned."""

        async def delete(conn: Conn) -> int | None:
            return (await conn.execute(DELETE, (CLEANUP_BATCH,))).rowcount

        # Not through _db: begun before close(), it is not given up when close() begins.
        deleted = await self._run(shared, delete, None, time.monotonic() + self._timeout)
        if deleted is None or deleted >= CLEANUP_BATCH:  # more to delete, or none deleted
            shared.next_cleanup = time.monotonic() + min(CLEANUP_AGAIN, self._cleanup_interval)

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
        if self._closed:
            return fallback
        if self._shared is None:
            self._shared = shared_connection(self._url)
        if time.monotonic() < self._shared.down_until:  # an outage any storage of it met
            return fallback
        deadline = time.monotonic() + self._timeout
        work = self._spawn(self._run(self._shared, op, fallback, deadline))
        done, _ = await asyncio.wait({work}, timeout=deadline - time.monotonic())
        if not done:
            log.debug("the cache is skipped for one call: no answer within %g s", self._timeout)
            return fallback
        return work.result()

    async def _run(
        self,
        shared: SharedConnection,
        op: Callable[[Conn], Awaitable[T]],
        fallback: T,
        deadline: float,
    ) -> T:
        return await shared.run(op, fallback, deadline, timeout=self._timeout,
                                retry_after=self._retry_after)  # fmt: skip

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


class PgCacheStrategy(AsyncCacheStrategy):
    """githubkit's cache, with hishel's answers in the state's PostgreSQL database."""

    def __init__(self, url: str, scope: str) -> None:
        super().__init__()
        self._url = url  # holds the password: kept out of any repr
        self.scope = scope

    async def get_async_hishel_storage(self) -> AsyncBaseStorage:
        # A new storage per client: hishel closes it with the client. Their connection is one.
        return PgCacheStorage(self._url, self.scope)


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
