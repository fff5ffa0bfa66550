"""JSON shapes of issues, issue comments, issue events and timelines."""

from __future__ import annotations

from typing import Any

from . import versions
from .model import Comment, Event, Issue, Review
from .shapes_base import Json, RepoContext, label, node_id, reaction_rollup, stamp, user
from .store import Store


def issue(store: Store, item: Issue) -> Json:
    """GitHub's Issue; a pull request carries `pull_request` and `draft`, as in `GET /issues`."""
    ctx = store.context()
    url = f"{ctx.api}/issues/{item.number}"
    data: Json = {
        "url": url,
        "repository_url": ctx.api,
        "labels_url": f"{url}/labels{{/name}}",
        "comments_url": f"{url}/comments",
        "events_url": f"{url}/events",
        "html_url": f"{ctx.html}/{'pull' if item.pull else 'issues'}/{item.number}",
        "id": item.id,
        "node_id": node_id("Issue", item.id),
        "number": item.number,
        "title": item.title,
        "user": user(ctx, item.user),
        "labels": [label(ctx, store.ensure_label(n), embedded=True) for n in item.labels],
        "state": item.state,
        "locked": item.locked,
        "assignees": [],
        "milestone": None,
        "comments": len(store.comments_on(item.number)),
        "created_at": stamp(item.created_at),
        "updated_at": stamp(item.updated_at),
        "closed_at": stamp(item.closed_at),
        "author_association": store.association(item.user, item.author_association),
        "type": None,
        "active_lock_reason": None,
        "sub_issues_summary": {"total": 0, "completed": 0, "percent_completed": 0},
        "body": item.body,
        "closed_by": user(ctx, item.closed_by) if item.closed_by else None,
        "reactions": reaction_rollup(f"{url}/reactions", item.reactions),
        "timeline_url": f"{url}/timeline",
        "performed_via_github_app": None,
        "state_reason": item.state_reason,
    }
    if item.pull is not None:
        pull_url = f"{ctx.api}/pulls/{item.number}"
        html = f"{ctx.html}/pull/{item.number}"
        data["draft"] = item.pull.draft
        data["pull_request"] = {
            "url": pull_url,
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "merged_at": stamp(item.pull.merged_at),
        }
    if versions.before_2026():
        data["assignee"] = None  # the fake assigns no one
    return data


def comment(store: Store, item: Comment) -> Json:
    ctx = store.context()
    url = f"{ctx.api}/issues/comments/{item.id}"
    target = store.issues[item.issue_number]
    kind = "pull" if target.pull else "issues"
    return {
        "url": url,
        "html_url": f"{ctx.html}/{kind}/{item.issue_number}#issuecomment-{item.id}",
        "issue_url": f"{ctx.api}/issues/{item.issue_number}",
        "id": item.id,
        "node_id": node_id("IssueComment", item.id),
        "user": user(ctx, item.user),
        "created_at": stamp(item.created_at),
        "updated_at": stamp(item.updated_at),
        "author_association": store.association(item.user, item.author_association),
        "body": item.body,
        "reactions": reaction_rollup(f"{url}/reactions", item.reactions),
        "performed_via_github_app": None,
    }


def event(store: Store, item: Event) -> Json:
    """An issue event; `labeled`/`unlabeled` carry `label: {name, color}` as GitHub sends."""
    ctx = store.context()
    data: Json = {
        "id": item.id,
        "node_id": node_id("IssueEvent", item.id),
        "url": f"{ctx.api}/issues/events/{item.id}",
        "actor": user(ctx, item.actor),
        "event": item.event,
        "commit_id": item.commit_id,
        "commit_url": f"{ctx.api}/commits/{item.commit_id}" if item.commit_id else None,
        "created_at": stamp(item.created_at),
        "performed_via_github_app": None,
    }
    if item.label is not None:
        data["label"] = {"name": item.label.name, "color": item.label.color}
    data.update(item.extra)
    return data


def review(store: Store, item: Review) -> Json:
    ctx = store.context()
    pull_url = f"{ctx.api}/pulls/{item.pull_number}"
    html = f"{ctx.html}/pull/{item.pull_number}#pullrequestreview-{item.id}"
    data: Json = {
        "id": item.id,
        "node_id": node_id("PullRequestReview", item.id),
        "user": user(ctx, item.user),
        "body": item.body,
        "state": item.state,
        "html_url": html,
        "pull_request_url": pull_url,
        "author_association": store.association(item.user, item.author_association),
        "_links": {"html": {"href": html}, "pull_request": {"href": pull_url}},
        "commit_id": item.commit_id,
    }
    if item.submitted_at is not None:
        # A PENDING review has no `submitted_at` at all, not a null one.
        data["submitted_at"] = stamp(item.submitted_at)
    return data


def timeline(store: Store, number: int, viewer: str) -> list[Json]:
    """Events, comments and submitted reviews of one issue, oldest first."""
    keyed: list[tuple[Any, int, Json]] = []
    for item in store.events_of(number):
        keyed.append((item.created_at, item.id, event(store, item)))
    ctx: RepoContext = store.context()
    for note in store.comments_on(number):
        data = comment(store, note)
        data.update({"event": "commented", "actor": user(ctx, note.user)})
        keyed.append((note.created_at, note.id, data))
    for rev in store.reviews:
        # A pending review is visible only to its author, as on GitHub.
        if rev.pull_number != number or (rev.submitted_at is None and rev.user != viewer):
            continue
        data = review(store, rev)
        data["event"] = "reviewed"
        keyed.append((rev.submitted_at or store.now(), rev.id, data))
    keyed.sort(key=lambda entry: (entry[0], entry[1]))
    return [entry[2] for entry in keyed]
