"""State file migrations: documents written by earlier versions, brought to the current one."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Document = dict[str, Any]

# Version 1 kept each workflow's facts as free keys in `data`; version 2 types them per kind.
_V1_FACTS: dict[str, dict[str, str]] = {
    "issue": {
        "label_events": "label_events",
        "summary": "summary",
        "pushed_sha": "pushed_sha",
        "remote_sha": "remote_sha",
        "updating_pull": "updating_pull",
    },
    "pr_review": {
        "reviewed": "reviewed",
        "baseline": "baseline",
        "retry_at": "retry_at",
        "last_review": "last_review",
        "requested": "requested",
        "forced": "forced",
        "unposted_review": "unposted",
    },
    "merge": {
        "trigger_comment_id": "trigger_comment_id",
        "requested_by": "requested_by",
        "base_ref": "base_ref",
        "requested_head": "requested_head",
        "merging_head": "merging_head",
        "tested_base": "tested_base",
        "results": "results",
        "ci": "ci",
        "merge_sha": "merge_sha",
    },
}


def _v1_to_v2(document: Document) -> Document:
    items = []
    for raw in document.get("items", []):
        if not isinstance(raw, dict):
            items.append(raw)  # validation names it
            continue
        item = dict(raw)
        data = item.pop("data", None) or {}
        kind = str(item.get("type"))
        names = _V1_FACTS.get(kind, {})
        facts: dict[str, Any] = {"kind": kind}
        for old, new in names.items():
            if data.get(old) is not None:
                facts[new] = data[old]
        if kind == "merge" and "results" in facts:  # [[command, seconds], ...]
            facts["results"] = [{"command": c, "duration_s": d} for c, d in facts["results"]]
        item["facts"] = facts
        item["outbox"] = data.get("outbox") or []
        item["errors"] = int(data.get("infrastructure_errors") or 0)
        dropped = set(data) - set(names) - {"outbox", "infrastructure_errors"}
        if dropped:
            log.info("state migration: %s:%s drops %s", kind, item.get("number"),
                     ", ".join(sorted(dropped)))  # fmt: skip
        items.append(item)
    return {**document, "version": 2, "items": items}


_STEPS: dict[int, Callable[[Document], Document]] = {1: _v1_to_v2}


def migrate(document: Document, target: int) -> Document:
    """`document` brought from its version up to `target`, one step at a time."""
    while (version := int(document.get("version", 1))) < target:
        document = _STEPS[version](document)
    return document
