"""Webhooks' wakes passed between the daemons of one STATE_URL (PostgreSQL's LISTEN/NOTIFY):
a delivery that reaches one daemon for a repository another holds wakes that one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Collection

import psycopg

from .state_pg_conn import Connection, open_connection, reason, secrets_of

log = logging.getLogger(__name__)

CHANNEL = "orchestrator_wake"
LISTEN_TICK = 1.0  # seconds between looks at the stop flag while listening
RETRY = 5.0  # seconds before the database is tried again after failures in a row
JOIN_TIMEOUT = 1.5  # seconds `close` waits for each thread; a hung connect is left behind


class PgWakes:
    """Passes wakes on and hears the other daemons' ones, each in a thread of its own, so a
    slow or absent database never holds the event loop, the leases' renewals or the stop.

    `send` queues a repository's wake (at most one waiting per repository); `wake` is called
    in `loop` with the name of each repository among `names` whose wake is heard. A wake lost
    while the database is away costs latency only: the holder's polls find the work."""

    def __init__(
        self,
        url: str,
        names: Collection[str],
        wake: Callable[[str], None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._url = url
        self._secrets = secrets_of(url)
        self._names = {n.lower(): n for n in names}
        self._wake = wake
        self._loop = loop
        self._heard: dict[str, float] = {}  # monotonic time of the last wake heard, by name
        self._pending: set[str] = set()
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._sending, name="orchestrator-wakes-out", daemon=True),
            threading.Thread(target=self._listening, name="orchestrator-wakes-in", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def send(self, repo: str) -> None:
        """Wake `repo`'s holder, wherever it runs; returns at once."""
        with self._changed:
            if not self._stop.is_set():
                self._pending.add(repo.lower())
                self._changed.notify()

    def heard_at(self, repo: str) -> float | None:
        """When a wake for `repo` was last heard (`time.monotonic()`), None if never."""
        return self._heard.get(repo.lower())

    def close(self) -> None:
        """Stop both threads; wakes not sent yet are dropped (the polls find the work)."""
        self._stop.set()
        with self._changed:
            self._pending.clear()
            self._changed.notify()
        for thread in self._threads:
            thread.join(JOIN_TIMEOUT)

    def _sending(self) -> None:
        conn: Connection | None = None
        try:
            while True:
                with self._changed:
                    self._changed.wait_for(lambda: self._pending or self._stop.is_set())
                    if self._stop.is_set():
                        return
                    batch, self._pending = self._pending, set()
                conn = self._send(conn, sorted(batch))
        finally:
            if conn is not None:
                conn.close()

    def _send(self, conn: Connection | None, repos: list[str]) -> Connection | None:
        """The wakes sent, on `conn` or a new connection (one more try on a new one when the
        server ended the old); the connection to use next, None after a failure."""
        for attempt in (1, 2):
            try:
                if conn is None or conn.closed:
                    conn = open_connection(self._url)
                for repo in repos:
                    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, repo))
                return conn
            except psycopg.Error as exc:
                if conn is not None:
                    conn.close()
                conn = None
                if self._stop.is_set():  # closed while it tried: nothing more to say
                    return None
                if attempt == 2 or not isinstance(exc, psycopg.OperationalError):
                    log.warning("could not pass webhooks' wakes for %s on: %s",
                                ", ".join(repos), reason(exc, self._secrets))  # fmt: skip
                    self._stop.wait(RETRY)  # a database away is not asked again at once
                    return None
        return None

    def _listening(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                with open_connection(self._url) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    failures = 0
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=LISTEN_TICK):
                            self._heard_one(note.payload)
            except psycopg.Error as exc:
                if self._stop.is_set():
                    return
                failures += 1
                if failures > 1:  # the first: a session ended, listened again at once
                    log.warning("webhooks' wakes from the other daemons are not heard (tried "
                                "again in %gs): %s", RETRY, reason(exc, self._secrets))  # fmt: skip
                    self._stop.wait(RETRY)

    def _heard_one(self, payload: str) -> None:
        name = self._names.get(payload.lower())
        if name is None:  # not a repository of this daemon's list: nothing to wake
            return
        self._heard[name.lower()] = time.monotonic()
        with contextlib.suppress(RuntimeError):  # the loop closed as the daemon stopped
            self._loop.call_soon_threadsafe(self._wake, name)
