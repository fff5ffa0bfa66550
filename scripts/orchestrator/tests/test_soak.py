"""A thousand poll cycles of the real daemon against the fake GitHub, with work arriving
throughout: memory, open files, threads, worktrees and the daemon's files stay flat."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts.orchestrator.claude_runner import SdkClaudeRunner
from scripts.orchestrator.daemon import Daemon
from scripts.orchestrator.fakes.model_script import Text, write
from scripts.orchestrator.fakes.scripted_model import bundled_cli_path
from scripts.orchestrator.github_cache import cache_file
from scripts.orchestrator.github_view import listings_file
from scripts.orchestrator.startup import start_sandbox
from scripts.orchestrator.state import State, Status, WorkItemType
from scripts.orchestrator.wiring import github_client, known_secrets, serve

from .fixtures_world import FAST_RETRY, World

CYCLES = int(os.environ.get("SOAK_CYCLES", "1000"))
WARM = 200  # cycles before the first measure: caches, pools and the first runs settle
ARRIVALS = (50, 150, 250, 350, 450)  # cycles at which a ready issue arrives
QUIET = 800  # by then the work that arrived is done (it takes ~200 cycles): nothing may move
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Sample:
    cycle: int
    rss: int  # bytes
    fds: int
    threads: int
    worktrees: int
    state: int  # bytes of each daemon file
    listings: int
    cache: int
    db: int


def sample(cycle: int, world: World) -> Sample:
    settings = world.settings
    rss = int(Path("/proc/self/statm").read_text().split()[1]) * PAGE
    trees = [p for p in settings.worktree_base.iterdir() if p.name != ".mirrors"]
    cache = cache_file(settings.state_file, world.github.token)
    return Sample(
        cycle=cycle,
        rss=rss,
        fds=len(os.listdir("/proc/self/fd")),
        threads=threading.active_count(),
        worktrees=len(trees),
        state=settings.state_file.stat().st_size,
        listings=listings_file(settings.state_file).stat().st_size,
        cache=sum(p.stat().st_size for p in cache.parent.glob(cache.name + "*")),
        db=cache.stat().st_size,
    )


async def test_a_thousand_cycles_stay_flat(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    gh = world.github
    for label in ("ready", "claude-failed"):
        gh.create_label(label)
    world.configure(poll_interval=0.001, max_concurrent=2, shutdown_grace=60)
    samples: list[Sample] = []
    arrived: list[int] = []
    original: Callable[[Daemon], object] = Daemon.cycle
    count = 0

    async def counted(daemon: Daemon) -> None:
        nonlocal count
        await original(daemon)  # type: ignore[misc]
        count += 1
        gh.advance(60)  # a minute of GitHub's time per poll, as POLL_INTERVAL=60 would
        if count in ARRIVALS:
            number = gh.create_issue(f"Feature {len(arrived) + 1}", "Add it.", user="alice")
            world.model.script_for(
                f"Implement GitHub issue #{number}",
                [write({f"f{number}.py": f"X = {number}\n"}), Text(f"Added f{number}.py.")],
            )
            gh.add_labels(number, "ready", user="alice")
            arrived.append(number)
        if count % 100 == 0:
            gh.clear_logs()  # the fake's own request log is not the daemon's memory
            if count >= WARM:
                samples.append(sample(count, world))
        if count == CYCLES:
            daemon.request_stop("the soak's end")

    monkeypatch.setattr(Daemon, "cycle", counted)
    sandbox = await start_sandbox(world.settings)
    claude = SdkClaudeRunner(str(bundled_cli_path()), env=world.claude_env, sandbox=sandbox)
    client = github_client(world.settings, known_secrets(world.settings), api_url=gh.url,
                           retry=FAST_RETRY, write_interval=0)  # fmt: skip
    with State(world.state_file) as state:
        assert await serve(world.settings, state, once=False, github=client, claude=claude) == 0
        done = [state.get(WorkItemType.ISSUE, n) for n in arrived]

    assert count == CYCLES and len(arrived) == len(ARRIVALS)
    # The work that arrived was done: each issue has its pull request.
    assert all(i is not None and i.status is Status.DONE and i.pr_number for i in done), done
    first, last = samples[0], samples[-1]
    quiet = [s for s in samples if s.cycle >= QUIET]
    # While work arrives, the state and the caches grow with the items (the state keeps them
    # STATE_RETENTION_DAYS, the cache its answers two days); cycles alone add nothing.
    for later in quiet[1:]:
        assert later.fds <= quiet[0].fds and later.threads <= quiet[0].threads, samples
        assert later.worktrees == 0, samples
        assert (later.state, later.listings, later.cache, later.db) == (
            quiet[0].state,
            quiet[0].listings,
            quiet[0].cache,
            quiet[0].db,
        ), samples
    assert last.rss - quiet[0].rss < 4 * 2**20, samples  # 200 quiet cycles
    assert last.rss - first.rss < 20 * 2**20, samples
    assert last.fds <= first.fds and last.threads <= first.threads, samples
