"""Webhooks' wakes passed between the daemons of one STATE_URL (PostgreSQL's LISTEN/NOTIFY):
a delivery that reaches one daemon for a repository another holds wakes that one."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg

from .state_pg_conn import Connection, open_connection, reason, secrets_of

log = logging.getLogger(__name__)

CHANNEL = "orchestrator_wake"
LISTEN_TICK = 1.0  # seconds between looks at the stop flag while listening
RETRY = 5.0  # seconds before listening again after the database failed
STOP_TIMEOUT = 5.0


class PgWakes:
    """Sends a repository's wake to every daemon on the database, and hears theirs: `heard`
    is called with each repository's name (lower case) in the listener's thread. A wake lost
    while the database is away costs latency only: the holder's polls find the work."""

    def __init__(self, url: str, heard: Callable[[str], None]) -> None:
        self._url = url
        self._secrets = secrets_of(url)
        self._heard = heard
        self._mutex = threading.Lock()  # one sender's statement at a time
        self._sender: Connection | None = None
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="orchestrator-wakes",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    @property
    def listening(self) -> bool:
        """Whether wakes are heard now (LISTEN is in place)."""
        return self._listening.is_set()

    def send(self, repo: str) -> None:
        """Wake `repo`'s holder, wherever it runs (synchronous: call it in a thread)."""
        with self._mutex:
            try:
                if self._sender is None or self._sender.closed:
                    self._sender = open_connection(self._url)
                self._sender.execute("SELECT pg_notify(%s, %s)", (CHANNEL, repo.lower()))
            except psycopg.Error as exc:
                log.warning("could not pass a webhook's wake for %s on: %s", repo,
                            reason(exc, self._secrets))  # fmt: skip
                self._drop_sender()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(STOP_TIMEOUT)
        with self._mutex:
            self._drop_sender()

    def _drop_sender(self) -> None:
        if self._sender is not None:
            self._sender.close()
        self._sender = None

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                with open_connection(self._url) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._listening.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=LISTEN_TICK):
                            self._heard(note.payload)
            except psycopg.Error as exc:
                log.warning("webhooks' wakes from the other daemons are not heard (tried again "
                            "in %gs): %s", RETRY, reason(exc, self._secrets))  # fmt: skip
            finally:
                self._listening.clear()
            self._stop.wait(RETRY)
