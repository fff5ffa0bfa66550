"""The repositories' leases in PostgreSQL (STATE_URL): one daemon works on a repository at a
time, and a daemon that stops renewing loses its leases after LEASE_SECONDS."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

import psycopg

from .leases import owner_id
from .state import StateError
from .state_pg_conn import Connection, open_connection, reason, redacted, secrets_of
from .state_pg_schema import migrate

log = logging.getLogger(__name__)

T = TypeVar("T")
GONE_AFTER = 10  # leases' lengths: a daemon not seen for this long is forgotten

BEAT = (
    "INSERT INTO orchestrator_daemons (owner, seen_at) VALUES (%s, now()) "
    "ON CONFLICT (owner) DO UPDATE SET seen_at = now()"
)
FORGET = "DELETE FROM orchestrator_daemons WHERE seen_at < now() - %s * interval '1 second'"
LIVE = "SELECT count(*) FROM orchestrator_daemons WHERE seen_at > now() - %s * interval '1 second'"
# Taken when free or ended; renewed when this daemon's own. A new owner counts one more fence.
CLAIM = (
    "INSERT INTO orchestrator_leases AS l (repo, owner, expires_at) "
    "VALUES (%s, %s, now() + %s * interval '1 second') ON CONFLICT (repo) DO UPDATE SET "
    "owner = excluded.owner, expires_at = excluded.expires_at, "
    "fence = CASE WHEN l.owner = excluded.owner THEN l.fence ELSE l.fence + 1 END "
    "WHERE l.owner = excluded.owner OR l.expires_at < now() RETURNING fence"
)
# Only leases that have not ended: one that did may have been taken since.
RENEW = (
    "UPDATE orchestrator_leases SET expires_at = now() + %s * interval '1 second' "
    "WHERE owner = %s AND repo = ANY(%s) AND expires_at > now() RETURNING repo"
)
RELEASE = "DELETE FROM orchestrator_leases WHERE repo = %s AND owner = %s"
HOLDERS = "SELECT repo, owner FROM orchestrator_leases WHERE expires_at > now()"


class PgLeases:
    """`Leases` on their own connection (a state's batch never delays a renewal)."""

    def __init__(self, url: str, seconds: float) -> None:
        self.owner = owner_id()
        self.seconds = seconds
        self.where = redacted(url)
        self._url = url
        self._secrets = secrets_of(url)
        self._mutex = threading.Lock()
        self._held: set[str] = set()
        self._conn: Connection | None = None
        self._run("open the leases", lambda c: migrate(c, self.where))

    def beat(self) -> int:
        def beat(conn: Connection) -> int:
            conn.execute(BEAT, (self.owner,))
            conn.execute(FORGET, (GONE_AFTER * self.seconds,))
            row = conn.execute(LIVE, (self.seconds,)).fetchone()
            return int(row[0]) if row else 1

        return self._run("say this daemon is alive", beat)

    def claim(self, repo: str) -> bool:
        key = repo.lower()  # as the state keys it
        row = self._run(
            "take a repository",
            lambda c: c.execute(CLAIM, (key, self.owner, self.seconds)).fetchone(),
        )
        if row is None:
            return False
        self._held.add(key)
        log.info("took %s (lease %d, for %gs at a time)", repo, row[0], self.seconds)
        return True

    def renew(self) -> set[str]:
        # Only those it holds: one whose release failed ends by itself, never kept for good.
        held = sorted(self._held)
        rows = self._run(
            "renew the leases",
            lambda c: c.execute(RENEW, (self.seconds, self.owner, held)).fetchall(),
        )
        kept = {str(r[0]) for r in rows}
        lost, self._held = self._held - kept, kept
        return lost

    def release(self, repo: str) -> None:
        key = repo.lower()
        self._held.discard(key)
        self._run("let a repository go", lambda c: c.execute(RELEASE, (key, self.owner)))
        log.info("let %s go", repo)

    def holders(self) -> dict[str, str]:
        """Every repository held now, and by which daemon."""
        rows = self._run("read the leases", lambda c: c.execute(HOLDERS).fetchall())
        return {str(repo): str(owner) for repo, owner in rows}

    def close(self) -> None:
        """Let every lease go (a clean stop: the others take over at once) and disconnect."""
        with self._mutex:
            if self._conn is not None and not self._conn.closed:
                try:
                    self._conn.execute("DELETE FROM orchestrator_leases WHERE owner = %s",
                                       (self.owner,))  # fmt: skip
                    self._conn.execute("DELETE FROM orchestrator_daemons WHERE owner = %s",
                                       (self.owner,))  # fmt: skip
                except psycopg.Error as exc:  # they end by themselves after LEASE_SECONDS
                    log.warning("could not let the leases go: %s", reason(exc, self._secrets))
                self._conn.close()
            self._conn = None
            self._held.clear()

    def _run(self, what: str, operation: Callable[[Connection], T]) -> T:
        """`operation` on the connection, opened again once if it was lost."""
        with self._mutex:
            for attempt in (1, 2):
                try:
                    if self._conn is None or self._conn.closed or self._conn.broken:
                        self._conn = open_connection(self._url)
                    return operation(self._conn)
                except psycopg.OperationalError as exc:
                    if attempt == 2:
                        raise self._error(what, exc) from None
                    if self._conn is not None:
                        self._conn.close()
                    self._conn = None
                except psycopg.Error as exc:
                    raise self._error(what, exc) from None
                except (ValueError, UnicodeError):
                    raise StateError(f"STATE_URL is not valid ({self.where})") from None
            raise AssertionError("unreachable")

    def _error(self, what: str, exc: psycopg.Error) -> StateError:
        return StateError(f"the state database (STATE_URL {self.where}) failed to {what}: "
                          f"{reason(exc, self._secrets)}")  # fmt: skip
