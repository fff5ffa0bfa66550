"""githubkit's HTTP policy: timeouts, retries, rate limits, spaced writes, errors mapped once."""

from __future__ import annotations

import logging
import urllib.request
from datetime import timedelta
from typing import Any

import httpx
from githubkit.exception import (
    GitHubException,
    RateLimitExceeded,
    RequestError,
    RequestFailed,
    RequestTimeout,
)
from githubkit.retry import RetryOption

from .core.errors import (
    Conflict,
    GitHubError,
    MalformedAnswer,
    NotFound,
    NotMergeable,
    RateLimited,
    Unprocessable,
)

__all__ = [
    "Conflict",
    "GitHubError",
    "MalformedAnswer",
    "NotFound",
    "NotMergeable",
    "RateLimited",
    "RetryPolicy",
    "TimeoutTransport",
    "Unprocessable",
    "map_error",
]

log = logging.getLogger(__name__)

_BY_STATUS: dict[int, type[GitHubError]] = {
    404: NotFound,
    405: NotMergeable,
    409: Conflict,
    422: Unprocessable,
}


def map_error(exc: GitHubException) -> GitHubError:
    """The one place where githubkit's exceptions become ours."""
    if isinstance(exc, RateLimitExceeded):
        wait = int(exc.retry_after.total_seconds())
        return RateLimited(
            exc.response.status_code,
            f"rate limited for {wait}s",
            exc.request.method,
            exc.request.url.path,
        )
    if isinstance(exc, RequestFailed):
        response = exc.response
        message = _message(response.raw_response)
        cls = _BY_STATUS.get(response.status_code, GitHubError)
        request = exc.request
        return cls(response.status_code, message, request.method, request.url.path)
    if isinstance(exc, RequestTimeout):
        return GitHubError(0, "timed out", exc.request.method, exc.request.url.path)
    if isinstance(exc, RequestError):
        return GitHubError(0, f"no answer ({exc.exc.__class__.__name__})")
    return GitHubError(0, str(exc))


def _message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:200]
    if not isinstance(data, dict):
        return str(data)[:200]
    message = str(data.get("message", ""))
    errors = data.get("errors")
    if isinstance(errors, list):
        details = [_detail(e) for e in errors]
        message = "; ".join([message, *[d for d in details if d]])
    return message


def _detail(error: object) -> str:
    """One entry of a 422's `errors`: its message, else what GitHub names (resource, field
    and code, e.g. `Label color invalid`), else the entry itself (GitHub also sends strings)."""
    if not isinstance(error, dict):
        return str(error)[:200] if error else ""
    if error.get("message"):
        return str(error["message"])
    return " ".join(str(error[k]) for k in ("resource", "field", "code") if error.get(k))


class RetryPolicy:
    """When to retry a failed call, and after how long.

    githubkit's default retries primary/secondary limits that carry `retry-after` or
    `x-ratelimit-remaining: 0`, and 5xx. This adds a 403 "secondary rate limit" with neither
    header (DESIGN §3), network errors and timeouts, and refuses waits longer than
    `max_wait`: a long primary-limit wait is better spent by skipping the cycle. A POST is not
    repeated after a 5xx or a lost answer: it may have been applied (a second comment).
    """

    def __init__(
        self,
        *,
        max_retries: int = 3,
        base_delay: float = 1.0,
        secondary_delay: float = 60.0,
        max_wait: float = 120.0,
    ) -> None:
        self.max_retries = max_retries
        self.base_delay = base_delay
        self.secondary_delay = secondary_delay
        self.max_wait = max_wait

    def __call__(self, exc: GitHubException, retry_count: int) -> RetryOption:
        if retry_count >= self.max_retries:
            return RetryOption(False)
        wait = self._wait(exc, retry_count)
        if wait is None or wait > self.max_wait:
            return RetryOption(False)
        log.warning("GitHub %s; retrying in %.1fs (retry %d of %d)",
                    _describe(exc), wait, retry_count + 1, self.max_retries)  # fmt: skip
        return RetryOption(True, timedelta(seconds=wait))

    def _wait(self, exc: GitHubException, retry_count: int) -> float | None:
        backoff = float(self.base_delay * 2**retry_count)
        if isinstance(exc, RateLimitExceeded):
            return max(float(exc.retry_after.total_seconds()), self.base_delay)
        if isinstance(exc, RequestFailed):
            status = int(exc.response.status_code)
            if status >= 500:
                # A POST that GitHub applied but did not answer would be applied twice.
                return None if exc.request.method == "POST" else backoff
            if status in (403, 429) and "secondary rate limit" in exc.response.text.lower():
                return float(self.secondary_delay * 2**retry_count)
            return None
        if isinstance(exc, RequestError):  # timeouts and connection errors
            return None if _method(exc) == "POST" else backoff
        return None


def _method(exc: RequestError[Any]) -> str | None:
    try:
        return str(exc.exc.request.method)
    # An httpx error raised before a request was built, or not httpx's at all (e.g. a fault
    # of the answers' cache): no request to name.
    except (RuntimeError, AttributeError):
        return None


def _describe(exc: GitHubException) -> str:
    """What failed, naming the request: what the daemon was waiting for."""
    if isinstance(exc, RequestFailed):
        return f"{exc.request.method} {exc.request.url.path} answered {exc.response.status_code}"
    if isinstance(exc, RequestTimeout):
        return f"{exc.request.method} {exc.request.url.path} gave no answer in time"
    if isinstance(exc, RequestError):
        try:
            request = exc.exc.request
        except (AttributeError, RuntimeError):  # an error before a request was built
            return f"request failed ({exc.exc.__class__.__name__})"
        return f"{request.method} {request.url.path} failed ({exc.exc.__class__.__name__})"
    return exc.__class__.__name__


class TimeoutTransport(httpx.AsyncHTTPTransport):
    """Puts the timeout back on every request: githubkit's cache (hishel 1.4) rebuilds
    requests without it (hishel issue #484), so a stalled answer would be awaited forever.
    Goes through the proxy the environment names for `url` (HTTPS_PROXY, NO_PROXY...): httpx
    reads those only for a client without a transport of its own, and this is one."""

    def __init__(self, timeout: float, url: str | None = None) -> None:
        super().__init__(proxy=environment_proxy(url) if url else None)
        self._timeout = httpx.Timeout(timeout).as_dict()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.extensions = {**request.extensions, "timeout": self._timeout}
        return await super().handle_async_request(request)


LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def environment_proxy(url: str) -> str | None:
    """The proxy the environment names for `url`; None without one, for this machine's own
    addresses, or when NO_PROXY exempts its host."""
    parsed = httpx.URL(url)
    if parsed.host in LOOPBACK or urllib.request.proxy_bypass_environment(parsed.host):  # type: ignore[attr-defined]
        return None
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parsed.scheme) or proxies.get("all")
    if proxy and httpx.URL(proxy).scheme not in ("http", "https"):
        # httpx needs an extra package for SOCKS; without it the client would not start.
        log.warning("the proxy %s is not an http(s) one: GitHub is asked directly", proxy)
        return None
    return proxy
