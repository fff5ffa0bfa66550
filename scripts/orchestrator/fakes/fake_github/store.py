"""The fake GitHub's state and its issue-side operations; callers hold `Store.lock`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from . import errors
from .clock import Clock
from .gitops import GitRepo
from .model import (
    ASSOCIATIONS,
    REACTIONS,
    ROLE_TO_PERMISSION,
    CheckRun,
    Comment,
    CommitComment,
    CommitStatus,
    Event,
    Happening,
    Issue,
    Label,
    Mutation,
    Reaction,
    RequestRecord,
    Review,
    ReviewComment,
    User,
)
from .ratelimit import RateLimiter
from .shapes_base import RepoContext
from .site import Site

MAX_BODY = 65536
LABEL_COLORS = ("d73a4a", "0075ca", "cfd3d7", "a2eeef", "7057ff", "008672", "e4e669", "d876e3")


class Store:
    """All records of one repository, plus the bare repository behind its git data; users,
    IDs, the rate limits and the lock are the `site`'s, shared by its repositories.

    Every method expects `lock` to be held: the HTTP server takes it around each request and
    the test-facing API around each call, so one request's reads and writes are atomic.
    """

    def __init__(
        self,
        *,
        site: Site,
        origin: Path,
        owner: str,
        name: str,
        default_branch: str,
        private: bool,
    ) -> None:
        self.site = site
        self.lock = site.lock
        self.repo_id = site.next_repo_id()
        self.git = GitRepo(origin)
        self.origin = origin
        self.owner = owner
        self.name = name
        self.default_branch = default_branch
        self.private = private
        self.created_at = site.now()
        self.labels: dict[str, Label] = {}
        self.issues: dict[int, Issue] = {}
        self.comments: dict[int, Comment] = {}
        self.events: list[Event] = []
        self.reviews: list[Review] = []
        self.review_comments: dict[int, ReviewComment] = {}
        self.check_runs: list[CheckRun] = []
        self.statuses: list[CommitStatus] = []
        self.commit_comments: dict[int, CommitComment] = {}
        self.roles: dict[str, str] = {}
        self.requests: list[RequestRecord] = []
        self.mutations: list[Mutation] = []
        self.unknown_routes: list[tuple[str, str]] = []
        # Trial merges are pure functions of (base, head), so caching them hides no pushes.
        self.merge_cache: dict[tuple[str, str], tuple[str | None, str | None]] = {}
        self.close_issues_on_merge = True
        self.delete_branch_on_merge = False
        self.merge_methods = {"merge", "squash"}
        # Told of each change a webhook reports (see hooks.py); nothing listens by default.
        self.emit: Callable[[Happening], None] = _nobody
        self.user_id(owner)
        self.user_id(site.bot_login)
        self.roles[owner.lower()] = "admin"

    # -- shared with the site -------------------------------------------------------------

    @property
    def bot_login(self) -> str:
        return self.site.bot_login

    @property
    def clock(self) -> Clock:
        return self.site.clock

    @property
    def rate(self) -> RateLimiter:
        return self.site.rate

    @property
    def base_url(self) -> str:
        return self.site.base_url

    @property
    def users(self) -> dict[str, User]:
        return self.site.users

    # -- identity -------------------------------------------------------------------------

    def next_id(self, kind: str) -> int:
        return self.site.next_id(kind)

    def next_number(self) -> int:
        """The number the next issue or pull request gets (they share one sequence)."""
        return max(self.issues, default=0) + 1

    def user_id(self, login: str) -> int:
        key = login.lower()
        if key not in self.users:
            self.users[key] = User(login=login, id=self.next_id("user"))
        return self.users[key].id

    def context(self) -> RepoContext:
        return RepoContext(
            base_url=self.base_url,
            owner=self.owner,
            name=self.name,
            repo_id=self.repo_id,
            default_branch=self.default_branch,
            private=self.private,
            clone_url=str(self.origin),
            created_at=self.created_at,
            user_id=self.user_id,
        )

    def now(self) -> datetime:
        return self.clock.now()

    # -- permissions ----------------------------------------------------------------------

    def role(self, login: str) -> str:
        """A user's role; anyone may read a public repository, nobody else a private one."""
        explicit = self.roles.get(login.lower())
        if explicit is not None:
            return explicit
        return "none" if self.private else "read"

    def set_role(self, login: str, role: str) -> None:
        if role not in ROLE_TO_PERMISSION:
            raise ValueError(f"unknown role {role!r}; use one of {sorted(ROLE_TO_PERMISSION)}")
        self.user_id(login)
        self.roles[login.lower()] = role

    def association(self, login: str, override: str | None = None) -> str:
        """`author_association` as GitHub derives it: owner, collaborator, else none."""
        if override is not None:
            if override not in ASSOCIATIONS:
                raise ValueError(f"unknown author_association {override!r}")
            return override
        if login.lower() == self.owner.lower():
            return "OWNER"
        explicit = self.roles.get(login.lower())
        if explicit is not None and explicit != "none":
            return "COLLABORATOR"
        return "NONE"

    # -- labels ---------------------------------------------------------------------------

    def ensure_label(
        self, name: str, color: str | None = None, description: str | None = None
    ) -> Label:
        """The repository label `name`, created on first use as GitHub does when one is added."""
        key = name.lower()
        if key not in self.labels:
            picked = color or LABEL_COLORS[len(self.labels) % len(LABEL_COLORS)]
            self.labels[key] = Label(self.next_id("label"), name, picked, description)
        return self.labels[key]

    def add_labels(self, issue: Issue, names: Iterable[str], actor: str) -> None:
        current = {n.lower() for n in issue.labels}
        for name in names:
            lab = self.ensure_label(name)
            if lab.name.lower() in current:
                continue
            issue.labels.append(lab.name)
            current.add(lab.name.lower())
            self.record_event(issue, actor, "labeled", label=lab)
            kind = "pull_request" if issue.pull else "issues"
            self.emit(Happening(kind, "labeled", issue.number, actor, label=lab))

    def remove_label(self, issue: Issue, name: str, actor: str) -> None:
        match = next((n for n in issue.labels if n.lower() == name.lower()), None)
        if match is None:
            raise errors.basic(404, "Label does not exist")
        issue.labels.remove(match)
        self.record_event(issue, actor, "unlabeled", label=self.ensure_label(match))

    def set_labels(self, issue: Issue, names: Iterable[str], actor: str) -> None:
        wanted = [self.ensure_label(n).name for n in names]
        wanted_keys = {n.lower() for n in wanted}
        for name in list(issue.labels):
            if name.lower() not in wanted_keys:
                self.remove_label(issue, name, actor)
        self.add_labels(issue, wanted, actor)

    # -- issues ---------------------------------------------------------------------------

    def new_issue(
        self,
        title: str,
        body: str | None,
        author: str,
        labels: Iterable[str] = (),
        *,
        association: str | None = None,
    ) -> Issue:
        if not title or not title.strip():
            raise errors.invalid_field("Issue", "title", "missing_field")
        self.user_id(author)
        now = self.now()
        issue = Issue(
            number=self.next_number(),
            id=self.next_id("issue"),
            title=title,
            body=body,
            user=author,
            created_at=now,
            updated_at=now,
            author_association=association,
        )
        self.issues[issue.number] = issue
        self.add_labels(issue, labels, author)
        return issue

    def issue(self, number: int) -> Issue:
        found = self.issues.get(number)
        if found is None:
            raise errors.not_found()
        return found

    def set_state(
        self,
        issue: Issue,
        state: str,
        actor: str,
        reason: str | None = None,
        commit_id: str | None = None,
    ) -> None:
        """Close or reopen, recording the `closed`/`reopened` event like GitHub."""
        if state not in ("open", "closed"):
            raise errors.invalid_field("Issue", "state")
        if state == issue.state:
            if reason is not None and state == "closed":
                issue.state_reason = reason
            return
        now = self.now()
        issue.state = state
        if state == "closed":
            issue.closed_at, issue.closed_by = now, actor
            issue.state_reason = reason or "completed"
            self.record_event(
                issue,
                actor,
                "closed",
                commit_id=commit_id,
                extra={"state_reason": issue.state_reason},
            )
        else:
            issue.closed_at, issue.closed_by = None, None
            issue.state_reason = "reopened"
            self.record_event(issue, actor, "reopened", extra={"state_reason": "reopened"})
            if issue.pull is not None:
                self.emit(Happening("pull_request", "reopened", issue.number, actor))

    def touch(self, issue: Issue) -> None:
        issue.updated_at = self.now()

    def record_event(
        self,
        issue: Issue,
        actor: str,
        event: str,
        *,
        label: Label | None = None,
        commit_id: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Event:
        self.user_id(actor)
        item = Event(
            self.next_id("event"),
            issue.number,
            actor,
            event,
            self.now(),
            label,
            commit_id,
            dict(extra or {}),
        )
        self.events.append(item)
        self.touch(issue)
        return item

    def events_of(self, number: int) -> list[Event]:
        return [e for e in self.events if e.issue_number == number]

    # -- comments and reactions -----------------------------------------------------------

    def add_comment(
        self, number: int, body: object, author: str, association: str | None = None
    ) -> Comment:
        issue = self.issue(number)
        text = check_body(body, "IssueComment")
        self.user_id(author)
        now = self.now()
        item = Comment(self.next_id("comment"), number, author, text, now, now, association)
        self.comments[item.id] = item
        self.touch(issue)
        self.emit(Happening("issue_comment", "created", number, author, comment_id=item.id))
        return item

    def comment(self, comment_id: int) -> Comment:
        found = self.comments.get(comment_id)
        if found is None:
            raise errors.not_found()
        return found

    def comments_on(self, number: int) -> list[Comment]:
        return sorted(
            (c for c in self.comments.values() if c.issue_number == number),
            key=lambda c: (c.created_at, c.id),
        )

    def edit_comment(self, item: Comment, body: object) -> None:
        item.body = check_body(body, "IssueComment")
        item.updated_at = self.now()
        self.touch(self.issue(item.issue_number))

    def delete_comment(self, item: Comment) -> None:
        del self.comments[item.id]

    def react(self, reactions: list[Reaction], author: str, content: str) -> tuple[Reaction, bool]:
        """Add a reaction unless the user already gave this one; True when it is new."""
        if content not in REACTIONS:
            raise errors.invalid_field("Reaction", "content")
        self.user_id(author)
        for existing in reactions:
            if existing.user.lower() == author.lower() and existing.content == content:
                return existing, False
        item = Reaction(self.next_id("reaction"), author, content, self.now())
        reactions.append(item)
        return item, True


def _nobody(happening: Happening) -> None:
    """The default listener: without webhooks, changes are reported to no one."""


def check_body(body: object, resource: str) -> str:
    """Reject a missing or over-long body the way GitHub does (65,536 characters at most)."""
    if not isinstance(body, str) or not body:
        raise errors.invalid_field(resource, "body", "missing_field")
    if len(body) > MAX_BODY:
        raise errors.custom(
            resource, f"body is too long (maximum is {MAX_BODY} characters)", field="body"
        )
    return body
