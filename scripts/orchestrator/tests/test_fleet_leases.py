"""Tests for the fleet's hold on its repositories (found by an outside review): the leases are
renewed through a slow start, the last cycle of `--once` and a stop's grace; a stop while a
repository starts stops it; a failed claim later on is tried again; a batch whose connection
is lost at its start keeps nothing."""

from __future__ import annotations

import asyncio
import contextlib
import time
import types
from collections.abc import Callable

import psycopg
import pytest

from scripts.orchestrator import fleet
from scripts.orchestrator.core.work import Status, WorkItem, WorkItemType
from scripts.orchestrator.daemon import Daemon
from scripts.orchestrator.leases import Leases, LocalLeases
from scripts.orchestrator.leases_pg import PgLeases
from scripts.orchestrator.state import StateError
from scripts.orchestrator.state_pg import PgState

from .fixtures_postgres import pg_state_url, postgres_url  # noqa: F401

LEASE = 3.0
Log = list[tuple[str, str, float]]


class FakeDaemon:
    """A repository's daemon that is always busy; its cycle (or its stop's grace) lasts
    `lasts` seconds."""

    def __init__(self, repo: str, log: Log, lasts: float) -> None:
        self.repo, self.log, self.lasts = repo, log, lasts
        self._stop = asyncio.Event()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def jobs(self) -> list[object]:
        return [object()]

    def request_stop(self, why: str = "") -> None:
        self._stop.set()

    async def run(self, *, once: bool = False) -> int:
        self.log.append(("start", self.repo, time.monotonic()))
        if not once:
            await self._stop.wait()
        await asyncio.sleep(self.lasts)
        self.log.append(("end", self.repo, time.monotonic()))
        return 0


def a_fleet(leases: Leases, repos: list[str], opening: dict[str, float], log: Log,
            lasts: float = 0.0) -> fleet.Fleet:  # fmt: skip
    settings = types.SimpleNamespace(repositories=repos, state_url="x")
    made = fleet.Fleet(settings, None, leases, None, None, None)  # type: ignore[arg-type]
    made._order = list(repos)

    async def open_one(repo: str, stack: contextlib.AsyncExitStack) -> Daemon:
        await asyncio.sleep(opening.get(repo, 0))  # a first clone of a big repository
        return FakeDaemon(repo, log, lasts)  # type: ignore[return-value]

    made._open = open_one  # type: ignore[method-assign]
    return made


async def thief(url: str, repos: list[str], seconds: float) -> list[tuple[str, float]]:
    """Another daemon that takes the repositories whenever their leases end."""
    other = PgLeases(url, LEASE)
    took: list[tuple[str, float]] = []
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            for repo in repos:
                if await asyncio.to_thread(other.claim, repo):
                    took.append((repo, time.monotonic()))
                    await asyncio.to_thread(other.release, repo)
            await asyncio.sleep(0.2)
    finally:
        other.close()
    return took


def while_running(log: Log) -> Callable[[tuple[str, float]], bool]:
    def running(taken: tuple[str, float]) -> bool:
        repo, at = taken
        starts = [t for kind, r, t in log if kind == "start" and r == repo]
        ends = [t for kind, r, t in log if kind == "end" and r == repo]
        return bool(starts) and starts[0] <= at and (not ends or at <= ends[0])

    return running


async def test_leases_are_renewed_while_another_repository_starts_slowly(
    pg_state_url: str,  # noqa: F811
) -> None:
    mine, log = PgLeases(pg_state_url, LEASE), []  # type: Leases, Log
    made = a_fleet(mine, ["acme/one", "acme/two"], {"acme/two": 2 * LEASE}, log)
    run = asyncio.create_task(made.run(once=False))
    took = await thief(pg_state_url, ["acme/one"], 2 * LEASE + 1)
    made.request_stop()
    await asyncio.wait_for(run, 30)
    mine.close()
    assert not [t for t in took if while_running(log)(t)]
    assert [r for kind, r, _ in log if kind == "start"] == ["acme/one", "acme/two"]  # control


@pytest.mark.parametrize("once", [True, False])
async def test_leases_are_renewed_through_the_last_cycle_and_the_stops_grace(
    pg_state_url: str,  # noqa: F811
    once: bool,
) -> None:
    mine, log = PgLeases(pg_state_url, LEASE), []  # type: Leases, Log
    made = a_fleet(mine, ["acme/one"], {}, log, lasts=2 * LEASE)
    run = asyncio.create_task(made.run(once=once))
    await asyncio.sleep(0.5)
    made.request_stop()  # SIGTERM: the runs get their grace (longer than a lease here)
    took = await thief(pg_state_url, ["acme/one"], 2 * LEASE + 0.5)
    await asyncio.wait_for(run, 30)
    mine.close()
    assert not [t for t in took if while_running(log)(t)]
    assert log and log[-1][0] == "end"


async def test_a_stop_while_a_repository_starts_means_it_never_runs() -> None:
    log: Log = []
    made = a_fleet(LocalLeases(), ["acme/one"], {"acme/one": 1.0}, log)
    run = asyncio.create_task(made.run(once=False))
    await asyncio.sleep(0.3)
    made.request_stop("SIGTERM")
    assert await asyncio.wait_for(run, 10) == 0
    assert log == []


class Flaky(LocalLeases):
    """Leases whose second round of claims fails (the database away for a moment)."""

    def __init__(self) -> None:
        super().__init__()
        self.claims = 0

    def claim(self, repo: str) -> bool:
        self.claims += 1
        if self.claims == 2:
            raise StateError("the state database failed to take a repository: gone")
        return super().claim(repo)


async def test_a_failed_claim_later_on_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fleet, "MAX_TICK", 0.1)
    log: Log = []
    leases = Flaky()
    made = a_fleet(leases, ["acme/one", "acme/two"], {}, log)
    # The first round takes one (a share of one: two daemons alive), then both.
    made._live = 2
    monkeypatch.setattr(leases, "beat", lambda: 2)
    run = asyncio.create_task(made.run(once=False))
    deadline = time.monotonic() + 10
    while len(made._daemons) < 1:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    monkeypatch.setattr(leases, "beat", lambda: 1)  # the other daemon left: a share of two
    while len(made._daemons) < 2:  # the failed claim was tried again, and the fleet went on
        assert time.monotonic() < deadline and not run.done()
        await asyncio.sleep(0.05)
    assert leases.claims == 3
    made.request_stop()
    assert await asyncio.wait_for(run, 10) == 0


def test_a_batch_whose_connection_is_lost_at_its_start_keeps_nothing(
    pg_state_url: str,  # noqa: F811
) -> None:
    mine, other = PgLeases(pg_state_url, 0.5), PgLeases(pg_state_url, 0.5)
    assert mine.claim("acme/widgets")
    with PgState(pg_state_url, "acme/widgets", lease=mine.owner) as state:
        check = state._check_lease

        def lost_once(conn: psycopg.Connection[tuple[object, ...]]) -> None:
            with psycopg.connect(pg_state_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
            state._check_lease = check  # type: ignore[method-assign]
            check(conn)

        state._check_lease = lost_once  # type: ignore[method-assign]
        with pytest.raises(StateError), state.batch():
            state.put(WorkItem(type=WorkItemType.ISSUE, number=4, status=Status.IN_PROGRESS))
        assert state.get(WorkItemType.ISSUE, 4) is None  # the control: the store goes on
    mine.close()
    other.close()
