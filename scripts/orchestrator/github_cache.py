"""GitHub's answers kept on disk (hishel's SQLite storage), and the token added after the cache.

An idle poll costs nothing only if its reads are answered 304, and after a restart only if the
validators survived it: the answers are stored beside the state file. The token is added by
the innermost transport, below hishel, so the cache (which stores each request's headers)
never sees it: the file holds GitHub's answers, never the credential.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path

import anysqlite
import httpx
from githubkit.cache import BaseCacheStrategy
from githubkit.cache.mem_cache import MemCache
from githubkit.exception import CacheUnsupportedError
from hishel import (
    AsyncBaseStorage,
    AsyncSqliteStorage,
    Entry,
    EntryMeta,
    Request,
    Response,
    SyncBaseStorage,
)

log = logging.getLogger(__name__)

# An answer is kept this long from when it was stored: hishel counts an entry's time to live
# from its creation, and a 304 refreshes its headers, not its age. So each URL an idle cycle
# asks is read whole once in this long, and URLs of the past (an old `since` cursor) go.
CACHE_TTL = 2 * 24 * 3600.0


def cache_file(state_file: Path, token: str) -> Path:
    """Where the answers for `token` are kept: beside the state, one file per token (a
    fingerprint, not the token), so a new token never reuses another's answers."""
    fingerprint = hashlib.sha256(token.encode()).hexdigest()[:12]
    return state_file.with_name(f"{state_file.name}.http-cache-{fingerprint}.sqlite")


def drop_other_caches(keep: Path) -> None:
    """Delete the answers kept for earlier tokens beside `keep`."""
    prefix = keep.name.split(".http-cache-")[0] + ".http-cache-"
    for path in keep.parent.glob(f"{prefix}*"):
        if not path.name.startswith(keep.name):  # the database and its journal files
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


class AsyncCacheStrategy(BaseCacheStrategy):
    """githubkit's cache for the daemon's asynchronous client: hishel's answers are kept by
    `get_async_hishel_storage` (a subclass's); githubkit's own small values in memory."""

    def __init__(self) -> None:
        self._cache = MemCache()  # type: ignore[no-untyped-call]  # githubkit's own small values (App tokens): never used here

    def get_cache_storage(self) -> MemCache:
        return self._cache

    async def get_async_cache_storage(self) -> MemCache:
        return self._cache

    def get_hishel_storage(self) -> SyncBaseStorage:
        raise CacheUnsupportedError("the daemon's GitHub client is asynchronous")


class SqliteCacheStrategy(AsyncCacheStrategy):
    """githubkit's cache, with hishel's answers in a private SQLite file."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    async def get_async_hishel_storage(self) -> AsyncBaseStorage:
        # A new storage per client: hishel closes it with the client.
        try:
            connection = await self._open()
        except (OSError, sqlite3.Error) as exc:
            log.warning("GitHub's answers are not kept (%s: %s); every read is a full one",
                        self.path, exc)  # fmt: skip
            connection = await anysqlite.connect(":memory:")
        return SafeStorage(connection=connection, default_ttl=CACHE_TTL)

    async def _open(self) -> anysqlite.Connection:
        """The cache's database; an unreadable one is moved aside and made again."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in (1, 2):
            # Created private before SQLite opens it; its journals take the same mode.
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
            # Our own connection: given a path, hishel also writes a `.gitignore` of `*` into
            # its folder, which may be the user's project.
            connection = await anysqlite.connect(str(self.path))
            try:
                cursor = await connection.execute("PRAGMA quick_check")
                verdict = await cursor.fetchone()
                if verdict is not None and verdict[0] == "ok":
                    return connection
                problem = str(verdict[0] if verdict else "no answer")
            except sqlite3.DatabaseError as exc:
                problem = str(exc)
            await connection.close()
            if attempt == 2:
                raise sqlite3.DatabaseError(problem)
            aside = self.path.with_name(self.path.name + ".broken")
            log.warning("%s is unreadable (%s): moved to %s, GitHub's answers are kept anew",
                        self.path, problem, aside.name)  # fmt: skip
            for path in self.path.parent.glob(self.path.name + "*"):
                if path.name.endswith(".broken"):
                    continue
                target = aside if path == self.path else path.with_name(path.name + ".broken")
                os.replace(path, target)
        raise AssertionError("unreachable")


