"""Several daemons on one PostgreSQL, through the real path: three daemon processes share five
repositories on one fake GitHub; every issue gets one pull request, every head one review,
every `/merge` one merge; a daemon killed with work in hand is taken over after its leases
end, and no two daemons poll one repository at once."""

from __future__ import annotations

import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from scripts.orchestrator.fakes.fake_github import FakeGitHub
from scripts.orchestrator.fakes.fake_github.repository import Repository
from scripts.orchestrator.fakes.git_world import make_world
from scripts.orchestrator.fakes.model_script import Dynamic, RecordedRequest, Step, Text, write
from scripts.orchestrator.workflows.review import BASELINE_META

from .fixtures_daemon import DaemonProcess, daemons, held, release  # noqa: F401
from .fixtures_postgres import pg_state_url, postgres_url  # noqa: F401
from .fixtures_world import World

NAMES = ("widgets", "gadgets", "gizmos", "sprockets", "levers")
ISSUES_EACH = 6  # 30 ready issues
PULLS_EACH = 2  # 10 people's pull requests, one of each repository's merged on `/merge`
LEASE = 5  # seconds
DEADLINE = 300.0
BOT = "orchestrator-bot"


def until(done: Callable[[], bool], what: str, seen: Callable[[], object] = lambda: "") -> None:
    """Poll until `done()`, failing after DEADLINE seconds (saying `seen()`)."""
    end = time.monotonic() + DEADLINE
    while not done():
        assert time.monotonic() < end, f"no {what} within {DEADLINE}s: {seen()}"
        time.sleep(0.2)


def start(world: World, url: str, number: int) -> DaemonProcess:
    """One daemon as a user starts it on a machine of its own: its folders, the shared
    database and repositories."""
    own = world.root / f"daemon-{number}"
    own.mkdir()
    return DaemonProcess(
        world,
        unset=("GITHUB_REPO", "REPO_PATH"),
        GITHUB_REPOS=",".join(f"acme/{name}" for name in NAMES),
        STATE_URL=url,
        STATE_FILE=str(own / "state.json"),
        WORKTREE_BASE=str(own / "worktrees"),
        LOG_DIR=str(own / "logs"),
        LEASE_SECONDS=str(LEASE),
        POLL_INTERVAL="1",
        MAX_CONCURRENT="2",
        CI_WAIT_TIMEOUT="1",
        # Reviews on a writer's `/review`: the people's pull requests, not the daemon's own.
        REVIEW_ON_PUSH="false",
        SANDBOX_READ_PATHS=f'["{sys.prefix}", "{sys.base_prefix}"]',
    )


