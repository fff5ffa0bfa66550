"""Routes for pull requests: listing, creation, files, commits, merging, branch refs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import errors
from . import pulls as ops
from . import shapes_pulls as shapes
from .model import Issue
from .router import Reply, Request, Router, ordered, query_choice
from .routes_issues import update_common
from .store import Store

router = Router()
PULL_SORTS = ("created", "updated", "popularity", "long-running")


def _full(store: Store, issue: Issue) -> dict[str, Any]:
    return shapes.pull_full(store, issue, ops.tips(store, issue, ops.sync_heads(store)))


@router.route("GET", "/pulls", "list_pulls")
def list_pulls(store: Store, req: Request) -> Reply:
    state = query_choice(req, "state", ("open", "closed", "all"), "open")
    sort = query_choice(req, "sort", PULL_SORTS, "created")
    default_direction = "desc" if sort == "created" else "asc"
    direction = query_choice(req, "direction", ("asc", "desc"), default_direction)
    head = req.query.get("head")
    head_owner, _, head_ref = (head or "").rpartition(":")
    base = req.query.get("base")
    refs = ops.sync_heads(store)
    items: list[Issue] = []
    for issue in store.issues.values():
        info = issue.pull
        if info is None or (state != "all" and issue.state != state):
            continue
        if base and info.base_ref != base:
            continue
        owner = info.fork_owner or store.owner
        if head and (
            info.head_ref != head_ref or (head_owner and owner.lower() != head_owner.lower())
        ):
            continue
        items.append(issue)
    items = ordered(items, _sort_key(store, sort), direction)
    body = [shapes.pull_simple(store, i, ops.tips(store, i, refs)) for i in items]
    return Reply(body=body, paginate=True)


def _sort_key(store: Store, sort: str) -> Callable[[Issue], Any]:
    if sort == "popularity":
        return lambda i: (len(store.comments_on(i.number)), i.number)
    if sort == "updated":
        return lambda i: (i.updated_at, i.number)
    # `long-running` also orders by creation; its one-month activity window is not modelled.
    return lambda i: (i.created_at, i.number)


@router.route("POST", "/pulls", "create_pull")
def create_pull(store: Store, req: Request) -> Reply:
    data = req.body()
    head = str(data.get("head") or "")
    owner, _, branch = head.rpartition(":")
    if owner and owner.lower() != store.owner.lower():
        # Cross-repository pull requests are created by the test API (`create_fork_pull`).
        raise errors.invalid_field("PullRequest", "head", doc=ops.CREATE_DOC)
    issue = ops.create_pull(
        store,
        title=str(data.get("title") or ""),
        head=branch,
        base=str(data.get("base") or ""),
        body=data.get("body"),
        author=req.login,
        draft=bool(data.get("draft", False)),
        maintainer_can_modify=bool(data.get("maintainer_can_modify", False)),
    )
    body = _full(store, issue)
    return Reply(status=201, body=body, headers={"Location": body["url"]})


@router.route("GET", "/pulls/{number:int}", "get_pull")
def get_pull(store: Store, req: Request) -> Reply:
    issue, _ = ops.get_pull(store, req.int_param("number"))
    return Reply(body=_full(store, issue))


@router.route("PATCH", "/pulls/{number:int}", "update_pull")
def update_pull(store: Store, req: Request) -> Reply:
    issue, info = ops.get_pull(store, req.int_param("number"))
    data = req.body()
    update_common(store, issue, data, req.login)
    if "base" in data:
        if store.git.resolve(f"refs/heads/{data['base']}") is None:
            raise errors.invalid_field("PullRequest", "base")
        info.base_ref = str(data["base"])
    if "maintainer_can_modify" in data:
        info.maintainer_can_modify = bool(data["maintainer_can_modify"])
    if "state" in data and data["state"] != issue.state:
        if info.merged:
            raise errors.custom("PullRequest", "Cannot change the state of a merged pull request")
        if data["state"] == "closed":
            info.frozen_base_sha = store.git.resolve(f"refs/heads/{info.base_ref}")
        else:
            info.frozen_base_sha = None
        store.set_state(issue, str(data["state"]), req.login)
        ops.install_hook(store)
    store.touch(issue)
    return Reply(body=_full(store, issue))


@router.route("GET", "/pulls/{number:int}/files", "list_pull_files")
def list_pull_files(store: Store, req: Request) -> Reply:
    issue, _ = ops.get_pull(store, req.int_param("number"))
    now = ops.tips(store, issue, ops.sync_heads(store))
    start = store.git.merge_base(now.base, now.head) or now.base
    changes = store.git.diff(start, now.head)
    return Reply(body=[shapes.diff_entry(store, c, now.head) for c in changes], paginate=True)


@router.route("GET", "/pulls/{number:int}/commits", "list_pull_commits")
def list_pull_commits(store: Store, req: Request) -> Reply:
    issue, _ = ops.get_pull(store, req.int_param("number"))
    now = ops.tips(store, issue, ops.sync_heads(store))
    start = store.git.merge_base(now.base, now.head) or now.base
    commits = store.git.commits(start, now.head)
    return Reply(body=[shapes.commit(store, c) for c in commits], paginate=True)


@router.route("PUT", "/pulls/{number:int}/merge", "merge_pull")
def merge_pull(store: Store, req: Request) -> Reply:
    issue, _ = ops.get_pull(store, req.int_param("number"))
    data = req.body()
    result = ops.merge(
        store,
        issue,
        req.login,
        method=str(data.get("merge_method", "merge")),
        sha=data.get("sha"),
        title=data.get("commit_title"),
        message=data.get("commit_message"),
    )
    return Reply(body=result)


@router.route("GET", "/pulls/{number:int}/merge", "check_merged")
def check_merged(store: Store, req: Request) -> Reply:
    _, info = ops.get_pull(store, req.int_param("number"))
    if not info.merged:
        raise errors.not_found()
    return Reply(status=204)


@router.route("DELETE", "/git/refs/{ref:path}", "delete_ref")
def delete_ref(store: Store, req: Request) -> Reply:
    ops.delete_branch(store, req.params["ref"], req.login)
    return Reply(status=204)


@router.route("GET", "/git/ref/{ref:path}", "get_ref")
def get_ref(store: Store, req: Request) -> Reply:
    ref = req.params["ref"]
    sha = store.git.resolve(f"refs/{ref}") if ref.startswith(("heads/", "tags/")) else None
    if sha is None:
        raise errors.not_found()
    api = store.context().api
    return Reply(
        body={
            "ref": f"refs/{ref}",
            "node_id": f"REF_{sha[:12]}",
            "url": f"{api}/git/refs/{ref}",
            "object": {"type": "commit", "sha": sha, "url": f"{api}/git/commits/{sha}"},
        }
    )
