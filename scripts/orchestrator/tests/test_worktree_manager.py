"""Tests for WorktreeManager with real git: worktrees, commits, leased pushes, merges, diffs."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
from pathlib import Path

import pytest

from scripts.orchestrator.fakes.git_world import GitWorld, git, write_files
from scripts.orchestrator.worktree_manager import (
    COMMIT_EMAIL,
    COMMIT_NAME,
    GitError,
    WorktreeManager,
)

TOKEN = "ghp_" + "T0kenForWorktreeTests" * 2  # made up; must never reach disk


@pytest.fixture
def manager(git_world: GitWorld, tmp_path: Path) -> WorktreeManager:
    return WorktreeManager(git_world.clone, tmp_path / "worktrees", token=TOKEN)


def install_hook(hooks: Path, name: str, body: str) -> None:
    hooks.mkdir(parents=True, exist_ok=True)
    hook = hooks / name
    hook.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    hook.chmod(0o755)


def worktree_list(clone: Path) -> str:
    return git(clone, "worktree", "list", "--porcelain")


# -- worktrees ------------------------------------------------------------------------------


async def test_branch_worktree_from_origin_main(
    manager: WorktreeManager, git_world: GitWorld
) -> None:
    tip = git_world.push_branch("main", {"new.txt": "from upstream\n"})
    assert await manager.fetch_branch("main") == tip

    path = await manager.branch_worktree("feature-issue-42", "claude/issue-42", "origin/main")

    assert path == manager.path_for("feature-issue-42")
    assert await manager.head(path) == tip
    assert (path / "new.txt").read_text() == "from upstream\n"
    assert git(path, "symbolic-ref", "--short", "HEAD") == "claude/issue-42"
    assert str(path) in worktree_list(git_world.clone)


def test_path_for_makes_names_safe(manager: WorktreeManager) -> None:
    path = manager.path_for("pr review/7:x")
    assert path.parent == manager.worktree_base
    assert path.name == "pr-review-7-x"


async def test_branch_worktree_again_resets_a_dirty_leftover(
    manager: WorktreeManager, git_world: GitWorld
) -> None:
    path = await manager.branch_worktree("feature-issue-1", "claude/issue-1", "origin/main")
    (path / "calc.py").write_text("broken\n")
    (path / "junk.txt").write_text("untracked\n")
    (path / "junkdir").mkdir()
    (path / "junkdir" / "more.txt").write_text("junk\n")
    side = await manager.commit_all(path, "an earlier attempt")
    assert side is not None

    again = await manager.branch_worktree("feature-issue-1", "claude/issue-1", "origin/main")

    assert again == path
    main = git_world.sha("main")
    assert await manager.head(again) == main
    # The leftover branch, at another commit, is reset to the start point.
    assert await manager.git("rev-parse", "refs/heads/claude/issue-1") == main
    assert not (again / "junk.txt").exists()
    assert not (again / "junkdir").exists()
    assert "broken" not in (again / "calc.py").read_text()
    assert git(again, "status", "--porcelain") == ""


async def test_branch_worktree_replaces_a_junk_directory_and_a_stale_branch(
    manager: WorktreeManager, git_world: GitWorld
) -> None:
    # A directory git does not know (e.g. left by a crash after `worktree prune`).
    path = manager.path_for("feature-issue-2")
    write_files(path, {"junk.txt": "junk\n", "sub/deep.txt": "deeper\n", ".git": "gitdir: /nope\n"})
    # A local branch left at another commit by an earlier run.
    old = git_world.push_branch("claude/issue-2", {"old.txt": "old attempt\n"})
    await manager.fetch_branch("claude/issue-2")
    await manager.git("branch", "--force", "claude/issue-2", old)

    again = await manager.branch_worktree("feature-issue-2", "claude/issue-2", "origin/main")

    assert again == path
    assert await manager.head(again) == git_world.sha("main")
    assert sorted(p.name for p in again.iterdir()) == [
        ".git",
        "README.md",
        "calc.py",
        "test_calc.py",
    ]


async def test_branch_worktree_after_its_directory_was_deleted(
    manager: WorktreeManager, git_world: GitWorld
) -> None:
    path = await manager.branch_worktree("feature-issue-3", "claude/issue-3", "origin/main")
    shutil.rmtree(path)  # git still lists the worktree, with the branch checked out

    again = await manager.branch_worktree("feature-issue-3", "claude/issue-3", "origin/main")

    assert await manager.head(again) == git_world.sha("main")


async def test_detached_worktree_at_a_fork_pull_head(
    manager: WorktreeManager, git_world: GitWorld
) -> None:
    fork_sha = git_world.push_branch(
        "fork-feature", {"fork.txt": "from a fork\n"}, ref="refs/pull/7/head"
    )
    assert not git_world.branch_exists("fork-feature")

    assert await manager.fetch_pull_head(7) == fork_sha
    path = await manager.detached_worktree("pr-review-7", fork_sha)

    assert await manager.head(path) == fork_sha
    assert (path / "fork.txt").read_text() == "from a fork\n"
    assert git(path, "symbolic-ref", "--quiet", "HEAD", check=False) == ""  # detached
    # Again at another commit: the leftover is replaced, never an error.
    again = await manager.detached_worktree("pr-review-7", git_world.sha("main"))
    assert again == path
    assert not (again / "fork.txt").exists()


async def test_remove_cleans_worktree_and_directory(
    manager: WorktreeManager, git_world: GitWorld
) -> None:
    path = await manager.branch_worktree("feature-issue-5", "claude/issue-5", "origin/main")
    (path / "untracked.txt").write_text("x\n")

    await manager.remove(path)

    assert not path.exists()
    assert str(path) not in worktree_list(git_world.clone)
    await manager.remove(path)  # a missing one is fine


# -- commits --------------------------------------------------------------------------------


async def test_commit_all_returns_none_without_changes(manager: WorktreeManager) -> None:
    path = await manager.branch_worktree("feature-issue-6", "claude/issue-6", "origin/main")
    before = await manager.head(path)

    assert await manager.commit_all(path, "nothing") is None
    assert await manager.head(path) == before


async def test_commit_all_commits_additions_edits_and_deletions(
    manager: WorktreeManager,
) -> None:
    path = await manager.branch_worktree("feature-issue-6", "claude/issue-6", "origin/main")
    before = await manager.head(path)
    write_files(path, {"new.py": "x = 1\n", "calc.py": "# changed\n", "README.md": None})

    sha = await manager.commit_all(path, "Do the thing")

    assert sha is not None
    assert sha == await manager.head(path)
    assert git(path, "rev-parse", f"{sha}^") == before
    assert git(path, "log", "-1", "--format=%s", sha) == "Do the thing"
    changed = git(path, "diff", "--name-status", before, sha).splitlines()
    assert sorted(changed) == ["A\tnew.py", "D\tREADME.md", "M\tcalc.py"]
    assert git(path, "status", "--porcelain") == ""
    # The configured identity of the clone is kept.
    assert git(path, "log", "-1", "--format=%an <%ae>") == (
        "Orchestrator Test <orchestrator@example.invalid>"
    )


async def test_commit_all_leaves_out_a_half_written_file_of_a_stopped_run(
    manager: WorktreeManager,
) -> None:
    path = await manager.branch_worktree("feature-issue-6", "claude/issue-6", "origin/main")
    # Claude Code writes `<name>.tmp.<pid>.<hex>`, then renames it: a stop between leaves it.
    write_files(path, {"greet.py.tmp.2.59f4d0f1c657": "def gre", "done.py": "X = 1\n",
                       "notes.tmp.txt": "a file of the change\n"})  # fmt: skip
    sha = await manager.commit_all(path, "Work in progress")
    assert sha is not None
    added = git(path, "show", "--name-only", "--format=", sha).splitlines()
    assert sorted(added) == ["done.py", "notes.tmp.txt"]
    assert not (path / "greet.py.tmp.2.59f4d0f1c657").exists()


async def test_commit_all_falls_back_to_the_orchestrator_identity(
    manager: WorktreeManager, git_world: GitWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No identity anywhere: not in the clone, not in a global or system config, not in env.
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("EMAIL", raising=False)
    git(git_world.clone, "config", "--unset", "user.name")
    git(git_world.clone, "config", "--unset", "user.email")
    path = await manager.branch_worktree("feature-issue-8", "claude/issue-8", "origin/main")
    (path / "new.txt").write_text("x\n")

    sha = await manager.commit_all(path, "msg")

    assert sha is not None
    who = git(path, "log", "-1", "--format=%an <%ae>|%cn <%ce>", sha)
    expected = f"{COMMIT_NAME} <{COMMIT_EMAIL}>"
    assert who == f"{expected}|{expected}"


async def test_commit_all_skips_a_failing_pre_commit_hook(
    manager: WorktreeManager, git_world: GitWorld, tmp_path: Path
) -> None:
    ran = tmp_path / "hooks-ran"
    hooks = git_world.clone / ".git" / "hooks"
    install_hook(hooks, "pre-commit", f"echo pre-commit >> {ran}\nexit 1")
    install_hook(hooks, "commit-msg", f"echo commit-msg >> {ran}\nexit 1")
    path = await manager.branch_worktree("feature-issue-9", "claude/issue-9", "origin/main")
    (path / "new.txt").write_text("x\n")

    sha = await manager.commit_all(path, "msg")

    assert sha is not None
    assert not ran.exists()


async def test_hooks_and_fsmonitor_planted_in_the_clone_never_run(
    manager: WorktreeManager, git_world: GitWorld, tmp_path: Path
) -> None:
    """A job's worktree leads to the clone's `.git`: what an earlier job planted there (a
    post-checkout hook, `core.fsmonitor`, a hooks path) runs in none of the daemon's git."""
    ran = tmp_path / "planted-ran"
    planted = tmp_path / "planted-hooks"
    for hooks in (git_world.clone / ".git" / "hooks", planted):
        install_hook(hooks, "post-checkout", f"echo hook >> {ran}")
        install_hook(hooks, "reference-transaction", f"echo hook >> {ran}")
    git(git_world.clone, "config", "core.hooksPath", str(planted))
    git(git_world.clone, "config", "core.fsmonitor", f"echo fsmonitor >> {ran}; false")
    git(git_world.clone, "config", "core.pager", f"echo pager >> {ran}; cat")

    path = await manager.branch_worktree("feature-issue-9", "claude/issue-9", "origin/main")
    (path / "new.txt").write_text("x\n")
    await manager.commit_all(path, "msg")
    await manager.git("log", "-1", cwd=path)
    await manager.diff("origin/main", "HEAD", cwd=path)
    await manager.remove(path)
    assert not ran.exists(), ran.read_text()

    # The control: git run as usual in the same clone runs what was planted.
    git(
        git_world.clone,
        "worktree",
        "add",
        "--quiet",
        "--detach",
        str(tmp_path / "w"),
        "origin/main",
    )
    assert ran.exists()


