"""Routes for issues, labels, issue comments, reactions, events and timelines."""

from __future__ import annotations

import re
from typing import Any

from . import errors
from . import shapes_base as base
from . import shapes_issues as shapes
from .model import Issue, Reaction
from .router import Reply, Request, Router, ordered, query_choice, query_since
from .store import Store

router = Router()
# "Must be 100 characters or fewer", says GitHub's description of a label's `description`.
MAX_LABEL_DESCRIPTION = 100
ISSUE_SORTS = {
    "created": lambda i: (i.created_at, i.number),
    "updated": lambda i: (i.updated_at, i.number),
}


def label_names(value: Any) -> list[str]:
    """Label names from any body form GitHub accepts: a list, `{"labels": [...]}`, objects."""
    if isinstance(value, dict):
        value = value.get("labels", [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise errors.invalid_field("Label", "labels")
    names: list[str] = []
    for item in value:
        name = item.get("name") if isinstance(item, dict) else item
        if not isinstance(name, str) or not name.strip():
            raise errors.invalid_field("Label", "name")
        names.append(name.strip())
    return names


def _labels_reply(store: Store, issue: Issue) -> Reply:
    ctx = store.context()
    return Reply(body=[base.label(ctx, store.ensure_label(n)) for n in issue.labels])


def _created(body: dict[str, Any]) -> Reply:
    return Reply(status=201, body=body, headers={"Location": str(body.get("url", ""))})


# -- issues ---------------------------------------------------------------------------------


@router.route("GET", "/issues", "list_issues")
def list_issues(store: Store, req: Request) -> Reply:
    state = query_choice(req, "state", ("open", "closed", "all"), "open")
    sort = query_choice(req, "sort", ("created", "updated", "comments"), "created")
    direction = query_choice(req, "direction", ("asc", "desc"), "desc")
    wanted = {n.strip().lower() for n in req.query.get("labels", "").split(",") if n.strip()}
    since = query_since(req)
    creator = req.query.get("creator", "").lower()
    items = [
        i
        for i in store.issues.values()
        if (state == "all" or i.state == state)
        and wanted <= {n.lower() for n in i.labels}
        and (since is None or i.updated_at > since)
        and (not creator or i.user.lower() == creator)
    ]
    if sort == "comments":
        items = ordered(items, lambda i: (len(store.comments_on(i.number)), i.number), direction)
    else:
        items = ordered(items, ISSUE_SORTS[sort], direction)
    return Reply(body=[shapes.issue(store, i) for i in items], paginate=True)


@router.route("POST", "/issues", "create_issue")
def create_issue(store: Store, req: Request) -> Reply:
    data = req.body()
    title = data.get("title")
    issue = store.new_issue(
        str(title) if title is not None else "",
        data.get("body"),
        req.login,
        label_names(data.get("labels", [])),
    )
    return _created(shapes.issue(store, issue))


@router.route("GET", "/issues/{number:int}", "get_issue")
def get_issue(store: Store, req: Request) -> Reply:
    return Reply(body=shapes.issue(store, store.issue(req.int_param("number"))))


@router.route("PATCH", "/issues/{number:int}", "update_issue")
def update_issue(store: Store, req: Request) -> Reply:
    issue = store.issue(req.int_param("number"))
    data = req.body()
    update_common(store, issue, data, req.login)
    if "labels" in data:
        store.set_labels(issue, label_names(data["labels"] or []), req.login)
    if "state" in data or "state_reason" in data:
        reason = data.get("state_reason")
        if reason not in (None, "completed", "not_planned", "reopened", "duplicate"):
            raise errors.invalid_field("Issue", "state_reason")
        store.set_state(issue, data.get("state", issue.state), req.login, reason)
    store.touch(issue)
    return Reply(body=shapes.issue(store, issue))


def update_common(store: Store, issue: Issue, data: dict[str, Any], actor: str) -> None:
    """Title and body edits, shared with `PATCH /pulls/{n}`; a new title is a `renamed` event."""
    if "title" in data:
        title = data["title"]
        if not isinstance(title, str) or not title.strip():
            raise errors.invalid_field("Issue", "title", "missing_field")
        if title != issue.title:
            store.record_event(
                issue, actor, "renamed", extra={"rename": {"from": issue.title, "to": title}}
            )
            issue.title = title
    if "body" in data:
        if data["body"] != issue.body:
            issue.last_edited_at = store.now()
        issue.body = data["body"]


# -- labels ---------------------------------------------------------------------------------


@router.route("GET", "/issues/{number:int}/labels", "list_issue_labels")
def list_issue_labels(store: Store, req: Request) -> Reply:
    reply = _labels_reply(store, store.issue(req.int_param("number")))
    reply.paginate = True
    return reply


@router.route("POST", "/issues/{number:int}/labels", "add_labels")
def add_labels(store: Store, req: Request) -> Reply:
    issue = store.issue(req.int_param("number"))
    store.add_labels(issue, label_names(req.json), req.login)
    return _labels_reply(store, issue)


@router.route("PUT", "/issues/{number:int}/labels", "set_labels")
def set_labels(store: Store, req: Request) -> Reply:
    issue = store.issue(req.int_param("number"))
    store.set_labels(issue, label_names(req.json if req.json is not None else []), req.login)
    return _labels_reply(store, issue)


@router.route("DELETE", "/issues/{number:int}/labels", "remove_all_labels")
def remove_all_labels(store: Store, req: Request) -> Reply:
    store.set_labels(store.issue(req.int_param("number")), [], req.login)
    return Reply(status=204)


@router.route("DELETE", "/issues/{number:int}/labels/{name:path}", "remove_label")
def remove_label(store: Store, req: Request) -> Reply:
    issue = store.issue(req.int_param("number"))
    store.remove_label(issue, req.params["name"], req.login)
    return _labels_reply(store, issue)


@router.route("GET", "/labels", "list_labels")
def list_labels(store: Store, req: Request) -> Reply:
    ctx = store.context()
    labels = sorted(store.labels.values(), key=lambda lab: lab.name.lower())
    return Reply(body=[base.label(ctx, lab) for lab in labels], paginate=True)


@router.route("GET", "/labels/{name:path}", "get_label")
def get_label(store: Store, req: Request) -> Reply:
    found = store.labels.get(req.params["name"].lower())
    if found is None:
        raise errors.not_found()
    return Reply(body=base.label(store.context(), found))


@router.route("POST", "/labels", "create_label")
def create_label(store: Store, req: Request) -> Reply:
    data = req.body()
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise errors.invalid_field("Label", "name", "missing_field")
    if name.lower() in store.labels:
        raise errors.invalid_field("Label", "name", "already_exists")
    color = data.get("color")
    # Six hex digits without `#`, as GitHub's description says. GitHub's 422 for a color it
    # refuses is recorded in tests/recordings/octokit-fixtures/errors.json ("invalid"); users
    # report the same for "#f00ff0" (googleapis/repo-automation-bots#3403). No color: GitHub
    # picks one.
    if color is not None and not re.fullmatch(r"[0-9a-fA-F]{6}", color):
        raise errors.invalid_field("Label", "color")
    description = data.get("description")
    # GitHub's error entry for a long description is not recorded; this one names the field.
    if description is not None and len(description) > MAX_LABEL_DESCRIPTION:
        raise errors.invalid_field("Label", "description")
    lab = store.ensure_label(name, color, description)
    return Reply(status=201, body=base.label(store.context(), lab))


# -- comments -------------------------------------------------------------------------------


@router.route("GET", "/issues/comments", "list_repo_comments")
def list_repo_comments(store: Store, req: Request) -> Reply:
    sort = query_choice(req, "sort", ("created", "updated"), "created")
    # GitHub ignores `direction` without `sort`; oldest first is what it then returns.
    direction = query_choice(req, "direction", ("asc", "desc"), "asc")
    if "sort" not in req.query:
        direction = "asc"
    since = query_since(req)
    items = [c for c in store.comments.values() if since is None or c.updated_at > since]
    if sort == "updated":
        items = ordered(items, lambda c: (c.updated_at, c.id), direction)
    else:
        items = ordered(items, lambda c: (c.created_at, c.id), direction)
    return Reply(body=[shapes.comment(store, c) for c in items], paginate=True)


@router.route("GET", "/issues/{number:int}/comments", "list_comments")
def list_comments(store: Store, req: Request) -> Reply:
    store.issue(req.int_param("number"))
    since = query_since(req)
    items = [
        c
        for c in store.comments_on(req.int_param("number"))
        if since is None or c.updated_at > since
    ]
    return Reply(body=[shapes.comment(store, c) for c in items], paginate=True)


@router.route("POST", "/issues/{number:int}/comments", "create_comment")
def create_comment(store: Store, req: Request) -> Reply:
    item = store.add_comment(req.int_param("number"), req.body().get("body"), req.login)
    return _created(shapes.comment(store, item))


@router.route("GET", "/issues/comments/{id:int}", "get_comment")
def get_comment(store: Store, req: Request) -> Reply:
    return Reply(body=shapes.comment(store, store.comment(req.int_param("id"))))


@router.route("PATCH", "/issues/comments/{id:int}", "update_comment")
def update_comment(store: Store, req: Request) -> Reply:
    item = store.comment(req.int_param("id"))
    store.edit_comment(item, req.body().get("body"))
    return Reply(body=shapes.comment(store, item))


@router.route("DELETE", "/issues/comments/{id:int}", "delete_comment")
def delete_comment(store: Store, req: Request) -> Reply:
    store.delete_comment(store.comment(req.int_param("id")))
    return Reply(status=204)


# -- reactions ------------------------------------------------------------------------------


def _react(store: Store, req: Request, reactions: list[Reaction]) -> Reply:
    item, created = store.react(reactions, req.login, str(req.body().get("content")))
    return Reply(status=201 if created else 200, body=base.reaction(store.context(), item))


def _list_reactions(store: Store, req: Request, reactions: list[Reaction]) -> Reply:
    content = req.query.get("content")
    ctx = store.context()
    items = [r for r in reactions if content is None or r.content == content]
    return Reply(body=[base.reaction(ctx, r) for r in items], paginate=True)


def _delete_reaction(req: Request, reactions: list[Reaction]) -> Reply:
    found = next((r for r in reactions if r.id == req.int_param("reaction_id")), None)
    if found is None:
        raise errors.not_found()
    reactions.remove(found)
    return Reply(status=204)


@router.route("POST", "/issues/comments/{id:int}/reactions", "react_to_comment")
def react_to_comment(store: Store, req: Request) -> Reply:
    return _react(store, req, store.comment(req.int_param("id")).reactions)


@router.route("GET", "/issues/comments/{id:int}/reactions", "list_comment_reactions")
def list_comment_reactions(store: Store, req: Request) -> Reply:
    return _list_reactions(store, req, store.comment(req.int_param("id")).reactions)


@router.route(
    "DELETE", "/issues/comments/{id:int}/reactions/{reaction_id:int}", "delete_comment_reaction"
)
def delete_comment_reaction(store: Store, req: Request) -> Reply:
    return _delete_reaction(req, store.comment(req.int_param("id")).reactions)


@router.route("POST", "/issues/{number:int}/reactions", "react_to_issue")
def react_to_issue(store: Store, req: Request) -> Reply:
    return _react(store, req, store.issue(req.int_param("number")).reactions)


@router.route("GET", "/issues/{number:int}/reactions", "list_issue_reactions")
def list_issue_reactions(store: Store, req: Request) -> Reply:
    return _list_reactions(store, req, store.issue(req.int_param("number")).reactions)


@router.route("DELETE", "/issues/{number:int}/reactions/{reaction_id:int}", "delete_issue_reaction")
def delete_issue_reaction(store: Store, req: Request) -> Reply:
    return _delete_reaction(req, store.issue(req.int_param("number")).reactions)


# -- events ---------------------------------------------------------------------------------


@router.route("GET", "/issues/{number:int}/events", "list_events")
def list_events(store: Store, req: Request) -> Reply:
    store.issue(req.int_param("number"))
    items = store.events_of(req.int_param("number"))
    return Reply(body=[shapes.event(store, e) for e in items], paginate=True)


@router.route("GET", "/issues/{number:int}/timeline", "list_timeline")
def list_timeline(store: Store, req: Request) -> Reply:
    store.issue(req.int_param("number"))
    return Reply(body=shapes.timeline(store, req.int_param("number"), req.login), paginate=True)
