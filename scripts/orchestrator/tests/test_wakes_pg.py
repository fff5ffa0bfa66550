"""Wakes passed between daemons through PostgreSQL: heard by every daemon for the repositories
of its list only, sent again on a new session when the server ended the old one, and never
holding the stop when the database does not answer."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest

from scripts.orchestrator.wakes_pg import PgWakes

from .fixtures_postgres import pg_state_url  # noqa: F401

REPOS = ("Acme/Widgets", "acme/gadgets")
DEADLINE = 10.0


async def until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < deadline, f"not within {DEADLINE}s: {what}"
        await asyncio.sleep(0.02)


def ours(url: str) -> list[int]:
    """The backends of this process's connections (their application_name names its pid)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name LIKE %s",
            (f"claude-orchestrator pid {os.getpid()} %",),
        ).fetchall()
    return [int(pid) for (pid,) in rows]


def end_sessions(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for pid in ours(url):
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


async def test_a_wake_is_heard_by_the_other_daemons_for_their_repositories_only(
    pg_state_url: str,  # noqa: F811
) -> None:
    loop = asyncio.get_running_loop()
    heard: list[str] = []
    here = PgWakes(pg_state_url, REPOS, lambda repo: None, loop)
    there = PgWakes(pg_state_url, REPOS, heard.append, loop)
    try:
        await until(lambda: len(ours(pg_state_url)) >= 2, "both listening")
        there_listens = time.monotonic()
        here.send("acme/widgets")  # GitHub's case or the list's: one repository
        here.send("acme/elsewhere")  # not in the list: heard by nobody
        here.send("acme/widgets")
        await until(lambda: "Acme/Widgets" in heard, "the wake, under the list's name")
        here.send("ACME/GADGETS")
        await until(lambda: "acme/gadgets" in heard, "the second repository's wake")
        assert set(heard) == {"Acme/Widgets", "acme/gadgets"}
        assert len(heard) <= 3  # the repeats may be merged while one waits to be sent
        at = there.heard_at("acme/widgets")
        assert at is not None and at >= there_listens and there.heard_at("acme/other") is None
    finally:
        here.close()
        there.close()


async def test_wakes_go_on_after_the_server_ends_the_sessions(
    pg_state_url: str,  # noqa: F811
) -> None:
    loop = asyncio.get_running_loop()
    heard: list[str] = []
    wakes = PgWakes(pg_state_url, REPOS, heard.append, loop)
    try:
        await until(lambda: bool(ours(pg_state_url)), "listening")
        wakes.send("acme/gadgets")
        await until(lambda: heard == ["acme/gadgets"], "the first wake")
        end_sessions(pg_state_url)  # a restart, a failover, idle_session_timeout
        # The listener listens again at once and the sender sends on a new session: the first
        # wake after the loss is heard, not dropped.
        await until(lambda: len(ours(pg_state_url)) >= 1, "listening again")
        heard.clear()
        wakes.send("acme/gadgets")
        await until(lambda: heard == ["acme/gadgets"], "the wake after the sessions ended")
    finally:
        wakes.close()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A PostgreSQL address that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    port = server.getsockname()[1]
    yield f"postgresql://postgres@127.0.0.1:{port}/db?connect_timeout=30"
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


async def test_a_database_that_never_answers_holds_neither_the_loop_nor_the_stop(
    silent_server: str,
) -> None:
    loop = asyncio.get_running_loop()
    wakes = PgWakes(silent_server, REPOS, lambda repo: None, loop)
    for _ in range(100):  # a flood of deliveries for another daemon's repositories
        wakes.send("acme/widgets")
        wakes.send("acme/gadgets")
    ticked = asyncio.Event()
    loop.call_soon(ticked.set)
    await asyncio.wait_for(ticked.wait(), DEADLINE)  # the loop was never held
    began = time.monotonic()
    wakes.close()
    # Each thread gets a bounded join; a connect that hangs is left behind (a daemon thread).
    assert time.monotonic() - began < DEADLINE
