"""GitHub's REST plumbing: one githubkit client, requests, pages, answers read field by field."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
from githubkit import GitHub, Response, UnauthAuthStrategy
from githubkit.cache import BaseCacheStrategy, MemCacheStrategy
from githubkit.exception import GitHubException
from typing_extensions import Self

from . import github_parse as gp
from .core.models import Comment, Issue, PullRequest
from .core.redact import Redactor
from .core.text import fit_body
from .github_cache import AuthTransport, RateBudget, SqliteCacheStrategy
from .github_http import (
    MalformedAnswer,
    RetryPolicy,
    TimeoutTransport,
    map_error,
)
from .github_parse import Json
from .github_spacing import WriteSpacingThrottler
from .github_view import ListingView

log = logging.getLogger(__name__)

T = TypeVar("T")
PER_PAGE = 100
SINCE_OVERLAP = timedelta(seconds=1)
# The REST API version every request asks for. GitHub.com serves 2022-11-28 until at least
# March 2028 (24 months after 2026-03-10), and so does every GitHub Enterprise Server since 3.9;
# 2026-03-10 (githubkit's default) cannot be served by GHES releases made before it, and an
# unserved version is answered with 400. Its breaking changes touch no field github_parse
# reads, and answers are read field by field, so either version reads the same here.
API_VERSION = "2022-11-28"
API_HEADERS = {"X-GitHub-Api-Version": API_VERSION}


@dataclasses.dataclass
class TokenLimits:
    """What the clients of one token share: GitHub counts its rate limit, and its secondary
    limits (a second between writes), per user, not per repository."""

    rate: RateBudget = dataclasses.field(default_factory=RateBudget)
    write_interval: float = 1.0
    throttler: WriteSpacingThrottler = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.throttler = WriteSpacingThrottler(write_interval=self.write_interval)


class RestClient:
    """One repository's REST plumbing: the githubkit client and how it pages and reads."""

    def __init__(
        self,
        token: str,
        repo: str,
        *,
        api_url: str = "https://api.github.com",
        retry: RetryPolicy | None = None,
        write_interval: float = 1.0,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        redactor: Redactor | None = None,
        cache_path: Path | None = None,
        cache: BaseCacheStrategy | None = None,
        view: ListingView | None = None,
        limits: TokenLimits | None = None,
    ) -> None:
        """`transport` replaces the HTTP transport (the tests replay recorded answers with it);
        the default one enforces `timeout` on every request. Every body sent is redacted by
        `redactor` (the daemon's one, which knows the token), or by one made for `token`.
        With `cache_path`, GitHub's answers are kept there across restarts (`github_cache`),
        or by `cache` (STATE_URL's database: `http_cache_pg`);
        with `view`, the open pull requests and ready issues come from it (`github_view`),
        kept current by `refresh_view` once per cycle. `limits`: the rate budget and write
        spacing shared with the token's other repositories' clients (else its own)."""
        self.owner, self.repo = repo.split("/", 1)
        self.full_name = repo
        self._redactor = redactor or Redactor([token])
        limits = limits or TokenLimits(write_interval=write_interval)
        self.rate = limits.rate
        # The token is added below the cache (`AuthTransport`), so the cache never stores it.
        self.wire = AuthTransport(
            transport or TimeoutTransport(timeout, api_url), token, api_url, self.rate
        )
        # githubkit's default cache object is shared by every client in the process.
        if cache is None and cache_path is not None:
            cache = SqliteCacheStrategy(cache_path)
        self._gh = GitHub(
            UnauthAuthStrategy(),
            base_url=api_url,
            timeout=timeout,
            auto_retry=retry or RetryPolicy(),
            throttler=limits.throttler,
            # The pid tells several daemons' requests apart in a proxy's log (and in the tests).
            user_agent=f"claude-orchestrator (pid {os.getpid()})",
            cache_strategy=cache or MemCacheStrategy(),
            async_transport=self.wire,
        )
        self.view = view
        self._default_branch: str | None = None
        self._login: str | None = None

    async def __aenter__(self) -> Self:
        await self._gh.__aenter__()  # type: ignore[no-untyped-call]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._gh.__aexit__(None, None, None)

    # -- plumbing ---------------------------------------------------------------------------

    def _repo_url(self, path: str = "") -> str:
        return f"/repos/{self.owner}/{self.repo}{path}"

    async def _send(
        self, method: str, url: str, *, params: dict[str, Any] | None = None, body: Any = None
    ) -> Response[Any]:
        """One request; a write that comes back 2xx is done, its answer is not read."""
        try:
            return await self._gh.arequest(
                method, url, params=params, json=body, headers=API_HEADERS
            )
        except GitHubException as exc:
            raise map_error(exc) from exc

    async def _read(self, url: str, parse: Callable[[Json], T], **params: Any) -> T:
        response = await self._send("GET", url, params=params or None)
        return parsed(response, lambda data: gp.one(data, parse))

    async def _read_page(self, url: str, parse: Callable[[Json], T], **params: Any) -> list[T]:
        response = await self._send("GET", url, params=params or None)
        return parsed(response, lambda data: gp.many(data, parse))

    async def _pages(self, url: str, parse: Callable[[Json], T], **params: Any) -> list[T]:
        return await self._stamped_pages(url, parse, params, None)

    async def _stamped_pages(
        self,
        url: str,
        parse: Callable[[Json], T],
        params: dict[str, Any] | None,
        stamp: Callable[[T, Response[Any]], T] | None,
    ) -> list[T]:
        """Every item of a list endpoint, each passed with its page's answer to `stamp`.
        GitHub's `Link: rel="next"` is followed as given: it may lead elsewhere
        (`/repositories/{id}/...`) and carries the query itself (`params=None`: `url` is
        such a link already)."""
        next_url: str | None = url
        query = {**params, "per_page": PER_PAGE} if params is not None else None
        items: list[T] = []
        while next_url is not None:
            response = await self._send("GET", next_url, params=query)
            page = parsed(response, lambda data: gp.many(data, parse))
            items += [stamp(item, response) for item in page] if stamp else page
            next_url, query = _next_link(response.headers.get("link", "")), None
        return items

    async def _since_pages(
        self,
        url: str,
        parse: Callable[[Json], T],
        params: dict[str, Any],
        since: datetime | None,
        key: Callable[[T], tuple[datetime, int]],
    ) -> tuple[list[T], datetime | None]:
        """Everything updated since `since` (`key`: its updated_at and id), oldest first.

        Read by moving `since` past each full page rather than by page number: an item
        updated while the pages are read moves to the end of the list, and with page numbers
        the one after it would slip back onto a page already read and be missed. Only a
        whole page updated within one second falls back to GitHub's next-page links. Also
        returns GitHub's clock at the last answer."""
        found: dict[int, T] = {}
        while True:
            query = {**params, "per_page": PER_PAGE}
            if since is not None:
                query["since"] = github_time(since)
            response = await self._send("GET", url, params=query)
            page = parsed(response, lambda data: gp.many(data, parse))
            answered_at = answer_date(response)
            found.update((key(item)[1], item) for item in page)
            if len(page) < PER_PAGE:
                break
            # GitHub's times have whole seconds, and `since` may mean "after": step back one.
            step = max(key(item)[0] for item in page) - SINCE_OVERLAP
            if since is None or step > since:
                since = step
                continue
            next_url = _next_link(response.headers.get("link", ""))
            if next_url is not None:
                rest = await self._stamped_pages(next_url, parse, None, None)
                found.update((key(item)[1], item) for item in rest)
            break
        return sorted(found.values(), key=key), answered_at

    def _body(self, text: str) -> str:
        return fit_body(self._redactor.redact(text))


