"""How the daemon runs git: safe settings, no user config, the remote recorded at start, and
the daemon's private mirror."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

from . import proc
from .core.errors import GitError
from .core.models import Completed
from .git_credential import credential

GIT_TIMEOUT = 300.0  # generous: a fetch of a large repository can take minutes
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


class GitRunner:
    """Runs the daemon's git in its clone (then its mirror): the base of `WorktreeManager`."""

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
        self.mirror: Path | None = None  # the daemon's own bare repository, once in use

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
        stdin: bytes | None = None,
    ) -> Completed:
        if shared:
            # Git fails rather than waits on a ref or worktree lock ("cannot lock ref"), and
            # jobs run concurrently on one clone: writes to its shared refs take turns.
            async with self._shared_lock:
                return await self._git(
                    args, cwd=cwd, check=check, extra_env=extra_env, fds=fds, limit=limit,
                    stdin=stdin,
                )  # fmt: skip
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
            stdin=stdin,
        )
        if check and not result.ok:
            raise GitError(args, result)
        return result

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
        self.repo_path = self.mirror = mirror
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
