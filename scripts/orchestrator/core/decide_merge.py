"""The merge workflow's decisions, pure: what a merge request's facts call for at each step.

The merge workflow fetches (the pull request, CI, the base's tip), asks one of these functions
what the facts mean, and acts on the typed answer. Every branch is a row in a table test, so
no branch needs an end-to-end run to be checked.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .ci import Verdict
from .models import PullRequest
from .work import MergeFacts

MAX_BASE_ROUNDS = 3  # test rounds when the base keeps moving during the checks


class Stop(enum.Enum):
    """Why a merge request ends without a merge; each has its own comment."""

    CLOSED = "closed"
    DRAFT = "draft"
    RETARGETED = "retargeted"  # the base branch changed after the request
    PUSHED_SINCE_REQUEST = "pushed_since_request"  # a head nobody with write access saw
    BASE_KEPT_MOVING = "base_kept_moving"
    HEAD_MOVED = "head_moved"  # 409: a push after the tests
    REFUSED = "refused"  # 405: GitHub will not merge (protection, conflicts)


class Start(enum.Enum):
    """What a merge request calls for when its job starts."""

    TEST = "test"
    FINISH = "finish"  # our merge landed before a restart: clean up and report
    ALREADY_MERGED = "already_merged"  # merged by someone else: say so, nothing to do
    STOP = "stop"


@dataclass(frozen=True)
class StartDecision:
    step: Start
    stop: Stop | None = None


def on_start(
    pull: PullRequest,
    *,
    requested_base: str | None,
    requested_head: str | None,
    merged_by_us: bool,
) -> StartDecision:
    """The pull request as GitHub shows it now, against what the request recorded.

    `merged_by_us` is true when our merge call was sent for the head that is now merged (its
    answer may have been lost). `requested_*` are None for requests stored before they were.
    """
    if pull.merged:
        return StartDecision(Start.FINISH if merged_by_us else Start.ALREADY_MERGED)
    if pull.state != "open":
        return StartDecision(Start.STOP, Stop.CLOSED)
    if pull.draft:
        return StartDecision(Start.STOP, Stop.DRAFT)
    if requested_base is not None and pull.base_ref != requested_base:
        return StartDecision(Start.STOP, Stop.RETARGETED)
    if pushed_since_request(requested_head, pull.head_sha):
        return StartDecision(Start.STOP, Stop.PUSHED_SINCE_REQUEST)
    return StartDecision(Start.TEST)


def pushed_since_request(requested_head: str | None, head: str) -> bool:
    """Whether `head` is not the one the writer asked to merge: a push after `/merge` (by
    the author of a fork, say) must not ride on a writer's approval."""
    return requested_head is not None and head != requested_head


class Ci(enum.Enum):
    """What GitHub CI's verdict means for the merge at this point."""

    PASSED = "passed"  # green: go on
    PENDING = "pending"  # not waiting now (before the checks): go on, look again later
    WAIT = "wait"  # waiting for it: look again after a pause
    RED = "red"  # stop: it failed
    TIMED_OUT = "timed_out"  # stop: still pending after the bound


def on_ci(verdict: Verdict, *, wait: bool, waited_s: float, timeout_s: float) -> Ci:
    """A red CI stops the merge at once, even before the long checks run."""
    match verdict:
        case Verdict.RED:
            return Ci.RED
        case Verdict.GREEN:
            return Ci.PASSED
        case Verdict.PENDING:
            if not wait:
                return Ci.PENDING
            return Ci.TIMED_OUT if waited_s >= timeout_s else Ci.WAIT


class Round(enum.Enum):
    """After one round of checks on the head merged onto the base's tip."""

    MERGE = "merge"  # the base did not move: merge what was tested
    RETEST = "retest"  # the base moved: what was tested is not what would land
    STOP = "stop"  # the base kept moving for MAX_BASE_ROUNDS rounds


def after_round(*, tested_base: str, base_now: str, rounds: int) -> Round:
    """`rounds` counts the rounds run so far, this one included."""
    if base_now == tested_base:
        return Round.MERGE
    return Round.RETEST if rounds < MAX_BASE_ROUNDS else Round.STOP


class Refusal(enum.Enum):
    """How GitHub answered the merge call, when it did not say merged."""

    CONFLICT = "conflict"  # 409: the head is not the sha we sent
    NOT_MERGEABLE = "not_mergeable"  # 405
    OTHER = "other"  # anything else, a lost answer included


class AfterRefusal(enum.Enum):
    MERGED = "merged"  # our merge landed after all (the answer was lost)
    STOP = "stop"
    RETRY = "retry"  # an error, not an answer: the attempt is retried


@dataclass(frozen=True)
class RefusalDecision:
    step: AfterRefusal
    stop: Stop | None = None


def after_refusal(
    refusal: Refusal, *, merged_now: bool, head_now: str, tested_head: str
) -> RefusalDecision:
    """Read the pull request again after a refused or unanswered merge: merged at the head we
    tested means our merge landed; anything else is GitHub's answer or an error."""
    if merged_now and head_now == tested_head:
        return RefusalDecision(AfterRefusal.MERGED)
    match refusal:
        case Refusal.CONFLICT:
            return RefusalDecision(AfterRefusal.STOP, Stop.HEAD_MOVED)
        case Refusal.NOT_MERGEABLE:
            return RefusalDecision(AfterRefusal.STOP, Stop.REFUSED)
        case Refusal.OTHER:
            return RefusalDecision(AfterRefusal.RETRY)


def merged_by_us(facts: MergeFacts, head: str) -> bool:
    """Whether a merged pull request is our merge: its answer came (`merge_sha`), or the call
    was sent for the head that is now merged (its answer may have been lost)."""
    return facts.merge_sha is not None or facts.merging_head == head


def already_tested(facts: MergeFacts, *, head: str, base_tip: str | None) -> bool:
    """Whether an earlier attempt, stopped by a fault after its checks passed, tested what
    would land now (the same head on the same base tip): then the checks are not run again."""
    return (
        facts.merging_head is not None
        and facts.merging_head == head
        and facts.tested_base is not None
        and facts.tested_base == base_tip
    )