def github_time(when: datetime) -> str:
    """A date-time query parameter as GitHub documents it: `YYYY-MM-DDTHH:MM:SSZ`.

    githubkit hands a `datetime` to httpx, which writes `str(datetime)` (a space and `+00:00`);
    GitHub answers that with 422. Naive datetimes are taken as UTC; sub-seconds are dropped,
    which only widens an inclusive `since`.
    """
    aware = when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)
    return aware.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _next_link(header: str) -> str | None:
    match = re.search(r'<([^<>]+)>;\s*rel="next"', header)
    return match.group(1) if match else None


def comment_key(comment: Comment) -> tuple[datetime, int]:
    return comment.updated_at, comment.id


def issue_key(issue: Issue) -> tuple[datetime, int]:
    return issue.updated_at, issue.number


def answer_date(response: Response[Any]) -> datetime | None:
    """The time GitHub gave its answer (the `Date` header), if it gave one."""
    try:
        seen = parsedate_to_datetime(response.headers.get("date", ""))
    except (TypeError, ValueError):  # no Date, or one that is not a date
        return None
    if seen.tzinfo is None:  # "-0000": GitHub's dates are GMT
        seen = seen.replace(tzinfo=timezone.utc)
    return seen


def stamp_seen(pull: PullRequest, response: Response[Any]) -> PullRequest:
    """`pull` with the time GitHub gave its answer, if it gave one."""
    seen = answer_date(response)
    return pull if seen is None else dataclasses.replace(pull, seen_at=seen)


def parsed(response: Response[Any], read: Callable[[Any], T]) -> T:
    """`read` applied to the answer's JSON; an answer it cannot read is one `MalformedAnswer`
    naming the endpoint and the field, never a parser's own exception."""
    request = response.raw_request

    def malformed(field: str, problem: str) -> MalformedAnswer:
        status = response.status_code
        return MalformedAnswer(status, request.method, request.url.path, field, problem)

    try:
        data = response.raw_response.json()
    except ValueError:
        raise malformed("body", "is not JSON") from None
    try:
        return read(data)
    except gp.ShapeError as exc:
        raise malformed(exc.field, exc.problem) from None
