"""Pull request reviews and their threads: reviews, comments on the diff, replies, requests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import errors
from .anchors import Anchor, Unresolved, resolve
from .model import Happening, Issue, PullInfo, Review, ReviewComment
from .pulls import sync_heads, tips
from .shapes_base import user
from .store import MAX_BODY, Store, check_body

REVIEW_DOC = "https://docs.github.com/rest/pulls/reviews#create-a-review-for-a-pull-request"
REPLY_DOC = "https://docs.github.com/rest/pulls/comments#create-a-reply-for-a-review-comment"
REQUEST_DOC = (
    "https://docs.github.com/rest/pulls/review-requests#request-reviewers-for-a-pull-request"
)
REVIEW_STATES = {
    "APPROVE": "APPROVED",
    "REQUEST_CHANGES": "CHANGES_REQUESTED",
    "COMMENT": "COMMENTED",
}
# Who may ask for a review: triage access or more.
_REQUESTERS = ("triage", "write", "maintain", "admin")


def add_review(
    store: Store,
    issue: Issue,
    actor: str,
    *,
    body: str | None,
    event: str | None,
    commit_id: str | None,
    comments: Sequence[Mapping[str, Any]] = (),
    association: str | None = None,
) -> Review:
    """Create a review, with its `comments` on the diff; without `event` it stays PENDING
    (unsubmitted), as on GitHub. All or nothing: one comment GitHub cannot place refuses the
    whole review."""
    if event is not None and event not in REVIEW_STATES:
        raise errors.invalid_field("PullRequestReview", "event", doc=REVIEW_DOC)
    # GitHub's documented rule, comments or not: "Required when using REQUEST_CHANGES or
    # COMMENT" (it is sometimes laxer with comments; the fake keeps the rule as written).
    if event in ("REQUEST_CHANGES", "COMMENT") and not body:
        raise _review_error(f"Review body is required for the {event} event")
    own = actor.lower() == issue.user.lower()
    if own and event == "APPROVE":
        raise _review_error("Can not approve your own pull request")
    if own and event == "REQUEST_CHANGES":
        raise _review_error("Can not request changes on your own pull request")
    if body:
        check_body(body, "PullRequestReview")
    head = tips(store, issue, sync_heads(store)).head
    if commit_id is not None and store.git.resolve(commit_id) is None:
        raise _review_error("Commit not found")
    commit = commit_id or head
    placed = _place(store, issue, commit, comments)
    store.user_id(actor)
    review = Review(
        store.next_id("review"),
        issue.number,
        actor,
        body or "",
        REVIEW_STATES[event] if event else "PENDING",
        commit,
        store.now() if event else None,
        association,
    )
    store.reviews.append(review)
    for anchor, text in placed:
        _add_comment(store, review, anchor, text, commit)
    store.touch(issue)
    if event is not None:
        _submitted(store, issue, review)
    return review


def reply(store: Store, issue: Issue, comment_id: int, body: object, actor: str) -> ReviewComment:
    """A reply in the thread that `comment_id` starts. GitHub documents "Replies to replies
    are not supported": the fake refuses one (422) rather than guess where it would go. Like
    a comment made outside a review on GitHub, the reply comes with a review of its own
    (COMMENTED, no body), submitted at once."""
    target = store.review_comments.get(comment_id)
    if target is None or target.pull_number != issue.number or not visible(store, target, actor):
        raise errors.not_found()
    if target.in_reply_to is not None:
        raise errors.custom(
            "PullRequestReviewComment",
            "Replies to replies are not supported; reply to the thread's first comment",
            REPLY_DOC,
            field="in_reply_to",
        )
    text = check_body(body, "PullRequestReviewComment")
    store.user_id(actor)
    review = Review(
        store.next_id("review"),
        issue.number,
        actor,
        "",
        "COMMENTED",
        tips(store, issue, sync_heads(store)).head,
        store.now(),
    )
    store.reviews.append(review)
    anchor = Anchor(
        target.path,
        target.line,
        target.side,
        target.position,
        target.diff_hunk,
        target.start_line,
        target.start_side,
    )
    item = _add_comment(store, review, anchor, text, target.commit_id, in_reply_to=target.id)
    store.touch(issue)
    _submitted(store, issue, review)
    return item


def comments_of(store: Store, number: int, viewer: str) -> list[ReviewComment]:
    """The pull request's review comments `viewer` may see, by ID (GitHub's default order)."""
    found = [
        c
        for c in store.review_comments.values()
        if c.pull_number == number and visible(store, c, viewer)
    ]
    return sorted(found, key=lambda c: c.id)


def visible(store: Store, item: ReviewComment, viewer: str) -> bool:
    """A comment of a pending review is its author's alone, as the review is."""
    review = next(r for r in store.reviews if r.id == item.review_id)
    return review.submitted_at is not None or review.user.lower() == viewer.lower()


