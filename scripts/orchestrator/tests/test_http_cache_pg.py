"""GitHub's answers kept in PostgreSQL: a second daemon's first reads are answered 304, one
token's answers are never another's, and a database that fails costs the cache, never a read."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import threading
import time
import types
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    MutableMapping,
)
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest
import uvicorn
from githubkit import GitHub, UnauthAuthStrategy
from githubkit.exception import CacheUnsupportedError
from hishel import Entry, Headers, Request, Response
from hishel.httpx import AsyncCacheTransport

from scripts.orchestrator import http_cache_pg
from scripts.orchestrator.github_cache import AuthTransport, RateBudget
from scripts.orchestrator.github_http import TimeoutTransport
from scripts.orchestrator.http_cache_pg import PgCacheStorage, PgCacheStrategy, token_scope
from scripts.orchestrator.http_cache_pg_conn import TABLE, connect_options
from scripts.orchestrator.state_pg_schema import SCHEMA_VERSION, migrate

from .fixtures_postgres import pg_state_url, postgres_url  # noqa: F401

TOKEN = "ghp_the0token0of0the0daemon0123456789"
SCOPE = token_scope(TOKEN)
SECRET = "hunter2-Secret"
BIG = 256 * 1024  # bytes: sent in pieces, so the server can stop halfway
DEADLINE = 10.0  # seconds for what polls (a database back, a server that stops)
LOGGER = "scripts.orchestrator.http_cache_pg"


@pytest.fixture
def db(pg_state_url: str) -> str:  # noqa: F811
    """A database with the state's tables, as a daemon's start leaves it."""
    with psycopg.connect(pg_state_url, autocommit=True) as conn:
        migrate(conn, "the test's")
    return pg_state_url


def rows(url: str) -> list[tuple[Any, ...]]:
    assert TABLE == "orchestrator_http_cache"
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT scope, cache_key, head, body, created_at, expires_at "
                            "FROM orchestrator_http_cache").fetchall()  # fmt: skip


def admin(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement.encode())


# -- GitHub, as far as the cache sees it ------------------------------------------------------


@dataclass
class Origin:
    """Answers with an ETag, and 304 to a request that names it; `/big` in many pieces."""

    url: str = ""
    seen: list[tuple[str, str | None, str | None]] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        asked = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        path = scope["path"]
        self.seen.append((path, asked.get("if-none-match"), asked.get("authorization")))
        body = bytes(BIG) if path in ("/big", "/cut") else f'{{"path": "{path}"}}'.encode()
        etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
        # As GitHub answers: private, and to be revalidated (max-age=0 here, so every read is).
        headers = [
            (b"etag", etag.encode()),
            (b"cache-control", b"private, max-age=0"),
            (b"vary", b"Accept, Authorization"),
            (b"content-type", b"application/json"),
        ]
        if asked.get("if-none-match") == etag:
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        piece = 16 * 1024
        if path == "/cut":  # half the body, then the connection ends (uvicorn logs an error)
            await send({"type": "http.response.body", "body": body[: BIG // 2], "more_body": True})
            return
        for at in range(0, len(body), piece):
            part, more = body[at : at + piece], at + piece < len(body)
            await send({"type": "http.response.body", "body": part, "more_body": more})

    def asked_with_etag(self) -> list[bool]:
        return [etag is not None for _, etag, _ in self.seen]


@pytest.fixture
def origin() -> Iterator[Origin]:
    """The app on uvicorn on a thread, on a port bound before it starts."""
    app = Origin()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2,
                            timeout_keep_alive=5)  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    app.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        yield app
    finally:
        server.should_exit = True
        thread.join(DEADLINE)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"


@contextlib.asynccontextmanager
async def daemon(
    origin: Origin, url: str, scope: str = SCOPE, **options: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, AuthTransport]]:
    """One daemon's client, wired as githubkit wires it: hishel over the token's transport."""
    wire = AuthTransport(TimeoutTransport(DEADLINE), TOKEN, origin.url, RateBudget())
    storage = PgCacheStorage(url, scope, **options)
    policy = PgCacheStrategy(url, scope).get_hishel_policy()
    cache = AsyncCacheTransport(next_transport=wire, storage=storage, policy=policy)
    async with httpx.AsyncClient(transport=cache, base_url=origin.url) as client:
        yield client, wire


# -- the answers kept -------------------------------------------------------------------------


async def test_a_second_daemon_is_answered_304_and_serves_the_same_body(
    origin: Origin, db: str
) -> None:
    async with daemon(origin, db) as (client, wire):
        first = await client.get("/things/a")
    assert first.status_code == 200 and wire.not_modified == 0
    async with daemon(origin, db) as (client, wire):  # another daemon takes the repository
        again = await client.get("/things/a")
        assert (again.status_code, again.content) == (200, first.content)
        assert (wire.sent, wire.not_modified) == (1, 1)
        assert (await client.get("/things/a")).content == first.content  # and again
    assert origin.asked_with_etag() == [False, True, True]
    [(scope, _, _, body, _, _)] = rows(db)
    assert scope == SCOPE and body == first.content


async def test_another_tokens_scope_gets_a_full_answer(origin: Origin, db: str) -> None:
    async with daemon(origin, db) as (client, _):
        await client.get("/things/a")
    async with daemon(origin, db, scope=token_scope("ghp_another")) as (client, wire):
        answer = await client.get("/things/a")
    assert answer.status_code == 200 and wire.not_modified == 0
    assert origin.asked_with_etag() == [False, False]
    assert sorted(scope for scope, *_ in rows(db)) == sorted([SCOPE, token_scope("ghp_another")])


async def test_an_expired_answer_is_not_served_and_a_requests_ttl_is_kept(
    origin: Origin, db: str
) -> None:
    async with daemon(origin, db) as (client, _):
        await client.get("/things/a")
        await client.get("/things/b", extensions={"hishel_ttl": 60.0})
    kept = {key: (created, expires) for _, key, _, _, created, expires in rows(db)}
    ttls = sorted((expires - created).total_seconds() for created, expires in kept.values())
    assert ttls[0] == pytest.approx(60.0, abs=0.01) and ttls[1] > 24 * 3600
    admin(db, "UPDATE orchestrator_http_cache SET expires_at = now() - interval '1 second'")
    async with daemon(origin, db) as (client, wire):
        answer = await client.get("/things/a")
    assert answer.status_code == 200 and wire.not_modified == 0
    assert origin.asked_with_etag() == [False, False, False]


async def test_a_body_cut_off_is_not_kept_and_a_large_one_is_passed_on_whole(
    origin: Origin, db: str
) -> None:
    async with daemon(origin, db) as (client, _):
        with pytest.raises(httpx.RemoteProtocolError):  # the connection ends halfway
            await client.get("/cut")
        assert rows(db) == []
        assert len((await client.get("/big")).content) == BIG  # read whole: kept
    assert len(rows(db)) == 1
    admin(db, "DELETE FROM orchestrator_http_cache")
    async with daemon(origin, db, max_body=BIG - 1) as (client, _):
        answer = await client.get("/big")
    assert answer.content == bytes(BIG)
    assert rows(db) == []
    assert origin.asked_with_etag() == [False, False, False]


async def test_the_token_never_reaches_the_table_through_githubkit(origin: Origin, db: str) -> None:
    """githubkit's own wiring: its cache client over the transport that adds the token."""
    strategy = PgCacheStrategy(db, SCOPE)
    with pytest.raises(CacheUnsupportedError):
        strategy.get_hishel_storage()
    bodies, wires = [], []
    for _ in range(2):  # two daemons, one after the other
        wire = AuthTransport(TimeoutTransport(DEADLINE), TOKEN, origin.url, RateBudget())
        gh = GitHub(UnauthAuthStrategy(), base_url=origin.url, cache_strategy=strategy,
                    async_transport=wire)  # fmt: skip
        async with gh:
            bodies.append((await gh.arequest("GET", "/things/a")).content)
        wires.append(wire)
    assert bodies[0] == bodies[1] and [w.not_modified for w in wires] == [0, 1]
    assert [auth for *_, auth in origin.seen] == [f"token {TOKEN}"] * 2  # sent, below the cache
    [row] = rows(db)
    for value in row:
        assert TOKEN.encode() not in (value if isinstance(value, bytes) else str(value).encode())


