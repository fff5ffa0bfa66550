"""An httpx transport that answers with GitHub's recorded answers (`@octokit/fixtures`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx

RECORDINGS = Path(__file__).parent / "recordings" / "octokit-fixtures"
RECORDED_HOST = "api.github.com"


class ReplayMismatch(AssertionError):
    """The client sent a request that no recorded interaction answers."""


@dataclass(frozen=True)
class Interaction:
    """One request recorded against api.github.com and GitHub's answer to it."""

    method: str
    path: str  # decoded, without the query
    query: dict[str, list[str]]
    body: Any  # the JSON request body; "" for none
    status: int
    headers: dict[str, str]
    response: Any  # the JSON answer; "" for none

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Interaction:
        url = urlsplit(data["path"])
        return cls(
            method=data["method"].upper(),
            path=unquote(url.path),
            query=parse_qs(url.query, keep_blank_values=True),
            body=data.get("body", ""),
            status=int(data["status"]),
            headers=dict(data.get("headers") or {}),
            response=data.get("response", ""),
        )

    def __str__(self) -> str:
        return f"{self.method} {self.path} {self.query or ''} {self.body or ''}".strip()


def source() -> dict[str, Any]:
    """Which package version the recordings come from (written by the update tool)."""
    data: dict[str, Any] = json.loads((RECORDINGS / "source.json").read_text(encoding="utf-8"))
    return data


def load(scenario: str) -> list[Interaction]:
    path = RECORDINGS / f"{scenario}.json"
    return [Interaction.from_json(i) for i in json.loads(path.read_text(encoding="utf-8"))]


class ReplayTransport(httpx.AsyncBaseTransport):
    """Answers each request with the first unused recorded interaction that matches it.

    A match is the same method, host, path, query and JSON body. `ignore_query` names query
    parameters whose values are not compared (e.g. `per_page`, when the recording asked for
    smaller pages than the client does). An unmatched request is an error: it is raised (the
    client turns that into a network error) and kept in `unmatched`, so a test that expects
    an error cannot pass by accident; check `unmatched` and `unused` at the end.
    """

    def __init__(
        self, interactions: list[Interaction], *, ignore_query: frozenset[str] = frozenset()
    ) -> None:
        self._pending = list(interactions)
        self.ignore_query = ignore_query
        self.requests: list[httpx.Request] = []
        self.unmatched: list[str] = []

    @classmethod
    def of(cls, *scenarios: str, ignore_query: frozenset[str] = frozenset()) -> ReplayTransport:
        return cls([i for s in scenarios for i in load(s)], ignore_query=ignore_query)

    @property
    def unused(self) -> list[str]:
        return [str(i) for i in self._pending]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()  # the client's cache layer hands requests on as streams
        self.requests.append(request)
        for interaction in self._pending:
            if self._matches(interaction, request):
                self._pending.remove(interaction)
                return _answer(interaction, request)
        query = parse_qs(request.url.query.decode(), keep_blank_values=True)
        seen = f"{request.method} {request.url.host}{request.url.path} {query} {request.content!r}"
        self.unmatched.append(seen)
        expected = "\n  ".join(self.unused) or "(none left)"
        raise ReplayMismatch(f"no recorded answer for {seen}; recorded:\n  {expected}")

    def _matches(self, recorded: Interaction, request: httpx.Request) -> bool:
        if (request.method, request.url.host) != (recorded.method, RECORDED_HOST):
            return False
        if request.url.path != recorded.path:
            return False
        query = parse_qs(request.url.query.decode(), keep_blank_values=True)
        if _without(query, self.ignore_query) != _without(recorded.query, self.ignore_query):
            return False
        if recorded.body in ("", None):
            return request.content == b""
        try:
            return bool(json.loads(request.content) == recorded.body)
        except ValueError:
            return False


def _without(query: dict[str, list[str]], names: frozenset[str]) -> dict[str, list[str]]:
    return {k: v for k, v in query.items() if k not in names}


def _answer(recorded: Interaction, request: httpx.Request) -> httpx.Response:
    if recorded.response in ("", None):
        content = b""
    elif isinstance(recorded.response, str):
        content = recorded.response.encode()
    else:
        content = json.dumps(recorded.response).encode()
    return httpx.Response(
        recorded.status, headers=recorded.headers, content=content, request=request
    )