async def test_a_job_that_replaces_its_worktrees_git_cannot_steer_the_daemons_git(
    manager: WorktreeManager, tmp_path: Path
) -> None:
    """A job (Claude's implement run) owns its worktree: it can swap the `.git` file for a
    repository with a clean filter. The daemon's own `git add` must not run that filter."""
    ran = tmp_path / "filter-ran"
    path = await manager.branch_worktree("feature-issue-9", "claude/issue-9", "origin/main")
    (path / ".git").unlink()
    git(path, "init", "--quiet")
    git(path, "config", "filter.x.clean", f"sh -c 'echo filter >> {ran}; cat'")
    (path / ".gitattributes").write_text("* filter=x\n")
    (path / "new.txt").write_text("x\n")

    sha = await manager.commit_all(path, "msg")

    assert not ran.exists()
    assert sha is not None and await manager.head(path) == sha
    assert "new.txt" in git(manager.repo_path, "show", "--name-only", "--format=", sha)
    # The control: git used as usual in that worktree runs the job's filter.
    git(path, "add", "new.txt")
    assert ran.exists()


# -- push -----------------------------------------------------------------------------------


async def test_push_creates_a_new_branch(manager: WorktreeManager, git_world: GitWorld) -> None:
    path = await manager.branch_worktree("feature-issue-10", "claude/issue-10", "origin/main")
    (path / "new.txt").write_text("x\n")
    sha = await manager.commit_all(path, "msg")
    assert await manager.remote_branch_sha("claude/issue-10") is None

    await manager.push(path, "claude/issue-10", expected_remote_sha=None)

    assert git_world.sha("refs/heads/claude/issue-10") == sha
    assert await manager.remote_branch_sha("claude/issue-10") == sha