async def test_the_storage_keeps_hishels_contract(db: str) -> None:
    storage = PgCacheStorage(db, SCOPE)
    other = PgCacheStorage(db, "another")
    try:
        request = Request(method="GET", url="https://api.github.com/x", headers=Headers({}))
        response = Response(status_code=200, headers=Headers({"etag": '"1"'}),
                            stream=_stream([b"he", b"llo"]))  # fmt: skip
        entry = await storage.create_entry(request, response, "key")
        assert await storage.get_entries("key") == []  # not yet read: nothing kept
        halfway = await storage.create_entry(request, replace(response, stream=_stream([b"x"] * 2)),
                                             "key")  # fmt: skip
        assert isinstance(halfway.response.stream, AsyncGenerator)
        assert await anext(halfway.response.stream) == b"x"
        await halfway.response.stream.aclose()  # the caller stopped reading: not kept
        assert await storage.get_entries("key") == []
        assert [c async for c in _aiter(entry.response.stream)] == [b"he", b"llo"]  # unchanged
        [found] = await storage.get_entries("key")
        assert found.id == entry.id and found.response.headers["etag"] == '"1"'
        assert [c async for c in _aiter(found.response.stream)] == [b"hello"]
        assert await other.get_entries("key") == []
        assert await other.update_entry(entry.id, lambda e: e) is None  # not its scope

        def etag_2(e: Entry) -> Entry:
            return replace(e, response=replace(e.response, headers=Headers({"etag": '"2"'})))

        updated = await storage.update_entry(entry.id, etag_2)
        assert updated is not None and updated.response.headers["etag"] == '"2"'
        [found] = await storage.get_entries("key")
        assert found.response.headers["etag"] == '"2"'
        with pytest.raises(ValueError, match="mismatch"):
            await storage.update_entry(entry.id, lambda e: replace(e, id=uuid.uuid4()))
        before = rows(db)[0][5]
        await storage.refresh_entry_ttl(entry.id)
        assert rows(db)[0][5] > before
        await storage.remove_entry(entry.id)
        assert await storage.get_entries("key") == []
        assert len(rows(db)) == 1  # removed softly: the row outlives it an hour
    finally:
        await storage.close()
        await other.close()


