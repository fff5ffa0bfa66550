"""Several repositories in one daemon, through the real path: one process, one fake GitHub
serving them all (git too), the real CLI on the scripted model, each repository's own settings
file read from its default branch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from scripts.orchestrator.core.repo_config import REPO_CONFIG_PATH
from scripts.orchestrator.core.work import Status, WorkItemType
from scripts.orchestrator.fakes.git_world import make_world
from scripts.orchestrator.fakes.model_script import Text, write
from scripts.orchestrator.fakes.scripted_model import bundled_cli_path
from scripts.orchestrator.state import State

from .fixtures_world import World

DEADLINE = 180


def run(
    world: World, repos: list[str], *args: str, **extra: str
) -> subprocess.CompletedProcess[str]:
    """The daemon as a user starts it for several repositories: no REPO_PATH, each clone its
    own, fetched from the fake over HTTP with the token."""
    env = {
        **world.claude_env,
        "PATH": os.environ.get("PATH", ""),
        "GITHUB_REPOS": ",".join(repos),
        "GITHUB_TOKEN": world.github.token,
        "GITHUB_API_URL": world.github.url,
        "WORKTREE_BASE": str(world.root / "fleet-worktrees"),
        "STATE_FILE": str(world.root / "fleet" / "state.json"),
        "LOG_DIR": str(world.root / "fleet-logs"),
        "CLAUDE_CLI_PATH": str(bundled_cli_path()),
        "MAX_TURNS": "10",
        "SANDBOX_READ_PATHS": f'["{sys.prefix}", "{sys.base_prefix}"]',
        **extra,
    }
    (world.root / "fleet").mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "scripts.orchestrator.main", *args],
        cwd=world.root, env=env, capture_output=True, text=True, timeout=DEADLINE, check=False,
    )  # fmt: skip


def state_of(world: World, repo: str) -> State:
    slug = repo.replace("/", "+")
    return State(world.root / "fleet" / f"state.{slug}.json", lock=False)


def test_one_daemon_works_for_three_repositories_each_by_its_own_settings(
    world: World, tmp_path: Path
) -> None:
    gh = world.github
    gadgets = gh.add_repository(make_world(tmp_path / "g", {"README.md": "# g\n"}).origin,
                                "acme", "gadgets")  # fmt: skip
    gizmos = gh.add_repository(make_world(tmp_path / "z", {"README.md": "# z\n"}).origin,
                               "acme", "gizmos")  # fmt: skip
    for repo in (gadgets, gizmos):
        repo.set_permission("alice", "write")
    # widgets: the daemon's settings. gadgets: its own label. gizmos: a file with a typo.
    gadgets.commit(gadgets.default_branch, {REPO_CONFIG_PATH: 'ready_label = "go"\n'})
    broken = gizmos.commit(gizmos.default_branch, {REPO_CONFIG_PATH: 'ready_lable = "go"\n'})
    one = gh.create_issue("Add one", "Write one.py", user="alice")
    gh.add_labels(one, "ready", user="alice")
    two = gadgets.create_issue("Add two", "Write two.py", user="alice")
    gadgets.add_labels(two, "go", user="alice")
    ignored = gadgets.create_issue("Not for gadgets", "ready is not its label", user="alice")
    gadgets.add_labels(ignored, "ready", user="alice")
    waits = gizmos.create_issue("Add three", "Write three.py", user="alice")
    gizmos.add_labels(waits, "ready", user="alice")
    # Each repository numbers its own issues: the scripts tell them apart by their text.
    world.model.script_for("Write one.py", [write({"one.py": "ONE = 1\n"}), Text("Added.")])
    world.model.script_for("Write two.py", [write({"two.py": "TWO = 2\n"}), Text("Added.")])

    done = run(world, ["acme/widgets", "acme/gadgets", "acme/gizmos"], "--once", "--verbose")

    assert done.returncode == 0, done.stderr
    assert "watching 3 repositories: acme/widgets, acme/gadgets, acme/gizmos" in done.stderr
    assert f"[acme/widgets issue#{one}]" in done.stderr  # each job's lines name its repository
    pulls = {name: repo.mutations_named("create_pull") for name, repo in
             (("widgets", gh), ("gadgets", gadgets), ("gizmos", gizmos))}  # fmt: skip
    assert [len(p) for p in pulls.values()] == [1, 1, 0], done.stderr
    assert gh.branch_sha(f"feature/issue-{one}") is not None
    assert gadgets.branch_sha(f"feature/issue-{two}") is not None
    with state_of(world, "acme/gadgets") as state:
        item = state.get(WorkItemType.ISSUE, two)
        assert item is not None and item.status is Status.DONE
        assert state.get(WorkItemType.ISSUE, ignored) is None
    # gizmos: told once, on the commit that holds the file, and nothing started there.
    told = gizmos.commit_comments()
    assert [c["commit_id"] for c in told] == [broken] and "ready_lable" in told[0]["body"]
    assert gizmos.comments_on(waits) == [] and gizmos.labels_of(waits) == ["ready"]
    again = run(world, ["acme/widgets", "acme/gadgets", "acme/gizmos"], "--once")
    assert again.returncode == 0, again.stderr
    assert len(gizmos.commit_comments()) == 1
    shown = run(world, ["acme/widgets", "acme/gadgets", "acme/gizmos"], "status")
    assert shown.returncode == 0, shown.stderr
    assert "acme/gadgets:" in shown.stdout and f"issue #{two}" in shown.stdout


def test_a_repository_the_token_cannot_see_stops_the_start_in_one_line(world: World) -> None:
    done = run(world, ["acme/widgets", "acme/nowhere"], "--once")
    assert done.returncode == 2
    assert "acme/nowhere" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_check_reports_each_repository_and_its_settings_file(world: World, tmp_path: Path) -> None:
    gh = world.github
    gadgets = gh.add_repository(make_world(tmp_path / "g", {"README.md": "# g\n"}).origin,
                                "acme", "gadgets")  # fmt: skip
    gadgets.commit(gadgets.default_branch, {REPO_CONFIG_PATH: "max_turns = 0\n"})
    gh.commit(gh.default_branch, {REPO_CONFIG_PATH: 'ready_label = "go"\n'})

    done = run(world, ["acme/widgets", "acme/gadgets"], "check")

    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    widgets = next(line for line in lines if "settings file (acme/widgets)" in line)
    assert widgets.startswith("ok") and "sets READY_LABEL='go'" in widgets
    gadgets_line = next(line for line in lines if "settings file (acme/gadgets)" in line)
    assert gadgets_line.startswith("problem") and "max_turns" in gadgets_line
    assert sum(line.split()[1:2] == ["GitHub"] for line in lines) == 2, done.stdout
    assert sum(line.split()[1:2] == ["git"] for line in lines) == 1, done.stdout  # once