async def test_push_with_lease_refuses_a_moved_remote_branch(
    manager: WorktreeManager, git_world: GitWorld
) -> None:
    seen = git_world.push_branch("claude/issue-11", {"a.txt": "first\n"})
    await manager.fetch_branch("claude/issue-11")
    path = await manager.branch_worktree(
        "feature-issue-11", "claude/issue-11", "origin/claude/issue-11"
    )
    (path / "mine.txt").write_text("mine\n")
    mine = await manager.commit_all(path, "mine")
    # Someone else pushes to the branch after we looked at it.
    theirs = git_world.push_branch("claude/issue-11", {"b.txt": "theirs\n"})

    with pytest.raises(GitError, match=r"stale info|rejected"):
        await manager.push(path, "claude/issue-11", expected_remote_sha=seen)
    assert git_world.sha("refs/heads/claude/issue-11") == theirs

    # Expecting no branch at all is a lease too: an existing branch is not overwritten.
    with pytest.raises(GitError):
        await manager.push(path, "claude/issue-11", expected_remote_sha=None)
    assert git_world.sha("refs/heads/claude/issue-11") == theirs

    # With the current remote SHA as the lease, the (non-fast-forward) push replaces it.
    await manager.push(path, "claude/issue-11", expected_remote_sha=theirs)
    assert git_world.sha("refs/heads/claude/issue-11") == mine


