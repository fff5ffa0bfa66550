"""Nothing piles up in the daemon's git: finished jobs' worktrees and branches go, a killed
daemon's leftovers go at the next start, and KEEP_WORKTREES keeps them for debugging."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from scripts.orchestrator.fakes.git_world import GitWorld, git, write_files
from scripts.orchestrator.fakes.model_script import Text, write
from scripts.orchestrator.worktree_manager import GitError, WorktreeManager

from .fixtures_world import World

TOKEN = "ghp_" + "C1eanupTokenForTests" * 2  # made up


def _mirror(base: Path) -> Path:
    return base / ".mirrors" / "acme+widgets.git"


async def _manager(git_world: GitWorld, base: Path, **kw: object) -> WorktreeManager:
    manager = WorktreeManager(git_world.clone, base, token=TOKEN, **kw)  # type: ignore[arg-type]
    await manager.use_mirror(_mirror(base))
    return manager


def _refs(repo: Path, *prefixes: str) -> list[str]:
    return git(repo, "for-each-ref", "--format=%(refname)", *prefixes).split()


def _per_item(base: Path) -> tuple[list[str], list[str], int]:
    """What items leave behind: folders in WORKTREE_BASE, the mirror's per-item refs, and the
    worktrees git lists besides the bare mirror itself."""
    mirror = _mirror(base)
    folders = sorted(p.name for p in base.iterdir() if p.name != ".mirrors")
    refs = _refs(mirror, "refs/heads/", "refs/orchestrator/")
    listed = git(mirror, "worktree", "list", "--porcelain").count("worktree ") - 1
    return folders, refs, listed


# -- what each workflow does with the `Git` port, as it does it -------------------------------


async def _implement(m: WorktreeManager, n: int, outcome: str = "pushed") -> None:
    branch = f"feature/issue-{n}"
    start = await m.fetch_branch("main")
    remote = await m.remote_branch_sha(branch)
    worktree = await m.branch_worktree(f"feature-issue-{n}", branch, start)
    try:
        if outcome == "claude failed":
            return
        write_files(worktree, {f"item_{n}.py": f"N = {n}\n"})
        await m.commit_all(worktree, f"Implement #{n}")
        if outcome == "push failed":  # a transient fault: the commit waits on the branch
            return
        await m.push_commit(await m.head(worktree), branch, remote)
    finally:
        await m.remove(worktree)


async def _review(m: WorktreeManager, world: GitWorld, n: int) -> None:
    world.push_branch(f"topic-{n}", {f"pr_{n}.py": "X = 1\n"}, ref=f"refs/pull/{n}/head")
    head = await m.fetch_pull_head(n)
    base = await m.fetch_branch("main")
    worktree = await m.detached_worktree(f"pr-review-{n}", head)
    try:
        await m.diff(base, head, cwd=worktree, limit=10_000)
        await m.restore_steering(worktree, base)
    finally:
        await m.remove(worktree)


async def _merge(m: WorktreeManager, n: int) -> None:
    head = await m.fetch_pull_head(n)
    base = await m.fetch_branch("main")
    merged = await m.merge_worktree(f"merge-{n}", base, head)
    try:
        assert not merged.conflicts
    finally:
        await m.remove(merged.path)


async def test_items_leave_no_worktree_and_no_branch_behind(
    git_world: GitWorld, tmp_path: Path
) -> None:
    base = tmp_path / "worktrees"
    m = await _manager(git_world, base, pull_ref_grace=0)
    for n in range(1, 9):
        await _implement(m, n, "claude failed" if n % 4 == 0 else "pushed")
        await _review(m, git_world, 100 + n)
        await _merge(m, 100 + n)
        assert _per_item(base) == ([], [], 0), f"after item {n}"
    assert git_world.branch_exists("feature/issue-1")  # the work did reach the remote
    assert not (_mirror(base) / "worktrees").exists() or not any(
        (_mirror(base) / "worktrees").iterdir()
    )


async def test_a_commit_not_pushed_keeps_its_branch_until_the_next_start(
    git_world: GitWorld, tmp_path: Path
) -> None:
    base = tmp_path / "worktrees"
    m = await _manager(git_world, base)
    await _implement(m, 1, "push failed")
    branch = "feature/issue-1"
    kept = await m.local_branch_sha(branch)
    assert kept is not None and kept != git_world.sha("main")  # the resumed attempt pushes it
    assert _per_item(base)[0] == []

    restarted = await _manager(git_world, base)
    await restarted.prune_leftovers(keep_branches={branch})  # the item is still in progress
    assert await restarted.local_branch_sha(branch) == kept
    await restarted.push_commit(kept, branch, None)  # the resumed push
    assert git_world.sha(branch) == kept

    done = await _manager(git_world, base)
    await done.prune_leftovers(keep_branches=())  # the item is done now
    assert _per_item(base) == ([], [], 0)


KILLED = """
    import asyncio, os, signal, sys
    from pathlib import Path
    from scripts.orchestrator.worktree_manager import WorktreeManager

    async def main():
        clone, base, mirror = map(Path, sys.argv[1:4])
        m = WorktreeManager(clone, base)
        await m.use_mirror(mirror)
        start = await m.fetch_branch("main")
        await m.branch_worktree("feature-issue-1", "feature/issue-1", start)
        await m.branch_worktree("feature-issue-2", "feature/issue-2", start)
        await m.detached_worktree("pr-review-7", await m.fetch_pull_head(7))
        await m.detached_worktree("merge-8", start)
        os.kill(os.getpid(), signal.SIGKILL)  # mid-job, as `kill -9` does

    asyncio.run(main())