def test_the_connection_cannot_hang_and_keeps_what_the_url_sets(db: str) -> None:
    options = connect_options(db + "?application_name=mine")
    assert "application_name" not in options and options["keepalives"] == 1
    assert "statement_timeout=5s" in options["options"] and options["connect_timeout"] >= 2


async def test_reads_at_once_share_the_connection(origin: Origin, db: str) -> None:
    paths = [f"/things/{n}" for n in range(20)]
    for expected in (0, len(paths)):  # kept by the first daemon, revalidated by the second
        async with daemon(origin, db) as (client, wire):
            answers = await asyncio.gather(*(client.get(path) for path in paths))
        assert [a.status_code for a in answers] == [200] * len(paths)
        assert [a.json()["path"] for a in answers] == paths
        assert wire.not_modified == expected
    assert len(rows(db)) == len(paths)


async def test_expired_rows_are_deleted_in_batches(origin: Origin, db: str) -> None:
    async with daemon(origin, db, cleanup_interval=0) as (client, _):
        for name in "abc":
            await client.get(f"/things/{name}")
        admin(db, "UPDATE orchestrator_http_cache SET expires_at = now() - interval '1 second' "
                  "WHERE convert_from(body, 'UTF8') NOT LIKE '%/things/c%'")  # fmt: skip
        assert len(rows(db)) == 3
        await client.get("/things/c")  # its lookup deletes them first
    [(_, _, _, body, _, _)] = rows(db)
    assert b"/things/c" in body


