"""The token reaches git over smart HTTP only through an in-memory file and a host-bound helper."""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from scripts.orchestrator import proc
from scripts.orchestrator.core.models import Completed
from scripts.orchestrator.fakes.git_http import GitHttpServer
from scripts.orchestrator.fakes.git_world import GitWorld, git
from scripts.orchestrator.git_credential import credential
from scripts.orchestrator.worktree_manager import GitError, WorktreeManager

TOKEN = "ghp_" + "HttpCredentialTest0" * 2  # made up
BASIC = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()


@pytest.fixture
def server(git_world: GitWorld, tmp_path: Path) -> Iterator[GitHttpServer]:
    """The world's origin served at http://127.0.0.1:PORT/o/r.git, the clone pointed at it."""
    root = tmp_path / "served"
    (root / "o").mkdir(parents=True)
    git(tmp_path, "clone", "--quiet", "--bare", str(git_world.origin), str(root / "o" / "r.git"))
    with GitHttpServer(root, TOKEN) as served:
        git(git_world.clone, "remote", "set-url", "origin", f"{served.url}/o/r.git")
        yield served


def served_sha(server: GitHttpServer, ref: str) -> str:
    return git(server.root / "o" / "r.git", "rev-parse", "--verify", "--quiet", ref, check=False)


@pytest.fixture
def children(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Sequence[str], Mapping[str, str]]]:
    """Every command line and environment the manager starts git with."""
    seen: list[tuple[Sequence[str], Mapping[str, str]]] = []
    real = proc.run

    async def recording(args: Sequence[str], **kwargs: Any) -> Completed:
        seen.append((list(args), dict(kwargs.get("env") or {})))
        return await real(args, **kwargs)

    monkeypatch.setattr(proc, "run", recording)
    return seen


async def test_fetch_and_push_over_http_with_the_token(
    server: GitHttpServer,
    git_world: GitWorld,
    tmp_path: Path,
    children: list[tuple[Sequence[str], Mapping[str, str]]],
) -> None:
    manager = WorktreeManager(git_world.clone, tmp_path / "worktrees", token=TOKEN)
    await manager.record_remote()
    main = await manager.fetch_branch("main")
    assert main == served_sha(server, "refs/heads/main")
    path = await manager.branch_worktree("feature-issue-1", "claude/issue-1", main)
    (path / "new.txt").write_text("x\n")
    sha = await manager.commit_all(path, "msg")

    await manager.push(path, "claude/issue-1", expected_remote_sha=None)

    assert served_sha(server, "refs/heads/claude/issue-1") == sha
    assert await manager.remote_branch_sha("claude/issue-1") == sha
    # git asked without credentials first, GitHub's challenge made it ask the helper
    assert any(not r.authorized for r in server.requests)
    assert any(r.authorized and r.path.endswith("git-receive-pack") for r in server.requests)
    # ... and no process was ever given the token, in any form, to see
    for args, env in children:
        for text in (*args, *env.values()):
            assert TOKEN not in text and BASIC not in text, args


async def test_a_wrong_token_is_refused(
    server: GitHttpServer, git_world: GitWorld, tmp_path: Path
) -> None:
    manager = WorktreeManager(git_world.clone, tmp_path / "worktrees", token="ghp_wrong")
    with pytest.raises(GitError):
        await manager.fetch_branch("main")
    assert server.requests and not any(r.authorized for r in server.requests)


def fill(env: Mapping[str, str], fds: Sequence[int], host: str) -> subprocess.CompletedProcess[str]:
    """`git credential fill` for `host`, as git-remote-http would ask it."""
    return subprocess.run(
        ["git", "credential", "fill"],
        input=f"protocol=https\nhost={host}\n\n",
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", **env},
        pass_fds=fds,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_helper_answers_only_for_the_recorded_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A credential the user's own config would hand to any host: ignored.
    home = tmp_path / "home"
    home.mkdir()
    (home / ".git-credentials").write_text("https://u:user-secret@evil.example\n")
    (home / ".gitconfig").write_text("[credential]\n\thelper = store\n")
    monkeypatch.setenv("HOME", str(home))

    with credential("https://github.com/o/r.git", TOKEN) as (env, fds):
        good = fill(env, fds, "github.com")
        twice = fill(env, fds, "github.com")  # git may ask more than once
        evil = fill(env, fds, "evil.example")

    assert f"password={TOKEN}" in good.stdout
    assert f"password={TOKEN}" in twice.stdout
    assert evil.returncode != 0
    assert TOKEN not in evil.stdout and "user-secret" not in evil.stdout
    assert TOKEN not in str(env)


@pytest.mark.parametrize(
    "url",
    ["/srv/origin.git", "git@github.com:o/r.git", "ssh://git@example.invalid/o/r.git",
     "http://example.invalid/o/r.git"],
)  # fmt: skip
def test_no_credential_for_ssh_local_paths_or_plain_http_beyond_loopback(url: str) -> None:
    with credential(url, TOKEN) as (env, fds):
        assert (env, fds) == ({}, ())


def test_no_credential_without_a_token() -> None:
    with credential("https://github.com/o/r.git", None) as (env, fds):
        assert (env, fds) == ({}, ())


def test_the_descriptor_is_closed_afterwards() -> None:
    with credential("https://github.com/o/r.git", TOKEN) as (_, fds):
        (fd,) = fds
        os.fstat(fd)
    with pytest.raises(OSError):
        os.fstat(fd)
