"""The REST API version a request asked for (`X-GitHub-Api-Version`), for the shapes it changes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# Oldest first; each has its own description in openapi/ (tools/update_openapi.py).
VERSIONS = ("2022-11-28", "2026-03-10")
# What GitHub serves a request that names no version.
DEFAULT = "2022-11-28"
LATEST = VERSIONS[-1]

# Shapes are built deep inside the handlers; the version travels with the request's thread
# instead of through every shape function's arguments. Outside a request (tests inspecting
# the world) shapes are the latest version's.
_serving: ContextVar[str] = ContextVar("api_version", default=LATEST)


def requested(header: str | None) -> str:
    return header or DEFAULT


def unsupported_message(version: str) -> str:
    """GitHub's 400 for a version it does not serve."""
    offered = ", ".join(
        f'"{v}"' + (" (most recent)" if v == LATEST else "") for v in reversed(VERSIONS)
    )
    return (
        f'The version you specified in the "X-GitHub-API-Version" request header, "{version}", '
        f"is not a supported version. The following versions are currently supported: {offered}."
    )


@contextmanager
def serving(version: str) -> Iterator[None]:
    token = _serving.set(version)
    try:
        yield
    finally:
        _serving.reset(token)


def before_2026() -> bool:
    """True while answering 2022-11-28, which still has the fields 2026-03-10 removed
    (`assignee`, a pull request's `merge_commit_sha`, `/rate_limit`'s `rate`)."""
    return _serving.get() < "2026-03-10"
