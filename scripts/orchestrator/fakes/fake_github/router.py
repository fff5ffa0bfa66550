"""Request, reply and route table types shared by the server and the route modules."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from . import errors
from .clock import parse_iso
from .store import Store


@dataclass(frozen=True)
class Request:
    """One parsed API request, as a route handler sees it."""

    method: str
    path: str
    query: dict[str, str]
    json: Any
    login: str
    params: dict[str, str] = field(default_factory=dict)

    def int_param(self, name: str) -> int:
        return int(self.params[name])

    def body(self) -> dict[str, Any]:
        """The JSON object body; GitHub answers 400 to anything else where an object belongs."""
        if self.json is None:
            return {}
        if not isinstance(self.json, dict):
            raise errors.basic(400, "Problems parsing JSON")
        return self.json


@dataclass
class Reply:
    """A handler's answer; lists marked `paginate` are sliced and linked by the server."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    paginate: bool = False
    # For object replies that wrap their list (check runs): the key of the list to page.
    page_key: str | None = None


Handler = Callable[[Store, Request], Reply]
T = TypeVar("T")


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    name: str
    handler: Handler
    mutates: bool
    # The path as GitHub's description writes it, parameters blanked: `/repos/{}/{}/issues/{}`.
    shape: str


class Router:
    """A table of (method, path regex) routes; repository routes are relative to the repo."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def route(
        self, method: str, path: str, name: str, *, repo: bool = True
    ) -> Callable[[Handler], Handler]:
        """Register a handler.

        `{name}` captures one path segment, `{name:int}` a number and `{name:path}` the rest
        of the path (branch names and labels may contain slashes).
        """
        regex = re.sub(r"\{(\w+):path\}", r"(?P<\1>.+)", path)
        regex = re.sub(r"\{(\w+):int\}", r"(?P<\1>[0-9]+)", regex)
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", regex)
        prefix = r"/repos/(?P<_owner>[^/]+)/(?P<_repo>[^/]+)" if repo else ""
        pattern = re.compile(f"^{prefix}{regex}$")
        shape = ("/repos/{}/{}" if repo else "") + re.sub(r"\{[^}]+\}", "{}", path)

        def register(handler: Handler) -> Handler:
            self.routes.append(Route(method, pattern, name, handler, method != "GET", shape))
            return handler

        return register

    def extend(self, other: Router) -> None:
        self.routes.extend(other.routes)

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for candidate in self.routes:
            if candidate.method != method:
                continue
            found = candidate.pattern.match(path)
            if found:
                return candidate, found.groupdict()
        return None


def query_int(query: Mapping[str, str], name: str, default: int) -> int:
    try:
        return int(query.get(name, default))
    except ValueError:
        return default


def query_choice(req: Request, name: str, choices: tuple[str, ...], default: str) -> str:
    """A enum-valued query parameter; GitHub answers 422 to a value outside the enum."""
    value = req.query.get(name, default)
    if value not in choices:
        raise errors.invalid_field("Query", name)
    return value


def query_since(req: Request) -> datetime | None:
    """The `since` filter. GitHub documents it as "last updated *after* the given time"; the
    fake keeps exactly that (exclusive), the narrower reading, so a client that relies on an
    item updated at `since` coming back is caught here."""
    raw = req.query.get("since")
    if raw is None:
        return None
    try:
        return parse_iso(raw)
    except ValueError as exc:
        raise errors.basic(422, "The since parameter needs to be in ISO 8601 format") from exc


def ordered(items: list[T], key: Callable[[T], Any], direction: str) -> list[T]:
    return sorted(items, key=key, reverse=direction == "desc")