# -- a database that fails --------------------------------------------------------------------


class Relay:
    """A TCP relay to PostgreSQL that the test can cut (connections dropped, new ones closed
    at once: a database stopped) or silence (nothing relayed: a database that stops
    answering), and restore."""

    def __init__(self, target: str) -> None:
        self.port_to = int(target.rsplit(":", 1)[1].split("/", 1)[0])
        self.mode = "relay"
        self.delay = 0.0  # seconds before each piece is relayed: a database that answers slowly
        self.accepted = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._relaying: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    def url(self, target: str) -> str:
        """`target` through the relay, with a password (trusted on loopback: only to be hidden)."""
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"postgresql://postgres:{SECRET}@127.0.0.1:{port}/{target.rsplit('/', 1)[1]}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    def cut(self) -> None:
        self.mode = "cut"
        for writer in self._writers:
            writer.close()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._relaying:  # each ends as its sockets close: none is left to the loop's end
            done, _ = await asyncio.wait(self._relaying, timeout=DEADLINE)
            assert not self._relaying - done, "the relay did not stop"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._relaying.add(task)
        task.add_done_callback(self._relaying.discard)
        if self.mode == "cut":
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port_to)
        except OSError:
            writer.close()
            return
        self._writers.add(up_writer)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.mode == "relay":  # silenced: read, and dropped
                    if self.delay:
                        await asyncio.sleep(self.delay)
                    writer.write(data)
                    await writer.drain()
        except OSError:
            return  # the other side went first (or the test cut it): this direction ends too
        finally:
            writer.close()


@pytest.fixture
async def relay(db: str) -> AsyncIterator[Relay]:
    proxy = Relay(db)
    await proxy.start()
    yield proxy
    await proxy.close()


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelname == "WARNING"]


