"""GitHub's JSON answers read into the daemon's models: only the fields it uses, each checked."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticError

from .core.models import (
    CheckRun,
    Comment,
    CommitStatus,
    Issue,
    Labelling,
    MergeOutcome,
    PullRequest,
    RepoAccess,
    Review,
    ReviewComment,
)

T = TypeVar("T")
_DATETIME = TypeAdapter(datetime)


class ShapeError(ValueError):
    """A field the daemon reads is missing, null or of another type; `field` is its JSON path."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field = field
        self.problem = problem


class Json:
    """One JSON object of an answer, read field by field; errors name the field's path.

    Fields the daemon does not read are never looked at, so GitHub may add, drop or reshape
    them (it does, between API versions and GitHub Enterprise releases) without harm.
    """

    def __init__(self, data: object, path: str = "") -> None:
        if not isinstance(data, dict):
            raise ShapeError(path or "body", f"is {_kind(data)}, not an object")
        self._data: dict[str, Any] = data
        self._path = path

    def where(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def _get(self, key: str, kind: type | tuple[type, ...], name: str) -> Any:
        value = self._data.get(key)
        if value is None:
            return None
        # bool is an int to Python, never to JSON.
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
            raise ShapeError(self.where(key), f"is {_kind(value)}, not {name}")
        return value

    def _required(self, key: str, value: T | None) -> T:
        if value is None:
            raise ShapeError(self.where(key), "is null" if key in self._data else "is missing")
        return value

    def text(self, key: str) -> str:
        return self._required(key, self.opt_text(key))

    def opt_text(self, key: str) -> str | None:
        value: str | None = self._get(key, str, "a string")
        return value

    def number(self, key: str) -> int:
        return self._required(key, self.opt_number(key))

    def opt_number(self, key: str) -> int | None:
        value: int | None = self._get(key, int, "an integer")
        return value

    def flag(self, key: str) -> bool:
        return self._required(key, self.opt_flag(key))

    def opt_flag(self, key: str) -> bool | None:
        value: bool | None = self._get(key, bool, "a boolean")
        return value

    def opt_when(self, key: str) -> datetime | None:
        return None if self.opt_text(key) is None else self.when(key)

    def when(self, key: str) -> datetime:
        text = self.text(key)
        try:
            return _DATETIME.validate_python(text)
        except PydanticError:
            raise ShapeError(self.where(key), f"is {text[:40]!r}, not a date-time") from None

    def child(self, key: str) -> Json:
        return self._required(key, self.opt_child(key))

    def opt_child(self, key: str) -> Json | None:
        value = self._get(key, dict, "an object")
        return None if value is None else Json(value, self.where(key))

    def array(self, key: str) -> list[Any]:
        """An array; missing or null reads as empty."""
        value: list[Any] | None = self._get(key, list, "an array")
        return value or []

    def objects(self, key: str) -> list[Json]:
        """A required array of objects."""
        values: list[Any] = self._required(key, self._get(key, list, "an array"))
        return [Json(v, self.where(f"{key}[{i}]")) for i, v in enumerate(values)]

    def has(self, key: str) -> bool:
        return self._data.get(key) is not None


def one(data: object, parse: Callable[[Json], T]) -> T:
    return parse(Json(data))


def many(data: object, parse: Callable[[Json], T]) -> list[T]:
    """Every item of a JSON array answer."""
    if not isinstance(data, list):
        raise ShapeError("body", f"is {_kind(data)}, not an array")
    return [parse(Json(item, f"[{i}]")) for i, item in enumerate(data)]


def _kind(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


# -- the daemon's models ----------------------------------------------------------------------


def default_branch(repo: Json) -> str:
    return repo.text("default_branch")


def login(user: Json) -> str:
    return user.text("login")


def repo_access(repo: Json, scopes: frozenset[str] | None) -> RepoAccess:
    """The repository's visibility and the account's highest role in it, with the token's
    scopes (read from the answer's headers by the caller)."""
    flags = repo.opt_child("permissions")
    role = None
    if flags is not None:
        role = next((name for flag, name in _ROLES if flags.opt_flag(flag)), "none")
    return RepoAccess(private=repo.flag("private"), role=role, scopes=scopes)


# GitHub's permission flags, strongest first, with the role each stands for. `maintain` and
# `triage` are optional in GitHub's description: a missing flag is not held.
_ROLES = (
    ("admin", "admin"),
    ("maintain", "maintain"),
    ("push", "write"),
    ("triage", "triage"),
    ("pull", "read"),
)


def scopes(header: str | None) -> frozenset[str] | None:
    """A classic token's scopes from `X-OAuth-Scopes` ("repo, workflow"); an empty header is a
    classic token without scopes, no header at all a token that has none (fine-grained, App)."""
    if header is None:
        return None
    return frozenset(s.strip() for s in header.split(",") if s.strip())


def _author(item: Json) -> str:
    user = item.opt_child("user")
    return user.text("login") if user is not None else "ghost"  # a deleted account


def permission(answer: Json) -> str:
    """admin, maintain, write, triage, read or none: `permission` alone folds maintain into
    write and triage into read."""
    role = answer.opt_text("role_name")
    return role if role in ("maintain", "triage") else answer.text("permission")


def issue(item: Json) -> Issue:
    labels: list[str] = []
    for i, label in enumerate(item.array("labels")):
        if isinstance(label, str):  # GitHub's schema allows a bare name as well
            labels.append(label)
        else:
            labels.append(Json(label, item.where(f"labels[{i}]")).opt_text("name") or "")
    return Issue(
        number=item.number("number"),
        title=item.text("title"),
        body=item.opt_text("body") or "",
        author=_author(item),
        labels=tuple(labels),
        state=item.text("state"),
        is_pull_request=item.has("pull_request"),
        updated_at=item.when("updated_at"),
    )


def comment(item: Json) -> Comment:
    return Comment(
        id=item.number("id"),
        issue_number=_number_in(item, "issue_url"),
        author=_author(item),
        body=item.opt_text("body") or "",
        created_at=item.when("created_at"),
        updated_at=item.when("updated_at"),
    )


def pull(item: Json) -> PullRequest:
    head, base = item.child("head"), item.child("base")
    head_repo = head.opt_child("repo")  # null once the fork is deleted
    return PullRequest(
        number=item.number("number"),
        title=item.text("title"),
        body=item.opt_text("body") or "",
        author=_author(item),
        state=item.text("state"),
        draft=bool(item.opt_flag("draft")),
        # `merged` is only in the single pull request's answer; lists have `merged_at`.
        merged=bool(item.opt_flag("merged")) or item.has("merged_at"),
        head_ref=head.text("ref"),
        head_sha=head.text("sha"),
        head_repo=head_repo.text("full_name") if head_repo is not None else None,
        base_ref=base.text("ref"),
        base_sha=base.text("sha"),
        base_repo=base.child("repo").text("full_name"),
        created_at=item.when("created_at"),
        mergeable=item.opt_flag("mergeable"),
        # In every full pull request; GitHub's description leaves it out of list items.
        maintainer_can_modify=bool(item.opt_flag("maintainer_can_modify")),
    )


def review(item: Json) -> Review:
    return Review(
        id=item.number("id"),
        author=_author(item),
        commit_id=item.opt_text("commit_id"),
        state=item.text("state"),
        body=item.opt_text("body") or "",
        submitted_at=item.opt_when("submitted_at"),  # absent while PENDING
    )


def review_comment(item: Json) -> ReviewComment:
    """A comment in a pull request's diff; `in_reply_to_id` is absent on a thread's first
    comment, and `line` is null once the line is outdated."""
    return ReviewComment(
        id=item.number("id"),
        pull_number=_number_in(item, "pull_request_url"),
        review_id=item.opt_number("pull_request_review_id"),
        author=_author(item),
        body=item.opt_text("body") or "",
        path=item.text("path"),
        line=item.opt_number("line"),
        in_reply_to=item.opt_number("in_reply_to_id"),
        created_at=item.when("created_at"),
    )


def _number_in(item: Json, key: str) -> int:
    """The issue or pull request number that ends the URL at `key`."""
    url = item.text(key)
    tail = url.rstrip("/").rsplit("/", 1)[-1]
    if not tail.isdigit():
        raise ShapeError(item.where(key), f"is {url!r}, not an issue's or pull request's URL")
    return int(tail)


def check_runs(answer: Json) -> tuple[int, list[CheckRun]]:
    """The total count, and this page's runs (the list is wrapped in an object)."""
    runs = [
        CheckRun(
            run.text("name"),
            run.text("status"),
            run.opt_text("conclusion"),
            *_output(run.opt_child("output")),
        )
        for run in answer.objects("check_runs")
    ]
    return answer.number("total_count"), runs


def _output(output: Json | None) -> tuple[str | None, str | None]:
    """A check run's output title and summary (GitHub sends both, each possibly null)."""
    if output is None:
        return None, None
    return output.opt_text("title"), output.opt_text("summary")


def statuses(answer: Json) -> list[CommitStatus]:
    return [CommitStatus(s.text("context"), s.text("state")) for s in answer.objects("statuses")]


def issue_event(event: Json) -> tuple[str, str | None, Labelling]:
    """An issue event's kind (`labeled`, `renamed` ...), the label it added if any, and who
    did it when."""
    actor = event.opt_child("actor")
    login = actor.opt_text("login") if actor is not None else None
    return (
        event.opt_text("event") or "",
        labelled(event),
        Labelling(login, event.when("created_at")),
    )


def edited_at(data: object) -> datetime | None:
    """GraphQL's `repository.issue.lastEditedAt`: when the issue's body was last edited."""
    issue = Json(data, "data").child("repository").child("issue")
    return issue.opt_when("lastEditedAt")


def labelled(event: Json) -> str | None:
    """The label's name if this issue event added a label."""
    if event.opt_text("event") != "labeled":
        return None
    label = event.opt_child("label")
    return label.opt_text("name") if label is not None else None


def ref_sha(ref: Json) -> str:
    """The commit a git reference (`GET /git/ref/...`) points at."""
    return ref.child("object").text("sha")


def file_text(item: Json) -> str:
    """A file's text from the contents API: its base64 `content` (GitHub breaks it into
    lines) read as UTF-8, undecodable bytes replaced. Anything else (a directory's list, a
    symlink, a submodule, content not sent inline) is a ShapeError."""
    kind = item.text("type")
    if kind != "file":
        raise ShapeError(item.where("type"), f"is {kind[:40]!r}, not 'file'")
    encoding = item.text("encoding")
    if encoding != "base64":
        raise ShapeError(item.where("encoding"), f"is {encoding[:40]!r}, not 'base64'")
    try:
        data = base64.b64decode("".join(item.text("content").split()), validate=True)
    except binascii.Error:
        raise ShapeError(item.where("content"), "is not base64") from None
    return data.decode("utf-8", errors="replace")


def merge_outcome(data: object) -> MergeOutcome:
    """GitHub answers 200 only when it merged; the answer is read for the merge commit only,
    and never fails: the merge is done whatever the body says."""
    answer = data if isinstance(data, dict) else {}
    sha, message = answer.get("sha"), answer.get("message")
    return MergeOutcome(
        merged=answer.get("merged") is not False,
        sha=sha if isinstance(sha, str) else None,
        message=message if isinstance(message, str) else "",
    )
