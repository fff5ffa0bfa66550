"""Webhook payloads as GitHub sends them, checked against GitHub's published webhook schemas."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.protocols import Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from . import pulls as ops
from . import shapes_issues, shapes_pulls, versions
from .model import Happening
from .shapes_base import Json, label, repository, stamp, user
from .store import Store

SCHEMAS = Path(__file__).parent / "webhook_schema" / "webhooks.json"
_BASE = "urn:github:webhooks"


def payload(store: Store, happening: Happening) -> Json:
    """The body GitHub sends for `happening`, as the world stands now (callers hold the lock).

    A repository webhook's payload: no `installation` (that is a GitHub App's), no
    `organization` (the owner is a user).
    """
    # Webhook bodies are not versioned by X-GitHub-Api-Version; they keep the older fields
    # (`assignee`, `merge_commit_sha`) that 2022-11-28's REST shapes have.
    with versions.serving(versions.DEFAULT):
        return _payload(store, happening)


def ping(store: Store, hook_id: int, events: list[str], url: str) -> Json:
    """The `ping` GitHub sends when a hook is created."""
    ctx = store.context()
    hooks_url = f"{ctx.api}/hooks/{hook_id}"
    when = stamp(store.now())
    with versions.serving(versions.DEFAULT):
        return {
            "zen": "Keep it logically awesome.",
            "hook_id": hook_id,
            "hook": {
                "type": "Repository",
                "id": hook_id,
                "name": "web",
                "active": True,
                "events": events,
                "config": {
                    "content_type": "json",
                    "insecure_ssl": "0",
                    "secret": "********",
                    "url": url,
                },
                "updated_at": when,
                "created_at": when,
                "url": hooks_url,
                "test_url": f"{hooks_url}/test",
                "ping_url": f"{hooks_url}/pings",
                "deliveries_url": f"{hooks_url}/deliveries",
                "last_response": {"code": None, "status": "unused", "message": None},
            },
            "repository": repository(ctx),
            "sender": user(ctx, store.owner),
        }


def problems(event: str, action: str | None, body: Json) -> list[str]:
    """How `body` breaks GitHub's schema for the event (empty when it is faithful)."""
    name = event.replace("_", "-") + (f"-{action}" if action else "")
    ref = _document()["x-webhooks"].get(name)
    if ref is None:
        return [f"{name}: no schema vendored for this webhook (webhook_schema/README.md)"]
    found = _validator(ref).iter_errors(body)
    return sorted(f"{name} webhook at {e.json_path}: {e.message}" for e in found)


def _payload(store: Store, happening: Happening) -> Json:
    ctx = store.context()
    issue = store.issue(happening.number)
    data: Json = {"action": happening.action}
    if happening.event == "issues":
        data["issue"] = shapes_issues.issue(store, issue)
    elif happening.event == "issue_comment":
        data["issue"] = shapes_issues.issue(store, issue)
        comment = store.comment(_given(happening.comment_id))
        data["comment"] = shapes_issues.comment(store, comment)
    elif happening.event == "pull_request":
        data["number"] = issue.number
        data["pull_request"] = _pull(store, happening.number)
        if happening.action == "synchronize":
            data["before"], data["after"] = happening.before, happening.after
    elif happening.event == "pull_request_review":
        review = next(r for r in store.reviews if r.id == _given(happening.review_id))
        data["review"] = shapes_issues.review(store, review)
        data["pull_request"] = _pull(store, happening.number)
    else:
        raise ValueError(f"the fake sends no {happening.event} webhook")
    if happening.label is not None:
        data["label"] = label(ctx, happening.label, embedded=True)
    data["repository"] = repository(ctx)
    data["sender"] = user(ctx, happening.actor)
    return data


def _pull(store: Store, number: int) -> Json:
    """The pull request as GitHub's webhooks carry it: the full shape, but `mergeable` not
    yet computed (GitHub works it out after sending, as a fresh `GET` often shows too)."""
    issue, _ = ops.get_pull(store, number)
    # The refs as they are, without sync_heads: that is what may have told us of a push.
    now = ops.tips(store, issue, store.git.refs())
    return shapes_pulls.pull_full(store, issue, now, trial_merge=False)


def _given(ident: int | None) -> int:
    if ident is None:
        raise ValueError("this webhook needs the ID of what it reports")
    return ident


@functools.cache
def _document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMAS.read_text(encoding="utf-8"))
    return loaded


@functools.cache
def _validator(ref: str) -> Validator:
    """A validator for one webhook's schema; compiled once per process."""
    resource: Resource[Any] = DRAFT202012.create_resource(_document())
    registry: Registry[Any] = Registry().with_resource(_BASE, resource)
    return Draft202012Validator(
        {"$ref": f"{_BASE}{ref}"},
        registry=registry,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )
