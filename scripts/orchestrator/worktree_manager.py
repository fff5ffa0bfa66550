"""Git worktree operations: fetch, isolated worktrees, commit, push with a per-process token,
and cleaning up after finished jobs and after a killed daemon."""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Collection, Sequence
from pathlib import Path

from .core.errors import GitError
from .core.models import MergeResult
from .git_runner import GIT_TIMEOUT, GitRunner

__all__ = ["GitError", "MergeResult", "WorktreeManager"]

log = logging.getLogger(__name__)

COMMIT_NAME = "claude-orchestrator"
COMMIT_EMAIL = "claude-orchestrator@users.noreply.github.com"

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
# Claude Code writes a file as `<name>.tmp.<pid>.<hex>`, then renames it into place.
_PARTIAL_WRITE = re.compile(r".+\.tmp\.\d+\.[0-9a-f]{8,}")
# Parallel checkout, one worker per core: halves a 10,000-file checkout (docs/benchmarks.md).
_CHECKOUT = ("-c", "checkout.workers=0")
PULL_REFS = "refs/orchestrator/pull"  # where `fetch_pull_head` keeps each pull request's head
# How long a pull request's ref outlives its last fetch: past the worktree made from it, which
# holds the head's objects from then on (see `remove`).
PULL_REF_GRACE = 3600.0


class WorktreeManager(GitRunner):
    """Makes and cleans worktrees of the daemon's git; with `GitRunner`, the only code that
    runs git."""

    def __init__(
        self,
        repo_path: Path | None,
        worktree_base: Path,
        *,
        remote: str = "origin",
        token: str | None = None,
        timeout: float = GIT_TIMEOUT,
        url: str | None = None,
        keep_worktrees: bool = False,
        pull_ref_grace: float = PULL_REF_GRACE,
    ) -> None:
        """See `GitRunner`; `keep_worktrees` keeps finished jobs' worktrees (and their
        branches) for debugging."""
        super().__init__(
            repo_path, worktree_base, remote=remote, token=token, timeout=timeout, url=url
        )
        self._keep = keep_worktrees
        self._pull_ref_grace = pull_ref_grace
        self._made: dict[Path, tuple[str, str]] = {}  # a branch worktree's branch and start
        self._pushed: dict[str, str] = {}  # branch -> the commit last pushed to it
        self._pull_fetched: dict[int, float] = {}  # pull request -> when its ref was fetched

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
        local = f"{PULL_REFS}/{number}"
        self._pull_fetched[number] = time.monotonic()
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
        self._pushed[branch] = sha  # the local branch holds nothing more (see `remove`)

    async def local_branch_sha(self, branch: str) -> str | None:
        """Where the clone's own `branch` points, or None if there is no such branch."""
        out = await self.git("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}",
                             check=False)  # fmt: skip
        return out or None

    async def delete_remote_branch(self, branch: str) -> None:
        await self._clean_push([f":refs/heads/{branch}"])
        await self._delete_refs([f"refs/remotes/{self.remote}/{branch}"])  # its fetched copy

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
        # -B resets a branch left by an earlier attempt instead of failing on it.
        head = await self._add(path, ["-B", branch, str(path), start])
        self._made[path] = (branch, head)
        return path

    async def detached_worktree(self, name: str, commit: str) -> Path:
        """A worktree with `commit` checked out detached (no local branch needed)."""
        path = self.path_for(name)
        await self._add(path, ["--detach", str(path), commit])
        return path

    async def _add(self, path: Path, args: Sequence[str]) -> str:
        """`git worktree add` at `path`, a leftover there discarded first; return its HEAD."""
        await self._discard_worktree(path)
        self._made.pop(path, None)
        await self._git([*_CHECKOUT, "worktree", "add", "--quiet", *args], shared=True)
        # Its git directory, kept before any job runs in it (see `_gitdirs`).
        out = await self.git("rev-parse", "--absolute-git-dir", "HEAD", cwd=path)
        gitdir, head = out.splitlines()
        self._gitdirs[path] = gitdir
        return head

    async def merge_worktree(self, name: str, base_sha: str, head_sha: str) -> MergeResult:
        """A detached worktree at `base_sha` with `head_sha` merged in (what would land)."""
        path = await self.detached_worktree(name, base_sha)
        try:
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
        except BaseException:
            await self.remove(path)  # nobody else has the path to remove it
            raise
        return MergeResult(path, base_sha, head_sha, tuple(conflicts.splitlines()))

    async def remove(self, path: Path) -> None:
        """Remove a finished job's worktree and its directory (a missing one is fine), and the
        local branch made for it, unless that holds a commit not pushed yet (a resumed attempt
        pushes it); with `keep_worktrees`, keep them for debugging."""
        if self._keep:
            if path.exists():
                log.info("kept the worktree %s (KEEP_WORKTREES=true)", path)
            return
        made = self._made.pop(path, None)
        await self._discard_worktree(path)
        if made is not None:
            branch, start = made
            tip = await self.local_branch_sha(branch)
            if tip is not None and tip in (start, self._pushed.pop(branch, None)):
                delete = ["update-ref", "-d", f"refs/heads/{branch}", tip]
                await self._git(delete, check=False, shared=True)
        # The refs of pull requests fetched long enough ago: their worktrees are gone.
        now = time.monotonic()
        old = [n for n, at in self._pull_fetched.items() if now - at >= self._pull_ref_grace]
        for number in old:
            del self._pull_fetched[number]
        await self._delete_refs([f"{PULL_REFS}/{number}" for number in old])

    async def _discard_worktree(self, path: Path) -> None:
        self._gitdirs.pop(path, None)
        if path.exists():
            await self._git(
                ["worktree", "remove", "--force", "--force", str(path)], check=False, shared=True
            )
        if path.exists():  # a directory git no longer knows as a worktree
            shutil.rmtree(path)
        await self._git(["worktree", "prune"], check=False, shared=True)

    async def prune_leftovers(self, keep_branches: Collection[str] = ()) -> None:
        """Once at start, after `use_mirror` and before any job: remove what a killed daemon
        left. That is the worktrees under WORKTREE_BASE (those git lists, and directories that
        lead to this git unlisted), stale registrations, the refs of pull requests, and, in
        the mirror, every local branch but `keep_branches`: those of unfinished items, whose
        kept commit a resumed attempt pushes. With `keep_worktrees`, worktrees stay, and so do
        the branches they have checked out."""
        try:
            listed = await self._worktrees()
            common = await self.git("rev-parse", "--path-format=absolute", "--git-common-dir")
            stray = [p for p in _entries(self.worktree_base) if _leads_to(p, Path(common))]
            found = {p for p in [*listed, *stray] if p.exists() and self._is_leftover(p)}
            leftovers = sorted(found)  # a registration without its folder: `worktree prune`
            if self._keep:
                if leftovers:
                    log.info("kept %d worktree(s) of an earlier run in %s (KEEP_WORKTREES=true)",
                             len(leftovers), self.worktree_base)  # fmt: skip
                leftovers = []
            for path in leftovers:
                await self._discard_worktree(path)
            await self._git(["worktree", "prune"], shared=True)
            checked_out = {b for b in (await self._worktrees()).values() if b is not None}
            branches = [
                ref
                for ref in (await self._refs("refs/heads/") if self.mirror is not None else [])
                if ref.removeprefix("refs/heads/") not in {*keep_branches, *checked_out}
            ]  # only in the daemon's own mirror: the user's clone's branches are theirs
            await self._delete_refs([*await self._refs(f"{PULL_REFS}/"), *branches], check=True)
        except (GitError, OSError) as exc:  # cleaning is not worth a failed start
            log.warning("could not remove what an earlier run left in %s: %s",
                        self.worktree_base, exc)  # fmt: skip
            return
        if leftovers or branches:
            log.info("removed %d worktree(s) and %d local branch(es) an earlier run left",
                     len(leftovers), len(branches))  # fmt: skip

    def _is_leftover(self, path: Path) -> bool:
        """A worktree under WORKTREE_BASE, neither the base itself nor the mirrors' folder."""
        base = self.worktree_base.resolve()
        real = path.resolve()
        return (
            real != base
            and real.is_relative_to(base)
            and not real.is_relative_to(base / ".mirrors")
        )

    async def _worktrees(self) -> dict[Path, str | None]:
        """Every worktree git lists (the bare mirror too), with the branch it has checked out."""
        found: dict[Path, str | None] = {}
        path: Path | None = None
        for line in (await self.git("worktree", "list", "--porcelain")).splitlines():
            if line.startswith("worktree "):
                path = Path(line.removeprefix("worktree "))
                found[path] = None
            elif line.startswith("branch refs/heads/") and path is not None:
                found[path] = line.removeprefix("branch refs/heads/")
        return found

    async def _refs(self, prefix: str) -> list[str]:
        return (await self.git("for-each-ref", "--format=%(refname)", prefix)).split()

    async def _delete_refs(self, refs: Sequence[str], *, check: bool = False) -> None:
        """Delete `refs` (missing ones are fine) in one transaction."""
        if refs:
            commands = "".join(f"delete {ref}\n" for ref in refs).encode()
            await self._git(["update-ref", "--stdin"], stdin=commands, check=check, shared=True)

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
        # A run stopped mid-write (at its budget, say) leaves the CLI's temporary file behind.
        untracked = await self.git("ls-files", "--others", "--exclude-standard", "-z",
                                   cwd=worktree)  # fmt: skip
        for name in untracked.split("\0"):
            if name and _PARTIAL_WRITE.fullmatch(Path(name).name):
                log.info("removing a half-written file a stopped run left: %s", name)
                (worktree / name).unlink(missing_ok=True)
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


def _entries(folder: Path) -> list[Path]:
    return list(folder.iterdir()) if folder.is_dir() else []


def _leads_to(path: Path, common: Path) -> bool:
    """Whether `path` is a worktree of the repository whose git directory is `common`: its
    `.git` file names a directory under `common/worktrees`."""
    try:
        text = (path / ".git").read_text(errors="replace")
    except OSError:  # no `.git` file: not a worktree
        return False
    if not text.startswith("gitdir: "):
        return False
    gitdir = (path / text.removeprefix("gitdir: ").strip()).resolve()
    return gitdir.is_relative_to((common / "worktrees").resolve())


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
