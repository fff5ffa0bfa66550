"""Real git fixtures: a bare `origin` holding a small Python project, clones of it, and branches."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

GIT_TIMEOUT = 60.0
DEFAULT_BRANCH = "main"

# A tiny project whose test passes, so pre-merge commands such as `pytest` have real work to do.
SAMPLE_PROJECT: dict[str, str] = {
    "README.md": "# sample\n\nA small project used by the orchestrator's test world.\n",
    "calc.py": (
        '"""Arithmetic helpers."""\n\n\ndef add(a: int, b: int) -> int:\n    return a + b\n'
    ),
    "test_calc.py": (
        "from calc import add\n\n\ndef test_add() -> None:\n    assert add(2, 3) == 5\n"
    ),
}

_IDENTITY = {
    "GIT_AUTHOR_NAME": "Test World",
    "GIT_AUTHOR_EMAIL": "world@example.invalid",
    "GIT_COMMITTER_NAME": "Test World",
    "GIT_COMMITTER_EMAIL": "world@example.invalid",
}


def git_env() -> dict[str, str]:
    """The environment for fixture git commands: no user config, no prompts, fixed identity."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(_IDENTITY)
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    env["GIT_CONFIG_GLOBAL"] = os.devnull
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env


def git(cwd: Path, *args: str, check: bool = True) -> str:
    """Run one git command in `cwd` and return its stripped standard output."""
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=git_env(),
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT,
        check=False,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def write_files(root: Path, files: Mapping[str, str | None]) -> None:
    """Write (or, for a value of None, delete) files relative to `root`."""
    for rel, content in files.items():
        path = root / rel
        if content is None:
            path.unlink(missing_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")


@dataclass(frozen=True)
class GitWorld:
    """A bare origin and the daemon's clone of it, both real repositories on disk."""

    origin: Path
    clone: Path
    default_branch: str = DEFAULT_BRANCH

    def sha(self, ref: str) -> str:
        """The commit SHA of `ref` in the bare origin."""
        return git(self.origin, "rev-parse", ref)

    def branch_exists(self, branch: str) -> bool:
        """Whether `refs/heads/<branch>` exists in the bare origin."""
        out = git(self.origin, "for-each-ref", "--format=%(refname)", f"refs/heads/{branch}")
        return bool(out)

    def file_at(self, ref: str, path: str) -> str:
        """The content of `path` at `ref` in the bare origin."""
        return git(self.origin, "show", f"{ref}:{path}")

    def files_at(self, ref: str) -> list[str]:
        """Every file's path at `ref` in the bare origin."""
        return git(self.origin, "ls-tree", "-r", "--name-only", ref).splitlines()

    def push_branch(
        self,
        branch: str,
        files: Mapping[str, str | None],
        message: str = "change",
        *,
        base: str | None = None,
        ref: str | None = None,
    ) -> str:
        """Commit `files` on top of `base` (default: the branch's tip, else the default branch).

        The commit is pushed to `refs/heads/<branch>` in origin, or to `ref` when given (for
        example `refs/pull/7/head` to imitate a fork's pull request). Returns the new SHA.
        """
        target = ref or f"refs/heads/{branch}"
        work = self.origin.parent / f".scratch-{os.getpid()}"
        if work.exists():
            _rmtree(work)
        exists = bool(git(self.origin, "rev-parse", "--verify", "--quiet", target, check=False))
        start = base or (target if exists else self.default_branch)
        git(self.origin.parent, "clone", "--quiet", "--no-checkout", str(self.origin), str(work))
        try:
            git(work, "fetch", "--quiet", "origin", f"+{_as_ref(start)}:refs/scratch/start")
            git(work, "checkout", "--quiet", "-B", "scratch", "refs/scratch/start")
            write_files(work, files)
            git(work, "add", "--all")
            git(work, "commit", "--quiet", "--allow-empty", "-m", message)
            sha = git(work, "rev-parse", "HEAD")
            git(work, "push", "--quiet", "--force", "origin", f"HEAD:{target}")
            return sha
        finally:
            _rmtree(work)


def _as_ref(name: str) -> str:
    if name.startswith("refs/") or len(name) == 40:
        return name
    return f"refs/heads/{name}"


def _rmtree(path: Path) -> None:
    shutil.rmtree(path)


def make_world(root: Path, files: Mapping[str, str] | None = None) -> GitWorld:
    """Create `root/origin.git` (bare, default branch `main`) and `root/clone`, a clone of it."""
    root.mkdir(parents=True, exist_ok=True)
    origin = root / "origin.git"
    seed = root / "seed"
    git(root, "init", "--quiet", "--bare", f"--initial-branch={DEFAULT_BRANCH}", str(origin))
    git(root, "init", "--quiet", f"--initial-branch={DEFAULT_BRANCH}", str(seed))
    write_files(seed, files if files is not None else SAMPLE_PROJECT)
    git(seed, "add", "--all")
    git(seed, "commit", "--quiet", "-m", "Initial commit")
    git(seed, "push", "--quiet", str(origin), f"{DEFAULT_BRANCH}:{DEFAULT_BRANCH}")
    _rmtree(seed)
    clone = root / "clone"
    git(root, "clone", "--quiet", str(origin), str(clone))
    git(clone, "config", "user.name", "Orchestrator Test")
    git(clone, "config", "user.email", "orchestrator@example.invalid")
    return GitWorld(origin=origin, clone=clone)
