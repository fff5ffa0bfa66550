"""Routes for the repository itself, CI results, permissions, the token's user and rate limits."""

from __future__ import annotations

from . import ci, errors
from . import shapes_repo as shapes
from .router import Reply, Request, Router
from .store import Store

router = Router()


def _sha_for(store: Store, ref: str) -> str:
    sha = store.git.resolve_branch_or_sha(ref)
    if sha is None:
        raise errors.basic(422, f"No commit found for SHA: {ref}")
    return sha


@router.route("GET", "", "get_repo")
def get_repo(store: Store, req: Request) -> Reply:
    return Reply(body=shapes.full_repository(store, req.login))


@router.route("GET", "/commits/{ref:path}/check-runs", "list_check_runs")
def list_check_runs(store: Store, req: Request) -> Reply:
    sha = _sha_for(store, req.params["ref"])
    if req.query.get("filter", "latest") == "all":
        runs = sorted(
            (r for r in store.check_runs if r.head_sha == sha), key=lambda r: r.id, reverse=True
        )
    else:
        runs = ci.latest_check_runs(store, sha)
    name, status = req.query.get("check_name"), req.query.get("status")
    runs = [
        r
        for r in runs
        if (name is None or r.name == name) and (status is None or r.status == status)
    ]
    body = {"total_count": len(runs), "check_runs": [shapes.check_run(store, r) for r in runs]}
    return Reply(body=body, paginate=True, page_key="check_runs")


@router.route("GET", "/commits/{ref:path}/status", "get_combined_status")
def get_combined_status(store: Store, req: Request) -> Reply:
    body = shapes.combined_status(store, _sha_for(store, req.params["ref"]))
    return Reply(body=body, paginate=True, page_key="statuses")


@router.route("GET", "/commits/{ref:path}/statuses", "list_statuses")
def list_statuses(store: Store, req: Request) -> Reply:
    sha = _sha_for(store, req.params["ref"])
    items = sorted((s for s in store.statuses if s.sha == sha), key=lambda s: s.id, reverse=True)
    return Reply(
        body=[shapes.commit_status(store, s, with_creator=True) for s in items], paginate=True
    )


@router.route("GET", "/collaborators/{username}/permission", "get_permission")
def get_permission(store: Store, req: Request) -> Reply:
    return Reply(body=shapes.permission(store, req.params["username"]))


@router.route("GET", "/user", "get_user", repo=False)
def get_user(store: Store, req: Request) -> Reply:
    return Reply(body=shapes.private_user(store, req.login))


@router.route("GET", "/rate_limit", "get_rate_limit", repo=False)
def get_rate_limit(store: Store, req: Request) -> Reply:
    return Reply(body=store.rate.overview(req.login))
