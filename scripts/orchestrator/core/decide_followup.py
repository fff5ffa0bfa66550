"""The follow-up workflow's decisions, pure: which reviews ask for work, and where work goes."""

from __future__ import annotations

import enum
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from .models import PullRequest, Review, ReviewComment
from .work import Ask, Thread

ASKING_STATES = frozenset({"CHANGES_REQUESTED", "COMMENTED"})
LATE = timedelta(minutes=10)  # how late GitHub may list a review after its submission
# The branches the daemon opens pull requests from: an issue's (`implement.branch_for`), and a
# follow-up's beside another author's branch (`followup_run`).
DAEMON_BRANCH = re.compile(r"feature/issue-[1-9][0-9]*|claude/pr-[1-9][0-9]*-[0-9]+")


class Target(enum.Enum):
    """Where the work on a pull request goes."""

    PUSH = "push"  # the daemon's own pull request: onto its branch
    PULL = "pull"  # another author's branch in this repository: a pull request against it
    FORK = "fork"  # another author's fork: nothing (the daemon does not push to forks)
    CLOSED = "closed"


def daemons(pull: PullRequest, own: str | None) -> bool:
    """Whether `pull` is one the daemon opened: by its account, from a branch of the kind it
    makes, in this repository. The branch matters as much as the author: with a person's own
    token, the pull requests that person opens by hand are not the daemon's to change."""
    return (
        own is not None
        and pull.author == own
        and not pull.is_fork
        and DAEMON_BRANCH.fullmatch(pull.head_ref) is not None
    )


def target(pull: PullRequest, own: str | None) -> Target:
    if pull.state != "open":
        return Target.CLOSED
    if pull.is_fork:
        return Target.FORK
    return Target.PUSH if daemons(pull, own) else Target.PULL


def review_asks(
    reviews: Sequence[Review],
    comments: Sequence[ReviewComment],
    *,
    seen: Collection[int],
    floor: datetime,
    own: str | None,
    number: int,
) -> list[Ask]:
    """The reviews not seen before, submitted at `floor` or later, that ask for work, as asks,
    oldest first: changes requested, or review comments in the diff; not the daemon's own
    reviews, nor pending ones. Whether their authors may ask is the caller's to check. A reply
    in an existing thread is answered in that thread."""
    asks = []
    for review in reviews:
        if review.submitted_at is None or review.submitted_at < floor:
            continue  # pending (only its author sees it), or from before the daemon looked
        if review.id in seen or review.author == own or review.state not in ASKING_STATES:
            continue
        threads = tuple(
            Thread(id=c.in_reply_to or c.id, path=c.path, line=c.line, body=c.body)
            for c in comments
            if c.review_id == review.id and c.author != own
        )
        opened = any(c.review_id == review.id and c.in_reply_to is None for c in comments)
        if review.state == "COMMENTED" and not opened:
            # A remark on the conversation, or a reply in a thread ("thanks"): no request for
            # changes. (A writer asks again with changes requested, or the follow-up trigger.)
            continue
        if not threads and not review.body.strip():
            continue  # changes requested, with nothing said about which
        asks.append(Ask(source="review", id=review.id, author=review.author, where=number,
                        text=review.body, threads=threads))  # fmt: skip
    return asks


@dataclass(frozen=True)
class Looked:
    """What is remembered of a pull request's reviews once they were looked at."""

    seen: tuple[int, ...]  # the reviews at or after `floor` already looked at
    floor: datetime  # reviews submitted before it are not asks


def looked(reviews: Sequence[Review], *, seen: Collection[int], floor: datetime) -> Looked:
    """After a look at `reviews`: the floor moves up to `LATE` before the newest submission
    (GitHub may list a review a little after its time), and only the reviews since the floor
    are remembered, so what is kept stays small however many reviews a pull request gets."""
    submitted = [r for r in reviews if r.submitted_at is not None]
    newest = max((r.submitted_at for r in submitted if r.submitted_at), default=floor)
    moved = max(floor, newest - LATE)
    keep = {r.id for r in submitted if r.submitted_at is not None and r.submitted_at >= moved}
    return Looked(tuple(sorted(keep & ({*seen} | {r.id for r in submitted}))), moved)
