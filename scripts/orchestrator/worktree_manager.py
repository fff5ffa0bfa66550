"""Git worktree operations: fetch, isolated worktrees, commit, push with a per-process token."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from . import proc
from .core.errors import GitError
from .core.models import Completed, MergeResult
from .git_credential import credential

__all__ = ["GitError", "MergeResult", "WorktreeManager"]

log = logging.getLogger(__name__)

GIT_TIMEOUT = 300.0  # generous: a fetch of a large repository can take minutes
COMMIT_NAME = "claude-orchestrator"
COMMIT_EMAIL = "claude-orchestrator@users.noreply.github.com"

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
# Parallel checkout, one worker per core: halves a 10,000-file checkout (docs/benchmarks.md).
_CHECKOUT = ("-c", "checkout.workers=0")
# The clone's config and hooks are writable from a job's worktree (its `.git` leads there), so
# nothing in them may run a program inside the daemon's own git: command-line settings win
# over every config file.
SAFE_GIT = (
    "-c", "core.hooksPath=/dev/null",
    "-c", "core.fsmonitor=false",
    "-c", "core.pager=cat",
    "-c", "diff.external=",
    "-c", "protocol.ext.allow=never",
    # A repository nested in a worktree (a job can `git init` one, with filters of its own)
    # is never entered: git would run its config's programs to tell if it changed.
    "-c", "diff.ignoreSubmodules=all",
    "-c", "submodule.recurse=false",
    "-c", "status.submoduleSummary=false",
)  # fmt: skip
# Nor does the user's global or system config apply: its filters (git-lfs), signing programs
# and URL rewrites would run on, or redirect, pull requests' content. The few settings a user's
# network or identity needs are passed on each command line instead (`use_mirror`): not in
# the mirror's config, which jobs read (a proxy URL may carry a password).
NO_USER_CONFIG = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
CARRIED_CONFIG = (
    "user.name", "user.email", "http.proxy", "https.proxy", "http.sslCAInfo", "http.sslCAPath",
    "core.sshCommand",
)  # fmt: skip


class WorktreeManager:
    """Makes and cleans worktrees of the local clone; the only code that runs git."""

    def __init__(
        self,
        repo_path: Path | None,
        worktree_base: Path,
        *,
        remote: str = "origin",
        token: str | None = None,
        timeout: float = GIT_TIMEOUT,
        url: str | None = None,
    ) -> None:
        """`repo_path` is the user's clone, whose remote URL is used; without one (None), the
        daemon keeps a clone of its own (`use_mirror`) of `url`."""
        if repo_path is None and url is None:
            raise ValueError("WorktreeManager needs a clone or the URL to make its own")
        self._clone = repo_path
        # Where git runs until the mirror is in use; without a clone, nothing runs before it.
        self.repo_path = repo_path or worktree_base
        self.worktree_base = worktree_base
        self.remote = remote
        self._token = token
        self._timeout = timeout
        self._url = url
        self._push_url: str | None = None
        self._shared_lock = asyncio.Lock()
        # Each worktree's git directory, read when it was made, before any job ran in it: a job
        # can replace the worktree's `.git` with a repository of its own (hooks, filters), and
        # the daemon's git must never use that one.
        self._gitdirs: dict[Path, str] = {}
        self._carried: list[str] = []  # `-c key=value` of the user's CARRIED_CONFIG

    # -- plumbing ---------------------------------------------------------------------------

    async def git(self, *args: str, cwd: Path | None = None, check: bool = True) -> str:
        """Run git without credentials and without prompts; return its stripped stdout."""
        return (await self._git(args, cwd=cwd, check=check)).stdout.strip()

    async def _git(
        self,
        args: Sequence[str],
        *,
        cwd: Path | None = None,
        check: bool = True,
        extra_env: dict[str, str] | None = None,
        shared: bool = False,
        fds: Sequence[int] = (),
        limit: int | None = None,
    ) -> Completed:
        if shared:
            # Git fails rather than waits on a ref or worktree lock ("cannot lock ref"), and
            # jobs run concurrently on one clone: writes to its shared refs take turns.
            async with self._shared_lock:
                return await self._git(
                    args, cwd=cwd, check=check, extra_env=extra_env, fds=fds, limit=limit
                )
        pinned = self._gitdirs.get(cwd) if cwd is not None else None
        if pinned is not None:
            extra_env = {**(extra_env or {}), "GIT_DIR": pinned, "GIT_WORK_TREE": str(cwd)}
        env = proc.child_env(
            extra={"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", **NO_USER_CONFIG, **(extra_env or {})}
        )
        result = await proc.run(
            ["git", *SAFE_GIT, *self._carried, *args],
            cwd=cwd or self.repo_path,
            timeout=self._timeout,
            env=env,
            pass_fds=fds,
            limit=limit,
        )
        if check and not result.ok:
            raise GitError(args, result)
        return result

    def path_for(self, name: str) -> Path:
        """The worktree directory for a name such as `feature-issue-42` or `pr-review-7`."""
        return self.worktree_base / _SAFE_NAME.sub("-", name)

    # -- remote -----------------------------------------------------------------------------

    async def fetch(self, *refspecs: str) -> None:
        """Fetch refspecs (e.g. `+refs/heads/main:refs/remotes/origin/main`) from the remote."""
        await self._remote(["fetch", "--quiet", "--no-tags", "{url}", *refspecs], shared=True)

    async def fetch_branch(self, branch: str) -> str:
        """Fetch a branch of the remote; return its SHA."""
        tracking = f"refs/remotes/{self.remote}/{branch}"
        await self.fetch(f"+refs/heads/{branch}:{tracking}")
        return await self.git("rev-parse", "--verify", f"{tracking}^{{commit}}")

    async def fetch_pull_head(self, number: int) -> str:
        """Fetch `refs/pull/N/head`, which also works for pull requests from forks."""
        local = f"refs/orchestrator/pull/{number}"
        await self.fetch(f"+refs/pull/{number}/head:{local}")
        return await self.git("rev-parse", "--verify", f"{local}^{{commit}}")

    async def remote_branch_sha(self, branch: str) -> str | None:
        """The SHA of a branch on the remote, or None if it does not exist there."""
        out = (await self._remote(["ls-remote", "--heads", "{url}", f"refs/heads/{branch}"])).stdout
        for line in out.splitlines():
            sha, _, ref = line.partition("\t")
            if ref == f"refs/heads/{branch}":
                return sha
        return None

    async def _remote(
        self,
        args: Sequence[str],
        *,
        cwd: Path | None = None,
        extra_env: dict[str, str] | None = None,
        shared: bool = False,
    ) -> Completed:
        """A git command that talks to the remote: at the URL recorded at start (`{url}` in
        `args`), with the token handed over as `credential` says."""
        url = self._push_url or await self.record_remote()
        with credential(url, self._token) as (env, fds):
            return await self._git(
                [url if arg == "{url}" else arg for arg in args],
                cwd=cwd,
                extra_env={**(extra_env or {}), **env},
                shared=shared,
                fds=fds,
            )

    async def use_mirror(self, mirror: Path) -> bool:
        """From now on, keep the daemon's git in `mirror`, a bare repository of its own; True
        if it was made just now.

        Jobs see their worktree and, read-only, the mirror it leads to: neither the user's
        clone (their local branches, stashes, config) nor anything they could write for the
        daemon's git to run later. A new mirror takes the objects of the clone's
        remote-tracking branches (what is on GitHub anyway), so the first fetch is short, and
        the remote's URL stays the one recorded at start. The user's settings in
        `CARRIED_CONFIG` (identity, proxy, CA, ssh), as the clone sees them, go on every
        command line from now on.
        """
        if self._push_url is None:
            await self.record_remote()  # from the clone, before leaving it
        made = not (mirror / "HEAD").is_file()
        if made:
            mirror.mkdir(parents=True, exist_ok=True)
            await self._git(["init", "--quiet", "--bare", str(mirror)], cwd=mirror)
            tracking = f"refs/remotes/{self.remote}/*"
            if self._clone is not None:
                source = str(self._clone)
                await self._git(
                    ["fetch", "--quiet", "--no-tags", source, f"+{tracking}:{tracking}"],
                    cwd=mirror,
                )
            else:  # no clone to start from: all of it from GitHub, with the token
                await self._remote(
                    ["fetch", "--quiet", "--no-tags", "{url}", f"+refs/heads/*:{tracking}"],
                    cwd=mirror,
                )
        carried = []
        for key in CARRIED_CONFIG:
            await self._git(["config", "--unset-all", key], cwd=mirror, check=False)  # older
            if value := await self._user_config(key, self._clone or mirror):
                carried += ["-c", f"{key}={value}"]
        self._carried = carried
        self.repo_path = mirror
        return made

    async def _user_config(self, key: str, where: Path) -> str:
        """`key` as the user's own git sees it in `where` (system, global and local)."""
        done = await proc.run(
            ["git", *SAFE_GIT, "config", "--get", key], cwd=where, timeout=self._timeout
        )
        return done.stdout.strip() if done.ok else ""

    async def record_remote(self) -> str:
        """Read the push URL once, at start, before any Claude run could change the config;
        without a clone, it is the URL given."""
        if self._clone is None:
            assert self._url is not None  # __init__ checked it
            self._push_url = self._url
        else:
            self._push_url = await self.git("remote", "get-url", "--push", self.remote)
        return self._push_url

    async def push(self, worktree: Path, branch: str, *, expected_remote_sha: str | None) -> None:
        """Push HEAD to `branch`, replacing the remote branch only if it is still where we saw it.

        The push runs from a temporary bare repository that borrows the clone's objects but
        none of its config, to the URL recorded at start, with hooks off.
        """
        await self.push_commit(await self.head(worktree), branch, expected_remote_sha)

    async def push_commit(self, sha: str, branch: str, expected_remote_sha: str | None) -> None:
        """Push the commit `sha` to `branch` (see `push`): e.g. a commit kept from an attempt
        whose push did not get through."""
        lease = f"--force-with-lease=refs/heads/{branch}:{expected_remote_sha or ''}"
        await self._clean_push([lease, f"{sha}:refs/heads/{branch}"])

    async def local_branch_sha(self, branch: str) -> str | None:
        """Where the clone's own `branch` points, or None if there is no such branch."""
        out = await self.git("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}",
                             check=False)  # fmt: skip
        return out or None

    async def delete_remote_branch(self, branch: str) -> None:
        await self._clean_push([f":refs/heads/{branch}"])

    async def _clean_push(self, args: Sequence[str]) -> None:
        objects = Path(await self.git("rev-parse", "--path-format=absolute", "--git-common-dir"))
        with tempfile.TemporaryDirectory(prefix="orchestrator-push-") as scratch:
            bare = Path(scratch) / "push.git"
            await self._git(["init", "--quiet", "--bare", str(bare)], cwd=Path(scratch))
            await self._remote(
                ["push", "--quiet", "--no-verify", "{url}", *args],
                cwd=bare,
                extra_env={"GIT_ALTERNATE_OBJECT_DIRECTORIES": str(objects / "objects")},
            )

    # -- worktrees --------------------------------------------------------------------------

    async def branch_worktree(self, name: str, branch: str, start: str) -> Path:
        """A worktree on local `branch`, reset to `start`; leftovers of earlier attempts reused."""
        path = self.path_for(name)
        await self._discard_worktree(path)
        # -B resets a branch left by an earlier attempt instead of failing on it.
        await self._git(
            [*_CHECKOUT, "worktree", "add", "--quiet", "-B", branch, str(path), start], shared=True
        )
        await self._pin(path)
        return path

    async def detached_worktree(self, name: str, commit: str) -> Path:
        """A worktree with `commit` checked out detached (no local branch needed)."""
        path = self.path_for(name)
        await self._discard_worktree(path)
        await self._git(
            [*_CHECKOUT, "worktree", "add", "--quiet", "--detach", str(path), commit], shared=True
        )
        await self._pin(path)
        return path

    async def _pin(self, path: Path) -> None:
        self._gitdirs[path] = await self.git("rev-parse", "--absolute-git-dir", cwd=path)

    async def merge_worktree(self, name: str, base_sha: str, head_sha: str) -> MergeResult:
        """A detached worktree at `base_sha` with `head_sha` merged in (what would land)."""
        path = await self.detached_worktree(name, base_sha)
        result = await self._git(
            ["-c", f"user.name={COMMIT_NAME}", "-c", f"user.email={COMMIT_EMAIL}",
             "merge", "--no-ff", "--no-edit", "--quiet", head_sha],
            cwd=path,
            check=False,
        )  # fmt: skip
        if result.ok:
            return MergeResult(path, base_sha, head_sha)
        conflicts = await self.git("diff", "--name-only", "--diff-filter=U", cwd=path)
        if not conflicts:
            raise GitError(["merge", head_sha], result)
        await self._git(["merge", "--abort"], cwd=path, check=False)
        return MergeResult(path, base_sha, head_sha, tuple(conflicts.splitlines()))

    async def remove(self, path: Path) -> None:
        """Remove a worktree and its directory; a missing one is fine."""
        await self._discard_worktree(path)

    async def _discard_worktree(self, path: Path) -> None:
        self._gitdirs.pop(path, None)
        if path.exists():
            await self._git(
                ["worktree", "remove", "--force", "--force", str(path)], check=False, shared=True
            )
        if path.exists():  # a directory git no longer knows as a worktree
            shutil.rmtree(path)
        await self._git(["worktree", "prune"], check=False, shared=True)

    # -- commits ----------------------------------------------------------------------------

    async def commit_all(self, worktree: Path, message: str) -> str | None:
        """Commit every change in the worktree; return the new SHA, or None if nothing changed.

        A git repository a job made inside the worktree is not committed as one: its `.git`
        is removed first (its files are committed as files), so nothing of its config runs.
        """
        for nested in _nested_git(worktree):
            log.warning("removing a nested git repository a job left: %s", nested)
            if nested.is_dir() and not nested.is_symlink():
                shutil.rmtree(nested)
            else:
                nested.unlink()
        await self._git(["add", "--all"], cwd=worktree)
        status = await self.git("status", "--porcelain", "--ignore-submodules=all", cwd=worktree)
        if not status:
            return None
        identity = await self._identity_args(worktree)
        await self._git(
            [*identity, "commit", "--quiet", "--no-verify", "-m", message],
            cwd=worktree,
            shared=True,
        )
        return await self.git("rev-parse", "HEAD", cwd=worktree)

    async def restore_steering(self, worktree: Path, commit: str) -> list[str]:
        """Put back, as they are in `commit`, the files that steer Claude Code (`.claude/`,
        `.mcp.json`, every CLAUDE.md): a pull request's own must not steer its review, as
        claude-code-action does too. Returns the paths replaced or removed."""
        paths = [".claude", ".mcp.json"]
        for folder, dirs, files in os.walk(worktree):
            dirs[:] = [d for d in dirs if d != ".git"]
            for name in files:
                if name in ("CLAUDE.md", "CLAUDE.local.md"):
                    paths.append(str((Path(folder) / name).relative_to(worktree)))
        changed = []
        for path in paths:
            target = worktree / path
            in_commit = await self._git(["cat-file", "-e", f"{commit}:{path}"], check=False)
            if not (target.exists() or target.is_symlink()) and not in_commit.ok:
                continue
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            if in_commit.ok:
                await self._git(["checkout", commit, "--", path], cwd=worktree)
            changed.append(path)
        return changed

    async def _identity_args(self, worktree: Path) -> list[str]:
        """The user's identity (in the mirror's config) if any, else the orchestrator's."""
        email = await self.git("config", "user.email", cwd=worktree, check=False)
        name = await self.git("config", "user.name", cwd=worktree, check=False)
        args = []
        if not email:
            args += ["-c", f"user.email={COMMIT_EMAIL}"]
        if not name:
            args += ["-c", f"user.name={COMMIT_NAME}"]
        return args

    async def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        result = await self._git(["merge-base", "--is-ancestor", ancestor, descendant], check=False)
        return result.returncode == 0

    async def head(self, worktree: Path) -> str:
        return await self.git("rev-parse", "HEAD", cwd=worktree)

    async def commits_between(self, base: str, head: str, cwd: Path | None = None) -> int:
        return int(await self.git("rev-list", "--count", f"{base}..{head}", cwd=cwd))

    async def read_file(self, commit: str, path: str) -> str | None:
        """`path` as it is in `commit`, or None if it is not there."""
        # A blob only: `git show` would print a directory's listing as if it were the file.
        result = await self._git(["cat-file", "blob", f"{commit}:{path}"], check=False)
        return result.stdout if result.ok else None

    async def changed_files(self, base: str, head: str) -> list[str]:
        """The paths that differ between two commits (both sides of a rename)."""
        out = (await self._git(["diff", "--name-only", "--no-renames", "-z", base, head])).stdout
        return [path for path in out.split("\0") if path]

    async def diff(
        self, base: str, head: str, cwd: Path | None = None, limit: int | None = None
    ) -> str:
        """The diff a pull request shows: from the merge base of `base` and `head` to `head`.

        With `limit`, at most `limit` + 1 characters, read as git writes them: more than
        `limit` means the diff goes on (a pull request's 100 MB file is never read whole).
        """
        args = ("diff", "--no-color", "--no-ext-diff", f"{base}...{head}")
        if limit is None:
            return await self.git(*args, cwd=cwd)
        # A character is at most 4 bytes: this many bytes hold `limit` + 1 whole characters.
        done = await self._git(args, cwd=cwd, limit=4 * (limit + 1))
        return done.stdout[: limit + 1]


def _nested_git(worktree: Path) -> list[Path]:
    """Every `.git` (directory, file or link) below the worktree's top, symlinks not followed."""
    found = []
    for folder, dirs, files in os.walk(worktree):
        here = Path(folder)
        if ".git" in dirs or ".git" in files:
            if here != worktree:  # the worktree's own `.git` file is the daemon's
                found.append(here / ".git")
            if ".git" in dirs:
                dirs.remove(".git")
    return found
