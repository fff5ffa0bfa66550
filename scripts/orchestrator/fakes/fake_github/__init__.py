"""A faithful local GitHub for tests and the demo: REST over loopback, backed by real git.

    with FakeGitHub(world.origin, "acme", "widgets", token) as gh:
        client = githubkit.GitHub(TokenAuthStrategy(token), base_url=gh.url)
        number = gh.create_issue("Add mul", labels=["ready"], user="maintainer")
        ...
        assert gh.unknown_routes == []

More repositories share the server (`gadgets = gh.add_repository(origin2, "acme", "gadgets")`,
a handle with the same world-building API), its token and its one rate limit; each is cloned
and pushed with the token at `{gh.url}/{owner}/{repo}.git`, as GitHub Enterprise Server serves
git beside its API.

Every request and reply is checked against GitHub's OpenAPI description of the version the
request asks for (`openapi/`, cut by tools/update_openapi.py): GitHub's refusal goes back and
the violation is recorded, and leaving the `with` block then fails (see `contract.py`).
Shapes are 2026-03-10's (githubkit's typed methods ask for it), plus the fields 2022-11-28
still has (`assignee`, `merge_commit_sha`, `has_downloads`, `rate`) when a request asks for
that version or for none, as the daemon does.
"""

from __future__ import annotations

from .clock import Clock, FakeClock, SystemClock, iso
from .fake import FakeGitHub
from .faults import Faults
from .hooks import Delivery
from .model import Mutation, RequestRecord
from .repository import Repository

__all__ = [
    "Clock",
    "Delivery",
    "FakeClock",
    "FakeGitHub",
    "Faults",
    "Mutation",
    "Repository",
    "RequestRecord",
    "SystemClock",
    "iso",
]