"""


async def test_a_killed_daemons_leftovers_go_at_the_next_start(
    git_world: GitWorld, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    base = tmp_path / "worktrees"
    git_world.push_branch("fork", {"fork.py": "F = 1\n"}, ref="refs/pull/7/head")
    killed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLED), str(git_world.clone), str(base),
         str(_mirror(base))],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr
    # Worse still: one folder lost (a stale registration), one registration lost (a folder
    # git no longer lists, which still leads to the mirror).
    git(base / "merge-8", "rev-parse", "HEAD")
    subprocess.run(["rm", "-rf", str(base / "merge-8")], check=True, timeout=30)
    admin = _mirror(base) / "worktrees" / "feature-issue-2"
    subprocess.run(["rm", "-rf", str(admin)], check=True, timeout=30)
    # What is not the daemon's stays: a folder of the user's, and another repository's worktree.
    write_files(base, {"notes/todo.txt": "mine\n", "elsewhere/.git": "gitdir: /srv/x/.git\n"})
    assert _per_item(base)[0] == ["elsewhere", "feature-issue-1", "feature-issue-2", "notes",
                                  "pr-review-7"]  # fmt: skip

    restarted = await _manager(git_world, base)
    with caplog.at_level("INFO", logger="scripts.orchestrator.worktree_manager"):
        await restarted.prune_leftovers(keep_branches={"feature/issue-1"})

    assert _per_item(base) == (["elsewhere", "notes"], ["refs/heads/feature/issue-1"], 0)
    assert (base / "notes" / "todo.txt").read_text() == "mine\n"
    assert "removed 3 worktree(s) and 1 local branch(es) an earlier run left" in caplog.text
    # The mirror works as before: a new job on a kept branch.
    start = git_world.sha("main")
    again = await restarted.branch_worktree("feature-issue-1", "feature/issue-1", start)
    await restarted.remove(again)
    assert _per_item(base) == (["elsewhere", "notes"], [], 0)


async def test_keep_worktrees_keeps_them_and_says_where(
    git_world: GitWorld, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    base = tmp_path / "worktrees"
    m = await _manager(git_world, base, keep_worktrees=True)
    with caplog.at_level("INFO", logger="scripts.orchestrator.worktree_manager"):
        await _implement(m, 1, "pushed")
        await _review(m, git_world, 5)
    assert f"kept the worktree {base / 'feature-issue-1'} (KEEP_WORKTREES=true)" in caplog.text
    assert (base / "pr-review-5" / "pr_5.py").is_file()

    caplog.clear()
    restarted = await _manager(git_world, base, keep_worktrees=True)
    with caplog.at_level("INFO", logger="scripts.orchestrator.worktree_manager"):
        await restarted.prune_leftovers()
    assert _per_item(base)[:2] == (
        ["feature-issue-1", "pr-review-5"],
        ["refs/heads/feature/issue-1"],  # checked out in a kept worktree
    )
    assert "kept 2 worktree(s) of an earlier run" in caplog.text


async def test_a_failed_merge_leaves_no_worktree(git_world: GitWorld, tmp_path: Path) -> None:
    base = tmp_path / "worktrees"
    m = await _manager(git_world, base)
    with pytest.raises(GitError):
        await m.merge_worktree("merge-3", git_world.sha("main"), "f" * 40)  # no such commit
    assert _per_item(base) == ([], [], 0)


async def test_a_deleted_remote_branch_leaves_no_copy(git_world: GitWorld, tmp_path: Path) -> None:
    base = tmp_path / "worktrees"
    m = await _manager(git_world, base)
    git_world.push_branch("topic", {"t.py": "T = 1\n"})
    await m.fetch_branch("topic")
    await m.delete_remote_branch("topic")
    assert not git_world.branch_exists("topic")
    assert _refs(_mirror(base), "refs/remotes/origin/topic") == []


async def test_the_daemon_leaves_no_worktree_and_no_branch_behind(world: World) -> None:
    """The real loop: an issue implemented, a pull request reviewed, then merged."""
    assert await world.once() == 0  # watching
    issue = world.github.create_issue("Add a greeting", "Write greet.py", user="alice")
    world.github.add_labels(issue, "ready", user="alice")
    world.model.script_for(
        f"Implement GitHub issue #{issue}",
        [write({"greet.py": "def greet() -> str:\n    return 'hi'\n"}), Text("Added greet.py.")],
    )
    world.git.push_branch("topic", {"feature.py": "VALUE = 1\n"})
    pull = world.github.create_pull("Change topic", "topic", user="dave")

    assert await world.once() == 0
    base = world.settings.worktree_base
    assert world.git.branch_exists("feature/issue-1")
    assert world.github.reviews_on(pull)
    assert _per_item_of(world) == ([], [])

    world.request_merge(pull)
    assert await world.once() == 0
    assert world.github.pull(pull)["merged"] is True
    assert _per_item_of(world) == ([], [])
    assert sorted(p.name for p in base.iterdir()) == [".mirrors"]


def _per_item_of(world: World) -> tuple[list[str], list[str]]:
    base = world.settings.worktree_base
    folders = sorted(p.name for p in base.iterdir() if p.name != ".mirrors")
    return folders, _refs(world.settings.git_mirror, "refs/heads/")