async def test_push_skips_a_pre_push_hook(
    manager: WorktreeManager, git_world: GitWorld, tmp_path: Path
) -> None:
    ran = tmp_path / "pre-push-ran"
    install_hook(git_world.clone / ".git" / "hooks", "pre-push", f"touch {ran}\nexit 1")
    path = await manager.branch_worktree("feature-issue-12", "claude/issue-12", "origin/main")
    (path / "new.txt").write_text("x\n")
    sha = await manager.commit_all(path, "msg")

    await manager.push(path, "claude/issue-12", expected_remote_sha=None)

    assert not ran.exists()
    assert git_world.sha("refs/heads/claude/issue-12") == sha


async def test_push_leaves_no_token_on_disk(manager: WorktreeManager, git_world: GitWorld) -> None:
    path = await manager.branch_worktree("feature-issue-14", "claude/issue-14", "origin/main")
    (path / "new.txt").write_text("x\n")
    await manager.commit_all(path, "msg")
    await manager.push(path, "claude/issue-14", expected_remote_sha=None)
    await manager.delete_remote_branch("claude/issue-14")
    assert not git_world.branch_exists("claude/issue-14")

    basic = base64.b64encode(f"x-access-token:{TOKEN}".encode())
    for root in (git_world.clone / ".git", path):
        for file in root.rglob("*"):
            if file.is_file():
                data = file.read_bytes()
                assert TOKEN.encode() not in data, file
                assert basic not in data, file
    assert TOKEN not in git(git_world.clone, "config", "--list", "--show-origin")


async def test_a_push_url_changed_after_start_is_not_followed(
    manager: WorktreeManager, git_world: GitWorld, tmp_path: Path
) -> None:
    """Claude shares the clone's config: pointing the remote elsewhere must not divert pushes."""
    await manager.record_remote()
    elsewhere = tmp_path / "elsewhere.git"
    git(tmp_path, "init", "--quiet", "--bare", str(elsewhere))
    git(git_world.clone, "config", "remote.origin.pushurl", str(elsewhere))
    git(git_world.clone, "config", f"url.{elsewhere}.insteadOf", str(git_world.origin))
    path = await manager.branch_worktree("feature-issue-15", "claude/issue-15", "origin/main")
    (path / "new.txt").write_text("x\n")
    await manager.commit_all(path, "msg")
    await manager.push(path, "claude/issue-15", expected_remote_sha=None)
    assert git_world.branch_exists("claude/issue-15")
    assert git(elsewhere, "for-each-ref") == ""


async def test_the_push_url_is_recorded(manager: WorktreeManager, git_world: GitWorld) -> None:
    git(git_world.clone, "remote", "set-url", "--push", "origin", "https://example.invalid/o/r")
    assert await manager.record_remote() == "https://example.invalid/o/r"  # not the fetch URL


# -- merges, ancestry, diffs ----------------------------------------------------------------


