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
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import anysqlite
import httpx
from githubkit.cache import BaseCacheStrategy
from githubkit.cache.mem_cache import MemCache
from githubkit.exception import CacheUnsupportedError
from hishel import AsyncBaseStorage, AsyncSqliteStorage, SyncBaseStorage

log = logging.getLogger(__name__)

# Answers not asked for again within this long are dropped: an idle cycle asks the same URLs
# every POLL_INTERVAL, so only URLs of the past (an old `since` cursor) expire.
CACHE_TTL = 2 * 24 * 3600.0


def cache_file(state_file: Path, token: str) -> Path:
    """Where the answers for `token` are kept: beside the state, one file per token (a
    fingerprint, not the token), so a new token never reuses another's answers."""
    fingerprint = hashlib.sha256(token.encode()).hexdigest()[:12]
    return state_file.with_name(f"{state_file.stem}.http-cache-{fingerprint}.sqlite")


def drop_other_caches(keep: Path) -> None:
    """Delete the answers kept for earlier tokens beside `keep`."""
    prefix = keep.name.split(".http-cache-")[0] + ".http-cache-"
    for path in keep.parent.glob(f"{prefix}*"):
        if not path.name.startswith(keep.name):  # the database and its journal files
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


class SqliteCacheStrategy(BaseCacheStrategy):
    """githubkit's cache, with hishel's answers in a private SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cache = MemCache()  # type: ignore[no-untyped-call]  # githubkit's own small values (App tokens): never used here

    def get_cache_storage(self) -> MemCache:
        return self._cache

    async def get_async_cache_storage(self) -> MemCache:
        return self._cache

    def get_hishel_storage(self) -> SyncBaseStorage:
        raise CacheUnsupportedError("the daemon's GitHub client is asynchronous")

    async def get_async_hishel_storage(self) -> AsyncBaseStorage:
        # A new storage per client: hishel closes it with the client.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Created private before SQLite opens it; its journals take the same mode.
        os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        # Our own connection: given a path, hishel also writes a `.gitignore` of `*` into
        # its folder, which may be the user's project.
        connection = await anysqlite.connect(str(self.path))
        return AsyncSqliteStorage(connection=connection, default_ttl=CACHE_TTL)


@dataclass
class RateBudget:
    """The core rate limit as GitHub's last answer stated it."""

    limit: int | None = None
    remaining: int | None = None
    reset_at: datetime | None = None

    def note(self, headers: httpx.Headers) -> None:
        if headers.get("x-ratelimit-resource", "core") != "core":
            return  # e.g. GraphQL's or search's own budget
        try:
            limit = int(headers["x-ratelimit-limit"])
            remaining = int(headers["x-ratelimit-remaining"])
            reset_at = datetime.fromtimestamp(float(headers["x-ratelimit-reset"]), timezone.utc)
        except (KeyError, ValueError, OverflowError, OSError):  # absent, or not a time
            return
        self.limit, self.remaining, self.reset_at = limit, remaining, reset_at


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

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if (request.url.scheme, request.url.host, request.url.port) == self._origin:
            request.headers["Authorization"] = self._authorization
        else:
            request.headers.pop("Authorization", None)
        response = await self._inner.handle_async_request(request)
        self.sent += 1
        self.not_modified += response.status_code == 304
        self.last_answer_at = time.time()
        self._budget.note(response.headers)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
