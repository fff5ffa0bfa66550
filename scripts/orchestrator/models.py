"""Plain, immutable views of GitHub objects that the decision core and workflows work with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

WRITE_PERMISSIONS = frozenset({"admin", "maintain", "write"})


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
class Comment:
    id: int
    issue_number: int
    author: str
    body: str
    created_at: datetime
    updated_at: datetime


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


@dataclass(frozen=True)
class CheckRun:
    name: str
    status: str  # queued, in_progress, completed, ...
    conclusion: str | None  # success, failure, neutral, cancelled, skipped, timed_out, ...


@dataclass(frozen=True)
class CommitStatus:
    context: str
    state: str  # error, failure, pending, success


@dataclass(frozen=True)
class MergeOutcome:
    merged: bool
    sha: str | None
    message: str
