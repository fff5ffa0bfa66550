"""Git over smart HTTP beside the API, as GitHub Enterprise Server serves it, for every
repository of the site: `http://127.0.0.1:PORT/{owner}/{repo}.git/...`.

As `fakes/git_http.py` (whose `git http-backend` runner it shares): the token is the Basic
password (any user name), and a request without it gets 401 and GitHub's challenge. Beyond it,
as GitHub: an unknown repository, or one the token's user may not see, is 404 "Repository not
found."; a push needs write access (and a classic token's `repo` scope, or `public_repo` for a
public repository), else 403. Only the smart protocol is served (GitHub serves no dumb HTTP).
Git requests are no REST calls: they stay out of the REST logs, the rate limit, the contract
checks and the fault injection; `Site.git_requests` keeps them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import parse_qs, unquote, urlsplit

from ..git_http import CHALLENGE, GitRequest, basic_password, http_backend
from .app import RawResponse
from .model import Token
from .pulls import sync_heads
from .site import Site
from .store import Store

_GIT_PATH = re.compile(r"^/(?P<owner>[^/]+)/(?P<repo>[^/]+)\.git(?P<rest>/.*)?$")
_SERVICES = ("git-upload-pack", "git-receive-pack")
_PUSHERS = ("write", "maintain", "admin")


class GitService:
    """Answers the git requests of the site's repositories from their bare `origin`s."""

    def __init__(self, site: Site, tokens: dict[str, Token]) -> None:
        self.site = site
        self.tokens = tokens

    def serves(self, target: str) -> bool:
        return _GIT_PATH.match(urlsplit(target).path) is not None

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> RawResponse:
        url = urlsplit(target)
        found = _GIT_PATH.match(url.path)
        assert found is not None, "serves() chose this request"
        token = self.tokens.get(basic_password(headers.get("authorization")) or "")
        with self.site.lock:
            self.site.git_requests.append(GitRequest(method, url.path, token is not None))
        if token is None:
            return RawResponse(401, dict([CHALLENGE]))
        rest = found.group("rest") or ""
        service = _service(method, rest, url.query)
        owner, name = unquote(found.group("owner")), unquote(found.group("repo"))
        with self.site.lock:
            store = self.site.find(owner, name)
            refusal = _refusal(store, token, service)
        if refusal is not None or store is None:
            return refusal or _text(404, "Repository not found.")
        reply = http_backend(store.origin, method, rest, url.query, headers, body)
        if service == "git-receive-pack" and method == "POST" and reply.status == 200:
            # GitHub notices a push as it lands: pull request heads, `updated_at` and the
            # `synchronize` webhook follow it at once, not at the next API request.
            with self.site.lock:
                sync_heads(store)
        return RawResponse(reply.status, dict(reply.headers), reply.body)


def _service(method: str, rest: str, query: str) -> str | None:
    """The smart-HTTP service a request is for; None for anything else (the dumb protocol)."""
    if rest == "/info/refs" and method == "GET":
        wanted = parse_qs(query).get("service", [])
        return wanted[0] if len(wanted) == 1 and wanted[0] in _SERVICES else None
    name = rest.removeprefix("/")
    return name if method == "POST" and name in _SERVICES else None


def _refusal(store: Store | None, token: Token, service: str | None) -> RawResponse | None:
    """GitHub's refusal of this token for this service, or None if it may go ahead."""
    if store is None or service is None:
        return _text(404, "Repository not found.")
    role = store.role(token.login)
    scopes = token.scopes
    if role == "none" or (store.private and scopes is not None and "repo" not in scopes):
        # GitHub does not say that a repository exists to someone who may not see it.
        return _text(404, "Repository not found.")
    if service == "git-receive-pack":
        scoped = (
            scopes is None or "repo" in scopes or (not store.private and "public_repo" in scopes)
        )
        if role not in _PUSHERS or not scoped:
            return _text(
                403, f"Permission to {store.owner}/{store.name}.git denied to {token.login}."
            )
    return None


def _text(status: int, message: str) -> RawResponse:
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    return RawResponse(status, headers, f"{message}\n".encode())
