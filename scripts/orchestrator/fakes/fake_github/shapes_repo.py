"""JSON shapes of repository-level answers: the repository, CI results, permissions, users."""

from __future__ import annotations

from . import ci
from .model import ROLE_TO_PERMISSION, CheckRun, CommitStatus
from .shapes_base import Json, node_id, repository, stamp, user
from .store import Store

_ACTIONS_APP_ID = 15368


def full_repository(store: Store, viewer: str) -> Json:
    """GitHub's FullRepository, with the viewer's `permissions`."""
    ctx = store.context()
    data = repository(ctx)
    role = store.role(viewer)
    data.update(
        {
            "open_issues_count": sum(1 for i in store.issues.values() if i.state == "open"),
            "subscribers_count": 1,
            "network_count": 0,
            "permissions": _permission_flags(role),
            "allow_squash_merge": "squash" in store.merge_methods,
            "allow_merge_commit": "merge" in store.merge_methods,
            "allow_rebase_merge": "rebase" in store.merge_methods,
            "allow_auto_merge": False,
            "delete_branch_on_merge": store.delete_branch_on_merge,
        }
    )
    data["open_issues"] = data["open_issues_count"]
    return data


def permission(store: Store, login: str) -> Json:
    """`GET /collaborators/{user}/permission`: legacy `permission` plus the real `role_name`."""
    role = store.role(login)
    collaborator = user(store.context(), login)
    collaborator.update({"permissions": _permission_flags(role), "role_name": role})
    return {"permission": ROLE_TO_PERMISSION[role], "role_name": role, "user": collaborator}


def _permission_flags(role: str) -> dict[str, bool]:
    order = ["none", "read", "triage", "write", "maintain", "admin"]
    rank = order.index(role)
    return {
        "admin": rank >= order.index("admin"),
        "maintain": rank >= order.index("maintain"),
        "push": rank >= order.index("write"),
        "triage": rank >= order.index("triage"),
        "pull": rank >= order.index("read"),
    }


def actions_app(store: Store) -> Json:
    """The GitHub Actions app, which owns check runs reported by workflows."""
    ctx = store.context()
    when = stamp(store.created_at)
    return {
        "id": _ACTIONS_APP_ID,
        "slug": "github-actions",
        "node_id": node_id("Integration", _ACTIONS_APP_ID),
        "owner": user(ctx, "github"),
        "name": "GitHub Actions",
        "description": "Automate your workflow from idea to production",
        "external_url": "https://help.github.com/en/actions",
        "html_url": f"{ctx.base_url}/apps/github-actions",
        "created_at": when,
        "updated_at": when,
        "permissions": {"checks": "write", "contents": "write", "metadata": "read"},
        "events": ["check_run", "check_suite", "pull_request", "push"],
    }


def check_run(store: Store, run: CheckRun) -> Json:
    ctx = store.context()
    url = f"{ctx.api}/check-runs/{run.id}"
    return {
        "id": run.id,
        "head_sha": run.head_sha,
        "node_id": node_id("CheckRun", run.id),
        "external_id": "",
        "url": url,
        "html_url": f"{ctx.html}/runs/{run.id}",
        "details_url": run.details_url or f"{ctx.html}/runs/{run.id}",
        "status": run.status,
        "conclusion": run.conclusion,
        "started_at": stamp(run.started_at),
        "completed_at": stamp(run.completed_at),
        "output": {
            "title": run.title,
            "summary": run.summary,
            "text": None,
            "annotations_count": 0,
            "annotations_url": f"{url}/annotations",
        },
        "name": run.name,
        "check_suite": {"id": run.suite_id},
        "app": actions_app(store),
        "pull_requests": [],
    }


def commit_status(store: Store, item: CommitStatus, *, with_creator: bool = False) -> Json:
    """A status; the list endpoint (Status) names its creator, the combined one does not."""
    ctx = store.context()
    data: Json = {
        "url": f"{ctx.api}/statuses/{item.sha}",
        "avatar_url": f"{ctx.base_url}/avatars/u/{store.user_id(item.creator)}",
        "id": item.id,
        "node_id": node_id("StatusContext", item.id),
        "state": item.state,
        "description": item.description,
        "target_url": item.target_url,
        "context": item.context,
        "created_at": stamp(item.created_at),
        "updated_at": stamp(item.updated_at),
    }
    if with_creator:
        data["creator"] = user(ctx, item.creator)
    return data


def combined_status(store: Store, sha: str) -> Json:
    """Combined status: `pending` when there are no statuses at all, exactly like GitHub."""
    latest = ci.latest_statuses(store, sha)
    states = {s.state for s in latest}
    if states & {"error", "failure"}:
        state = "failure"
    elif not latest or "pending" in states:
        state = "pending"
    else:
        state = "success"
    ctx = store.context()
    return {
        "state": state,
        "statuses": [commit_status(store, s) for s in latest],
        "sha": sha,
        "total_count": len(latest),
        "repository": repository(ctx, minimal=True),
        "commit_url": f"{ctx.api}/commits/{sha}",
        "url": f"{ctx.api}/commits/{sha}/status",
    }


def private_user(store: Store, login: str) -> Json:
    """`GET /user`: the token's own account, with the private fields."""
    data = user(store.context(), login)
    when = stamp(store.created_at)
    data.update(
        {
            # GitHub's description maps "private" to the private-user shape of `GET /user`.
            "user_view_type": "private",
            "name": login,
            "company": None,
            "blog": "",
            "location": None,
            "email": None,
            "hireable": None,
            "bio": None,
            "twitter_username": None,
            "public_repos": 1,
            "public_gists": 0,
            "followers": 0,
            "following": 0,
            "created_at": when,
            "updated_at": when,
            "private_gists": 0,
            "total_private_repos": 0,
            "owned_private_repos": 0,
            "disk_usage": 0,
            "collaborators": 0,
            "two_factor_authentication": True,
            "plan": {
                "name": "free",
                "space": 976562499,
                "private_repos": 10000,
                "collaborators": 0,
            },
        }
    )
    return data
