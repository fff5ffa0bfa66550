"""Routes for pull request reviews: reviews, review comments and replies, review requests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import errors, reviews, shapes_issues
from . import pulls as ops
from . import shapes_pulls as shapes
from .model import ReviewComment
from .router import Reply, Request, Router, ordered, query_choice, query_since
from .shapes_base import user
from .store import Store

router = Router()


@router.route("POST", "/pulls/{number:int}/reviews", "create_review")
def create_review(store: Store, req: Request) -> Reply:
    issue, _ = ops.get_pull(store, req.int_param("number"))
    data = req.body()
    review = reviews.add_review(
        store,
        issue,
        req.login,
        body=data.get("body"),
        event=data.get("event"),
        commit_id=data.get("commit_id"),
        comments=data.get("comments") or (),
    )
    return Reply(body=shapes_issues.review(store, review))


@router.route("GET", "/pulls/{number:int}/reviews", "list_reviews")
def list_reviews(store: Store, req: Request) -> Reply:
    number = req.int_param("number")
    ops.get_pull(store, number)
    # Someone else's pending review is invisible, as on GitHub.
    items = [
        r
        for r in store.reviews
        if r.pull_number == number and (r.submitted_at is not None or r.user == req.login)
    ]
    return Reply(body=[shapes_issues.review(store, r) for r in items], paginate=True)


@router.route("GET", "/pulls/{number:int}/reviews/{id:int}", "get_review")
def get_review(store: Store, req: Request) -> Reply:
    number, ident = req.int_param("number"), req.int_param("id")
    found = next((r for r in store.reviews if r.pull_number == number and r.id == ident), None)
    if found is None:
        raise errors.not_found()
    return Reply(body=shapes_issues.review(store, found))


@router.route("GET", "/pulls/{number:int}/comments", "list_review_comments")
def list_review_comments(store: Store, req: Request) -> Reply:
    """By ID unless `sort` is given; `direction` is "ignored without `sort`" (GitHub's
    words), and with it names no default: the fake takes `desc`, so a client that counts on
    an order must ask for it."""
    number = req.int_param("number")
    ops.get_pull(store, number)
    since = query_since(req)
    items = [
        c
        for c in reviews.comments_of(store, number, req.login)
        if since is None or c.updated_at > since
    ]
    direction = query_choice(req, "direction", ("asc", "desc"), "desc")
    if "sort" in req.query:
        sort = query_choice(req, "sort", ("created", "updated"), "created")
        items = ordered(items, _sort_key(sort), direction)
    return Reply(body=[shapes.review_comment(store, c) for c in items], paginate=True)


def _sort_key(sort: str) -> Callable[[ReviewComment], Any]:
    if sort == "updated":
        return lambda c: (c.updated_at, c.id)
    return lambda c: (c.created_at, c.id)


@router.route(
    "POST",
    "/pulls/{number:int}/comments/{comment_id:int}/replies",
    "create_reply_for_review_comment",
)
def create_reply_for_review_comment(store: Store, req: Request) -> Reply:
    issue, _ = ops.get_pull(store, req.int_param("number"))
    data = req.body()
    item = reviews.reply(store, issue, req.int_param("comment_id"), data.get("body"), req.login)
    body = shapes.review_comment(store, item)
    return Reply(status=201, body=body, headers={"Location": body["url"]})


@router.route("GET", "/pulls/{number:int}/requested_reviewers", "list_requested_reviewers")
def list_requested_reviewers(store: Store, req: Request) -> Reply:
    _, info = ops.get_pull(store, req.int_param("number"))
    ctx = store.context()
    return Reply(body={"users": [user(ctx, r) for r in info.requested_reviewers], "teams": []})


@router.route("POST", "/pulls/{number:int}/requested_reviewers", "request_reviewers")
def request_reviewers(store: Store, req: Request) -> Reply:
    issue, _ = ops.get_pull(store, req.int_param("number"))
    data = req.body()
    reviews.request_reviewers(
        store,
        issue,
        req.login,
        data.get("reviewers") or (),
        data.get("team_reviewers") or (),
    )
    return Reply(status=201, body=_simple(store, req.int_param("number")))


@router.route("DELETE", "/pulls/{number:int}/requested_reviewers", "remove_requested_reviewers")
def remove_requested_reviewers(store: Store, req: Request) -> Reply:
    issue, _ = ops.get_pull(store, req.int_param("number"))
    reviews.remove_requested_reviewers(store, issue, req.login, req.body().get("reviewers") or ())
    return Reply(body=_simple(store, issue.number))


def _simple(store: Store, number: int) -> dict[str, Any]:
    issue, _ = ops.get_pull(store, number)
    return shapes.pull_simple(store, issue, ops.tips(store, issue, ops.sync_heads(store)))
