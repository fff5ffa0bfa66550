"""Plain, immutable domain values: GitHub's objects, a Claude run, a command's result."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class Issue:
    number: int
    title: str
    body: str
    author: str
    labels: tuple[str, ...]
    state: str
    is_pull_request: bool
    updated_at: datetime


@dataclass(frozen=True)
class Labelling:
    """The last time a label was added to an issue: by whom (None for a deleted account), when;
    and when the issue's title was last renamed, if ever (its events show it)."""

    actor: str | None
    at: datetime
    renamed_at: datetime | None = None


@dataclass(frozen=True)
class Comment:
    id: int
    issue_number: int
    author: str
    body: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class SecretHit:
    """Something like a secret that a change adds: where, and what kind (never the value)."""

    path: str
    line: int
    kind: str


@dataclass(frozen=True)
class PullRequest:
    number: int
    title: str
    body: str
    author: str
    state: str  # "open" or "closed"
    draft: bool
    merged: bool
    head_ref: str
    head_sha: str
    head_repo: str | None  # "owner/name"; None when the fork was deleted
    base_ref: str
    base_sha: str
    base_repo: str
    created_at: datetime
    mergeable: bool | None = None  # None while GitHub is still computing it
    maintainer_can_modify: bool = False  # the author lets maintainers push to the head branch
    # GitHub's clock (the answer's Date) when this view was read: the head was the head then.
    seen_at: datetime | None = None

    @property
    def is_fork(self) -> bool:
        return self.head_repo != self.base_repo


@dataclass(frozen=True)
class Review:
    id: int
    author: str
    commit_id: str | None
    state: str
    body: str
    submitted_at: datetime | None = None  # None for a PENDING review


@dataclass(frozen=True)
class ReviewComment:
    """A comment in a pull request's diff (a review thread's first comment, or a reply)."""

    id: int
    pull_number: int
    review_id: int | None
    author: str
    body: str
    path: str
    line: int | None  # None when the line is outdated (GitHub sends null)
    in_reply_to: int | None  # the thread's first comment, for a reply
    created_at: datetime


@dataclass(frozen=True)
class CheckRun:
    name: str
    status: str  # queued, in_progress, completed, ...
    conclusion: str | None  # success, failure, neutral, cancelled, skipped, timed_out, ...
    # Its output, as the CI wrote it (the pull request's code may have): what a fix is told.
    title: str | None = None
    summary: str | None = None


@dataclass(frozen=True)
class CommitStatus:
    context: str
    state: str  # error, failure, pending, success


@dataclass(frozen=True)
class RepoAccess:
    """What the token may do in the repository, as far as GitHub says without a write.

    `role` is the account's highest role from the repository's `permissions` (admin, maintain,
    write, triage, read or none; None when GitHub sent no `permissions`). `scopes` are a classic
    token's `X-OAuth-Scopes`; None when GitHub sent no such header, as for fine-grained and
    GitHub App tokens, whose permissions no answer states.
    """

    private: bool
    role: str | None
    scopes: frozenset[str] | None


@dataclass(frozen=True)
class MergeOutcome:
    merged: bool
    sha: str | None
    message: str


class ReviewEvent(str, Enum):
    """The strongest review verdict the model may post (DESIGN §5: real verdicts, opt-in)."""

    COMMENT = "COMMENT"
    REQUEST_CHANGES = "REQUEST_CHANGES"
    APPROVE = "APPROVE"


# Read-only tools: what a review of untrusted code may use.
READ_ONLY_TOOLS = ("Read", "Grep", "Glob")
# An implementation edits files and runs commands inside its worktree; no web tools.
IMPLEMENT_TOOLS = ("Read", "Grep", "Glob", "Edit", "Write", "Bash")

SettingSource = Literal["user", "project", "local"]


@dataclass(frozen=True)
class ClaudeRequest:
    """One Claude Code run."""

    prompt: str
    cwd: Path
    guidelines: str  # appended to Claude Code's own system prompt
    tools: Sequence[str]  # the tools offered; nothing else exists for the model
    max_turns: int
    timeout: float
    # Filesystem settings the CLI may load; [] for untrusted checkouts (project settings
    # can define hooks that run commands).
    setting_sources: Sequence[SettingSource] = ()
    max_budget_usd: float | None = None  # the CLI stops the run once it has cost this much

    @property
    def read_only(self) -> bool:
        """Whether the run only reads (a review): its sandbox mounts the worktree read-only."""
        return set(self.tools) <= set(READ_ONLY_TOOLS)


@dataclass(frozen=True)
class ClaudeResult:
    """What a run produced; `error` says why it failed, in words fit for a GitHub comment."""

    ok: bool
    text: str
    cost_usd: float | None = None
    turns: int = 0
    duration_s: float = 0.0
    session_id: str | None = None
    error: str | None = None
    timed_out: bool = False
    stderr_tail: list[str] = field(default_factory=list)
    # The limit that stopped it: "budget", "turns" or "time"; "day_rest" when its budget was
    # what the day had left (or its share of it); "day" when the day's budget left nothing
    # for it to start with.
    limit: str | None = None


@dataclass(frozen=True)
class CommandResult:
    """One pre-merge command: how it ended, how long it took, what it printed."""

    command: str
    returncode: int | None  # None when it was killed for its timeout
    timed_out: bool
    duration_s: float
    timeout_s: float
    output: str  # stdout and stderr interleaved, at most the last MAX_OUTPUT_BYTES

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


@dataclass(frozen=True)
class Completed:
    """What a finished (or timed-out) child process did."""

    args: tuple[str, ...]
    returncode: int | None  # None when it was killed for its timeout
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False
    cut: bool = False  # stdout reached its limit: the child was stopped there, on purpose

    @property
    def ok(self) -> bool:
        return (self.returncode == 0 or self.cut) and not self.timed_out

    @property
    def output(self) -> str:
        """Standard output and error together, for messages."""
        return "\n".join(part for part in (self.stdout.strip(), self.stderr.strip()) if part)


@dataclass(frozen=True)
class MergeResult:
    """A worktree holding `head` merged onto `base`, or the files that conflicted."""

    path: Path
    base_sha: str
    head_sha: str
    conflicts: tuple[str, ...] = ()