async def test_merge_worktree_clean(manager: WorktreeManager, git_world: GitWorld) -> None:
    head = git_world.push_branch("feature", {"feature.txt": "feature\n"})
    base = git_world.push_branch("main", {"main.txt": "main moved on\n"})
    await manager.fetch_branch("main")
    await manager.fetch_branch("feature")

    result = await manager.merge_worktree("merge-check", base, head)

    assert result.conflicts == ()
    assert (result.base_sha, result.head_sha) == (base, head)
    assert (result.path / "feature.txt").read_text() == "feature\n"
    assert (result.path / "main.txt").read_text() == "main moved on\n"
    merged = await manager.head(result.path)
    assert git(result.path, "rev-list", "--parents", "-n1", merged).split()[1:] == [base, head]
    assert git(result.path, "status", "--porcelain") == ""

    await manager.remove(result.path)
    assert not result.path.exists()
    assert str(result.path) not in worktree_list(git_world.clone)


async def test_merge_worktree_lists_conflicts(
    manager: WorktreeManager, git_world: GitWorld
) -> None:
    start = git_world.sha("main")
    head = git_world.push_branch(
        "feature", {"calc.py": "feature version\n", "README.md": "feature\n", "ok.txt": "ok\n"}
    )
    base = git_world.push_branch("main", {"calc.py": "main version\n", "README.md": "main\n"})
    await manager.fetch_branch("main")
    await manager.fetch_branch("feature")

    result = await manager.merge_worktree("merge-check", base, head)

    assert sorted(result.conflicts) == ["README.md", "calc.py"]
    # The merge is aborted: the worktree is back at the base, clean.
    assert await manager.head(result.path) == base
    assert git(result.path, "status", "--porcelain") == ""
    assert start != base
    await manager.remove(result.path)
    assert not result.path.exists()


async def test_is_ancestor(manager: WorktreeManager, git_world: GitWorld) -> None:
    old = git_world.sha("main")
    new = git_world.push_branch("main", {"x.txt": "x\n"})
    side = git_world.push_branch("side", {"y.txt": "y\n"}, base=old)
    await manager.fetch("+refs/heads/*:refs/remotes/origin/*")

    assert await manager.is_ancestor(old, new)
    assert await manager.is_ancestor(new, new)
    assert not await manager.is_ancestor(new, old)
    assert not await manager.is_ancestor(side, new)
    assert not await manager.is_ancestor("0" * 40, new)  # unknown commit: not an ancestor


async def test_diff_three_dot_shows_only_the_branch_changes(
    manager: WorktreeManager, git_world: GitWorld
) -> None:
    head = git_world.push_branch("feature", {"feature.txt": "branch line\n"})
    base = git_world.push_branch("main", {"main_only.txt": "main line\n"})
    await manager.fetch_branch("main")
    await manager.fetch_branch("feature")

    diff = await manager.diff(base, head)

    assert "feature.txt" in diff
    assert "+branch line" in diff
    assert "main_only" not in diff
    assert await manager.diff("origin/main", "origin/feature") == diff
    assert await manager.commits_between(base, head) == 1
    assert await manager.diff(head, head) == ""


async def test_a_limited_diff_is_read_only_as_far_as_the_limit(
    manager: WorktreeManager, git_world: GitWorld
) -> None:
    base = git_world.push_branch("main", {"small.txt": "x\n"})
    # 20 MB of added lines, with a multi-byte character in each.
    huge = "".join(f"é line {n}\n" for n in range(1_600_000))
    head = git_world.push_branch("feature", {"huge.txt": huge, "small.txt": "y\n"})
    await manager.fetch_branch("main")
    await manager.fetch_branch("feature")

    cut = await manager.diff(base, head, limit=50_000)

    assert len(cut) == 50_001  # one more than the limit: the diff goes on
    assert cut.startswith("diff --git a/huge.txt b/huge.txt") and "+é line 100\n" in cut
    whole = await manager.diff(base, head, limit=100_000_000)
    assert len(whole) < 100_000_000 and whole.endswith("+y\n")  # within the limit: whole
    assert whole.startswith(cut)


async def test_concurrent_jobs_share_the_clone_without_lock_errors(
    manager: WorktreeManager, git_world: GitWorld
) -> None:
    """Review and merge jobs fetch the same base at once; git would refuse to lock the ref."""
    for round_ in range(3):
        git_world.push_branch("main", {f"r{round_}.txt": "x\n"}, f"round {round_}")
        shas = await asyncio.gather(*(manager.fetch_branch("main") for _ in range(8)))
        assert set(shas) == {git_world.sha("main")}
    paths = await asyncio.gather(
        *(manager.detached_worktree(f"pr-review-{n}", "origin/main") for n in range(6))
    )
    await asyncio.gather(*(manager.remove(p) for p in paths))
