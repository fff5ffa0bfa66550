"""GitHub's answers kept in the daemon's SQLite file: the answer served after a 304 is the
newest one kept, as in the database's cache."""

from __future__ import annotations

from pathlib import Path

import anysqlite
import httpx
from hishel.httpx import AsyncCacheTransport

from scripts.orchestrator.github_cache import (
    CACHE_TTL,
    AuthTransport,
    RateBudget,
    SafeStorage,
    SqliteCacheStrategy,
)

from .test_http_cache_pg import TOKEN, Edited


async def test_an_answer_revalidated_by_last_modified_is_the_newest_body(tmp_path: Path) -> None:
    app = Edited()
    wire = AuthTransport(httpx.ASGITransport(app), TOKEN, "http://gh", RateBudget())
    storage = SafeStorage(connection=await anysqlite.connect(":memory:"), default_ttl=CACHE_TTL)
    policy = SqliteCacheStrategy(tmp_path / "c").get_hishel_policy()  # the daemon's client's
    cache = AsyncCacheTransport(next_transport=wire, storage=storage, policy=policy)
    async with httpx.AsyncClient(transport=cache, base_url="http://gh",
                                 headers={"cache-control": "no-cache"}) as client:  # fmt: skip
        for version in (1, 2, 3):
            app.version = version
            assert (await client.get("/pulls/1")).json() == {"v": version}  # a 200
            for _ in range(2):  # answered 304: the body kept is the one GitHub's ETag names
                assert (await client.get("/pulls/1")).json() == {"v": version}
    assert wire.not_modified == 6
