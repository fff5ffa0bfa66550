"""A faithful local GitHub for tests and the demo: REST over loopback, backed by real git.

    with FakeGitHub(world.origin, "acme", "widgets", token) as gh:
        client = githubkit.GitHub(TokenAuthStrategy(token), base_url=gh.url)
        number = gh.create_issue("Add mul", labels=["ready"], user="maintainer")
        ...
        assert gh.unknown_routes == []

Response shapes follow GitHub's REST API version 2026-03-10, the one githubkit's installed
schemas request and validate (so no `merge_commit_sha`, `assignee` or `has_downloads`).
"""

from __future__ import annotations

from .clock import Clock, FakeClock, SystemClock, iso
from .fake import FakeGitHub
from .faults import Faults
from .model import Mutation, RequestRecord

__all__ = [
    "Clock",
    "FakeClock",
    "FakeGitHub",
    "Faults",
    "Mutation",
    "RequestRecord",
    "SystemClock",
    "iso",
]