def holders(url: str) -> dict[str, str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT repo, owner FROM orchestrator_leases WHERE expires_at > now()")
        return {str(repo): str(owner) for repo, owner in rows.fetchall()}


def watched(url: str) -> set[str]:
    """The repositories some daemon has looked at (their open pull requests remembered: a
    pull request opened later is a new one)."""
    with psycopg.connect(url, autocommit=True) as conn:
        made = conn.execute("SELECT to_regclass('orchestrator_meta') IS NOT NULL").fetchone()
        if not made or not made[0]:  # no daemon has migrated the database yet
            return set()
        rows = conn.execute(
            "SELECT repo FROM orchestrator_meta WHERE key = %s", (BASELINE_META,)
        ).fetchall()
        return {str(repo) for (repo,) in rows}


@pytest.mark.timeout(DEADLINE + 120)
def test_three_daemons_share_five_repositories_exactly_once(
    world: World,
    pg_state_url: str,  # noqa: F811
    daemons: list[DaemonProcess],  # noqa: F811
    release: threading.Event,  # noqa: F811
    tmp_path: Path,
) -> None:
    gh = world.github
    repos: dict[str, FakeGitHub | Repository] = {"acme/widgets": gh}
    for name in NAMES[1:]:
        origin = make_world(tmp_path / name, {"README.md": f"# {name}\n"}).origin
        repos[f"acme/{name}"] = gh.add_repository(origin, "acme", name)
    issues: dict[tuple[str, int], str] = {}
    for full, repo in repos.items():
        for user in ("alice", "carol"):
            repo.set_permission(user, "write")
        for n in range(ISSUES_EACH):
            name = f"{full.split('/')[1]}_{n}.py"
            # A run begun again elsewhere (its daemon killed) writes the file again.
            steps: list[Step] = [_writes(name)] * 8
            if (full, n) == ("acme/gizmos", 0):  # held until its daemon is killed
                steps = [held(write({name: "N = 0\n"}), release), *steps]
            world.model.script_for(f"Write {name} please", steps)
            number = repo.create_issue(f"Add {name}", f"Write {name} please.", user="alice")
            repo.add_labels(number, "ready", user="alice")
            issues[(full, number)] = name

    fleet = [start(world, pg_state_url, n) for n in range(3)]
    daemons.extend(fleet)
    try:
        _work(world, pg_state_url, fleet, repos, issues, release)
    finally:  # each daemon's log beside the test's files, for a failure's reader
        for n, daemon in enumerate(fleet):
            (tmp_path / f"daemon-{n}.log").write_text(daemon.log())


def _work(
    world: World,
    pg_state_url: str,  # noqa: F811
    fleet: list[DaemonProcess],
    repos: dict[str, FakeGitHub | Repository],
    issues: dict[tuple[str, int], str],
    release: threading.Event,  # noqa: F811
) -> None:
    until(lambda: watched(pg_state_url) == set(repos), "first look at every repository")
    pulls: dict[tuple[str, int], str] = {}
    for full, repo in repos.items():
        for n in range(PULLS_EACH):
            head = repo.commit(f"topic-{n}", {f"topic_{n}.txt": f"{n}\n"})
            number = repo.create_pull(f"A change {n}", f"topic-{n}", user="dave")
            pulls[(full, number)] = head
            repo.comment(number, f"/review {head}", user="carol")

    # The daemon holding gizmos is killed in the middle of its first Claude run there.
    until(lambda: _runs_of(world, "gizmos_0.py") > 0, "the run")
    owner = holders(pg_state_url)["acme/gizmos"]
    victim = next(d for d in fleet if f":{d.proc.pid}:" in owner)
    victim.kill()
    killed_at = time.monotonic()
    release.set()
    survivors = [d for d in fleet if d is not victim]

    def reviewed(full: str, number: int) -> bool:
        return any(r["user"]["login"] == BOT for r in repos[full].reviews_on(number))

    until(lambda: all(reviewed(*key) for key in pulls), "reviews of the people's pull requests",
          lambda: ([k for k in pulls if not reviewed(*k)], _tails(fleet)))  # fmt: skip
    for full, repo in repos.items():  # a writer merges one of each repository's
        number = min(n for f, n in pulls if f == full)
        repo.comment(number, f"/merge {pulls[(full, number)]}", user="carol")

    def opened() -> int:
        return sum(len(repo.mutations_named("create_pull")) for repo in repos.values())

    def merged() -> int:
        return sum(len(repo.mutations_named("merge_pull")) for repo in repos.values())

    def unopened() -> list[str]:
        return [f"{full}#{number}" for (full, number) in issues
                if repos[full].branch_sha(f"feature/issue-{number}") is None]  # fmt: skip

    until(lambda: opened() == len(issues) and merged() == len(repos), "every pull request",
          lambda: (opened(), merged(), unopened()))  # fmt: skip
    taken_over = [d for d in survivors if "took acme/gizmos" in d.log()]
    assert taken_over, "nobody took gizmos over"
    for daemon in survivors:
        daemon.signal(signal.SIGTERM)
    for daemon in survivors:
        assert daemon.exit_code() == 0, daemon.log()

    # Exactly once: one pull request per issue, one review per head, one merge per trigger.
    for full, repo in repos.items():
        heads = Counter(m.body["head"] for m in repo.mutations_named("create_pull"))
        assert set(heads.values()) == {1}, f"{full}: {heads}"
        mine = {issues[(f, n)] for f, n in issues if f == full}
        assert len(heads) == len(mine) == ISSUES_EACH
        for number in {n for f, n in pulls if f == full} | set(_pulls(repo)):
            by_head = Counter(
                r["commit_id"] for r in repo.reviews_on(number) if r["user"]["login"] == BOT
            )
            assert set(by_head.values()) <= {1}, f"{full}#{number}: {by_head}"
        assert len(repo.mutations_named("merge_pull")) == 1
    # The killed daemon's run was begun again by the daemon that took gizmos over: two runs.
    assert _runs_of(world, "gizmos_0.py") == 2

    # One poller per repository at a time: its requests come in runs of one daemon each, as
    # many runs as the repository was taken, never interleaved.
    takes = Counter(
        found.group(1)
        for daemon in fleet
        for found in re.finditer(r"took (acme/\w+) \(lease", daemon.log())
    )
    for full, repo in repos.items():
        pids = [
            r.headers.get("user-agent", "")
            for r in repo.requests
            if r.path.endswith("/issues/comments") and r.method == "GET"
        ]
        runs = [p for i, p in enumerate(pids) if i == 0 or pids[i - 1] != p]
        assert len(runs) <= takes[full], f"{full}: {runs} for {takes[full]} takes"
    assert time.monotonic() - killed_at >= LEASE  # nobody took gizmos before its lease ended


def _writes(name: str) -> Dynamic:
    """Each run's first turn writes `name`; its next one says it is done."""

    def answer(request: RecordedRequest) -> Step:
        return Text("Added.") if request.tool_results else write({name: "N = 1\n"})

    return answer


def _tails(fleet: list[DaemonProcess]) -> str:
    """The end of each daemon's log, for a failure's message."""
    return "\n\n".join(d.log()[-4000:] for d in fleet)


def _pulls(repo: FakeGitHub | Repository) -> list[int]:
    """The pull requests the daemon opened in `repo`."""
    return [int(m.result["number"]) for m in repo.mutations_named("create_pull")]


def _runs_of(world: World, name: str) -> int:
    """The Claude runs (CLI sessions) asked to write `name`."""
    sessions = {
        r.session_id
        for r in world.model.requests
        if r.conversation is not None and f"Write {name}" in r.first_user_text
    }
    return len(sessions)