async def test_a_stopped_database_costs_the_cache_not_the_reads(
    origin: Origin, db: str, relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    url = relay.url(db)
    async with daemon(origin, url) as (client, wire):
        await client.get("/things/a")
        relay.cut()
        tried = relay.accepted
        for name in ("a", "a", "b", "c"):
            assert (await client.get(f"/things/{name}")).status_code == 200
        # One new connection tried at once (the old one may just have been ended), then none
        # while it is down.
        assert relay.accepted == tried + 1
        assert wire.not_modified == 0  # as if nothing were kept
    [warning] = warnings_of(caplog)
    assert "cannot be kept" in warning and "tried again in 30 s" in warning
    assert SECRET not in caplog.text and url not in caplog.text


async def test_a_connection_the_server_ended_is_replaced_at_once(
    origin: Origin, db: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with daemon(origin, db) as (client, wire):
        await client.get("/things/a")
        with psycopg.connect(db, autocommit=True) as conn:  # as a restarted server would
            ended = conn.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE "
                "datname = current_database() AND pid <> pg_backend_pid() "
                "AND application_name LIKE 'claude-orchestrator pid %'"
            ).fetchall()
        assert ended == [(True,)]
        assert (await client.get("/things/a")).status_code == 200
        assert wire.not_modified == 1  # the answer kept was found all the same
    assert warnings_of(caplog) == []


async def test_an_unreachable_database_costs_the_cache_not_the_reads(
    origin: Origin, db: str, relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    relay.cut()  # refused from the start: the daemon has never reached it
    async with daemon(origin, relay.url(db)) as (client, _):
        for _ in range(3):
            assert (await client.get("/things/a")).status_code == 200
    assert relay.accepted == 1
    [warning] = warnings_of(caplog)
    assert "cannot be kept" in warning and SECRET not in caplog.text


async def test_the_cache_works_again_once_the_database_is_back(
    origin: Origin, db: str, relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger=LOGGER)
    async with daemon(origin, relay.url(db), retry_after=0.05) as (client, wire):
        await client.get("/things/a")
        relay.cut()
        assert (await client.get("/things/a")).status_code == 200
        relay.mode = "relay"
        await until(lambda: client.get("/things/a"), lambda: wire.not_modified > 0)
    assert len(warnings_of(caplog)) == 1
    assert "kept in PostgreSQL again" in caplog.text


async def test_a_database_that_stops_answering_costs_a_read_at_most_the_timeout(
    origin: Origin, db: str, relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    async with daemon(origin, relay.url(db), timeout=0.3) as (client, wire):
        await client.get("/things/a")
        relay.mode = "silent"
        started = time.monotonic()
        answer = await client.get("/things/a")
        assert answer.status_code == 200 and wire.not_modified == 0
        assert time.monotonic() - started < 3.0
        await relay.close()  # the work left on the silent connection ends with it
    [warning] = warnings_of(caplog)
    assert "no answer within 0.3 s" in warning


async def test_a_table_that_cannot_be_made_costs_the_cache_not_the_reads(
    origin: Origin, db: str, caplog: pytest.LogCaptureFixture
) -> None:
    role = f"reader_{uuid.uuid4().hex[:12]}"
    admin(db, f"CREATE ROLE {role} LOGIN")
    admin(db, "REVOKE CREATE ON SCHEMA public FROM PUBLIC")  # PostgreSQL 15's default already
    try:
        async with daemon(origin, db.replace("postgres@", f"{role}@", 1)) as (client, _):
            for _ in range(2):
                assert (await client.get("/things/a")).status_code == 200
    finally:
        admin(db, f"DROP ROLE {role}")
    [warning] = warnings_of(caplog)
    assert "permission denied" in warning
    assert not table_exists(db)


# -- found by an outside review --------------------------------------------------------------


@dataclass
class Edited:
    """GitHub's answer to an object edited in a second: a weak ETag of the body, and the same
    Last-Modified (GitHub's `updated_at`, which a computed field leaves as it was)."""

    version: int = 1

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        asked = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        etag, body = f'W/"{self.version}"', f'{{"v": {self.version}}}'.encode()
        headers = [
            (b"etag", etag.encode()),
            (b"cache-control", b"private, max-age=60"),
            (b"date", formatdate(time.time() - 100 + self.version, usegmt=True).encode()),
            (b"last-modified", b"Mon, 01 Jan 2024 00:00:00 GMT"),
        ]
        if asked.get("if-none-match") == etag:
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def test_an_answer_revalidated_by_last_modified_is_the_newest_body(db: str) -> None:
    app = Edited()
    wire = AuthTransport(httpx.ASGITransport(app), TOKEN, "http://gh", RateBudget())
    storage = PgCacheStorage(db, SCOPE)
    policy = PgCacheStrategy(db, SCOPE).get_hishel_policy()
    cache = AsyncCacheTransport(next_transport=wire, storage=storage, policy=policy)
    # Every read revalidated, as the daemon's polls are (GitHub's answers say max-age=0).
    async with httpx.AsyncClient(transport=cache, base_url="http://gh",
                                 headers={"cache-control": "no-cache"}) as client:  # fmt: skip
        for version in (1, 2, 3):
            app.version = version
            assert (await client.get("/pulls/1")).json() == {"v": version}  # a 200
            for _ in range(2):  # answered 304: the body kept is the one GitHub's ETag names
                assert (await client.get("/pulls/1")).json() == {"v": version}
    assert wire.not_modified == 6
    with psycopg.connect(db, autocommit=True) as conn:
        live = conn.execute("SELECT count(*) FROM orchestrator_http_cache "
                            "WHERE deleted_at IS NULL").fetchone()  # fmt: skip
    assert live == (1,)  # one row per key: the older ones removed as each was kept


async def test_the_cache_makes_its_table_at_first_use_without_a_schema_version(
    origin: Origin, db: str
) -> None:
    """The table is no migration of the state's: daemons of the version before, which know
    schema version 2, go on using the database while the others are upgraded."""
    assert not table_exists(db)  # a database the state made
    async with daemon(origin, db) as (client, _):
        await client.get("/things/a")
    async with daemon(origin, db) as (client, wire):
        await client.get("/things/a")
    assert wire.not_modified == 1 and table_exists(db)
    with psycopg.connect(db, autocommit=True) as conn:
        assert migrate(conn, "the test's") == SCHEMA_VERSION == 2  # not refused as newer
        found = conn.execute("SELECT max(version) FROM orchestrator_schema_version").fetchone()
        assert found == (2,)


async def test_storages_starting_at_once_make_the_table_once(
    db: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert not table_exists(db)
    storages = [PgCacheStorage(db, SCOPE) for _ in range(8)]
    try:
        await asyncio.gather(*(kept(s, f"key {n}") for n, s in enumerate(storages)))
        found = await asyncio.gather(*(s.get_entries(f"key {n}") for n, s in enumerate(storages)))
    finally:
        await asyncio.gather(*(s.close() for s in storages))
    assert [len(entries) for entries in found] == [1] * len(storages)
    assert warnings_of(caplog) == []


async def test_a_slow_database_costs_each_call_at_most_the_timeout(
    origin: Origin, db: str, relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    """Reads at once queue for the one connection: each waits the timeout at most (its
    lookup's, then its write's), and the cache is not turned off: the database answers."""
    timeout = 1.0
    async with daemon(origin, relay.url(db), timeout=timeout) as (client, wire):
        await client.get("/warm")  # the connection open, the table made
        relay.delay = 0.15  # each statement 0.3 s: within the timeout, but 24 are queued

        async def read(path: str) -> float:
            started = time.monotonic()
            assert (await client.get(path)).status_code == 200
            return time.monotonic() - started

        took = await asyncio.gather(*(read(f"/things/{n}") for n in range(12)))
        assert max(took) < 2 * timeout + 0.5, sorted(took)
        relay.delay = 0.0
        await asyncio.gather(*(client.get(f"/things/{n}") for n in range(12)))
        assert wire.not_modified > 0  # some answers were kept, and are found at once
    assert warnings_of(caplog) == []


async def test_the_tables_times_are_the_databases_not_the_hosts(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host whose clock is days behind keeps answers the others find; one days ahead
    deletes none of them."""
    behind, ahead = PgCacheStorage(db, SCOPE), PgCacheStorage(db, SCOPE, cleanup_interval=0)
    try:
        host_clock(monkeypatch, -3 * 24 * 3600)
        await kept(behind, "key", ttl=3600)
        host_clock(monkeypatch, 3 * 24 * 3600)
        assert len(await ahead.get_entries("key")) == 1
    finally:
        await behind.close()
        await ahead.close()  # its cleanup, begun at the lookup, ended
    with psycopg.connect(db, autocommit=True) as conn:
        [(created, expires, lag)] = conn.execute(
            "SELECT created_at, expires_at, now() - created_at FROM orchestrator_http_cache"
        ).fetchall()
    assert (expires - created).total_seconds() == pytest.approx(3600) and lag.total_seconds() < 60


async def test_an_update_does_not_revive_a_removed_answer(db: str) -> None:
    storage = PgCacheStorage(db, SCOPE)
    try:
        entry = await kept(storage, "key")
        await storage.remove_entry(entry.id)
        assert await storage.update_entry(entry.id, lambda e: e) is None
        await storage.refresh_entry_ttl(entry.id)
        assert await storage.get_entries("key") == []
    finally:
        await storage.close()
    with psycopg.connect(db, autocommit=True) as conn:
        kept_for = conn.execute("SELECT expires_at - deleted_at FROM orchestrator_http_cache")
        [(removed_for,)] = kept_for.fetchall()
    assert removed_for.total_seconds() <= 3600  # as removed, not a TTL again


async def test_the_first_use_deletes_expired_rows(db: str) -> None:
    """A daemon run with --once ends long before the hourly cleanup."""
    first = PgCacheStorage(db, SCOPE)
    try:
        await kept(first, "old")
        await kept(first, "new")
    finally:
        await first.close()
    admin(db, "UPDATE orchestrator_http_cache SET expires_at = now() - interval '1 second' "
              "WHERE cache_key = 'old'")  # fmt: skip
    second = PgCacheStorage(db, SCOPE)
    try:
        assert len(await second.get_entries("new")) == 1
    finally:
        await second.close()
    assert [key for _, key, *_ in rows(db)] == ["new"]


@pytest.mark.parametrize(
    "settings",
    ["-c lock_timeout=100ms", "-c lock_timeout=0 -c statement_timeout=100ms"],
    ids=["LockNotAvailable", "QueryCanceled"],
)
async def test_a_row_held_too_long_is_a_miss_not_an_outage(
    db: str, settings: str, caplog: pytest.LogCaptureFixture
) -> None:
    storage = PgCacheStorage(f"{db}?options={quote(settings)}", SCOPE)
    try:
        entry = await kept(storage, "key")
        with psycopg.connect(db) as holder:  # another daemon's transaction holds the row
            holder.execute("SELECT 1 FROM orchestrator_http_cache FOR UPDATE")
            assert await storage.update_entry(entry.id, lambda e: e) is None
        assert len(await storage.get_entries("key")) == 1  # the very next call: kept again
    finally:
        await storage.close()
    assert warnings_of(caplog) == []


def test_a_urls_own_options_keep_the_sessions_timeouts(db: str) -> None:
    for settings, expected in [
        ("-c search_path=elsewhere", ("elsewhere", "5s", "2s")),
        ("-c statement_timeout=1s --search-path=mine", ("mine", "1s", "2s")),
    ]:
        url = f"{db}?options={quote(settings)}"
        with psycopg.connect(url, autocommit=True, **connect_options(url)) as conn:
            shown = [conn.execute(f"SHOW {name}".encode()).fetchone() for name in
                     ("search_path", "statement_timeout", "lock_timeout")]  # fmt: skip
        assert [value for (value,) in filter(None, shown)] == list(expected)


# -- one connection for a daemon's clients -----------------------------------------------------


async def test_many_clients_on_one_url_share_one_connection(origin: Origin, db: str) -> None:
    """A daemon's clients, one per repository (hishel's storage each), hold one connection for
    their cache, not one each: with a state connection per repository, 50 repositories needed
    over PostgreSQL's 100 connections. It stays open while any of them does."""
    clients = [contextlib.AsyncExitStack() for _ in range(20)]
    try:
        opened = [await stack.enter_async_context(daemon(origin, db)) for stack in clients]
        assert await connected(db, 0) == []  # opened at the first use, not before
        (first, _), *others = opened
        await first.get("/things/a")  # kept through one of them
        [pid] = backends(db)
        answers = await asyncio.gather(*(client.get("/things/a") for client, _ in others))
        assert [a.status_code for a in answers] == [200] * len(others)
        assert [wire.not_modified for _, wire in others] == [1] * len(others)  # each a 304
        assert backends(db) == [pid]
        for stack in clients[:-1]:  # the repositories let go: their clients close
            await stack.aclose()
        assert backends(db) == [pid]
        last, wire = opened[-1]
        assert (await last.get("/things/b")).status_code == 200
        assert (await last.get("/things/a")).status_code == 200 and wire.not_modified == 2
        assert backends(db) == [pid]  # the same connection, never closed under it
        await clients[-1].aclose()
        assert await connected(db, 0) == []  # closed with the last
    finally:
        for stack in clients:
            await stack.aclose()
    assert len(rows(db)) == 2  # /things/a once, for all of them


async def test_a_storage_closed_twice_gives_the_connection_back_once(db: str) -> None:
    """Scopes stay the storages' own on the one connection; a storage closed (again) leaves
    it to the others."""
    first, second = PgCacheStorage(db, SCOPE), PgCacheStorage(db, token_scope("ghp_another"))
    try:
        await kept(first, "key")
        await kept(second, "key")
        [pid] = backends(db)
        [mine] = await first.get_entries("key")
        [theirs] = await second.get_entries("key")
        assert mine.id != theirs.id and len(rows(db)) == 2
        await first.close()
        await first.close()
        assert await first.get_entries("key") == []  # closed: goes without the cache
        assert [e.id for e in await second.get_entries("key")] == [theirs.id]
        assert backends(db) == [pid]
    finally:
        await second.close()
    assert await connected(db, 0) == []


async def test_storages_of_another_event_loop_have_their_own_connection(db: str) -> None:
    """A connection serves only the event loop that opened it: a storage on another loop (a
    thread's) opens its own, and closing it leaves this loop's open."""
    here = PgCacheStorage(db, SCOPE)
    try:
        await kept(here, "key")
        [pid] = backends(db)

        async def elsewhere() -> tuple[int, list[int]]:
            there = PgCacheStorage(db, SCOPE)
            try:
                return len(await there.get_entries("key")), backends(db)
            finally:
                await there.close()

        found, during = await asyncio.to_thread(asyncio.run, elsewhere())
        assert found == 1 and len(during) == 2 and pid in during
        assert await connected(db, 1) == [pid]
        assert len(await here.get_entries("key")) == 1 and backends(db) == [pid]
    finally:
        await here.close()
    assert await connected(db, 0) == []


async def test_a_connection_left_by_an_ended_event_loop_is_closed(db: str) -> None:
    """A loop that ended with its storages open (never the daemon's way) leaves no backend
    once a storage of the URL is next used."""

    async def left_open() -> None:
        await kept(PgCacheStorage(db, SCOPE), "key")

    await asyncio.to_thread(asyncio.run, left_open())
    assert len(backends(db)) == 1
    storage = PgCacheStorage(db, SCOPE)
    try:
        assert len(await storage.get_entries("key")) == 1
        [pid] = await connected(db, 1)
    finally:
        await storage.close()
    assert pid not in backends(db) and await connected(db, 0) == []


# -- helpers ----------------------------------------------------------------------------------


def table_exists(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        found = conn.execute("SELECT to_regclass('orchestrator_http_cache') IS NOT NULL")
        return found.fetchone() == (True,)


def backends(url: str) -> list[int]:
    """The server's processes of this process's cache connections to `url`'s database."""
    name = connect_options(url)["application_name"]
    with psycopg.connect(url, autocommit=True) as conn:
        found = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        return sorted(pid for (pid,) in found.fetchall())


async def connected(url: str, count: int) -> list[int]:
    """`backends(url)` once there are `count` (a backend ends a moment after its client has
    closed the connection), failing after DEADLINE seconds."""
    deadline = time.monotonic() + DEADLINE
    while len(found := backends(url)) != count:
        assert time.monotonic() < deadline, f"{len(found)} connections, not {count}"
        await asyncio.sleep(0.02)
    return found


async def kept(storage: PgCacheStorage, key: str, ttl: float | None = None) -> Entry:
    """An answer stored under `key`, as hishel stores one: its body read to the end."""
    extensions = {} if ttl is None else {"hishel_ttl": ttl}
    request = Request(method="GET", url="https://api.github.com/x", headers=Headers({}),
                      metadata=extensions)  # fmt: skip
    response = Response(status_code=200, headers=Headers({"etag": '"1"'}), stream=_stream([b"x"]))
    entry = await storage.create_entry(request, response, key)
    assert [chunk async for chunk in _aiter(entry.response.stream)] == [b"x"]
    return entry


def host_clock(monkeypatch: pytest.MonkeyPatch, offset: float) -> None:
    """The clock of the module's host `offset` seconds from the database's."""
    clock = types.SimpleNamespace(time=lambda: time.time() + offset, monotonic=time.monotonic)
    monkeypatch.setattr(http_cache_pg, "time", clock)


async def until(step: Callable[[], Awaitable[object]], done: Callable[[], bool]) -> None:
    """`step` until `done()`, failing after DEADLINE seconds."""
    deadline = time.monotonic() + DEADLINE
    while True:
        await step()
        if done():
            return
        assert time.monotonic() < deadline, f"not done within {DEADLINE}s"
        await asyncio.sleep(0.02)


async def _stream(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def _aiter(stream: object) -> AsyncIterator[bytes]:
    assert isinstance(stream, AsyncIterator)
    async for chunk in stream:
        yield chunk