class SafeStorage(AsyncSqliteStorage):
    """hishel's SQLite storage, whose faults (a full disk, a file broken while in use) cost
    the cache, never the read: the answer goes through as if nothing were kept."""

    _warned = False

    def _fault(self, exc: Exception) -> None:
        if not self._warned:
            self._warned = True
            log.warning("GitHub's answers cannot be kept (%s); reads go on without", exc)

    async def create_entry(
        self, request: Request, response: Response, key: str, id_: uuid.UUID | None = None
    ) -> Entry:
        try:
            return await super().create_entry(request, response, key, id_)
        except sqlite3.Error as exc:
            self._fault(exc)
            entry_id = id_ or uuid.uuid4()
            return Entry(entry_id, request, EntryMeta(), response, key.encode())

    async def get_entries(self, key: str) -> list[Entry]:
        """The newest answer kept for `key` only: hishel keeps the one before a 200 for a
        while, and a 304 matched by Last-Modified (a weak ETag; GitHub's `updated_at` does not
        move when a computed field does) would match both and serve the older body."""
        try:
            entries = await super().get_entries(key)
        except sqlite3.Error as exc:
            self._fault(exc)
            return []
        return sorted(entries, key=lambda e: e.meta.created_at)[-1:]

    async def update_entry(
        self, id: uuid.UUID, new_pair: Entry | Callable[[Entry], Entry]
    ) -> Entry | None:
        try:
            return await super().update_entry(id, new_pair)
        except sqlite3.Error as exc:
            self._fault(exc)
            return None

    async def remove_entry(self, id: uuid.UUID) -> None:
        try:
            await super().remove_entry(id)
        except sqlite3.Error as exc:
            self._fault(exc)


@dataclass
class RateBudget:
    """The core rate limit as GitHub's last answer stated it; the reset counted on GitHub's
    clock (the answer's `Date`), so a skewed local clock does not move it."""

    limit: int | None = None
    remaining: int | None = None
    reset_at: datetime | None = None
    reset_in: float | None = None  # seconds from the answer to the reset
    noted_at: float = 0.0  # time.monotonic() at that answer

    def note(self, headers: httpx.Headers) -> None:
        if headers.get("x-ratelimit-resource", "core") != "core":
            return  # e.g. GraphQL's or search's own budget
        try:
            limit = int(headers["x-ratelimit-limit"])
            remaining = int(headers["x-ratelimit-remaining"])
            reset = float(headers["x-ratelimit-reset"])
            reset_at = datetime.fromtimestamp(reset, timezone.utc)
        except (KeyError, ValueError, OverflowError, OSError):  # absent, or not a time
            return
        try:
            answered = parsedate_to_datetime(headers.get("date", "")).timestamp()
        except (TypeError, ValueError):
            answered = time.time()
        self.limit, self.remaining, self.reset_at = limit, remaining, reset_at
        self.reset_in, self.noted_at = reset - answered, time.monotonic()

    def until_reset(self) -> float | None:
        if self.reset_in is None:
            return None
        return self.reset_in - (time.monotonic() - self.noted_at)


class AuthTransport(httpx.AsyncBaseTransport):
    """The innermost layer: adds the token to requests for the API's own origin (never to a
    redirect elsewhere), notes the rate limit GitHub states, and counts what reaches GitHub."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        token: str,
        api_url: str,
        budget: RateBudget,
    ) -> None:
        self._inner = inner
        self._authorization = f"token {token}"
        api = httpx.URL(api_url)
        self._origin = (api.scheme, api.host, api.port)
        self._budget = budget
        self.sent = 0  # requests that reached GitHub (cached answers never do)
        self.not_modified = 0
        self.last_answer_at = 0.0
        # Told each answer's status, or None for no answer (serve mode's metrics).
        self.observers: list[Callable[[int | None], None]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if (request.url.scheme, request.url.host, request.url.port) == self._origin:
            request.headers["Authorization"] = self._authorization
        else:
            request.headers.pop("Authorization", None)
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.TransportError:
            for observe in self.observers:
                observe(None)
            raise
        for observe in self.observers:
            observe(response.status_code)
        self.sent += 1
        self.not_modified += response.status_code == 304
        self.last_answer_at = time.time()
        if (request.url.scheme, request.url.host, request.url.port) == self._origin:
            self._budget.note(response.headers)  # another host's headers are not GitHub's
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
