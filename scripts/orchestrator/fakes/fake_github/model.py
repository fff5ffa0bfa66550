"""The fake GitHub's records: users, labels, issues and pull requests, comments, reviews, CI."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# The legacy `permission` field GitHub derives from each role (maintain -> write, triage -> read).
ROLE_TO_PERMISSION = {
    "admin": "admin",
    "maintain": "write",
    "write": "write",
    "triage": "read",
    "read": "read",
    "none": "none",
}
REACTIONS = ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes")
ASSOCIATIONS = (
    "COLLABORATOR",
    "CONTRIBUTOR",
    "FIRST_TIMER",
    "FIRST_TIME_CONTRIBUTOR",
    "MANNEQUIN",
    "MEMBER",
    "NONE",
    "OWNER",
)


@dataclass
class User:
    login: str
    id: int
    type: str = "User"


@dataclass(frozen=True)
class Token:
    """Who a token acts as, and its scopes: a classic token's, which GitHub names in
    `X-OAuth-Scopes` on every answer; None for a fine-grained or App token (no such header)."""

    login: str
    scopes: tuple[str, ...] | None = ("repo",)


@dataclass
class Label:
    id: int
    name: str
    color: str = "ededed"
    description: str | None = None


@dataclass
class Reaction:
    id: int
    user: str
    content: str
    created_at: datetime


@dataclass
class PullInfo:
    """What a pull request has beyond its issue: branches, fork, draft and merge state."""

    head_ref: str
    base_ref: str
    # None for a branch in this repository; the fork owner's login for a fork's pull request.
    fork_owner: str | None = None
    draft: bool = False
    maintainer_can_modify: bool = False
    merged: bool = False
    merged_at: datetime | None = None
    merged_by: str | None = None
    merge_commit_sha: str | None = None
    # The base tip when the pull request was merged or closed; later base moves do not show.
    frozen_base_sha: str | None = None
    # How many more reads answer `mergeable: null`, as GitHub does while it computes.
    mergeable_unknown: int = 0
    # The head the fake last saw, to notice pushes (which bump `updated_at`).
    seen_head: str | None = None
    # Logins asked for a review and yet to submit one, in the order asked.
    requested_reviewers: list[str] = field(default_factory=list)


@dataclass
class Issue:
    """An issue or, when `pull` is set, a pull request: they share numbers, as on GitHub."""

    number: int
    id: int
    title: str
    body: str | None
    user: str
    created_at: datetime
    updated_at: datetime
    state: str = "open"
    state_reason: str | None = None
    labels: list[str] = field(default_factory=list)
    closed_at: datetime | None = None
    closed_by: str | None = None
    locked: bool = False
    author_association: str | None = None
    reactions: list[Reaction] = field(default_factory=list)
    pull: PullInfo | None = None
    pull_id: int = 0
    # When the body was last edited (GraphQL's `lastEditedAt`; REST does not show it).
    last_edited_at: datetime | None = None


@dataclass
class Comment:
    id: int
    issue_number: int
    user: str
    body: str
    created_at: datetime
    updated_at: datetime
    author_association: str | None = None
    reactions: list[Reaction] = field(default_factory=list)


@dataclass
class Event:
    """An issue event (labeled, closed, merged, ...) as `/issues/{n}/events` lists it."""

    id: int
    issue_number: int
    actor: str
    event: str
    created_at: datetime
    label: Label | None = None
    commit_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Review:
    id: int
    pull_number: int
    user: str
    body: str
    state: str
    commit_id: str
    submitted_at: datetime | None
    author_association: str | None = None


@dataclass
class ReviewComment:
    """A comment on a line of a pull request's diff: a thread's first comment, or a reply
    (`in_reply_to`). Every one belongs to a review, as on GitHub (a lone reply gets its own).

    Outdated comments are not modelled: `line` and `position` always hold for `commit_id`.
    """

    id: int
    pull_number: int
    review_id: int
    user: str
    body: str
    path: str
    line: int
    side: str  # "RIGHT" (the head's lines) or "LEFT" (the base's)
    position: int  # lines below the file's first `@@` header in the diff
    diff_hunk: str  # the hunk's header through the commented line
    commit_id: str
    created_at: datetime
    updated_at: datetime
    start_line: int | None = None
    start_side: str | None = None
    in_reply_to: int | None = None
    author_association: str | None = None
    reactions: list[Reaction] = field(default_factory=list)


@dataclass
class CommitComment:
    """A comment on a commit: on the whole commit, or (with `path`) on a line of its diff."""

    id: int
    commit_id: str
    user: str
    body: str
    created_at: datetime
    updated_at: datetime
    path: str | None = None
    position: int | None = None
    line: int | None = None
    reactions: list[Reaction] = field(default_factory=list)


@dataclass
class CheckRun:
    id: int
    head_sha: str
    name: str
    status: str
    conclusion: str | None
    started_at: datetime
    completed_at: datetime | None
    suite_id: int
    title: str | None = None
    summary: str | None = None
    details_url: str | None = None


@dataclass
class CommitStatus:
    id: int
    sha: str
    context: str
    state: str
    description: str | None
    target_url: str | None
    creator: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Happening:
    """Something a webhook reports (`issues` `labeled`, ...), told by the store as it happens."""

    event: str
    action: str
    number: int
    actor: str
    label: Label | None = None
    comment_id: int | None = None
    review_id: int | None = None
    before: str | None = None
    after: str | None = None


@dataclass(frozen=True)
class RequestRecord:
    """One HTTP request the fake answered, for tests to assert on."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    headers: dict[str, str]
    json: Any
    login: str | None
    # The route that answered (e.g. "create_comment"); empty for unknown routes and faults.
    route: str = ""
    # The operation in GitHub's description, e.g. "GET /repos/{owner}/{repo}/issues".
    operation: str = ""


@dataclass(frozen=True)
class Mutation:
    """One successful state-changing API call: its route name, path parameters and body."""

    name: str
    params: dict[str, str]
    body: Any
    status: int
    actor: str
    result: Any
