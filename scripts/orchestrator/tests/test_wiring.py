"""The daemon's wiring: the poll's pace under the rate limit, and what an idle cycle costs the
real daemon against the fake GitHub."""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timedelta, timezone

import pytest

from scripts.orchestrator import startup
from scripts.orchestrator.github_cache import RateBudget
from scripts.orchestrator.wiring import Pacer

from .fixtures_world import World


def test_the_pacer_slows_down_and_says_until_when(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    reset = datetime.now(timezone.utc) + timedelta(hours=1)
    rate = RateBudget(limit=5000, remaining=4900, reset_at=reset, reset_in=3600,
                      noted_at=time.monotonic())  # fmt: skip
    pacer = Pacer(60, rate)
    assert pacer() == 60
    rate.remaining = 520  # 20 above the reserve: 10 polls must last an hour
    assert pacer() == pytest.approx(360, rel=0.01)
    assert f"until {reset:%H:%M:%S} UTC" in caplog.text and "520 of 5000" in caplog.text
    caplog.clear()
    rate.remaining = 518
    assert pacer() > 360
    assert caplog.text == "", "one line when it slows down, not one per poll"
    rate.remaining = 4999  # reset
    caplog.clear()
    assert pacer() == 60
    assert "fine again" in caplog.text


def test_while_webhooks_arrive_the_pacer_polls_only_as_a_safety_net() -> None:
    rate = RateBudget()
    since: list[float | None] = [None]
    pacer = Pacer(60, rate, (600, lambda: since[0]))
    assert pacer() == 60  # no delivery yet
    since[0] = 0.0
    assert pacer() == 600  # one just came
    since[0] = 700.0
    assert pacer() == 60  # they stopped


async def test_an_idle_cycle_of_the_daemon_costs_three_reads_answered_304(world: World) -> None:
    """Each `world.once()` is a whole start of the daemon: its start-up reads are answered
    304 too, and the cycle reads what changed, the new comments and the default branch's
    head (for the repository's settings file), nothing else."""
    gh = world.github
    for label in ("ready", "claude-failed"):  # else the start-up's label check answers 404
        gh.create_label(label)
    gh.commit("topic", {"t.txt": "t\n"})
    gh.create_pull("A person's change", "topic", user="dave")
    gh.create_issue("Not ready", user="carol")
    for _ in range(3):  # the first watch, the review of the pull request, quiet
        assert await world.once() == 0
        gh.advance(60)
    gh.clear_logs()
    assert await world.once() == 0
    assert [r for r in gh.requests if r.status != 304] == []
    cycle = [r.path for r in gh.requests if r.path.endswith(("/issues", "/issues/comments"))]
    assert cycle == ["/repos/acme/widgets/issues", "/repos/acme/widgets/issues/comments"]
    # The repository's settings file: its branch unchanged, the file is not read again.
    assert [r.path for r in gh.requests if "/git/" in r.path or "/contents/" in r.path] == [
        f"/repos/acme/widgets/git/ref/heads/{gh.default_branch}"
    ]
    assert {r.method for r in gh.requests} == {"GET"}


async def test_a_second_daemon_on_the_same_git_refuses_to_start(world: World) -> None:
    """Found by an outside review: two daemons with their own state files but one
    WORKTREE_BASE shared the repository's mirror, and the second one's start-up pruning
    removed the first one's worktrees. The control: after the first stops, it starts."""
    with startup.hold_mirror(world.settings):
        with pytest.raises(startup.StartupError, match=rf"another daemon \(pid {os.getpid()}\)"):
            await world.once()
        other = world.settings.model_copy(update={"github_repo": "acme/gadgets"})
        with startup.hold_mirror(other):  # another repository's git: its own lock
            pass
    assert await world.once() == 0
