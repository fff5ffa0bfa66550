"""Work items: one per issue, review or merge, with the typed facts each workflow keeps."""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator
from typing_extensions import Self


class WorkItemType(str, Enum):
    """What a work item is about."""

    ISSUE = "issue"  # an issue to implement
    PR_REVIEW = "pr_review"  # a pull request to review
    MERGE = "merge"  # a pull request to test and merge
    FOLLOW_UP = "follow_up"  # more work a writer asked for on a pull request


class Status(str, Enum):
    """Where a work item stands."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    FAILED = "failed"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def but(self, **changes: Any) -> Self:
        """A copy with `changes` applied, validated like the original."""
        return type(self).model_validate({**self.model_dump(), **changes})


class Write(_Frozen):
    """One GitHub write an item still owes: a comment, or a label added or removed."""

    op: Literal["comment", "edit_comment", "add_label", "remove_label", "reply", "request_review"]
    number: int  # the issue or pull request written to
    text: str  # the comment's body, the label, or the reviewer asked again (`request_review`)
    id: str = ""  # names the write in the outbox, and marks a posted comment
    tried: bool = False  # a comment was sent once: its answer may have been lost
    # The comment an `edit_comment` replaces the body of; the review thread a `reply` is in.
    comment_id: int = 0


class IssueFacts(_Frozen):
    """What the implement workflow keeps about one attempt at an issue."""

    kind: Literal["issue"] = "issue"
    label_events: int = 0  # `labeled` events seen when the attempt started
    summary: str | None = None  # Claude's account of its work, redacted
    pushed_sha: str | None = None  # the commit GitHub has on the branch
    remote_sha: str | None = None  # where the remote branch was before our push (the lease)
    updating_pull: int | None = None  # the open pull request this attempt updates
    progress_comment: int | None = None  # the comment that says work started, then how it ended
    labelled_at: datetime | None = None  # when the ready label of this attempt was applied
    # The issue as it stood then: what Claude is given, whatever is edited later.
    title: str | None = None
    body: str | None = None
    # A run stopped at a limit pushed its work here; the next attempt goes on from it.
    kept_sha: str | None = None
    stopped: str | None = None  # the limit that stopped this attempt's run, once committed
    continued: int = 0  # times this attempt waited for the day's budget and went on by itself


class KeptReview(_Frozen):
    """A written review GitHub has not taken yet: a fault costs a retry, not a new run."""

    body: str
    event: str
    commit_id: str
    text: str


class ReviewFacts(_Frozen):
    """What the review workflow keeps about a pull request across its heads."""

    kind: Literal["pr_review"] = "pr_review"
    reviewed: tuple[str, ...] = ()  # head SHAs reviewed so far, oldest first
    baseline: bool = False  # only the head seen at the first watch is known
    retry_at: datetime | None = None  # when a failed review may run again
    last_review: str | None = None  # the last review, so the next one adds to it
    requested: bool = False  # a writer asked for a review that has not started yet
    forced: bool = False  # this attempt answers a writer's request
    requested_head: str | None = None  # the head the writer's request pinned
    unposted: KeptReview | None = None
    runs: tuple[datetime, ...] = ()  # when Claude reviews started, within the last day
    first_head: str | None = None  # the head of the first automatic review, run or failed
    capped_at: datetime | None = None  # when the daily cap was last announced


class PassedCommand(_Frozen):
    command: str
    duration_s: float


class MergeFacts(_Frozen):
    """What the merge workflow keeps about one `/merge` request."""

    kind: Literal["merge"] = "merge"
    trigger_comment_id: int = 0
    requested_by: str | None = None
    base_ref: str | None = None  # the base when the request was accepted
    requested_head: str | None = None  # the head when the request was accepted
    # A writer's later `/merge` for a newer head, while this attempt ran: the next attempt's.
    rerequested_head: str | None = None
    merging_head: str | None = None  # the head the merge call was sent for
    tested_base: str | None = None  # the base tip that head was tested on
    results: tuple[PassedCommand, ...] = ()
    ci: str | None = None  # GitHub CI when the checks passed: "passed" or "pending"
    merge_sha: str | None = None
    # Claude's fixes for failing checks (AUTO_FIX_ATTEMPTS): how many were made, the heads
    # the daemon pushed for them, and the last one, recorded before its push
    fixes: int = 0
    fixed_heads: tuple[str, ...] = ()
    fix_sha: str | None = None


class Thread(_Frozen):
    """A review comment that opened a thread: what a reviewer asked, and where."""

    id: int
    path: str
    line: int | None = None
    body: str


class Ask(_Frozen):
    """One thing a writer asked of Claude on a pull request: a `/claude` comment, or a review
    with changes requested (its threads are answered one by one)."""

    source: Literal["comment", "review"]
    id: int  # the comment's or the review's id on GitHub
    author: str
    where: int  # the issue or pull request it was written on: the reply goes there
    text: str  # the instructions, or the review's body
    threads: tuple[Thread, ...] = ()


class FollowUpFacts(_Frozen):
    """What the follow-up workflow keeps about one pull request: the asks waiting, the one
    in progress, and where its work went."""

    kind: Literal["follow_up"] = "follow_up"
    asks: tuple[Ask, ...] = ()  # waiting for the next attempt, oldest first
    doing: tuple[Ask, ...] = ()  # what the attempt in progress answers
    # The reviews looked at (acted on or not) since `reviews_floor`; those submitted before
    # the floor are not asks. No floor yet: the pull request's reviews were never looked at.
    reviews_seen: tuple[int, ...] = ()
    reviews_floor: datetime | None = None
    start_sha: str | None = None  # the head the work started from: the push's lease
    branch: str | None = None  # the branch the work is pushed to
    pushed_sha: str | None = None
    summary: str | None = None  # Claude's account of the work, redacted
    opened_pull: int | None = None  # a pull request against another author's branch

    @model_validator(mode="before")
    @classmethod
    def _earlier_build(cls, raw: Any) -> Any:
        # One build kept `watched: bool` instead of the floor: the floor is set at next look.
        if isinstance(raw, dict) and "watched" in raw:
            raw = {k: v for k, v in raw.items() if k != "watched"}
        return raw


FactsT = TypeVar("FactsT", "IssueFacts", "ReviewFacts", "MergeFacts", "FollowUpFacts")
Facts = Annotated[
    IssueFacts | ReviewFacts | MergeFacts | FollowUpFacts, Field(discriminator="kind")
]
_FACTS: dict[str, type[IssueFacts | ReviewFacts | MergeFacts | FollowUpFacts]] = {
    WorkItemType.ISSUE.value: IssueFacts,
    WorkItemType.PR_REVIEW.value: ReviewFacts,
    WorkItemType.MERGE.value: MergeFacts,
    WorkItemType.FOLLOW_UP.value: FollowUpFacts,
}


class WorkItem(BaseModel):
    """One unit of work and what came of it; immutable, replaced through `StateStore.put`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: WorkItemType
    number: int
    status: Status = Status.PENDING
    attempts: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    head_sha: str | None = None
    pr_number: int | None = None
    cost_usd: float | None = None  # the last Claude run's
    turns: int | None = None
    duration_s: float | None = None
    spent_usd: float = 0.0  # every Claude run's cost for this item, added up
    runs: int = 0  # the Claude runs that cost it
    last_error: str | None = None
    errors: int = 0  # definite git or GitHub errors in this attempt
    outbox: tuple[Write, ...] = ()  # GitHub writes not yet taken, in order
    # Never None: `_facts_of_its_kind` fills in the empty facts of the item's kind.
    facts: Facts = Field(default=None)  # type: ignore[assignment]

    @model_validator(mode="before")
    @classmethod
    def _facts_of_its_kind(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and raw.get("facts") is None:
            kind = raw.get("type")
            kind = kind.value if isinstance(kind, WorkItemType) else kind
            if kind in _FACTS:
                raw = {**raw, "facts": _FACTS[kind]()}
        return raw

    @model_validator(mode="after")
    def _facts_match(self) -> WorkItem:
        if self.facts.kind != self.type.value:
            raise ValueError(f"{self.type.value} item holds {self.facts.kind} facts")
        return self

    @property
    def key(self) -> str:
        return item_key(self.type, self.number)

    @property
    def issue(self) -> IssueFacts:
        return _as(IssueFacts, self)

    @property
    def review(self) -> ReviewFacts:
        return _as(ReviewFacts, self)

    @property
    def merge(self) -> MergeFacts:
        return _as(MergeFacts, self)

    @property
    def follow_up(self) -> FollowUpFacts:
        return _as(FollowUpFacts, self)

    def evolve(self, **changes: Any) -> WorkItem:
        """A copy with `changes` applied and `updated_at` refreshed."""
        changes.setdefault("updated_at", utcnow())
        return self.model_copy(update=changes)

    def with_facts(self, **changes: Any) -> WorkItem:
        """A copy whose facts have `changes` applied (checked against their types)."""
        return self.evolve(facts=self.facts.but(**changes))


def _as(kind: type[FactsT], item: WorkItem) -> FactsT:
    if not isinstance(item.facts, kind):
        raise TypeError(f"{item.key} holds {item.facts.kind} facts, not {kind.__name__}")
    return item.facts


def item_key(kind: WorkItemType, number: int) -> str:
    return f"{kind.value}:{number}"


def said(kind: WorkItemType, number: int) -> str:
    """A work item in a few words, for people: `issue #4`, `review of #7`, `merge of #9`."""
    match kind:
        case WorkItemType.ISSUE:
            return f"issue #{number}"
        case WorkItemType.PR_REVIEW:
            return f"review of #{number}"
        case WorkItemType.MERGE:
            return f"merge of #{number}"
        case WorkItemType.FOLLOW_UP:
            return f"follow-up on #{number}"
