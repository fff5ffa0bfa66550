"""Write spacing: which requests are writes, and the work's own writes served first."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from scripts.orchestrator.github_spacing import (
    COURTESY,
    WORK,
    Turns,
    WriteSpacingThrottler,
    is_read,
    write_priority,
)

API = "https://api.github.com"


def request(method: str, path: str, **kw: object) -> httpx.Request:
    return httpx.Request(method, API + path, **kw)  # type: ignore[arg-type]


async def until(condition: object, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        await asyncio.sleep(0.005)


async def until_waiting(turns: Turns, count: int) -> None:
    await until(lambda: turns.waiting == count, f"{count} waiting")


def test_a_graphql_mutation_is_a_write() -> None:
    query = request("POST", "/graphql", json={"query": "query { a }"})
    mutation = request("POST", "/graphql", json={"query": "  mutation { addStar }"})
    comment = request("POST", "/repos/a/b/issues/1/comments", json={})
    assert [is_read(r) for r in (query, mutation, comment)] == [True, False, False]


@pytest.mark.parametrize(
    ("method", "path", "priority"),
    [
        ("POST", "/repos/a/b/pulls", WORK),
        ("POST", "/repos/a/b/pulls/7/reviews", WORK),
        ("PUT", "/repos/a/b/pulls/7/merge", WORK),
        ("POST", "/repos/a/b/issues/7/comments", COURTESY),
        ("POST", "/repos/a/b/issues/7/reactions", COURTESY),
        ("DELETE", "/repos/a/b/issues/7/labels/ready", COURTESY),
        ("PATCH", "/repos/a/b/issues/comments/9", COURTESY),
        ("PATCH", "/repos/a/b/pulls/7", COURTESY),  # an edit of a pull request's text
        ("POST", "/repos/a/b/pulls/7/comments", COURTESY),
    ],
)
def test_the_works_own_writes_are_told_apart(method: str, path: str, priority: int) -> None:
    assert write_priority(request(method, path)) == priority


async def test_waiting_writes_are_served_work_first_then_in_order() -> None:
    turns = Turns()
    order: list[str] = []

    async def take(priority: int, name: str) -> None:
        async with turns.turn(priority):
            order.append(name)

    async with turns.turn(COURTESY):  # a write holds the turn
        tasks = []
        for priority, name in [(COURTESY, "label"), (WORK, "pull 1"), (COURTESY, "comment"),
                               (WORK, "pull 2")]:  # fmt: skip
            tasks.append(asyncio.create_task(take(priority, name)))
            await until_waiting(turns, len(tasks))
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
    assert order == ["pull 1", "pull 2", "label", "comment"]
    assert turns.waiting == 0


async def test_a_cancelled_waiter_leaves_the_queue_and_a_handed_turn_is_passed_on() -> None:
    turns = Turns()
    order: list[str] = []

    async def take(name: str) -> None:
        async with turns.turn(COURTESY):
            order.append(name)

    async with turns.turn(WORK):
        gone = asyncio.create_task(take("gone"))
        await until(lambda: turns.waiting == 1, "the first waiter waits")
        handed = asyncio.create_task(take("handed"))
        last = asyncio.create_task(take("last"))
        await until(lambda: turns.waiting == 3, "three waiters")
        gone.cancel()  # cancelled while waiting: it leaves the queue
        await until(lambda: turns.waiting == 2, "the cancelled waiter left")
    # The turn was handed to `handed`; cancel it before it runs: `last` still gets a turn.
    handed.cancel()
    await asyncio.wait_for(last, timeout=5)
    assert order == ["last"] and turns.waiting == 0
    async with turns.turn(WORK):  # and the turn is free again
        order.append("again")
    assert order == ["last", "again"]


async def test_writes_are_a_second_apart_and_a_waiting_write_holds_no_read_back() -> None:
    throttler = WriteSpacingThrottler(max_concurrency=1, write_interval=30.0)
    write = request("POST", "/repos/a/b/issues/1/comments", json={})
    async with throttler.async_acquire(write):
        pass  # the first write goes at once
    waiting = asyncio.create_task(_hold(throttler, write))
    # The second write waits its 30 s; a read meanwhile gets the only concurrency slot.
    read = request("GET", "/repos/a/b/issues/1")
    await asyncio.wait_for(_hold(throttler, read), timeout=5)
    assert not waiting.done()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def _hold(throttler: WriteSpacingThrottler, req: httpx.Request) -> None:
    async with throttler.async_acquire(req):
        pass