def request_reviewers(
    store: Store, issue: Issue, actor: str, logins: Iterable[str], teams: Iterable[str] = ()
) -> None:
    """Ask `logins` for a review, as GitHub does: all or nothing, 422 for the pull request's
    author and for anyone who is not a collaborator (the fake has no teams: every team slug
    is refused the same way)."""
    info = _info(issue)
    wanted, slugs = list(logins), list(teams)
    if store.role(actor) not in _REQUESTERS:
        raise errors.basic(403, "Must have triage access to request reviews.", REQUEST_DOC)
    if not wanted and not slugs:
        raise errors.basic(422, "Reviewers or team_reviewers must name someone.", REQUEST_DOC)
    if any(login.lower() == issue.user.lower() for login in wanted):
        raise errors.basic(422, "Review cannot be requested from pull request author.", REQUEST_DOC)
    outsiders = [login for login in wanted if store.roles.get(login.lower(), "none") == "none"]
    if outsiders or slugs:
        raise errors.basic(
            422,
            "Reviews may only be requested from collaborators. One or more of the users or "
            f"teams you specified is not a collaborator of the {store.owner}/{store.name} "
            "repository.",
            REQUEST_DOC,
        )
    for login in wanted:
        name = store.users[login.lower()].login
        if name.lower() not in (r.lower() for r in info.requested_reviewers):
            info.requested_reviewers.append(name)
            _request_event(store, issue, actor, name, "review_requested")
    store.touch(issue)


def remove_requested_reviewers(
    store: Store, issue: Issue, actor: str, logins: Iterable[str]
) -> None:
    info = _info(issue)
    for login in logins:
        match = next((r for r in info.requested_reviewers if r.lower() == login.lower()), None)
        if match is not None:
            info.requested_reviewers.remove(match)
            _request_event(store, issue, actor, match, "review_request_removed")
    store.touch(issue)


def _place(
    store: Store, issue: Issue, commit: str, comments: Sequence[Mapping[str, Any]]
) -> list[tuple[Anchor, str]]:
    """Each comment's place in the diff of the pull request at `commit`, and its body."""
    if not comments:
        return []
    base = tips(store, issue, store.git.refs()).base
    start = store.git.merge_base(base, commit) or base
    patches = {change.filename: change.patch for change in store.git.diff(start, commit)}
    placed: list[tuple[Anchor, str]] = []
    for comment in comments:
        text = comment.get("body")
        if not isinstance(text, str) or not text:
            raise _review_error("Body can't be blank")
        if len(text) > MAX_BODY:
            raise _review_error(f"Body is too long (maximum is {MAX_BODY} characters)")
        try:
            placed.append((resolve(patches, comment), text))
        except Unresolved as exc:
            raise _review_error(str(exc)) from None
    return placed


def _add_comment(
    store: Store,
    review: Review,
    anchor: Anchor,
    body: str,
    commit: str,
    *,
    in_reply_to: int | None = None,
) -> ReviewComment:
    now = store.now()
    item = ReviewComment(
        id=store.next_id("review_comment"),
        pull_number=review.pull_number,
        review_id=review.id,
        user=review.user,
        body=body,
        path=anchor.path,
        line=anchor.line,
        side=anchor.side,
        position=anchor.position,
        diff_hunk=anchor.diff_hunk,
        commit_id=commit,
        created_at=now,
        updated_at=now,
        start_line=anchor.start_line,
        start_side=anchor.start_side,
        in_reply_to=in_reply_to,
        author_association=review.author_association,
    )
    store.review_comments[item.id] = item
    return item


def _submitted(store: Store, issue: Issue, review: Review) -> None:
    """A submitted review answers its author's review request, which GitHub then drops."""
    info = _info(issue)
    info.requested_reviewers = [
        r for r in info.requested_reviewers if r.lower() != review.user.lower()
    ]
    happening = Happening(
        "pull_request_review", "submitted", issue.number, review.user, review_id=review.id
    )
    store.emit(happening)


def _request_event(store: Store, issue: Issue, actor: str, login: str, event: str) -> None:
    ctx = store.context()
    extra = {"review_requester": user(ctx, actor), "requested_reviewer": user(ctx, login)}
    store.record_event(issue, actor, event, extra=extra)


def _info(issue: Issue) -> PullInfo:
    if issue.pull is None:
        raise errors.not_found()
    return issue.pull


def _review_error(message: str) -> errors.ApiError:
    return errors.validation([message], REVIEW_DOC, message="Unprocessable Entity")
