"""The follow-up workflow's decisions, pure: which reviews ask for work, and where work goes."""

from __future__ import annotations

import enum
from collections.abc import Sequence

from .models import PullRequest, Review, ReviewComment
from .work import Ask, Thread

ASKING_STATES = frozenset({"CHANGES_REQUESTED", "COMMENTED"})
MAX_SEEN_REVIEWS = 200  # review ids remembered per pull request


class Target(enum.Enum):
    """Where the work on a pull request goes."""

    PUSH = "push"  # the daemon's own pull request: onto its branch
    PULL = "pull"  # another author's branch in this repository: a pull request against it
    FORK = "fork"  # another author's fork: nothing (the daemon does not push to forks)
    CLOSED = "closed"


def target(pull: PullRequest, own: str | None) -> Target:
    if pull.state != "open":
        return Target.CLOSED
    if pull.is_fork:
        return Target.FORK if pull.author != own else Target.PUSH
    return Target.PUSH if own is not None and pull.author == own else Target.PULL


def review_asks(
    reviews: Sequence[Review],
    comments: Sequence[ReviewComment],
    *,
    seen: Sequence[int],
    own: str | None,
    number: int,
) -> list[Ask]:
    """The reviews not seen before that ask for work, as asks, oldest first: changes requested,
    or review comments in the diff; not the daemon's own reviews, nor pending ones. Whether
    their authors may ask is the caller's to check. A reply in an existing thread is a thread
    of its own here, answered in the same thread."""
    asks = []
    known = set(seen)
    for review in reviews:
        if review.id in known or review.author == own or review.state not in ASKING_STATES:
            continue
        if review.submitted_at is None:
            continue  # pending: only its author sees it
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


def seen_now(seen: Sequence[int], reviews: Sequence[Review]) -> tuple[int, ...]:
    """The reviews remembered as seen, the newest `MAX_SEEN_REVIEWS` of them."""
    merged = list(dict.fromkeys([*seen, *(r.id for r in reviews if r.submitted_at is not None)]))
    return tuple(merged[-MAX_SEEN_REVIEWS:])
