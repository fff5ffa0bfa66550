"""The request pipeline: auth, contract, faults, rate limit, routing, pagination, ETag, logs.

One pipeline serves every repository of the site: `/repos/{owner}/{repo}/...` goes to that
repository's store (an unknown one is 404), and each request is logged in the store of the
repository it names (the first repository's when it names none of them) and in the site's
log of every request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urlsplit

from . import errors, graphql_api, versions
from .contract import Contract
from .faults import Fault, Faults
from .gitops import GitError
from .model import Mutation, RequestRecord, Token
from .openapi import Operation
from .pulls import sync_heads
from .router import Handler, Reply, Request, Router, query_int
from .site import Site
from .store import Store

log = logging.getLogger(__name__)

# GitHub.com's GraphQL endpoint, and GitHub Enterprise Server's beside its /api/v3.
GRAPHQL_PATHS = ("/graphql", "/api/graphql")

LOGGED_HEADERS = ("accept", "if-none-match", "x-github-api-version", "user-agent", "content-type")
RATE_DOC = "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api"
# GitHub's Link headers name repositories by ID: /repositories/1296269/issues?page=2.
_BY_ID = re.compile(r"^/repositories/(?P<id>[0-9]+)(?P<rest>/.*)?$")
_BY_NAME = re.compile(r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)(?:/|$)")


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    route: str = ""


class App:
    """Turns one HTTP request into one response; thread-safe (state changes under the lock)."""

    def __init__(
        self,
        site: Site,
        router: Router,
        faults: Faults,
        tokens: dict[str, Token],
        stopping: threading.Event,
        contract: Contract,
    ) -> None:
        self.site = site
        self.router = router
        self.faults = faults
        self.tokens = tokens
        self.stopping = stopping
        self.contract = contract
        self.server_errors: list[str] = []

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], raw_body: bytes
    ) -> RawResponse:
        url = urlsplit(target)
        raw_path = self._normalise(url.path)
        path = unquote(raw_path)
        pairs = parse_qsl(url.query, keep_blank_values=True)
        query = dict(pairs)
        try:
            payload: Any = json.loads(raw_body) if raw_body.strip() else None
        except ValueError:
            payload = _UNPARSABLE
        login = self._login(headers)
        named = self._named(path)
        if login is None:
            body = errors.error_body(401, "Bad credentials")
            response = RawResponse(401, {}, _dump(body))
            return self._finish(method, path, query, headers, payload, None, response, named)
        if method == "POST" and path in GRAPHQL_PATHS:  # not REST: its own schema checks it
            with self.site.lock:
                status, answer, read = graphql_api.answer(self.site.find, payload)
            response = RawResponse(status, self.site.rate.headers(login), _dump(answer))
            return self._finish(method, path, query, headers, payload, login, response, read)
        version = versions.requested(headers.get("x-github-api-version"))
        op, refusal = self.contract.check_request(
            version, method, raw_path, pairs, payload, unparsable=payload is _UNPARSABLE
        )
        if refusal is not None:
            if op is None and refusal.status == 404:
                with self.site.lock:
                    (named or self.site.primary).unknown_routes.append((method, path))
            response = RawResponse(refusal.status, dict(refusal.headers), _dump(refusal.body))
            response.headers.update(self.site.rate.headers(login))
            return self._finish(method, path, query, headers, payload, login, response, named, op)
        fault = self.faults.pick(method, path)
        delay = self.faults.delay + (fault.delay if fault else 0.0)
        if delay > 0:
            # Wait on the stop event, so stopping the server cuts a slow reply short.
            self.stopping.wait(delay)
        if fault is not None and fault.status is not None and not fault.after:
            response = self._fault_response(fault, login)
        else:
            with versions.serving(version):
                response = self._dispatch(method, path, url, query, headers, payload, login)
            if fault is not None and fault.status is not None:
                response = self._fault_response(fault, login)
        # An injected fault is the test's answer, not the fake's: only the fake's are checked.
        faulted = fault is not None and fault.status is not None
        return self._finish(
            method, path, query, headers, payload, login, response, named, op, check=not faulted
        )

    def _fault_response(self, fault: Fault, login: str) -> RawResponse:
        response = RawResponse(fault.status or 502, dict(fault.headers), _dump(fault.body or {}))
        for key, value in self.site.rate.headers(login).items():
            # A fault's own headers win (the secondary limit that sets remaining to 0).
            response.headers.setdefault(key, value)
        return response

    # -- steps ----------------------------------------------------------------------------

    def _login(self, headers: Mapping[str, str]) -> str | None:
        token = self._token(headers)
        return token.login if token is not None else None

    def _token(self, headers: Mapping[str, str]) -> Token | None:
        scheme, _, token = headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() not in ("token", "bearer"):
            return None
        return self.tokens.get(token.strip())

    def _normalise(self, path: str) -> str:
        path = path.rstrip("/") or "/"
        found = _BY_ID.match(path)
        store = self.site.by_id(int(found.group("id"))) if found else None
        if found and store is not None:
            path = f"/repos/{store.owner}/{store.name}{found.group('rest') or ''}"
        return path

    def _named(self, path: str) -> Store | None:
        """The site's repository a `/repos/{owner}/{repo}/...` path names, if any."""
        found = _BY_NAME.match(path)
        return self.site.find(found.group("owner"), found.group("repo")) if found else None

    def _dispatch(
        self,
        method: str,
        path: str,
        url: SplitResult,
        query: dict[str, str],
        headers: Mapping[str, str],
        payload: Any,
        login: str,
    ) -> RawResponse:
        site = self.site
        if path != "/rate_limit" and site.rate.exhausted(login):
            body = errors.error_body(
                403, f"API rate limit exceeded for user ID {site.primary.user_id(login)}.", RATE_DOC
            )
            return RawResponse(403, site.rate.headers(login), _dump(body))
        with site.lock:
            found = self.router.match(method, path)
            values = found[1] if found is not None else {}
            owner, repo = values.get("_owner"), values.get("_repo", "")
            named = site.find(owner, repo) if owner is not None else None
            store = named or site.primary
            # Pushes may reach origin without the fake; look at the refs before every answer
            # so pull request heads and `updated_at` are current on every endpoint.
            sync_heads(store)
            if found is None:
                store.unknown_routes.append((method, path))
                reply = Reply(404, errors.error_body(404, "Not Found"))
                route_name, mutates, params = "", False, dict[str, str]()
            else:
                route, params = found
                route_name, mutates = route.name, route.mutates
                if owner is not None and named is None:
                    reply = Reply(404, errors.error_body(404, "Not Found"))
                else:
                    reply = self._call(
                        store, route.handler, method, path, query, payload, login, params
                    )
            status, body_obj, link = self._page(reply, url, query)
            response = RawResponse(status, dict(reply.headers), route=route_name)
            if body_obj is not None:
                response.body = _dump(body_obj)
                response.headers["Content-Type"] = "application/json; charset=utf-8"
            if link:
                response.headers["Link"] = link
            if method == "GET" and status == 200:
                etag = 'W/"' + hashlib.sha256(response.body).hexdigest() + '"'
                response.headers["ETag"] = etag
                response.headers["Cache-Control"] = "private, max-age=60, s-maxage=60"
                # As GitHub: an answer is another token's only after its own request.
                response.headers["Vary"] = VARY
                if _etag_matches(headers.get("if-none-match"), etag):
                    # GitHub does not charge a 304 to the rate limit.
                    cache = response.headers["Cache-Control"]
                    response = RawResponse(
                        304, {"ETag": etag, "Cache-Control": cache, "Vary": VARY}, route=route_name
                    )
            if response.status != 304 and path != "/rate_limit":
                site.rate.consume(login)
            if mutates and 200 <= status < 300:
                clean = {k: v for k, v in params.items() if not k.startswith("_")}
                store.mutations.append(
                    Mutation(route_name, clean, payload, status, login, body_obj)
                )
        response.headers.update(site.rate.headers(login))
        return response

    def _call(
        self,
        store: Store,
        handler: Handler,
        method: str,
        path: str,
        query: dict[str, str],
        payload: Any,
        login: str,
        params: dict[str, str],
    ) -> Reply:
        if payload is _UNPARSABLE:
            return Reply(400, errors.error_body(400, "Problems parsing JSON"))
        req = Request(method, path, query, payload, login, params)
        try:
            return handler(store, req)
        except errors.ApiError as exc:
            return Reply(exc.status, exc.body, dict(exc.headers))
        except (GitError, ValueError, KeyError, TypeError) as exc:
            # A bug in the fake, or input it cannot handle: answer 500 and keep a record so a
            # test can fail on it instead of the daemon seeing a dropped connection.
            log.exception("fake GitHub failed on %s %s", method, path)
            self.server_errors.append(f"{method} {path}: {exc!r}")
            return Reply(500, errors.error_body(500, "Server Error"))

    def _page(self, reply: Reply, url: SplitResult, query: dict[str, str]) -> tuple[int, Any, str]:
        """Slice a paginated list and build GitHub's Link header (absolute URLs)."""
        if not reply.paginate or reply.status != 200:
            return reply.status, reply.body, ""
        items = reply.body if reply.page_key is None else reply.body[reply.page_key]
        per_page = min(max(query_int(query, "per_page", 30), 1), 100)
        page = max(query_int(query, "page", 1), 1)
        last = max(1, math.ceil(len(items) / per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        body = chunk if reply.page_key is None else {**reply.body, reply.page_key: chunk}
        pairs = parse_qsl(url.query, keep_blank_values=True)

        def link(number: int, rel: str) -> str:
            kept = [(k, v) for k, v in pairs if k != "page"] + [("page", str(number))]
            return f'<{self.site.base_url}{url.path}?{urlencode(kept)}>; rel="{rel}"'

        parts = []
        if page > 1:
            parts.append(link(min(page - 1, last), "prev"))
        if page < last:
            parts += [link(page + 1, "next"), link(last, "last")]
        if page > 1:
            parts.append(link(1, "first"))
        return reply.status, body, ", ".join(parts)

    def _finish(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        headers: Mapping[str, str],
        payload: Any,
        login: str | None,
        response: RawResponse,
        store: Store | None,
        op: Operation | None = None,
        *,
        check: bool = True,
    ) -> RawResponse:
        if op is not None and check:
            self.contract.check_response(op, response.status, response.body)
        response.headers.setdefault("x-github-request-id", uuid.uuid4().hex[:20].upper())
        token = self._token(headers)
        if token is not None and token.scopes is not None:
            # On every answer to a classic token, 304s and errors included.
            response.headers.setdefault("X-OAuth-Scopes", ", ".join(token.scopes))
        response.headers.setdefault("x-github-media-type", "github.v3; format=json")
        # GitHub names the version it answered with, its default when none was asked for.
        version = versions.requested(headers.get("x-github-api-version"))
        if version in versions.VERSIONS:
            response.headers.setdefault("x-github-api-version-selected", version)
        if response.body and "Content-Type" not in response.headers:
            response.headers["Content-Type"] = "application/json; charset=utf-8"
        kept = {k: headers[k] for k in LOGGED_HEADERS if k in headers}
        record = RequestRecord(
            method,
            path,
            query,
            response.status,
            kept,
            None if payload is _UNPARSABLE else payload,
            login,
            response.route,
            op.name if op is not None else "",
        )
        with self.site.lock:
            (store or self.site.primary).requests.append(record)
            self.site.requests.append(record)
        return response


class _Unparsable:
    """Marks a body that was not JSON, so the route can answer 400 like GitHub."""


_UNPARSABLE: Any = _Unparsable()


def _dump(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


# GitHub.com's two Vary headers on a REST answer, as one.
VARY = "Accept, Authorization, Cookie, X-GitHub-OTP, Accept-Encoding, X-Requested-With"


def _etag_matches(header: str | None, etag: str) -> bool:
    """Weak comparison, as HTTP specifies for If-None-Match; `*` matches anything."""
    if not header:
        return False
    wanted = etag.removeprefix("W/")
    for candidate in header.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == wanted:
            return True
    return False
