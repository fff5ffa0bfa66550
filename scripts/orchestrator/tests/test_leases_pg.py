"""Tests for the repositories' leases in PostgreSQL: one daemon per repository at a time, taken
over after the lease ends, and a state write refused to the daemon that lost it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from scripts.orchestrator.core.work import Status, WorkItem, WorkItemType
from scripts.orchestrator.leases_pg import PgLeases
from scripts.orchestrator.state import StateLockedError
from scripts.orchestrator.state_pg import PgState

from .fixtures_postgres import pg_state_url, postgres_url  # noqa: F401

REPO = "acme/widgets"
SHORT = 0.5  # seconds: a lease that ends within the test
DEADLINE = 10.0


def until(done: Callable[[], bool], what: str) -> None:
    """Poll until `done()`, failing after DEADLINE seconds."""
    deadline = time.monotonic() + DEADLINE
    while not done():
        assert time.monotonic() < deadline, f"no {what} within {DEADLINE}s"
        time.sleep(0.05)


@pytest.fixture
def two(pg_state_url: str) -> Iterator[tuple[PgLeases, PgLeases]]:  # noqa: F811
    """Two daemons' leases on one database, with short leases."""
    first, second = PgLeases(pg_state_url, SHORT), PgLeases(pg_state_url, SHORT)
    yield first, second
    first.close()
    second.close()


def test_a_repository_is_one_daemons_until_its_lease_ends(
    two: tuple[PgLeases, PgLeases],
) -> None:
    a, b = two
    assert a.claim(REPO) and not b.claim(REPO)
    assert a.claim("Acme/Widgets")  # its own, whatever the case: renewed
    assert a.holders() == {REPO: a.owner}
    # a stops renewing (killed): b takes the repository once the lease ends, not before.
    until(lambda: b.claim(REPO), "takeover")
    assert b.holders() == {REPO: b.owner}
    assert a.renew() == {REPO}  # a learns it lost it


def test_renewing_keeps_the_repository_and_a_release_hands_it_over_at_once(
    two: tuple[PgLeases, PgLeases],
) -> None:
    a, b = two
    assert a.claim(REPO)
    deadline = time.monotonic() + 3 * SHORT
    while time.monotonic() < deadline:  # three lease lengths, renewed all along
        assert a.renew() == set()
        assert not b.claim(REPO)
        time.sleep(SHORT / 5)
    a.release(REPO)
    assert b.claim(REPO)


def test_the_daemons_alive_are_counted(pg_state_url: str) -> None:  # noqa: F811
    a, b = PgLeases(pg_state_url, SHORT), PgLeases(pg_state_url, SHORT)
    try:
        assert a.beat() == 1
        assert b.beat() == 2
        b.close()  # a clean stop says so at once
        assert a.beat() == 1
    finally:
        a.close()


def test_a_write_of_a_daemon_that_lost_the_repository_is_refused(
    pg_state_url: str,  # noqa: F811
    two: tuple[PgLeases, PgLeases],
) -> None:
    a, b = two
    assert a.claim(REPO)
    with (
        PgState(pg_state_url, REPO, lease=a.owner) as mine,
        PgState(pg_state_url, REPO, lease=b.owner) as theirs,
    ):
        item = WorkItem(type=WorkItemType.ISSUE, number=4, status=Status.IN_PROGRESS)
        mine.put(item)  # the control: the holder writes
        with pytest.raises(StateLockedError, match=f"no longer holds {REPO}"):
            theirs.put(item.evolve(status=Status.DONE))  # b does not hold it yet
        until(lambda: b.claim(REPO), "takeover")
        theirs.put(item.evolve(status=Status.DONE))
        with pytest.raises(StateLockedError):
            mine.put(item.evolve(status=Status.FAILED))  # a, back from a long pause
        with pytest.raises(StateLockedError), mine.batch():
            mine.set_meta("cursor", "late")
        got = theirs.get(WorkItemType.ISSUE, 4)
        assert got is not None and got.status is Status.DONE
        assert theirs.get_meta("cursor") is None
        assert mine.get(WorkItemType.ISSUE, 4) == got  # reading needs no lease
