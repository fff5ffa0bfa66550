"""GitHub API integration: one githubkit client (ETag cache, retries, spaced writes)."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from typing import Any, TypeVar

import httpx
from githubkit import GitHub, Response
from githubkit.cache import MemCacheStrategy
from githubkit.exception import GitHubException
from githubkit_schemas.latest import models as gk

from .github_http import NotFound, RetryPolicy, WriteSpacingThrottler, map_error
from .models import CheckRun, Comment, CommitStatus, Issue, MergeOutcome, PullRequest, Review
from .redact import Redactor

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BODY = 65_536  # GitHub's limit for comment, review and pull request bodies
PER_PAGE = 100


class _TimeoutTransport(httpx.AsyncHTTPTransport):
    """Puts the timeout back on every request: githubkit's cache (hishel 1.4) rebuilds
    requests without it (hishel issue #484), so a stalled answer would be awaited forever."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = httpx.Timeout(timeout).as_dict()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.extensions = {**request.extensions, "timeout": self._timeout}
        return await super().handle_async_request(request)


def fit_body(text: str, limit: int = MAX_BODY) -> str:
    """Cut `text` to GitHub's limit, keeping its start and its end (where errors usually are)."""
    if len(text) <= limit:
        return text
    marker = "\n\n… (truncated) …\n\n"
    keep = limit - len(marker)
    head = keep // 3
    return text[:head] + marker + text[len(text) - (keep - head) :]


class GitHubClient:
    """The daemon's only door to GitHub; returns plain models, raises `GitHubError`s."""

    def __init__(
        self,
        token: str,
        repo: str,
        *,
        api_url: str = "https://api.github.com",
        retry: RetryPolicy | None = None,
        write_interval: float = 1.0,
        timeout: float = 30.0,
    ) -> None:
        self.owner, self.repo = repo.split("/", 1)
        self.full_name = repo
        self._redactor = Redactor([token])
        self._gh = GitHub(
            token,
            base_url=api_url,
            timeout=timeout,
            auto_retry=retry or RetryPolicy(),
            throttler=WriteSpacingThrottler(write_interval=write_interval),
            user_agent="claude-orchestrator",
            # githubkit's default cache object is shared by every client in the process.
            cache_strategy=MemCacheStrategy(),
            async_transport=_TimeoutTransport(timeout),
        )
        self._default_branch: str | None = None
        self._login: str | None = None

    async def __aenter__(self) -> GitHubClient:
        await self._gh.__aenter__()  # type: ignore[no-untyped-call]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._gh.__aexit__(None, None, None)

    # -- plumbing ---------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., Awaitable[Response[T, Any]]], **kwargs: Any) -> T:
        try:
            response = await fn(owner=self.owner, repo=self.repo, **kwargs)
        except GitHubException as exc:
            raise map_error(exc) from exc
        return response.parsed_data

    async def _pages(self, fn: Callable[..., Awaitable[Response[Any]]], **kw: Any) -> list[Any]:
        items: list[Any] = []
        try:
            pages: AsyncIterator[Any] = self._gh.rest.paginate(
                fn, owner=self.owner, repo=self.repo, per_page=PER_PAGE, **kw
            )
            async for item in pages:
                items.append(item)
        except GitHubException as exc:
            raise map_error(exc) from exc
        return items

    async def _raw_pages(self, path: str) -> list[dict[str, Any]]:
        """Every item of a list endpoint under the repository, as plain JSON."""
        url: str | None = f"repos/{self.owner}/{self.repo}/{path}"
        params: dict[str, Any] | None = {"per_page": PER_PAGE}
        items: list[dict[str, Any]] = []
        try:
            while url is not None:
                response = await self._gh.arequest("GET", url, params=params)
                items += response.json()
                url, params = _next_link(response.headers.get("link", "")), None
        except GitHubException as exc:
            raise map_error(exc) from exc
        return items

    def _body(self, text: str) -> str:
        return fit_body(self._redactor.redact(text))

    # -- repository and identity ------------------------------------------------------------

    async def default_branch(self) -> str:
        if self._default_branch is None:
            repo = await self._call(self._gh.rest.repos.async_get)
            self._default_branch = repo.default_branch
        return self._default_branch

    async def login(self) -> str | None:
        """The login of the token's account, or None if GitHub will not say (an App's
        installation token gets 403 from `/user`)."""
        if self._login is None:
            try:
                user = (await self._gh.rest.users.async_get_authenticated()).parsed_data
            except GitHubException as exc:
                error = map_error(exc)
                if error.status == 403:
                    self._login = ""
                    return None
                raise error from exc
            self._login = user.login
        return self._login or None

    async def permission(self, login: str) -> str:
        """admin, maintain, write, triage, read or none."""
        try:
            data = await self._call(
                self._gh.rest.repos.async_get_collaborator_permission_level, username=login
            )
        except NotFound:
            return "none"
        role = getattr(data, "role_name", None)
        return role if role in ("maintain", "triage") else data.permission

    # -- issues and comments ----------------------------------------------------------------

    async def list_open_issues(self, label: str | None = None) -> list[Issue]:
        """Open issues, with pull requests among them (`is_pull_request`) as GitHub lists them."""
        kwargs: dict[str, Any] = {"state": "open"}
        if label:
            kwargs["labels"] = label
        raw = await self._pages(self._gh.rest.issues.async_list_for_repo, **kwargs)
        return [_issue(i) for i in raw]

    async def get_issue(self, number: int) -> Issue:
        return _issue(await self._call(self._gh.rest.issues.async_get, issue_number=number))

    async def list_issue_comments(self, number: int) -> list[Comment]:
        raw = await self._pages(self._gh.rest.issues.async_list_comments, issue_number=number)
        return [_comment(c) for c in raw]

    async def list_repo_comments(self, since: datetime | None) -> list[Comment]:
        """Every issue and pull request comment of the repository updated since `since`."""
        kwargs: dict[str, Any] = {"sort": "updated", "direction": "asc"}
        if since is not None:
            kwargs["since"] = github_time(since)
        raw = await self._pages(self._gh.rest.issues.async_list_comments_for_repo, **kwargs)
        return [_comment(c) for c in raw]

    async def count_labelled(self, number: int, label: str) -> int:
        """How many times `label` has been added to the issue (from its events)."""
        # Raw JSON: githubkit's model for this endpoint rejects closed/reopened events.
        events = await self._raw_pages(f"issues/{number}/events")
        return sum(
            1
            for e in events
            if e.get("event") == "labeled" and (e.get("label") or {}).get("name") == label
        )

    async def latest_comments(self) -> list[Comment]:
        """The most recently updated comments of the repository (one page, no pagination)."""
        raw: list[gk.IssueComment] = await self._call(
            self._gh.rest.issues.async_list_comments_for_repo,
            sort="updated",
            direction="desc",
            per_page=10,
        )
        return [_comment(c) for c in raw]

    async def create_comment(self, number: int, body: str) -> Comment:
        created = await self._call(
            self._gh.rest.issues.async_create_comment, issue_number=number, body=self._body(body)
        )
        return _comment(created)

    async def add_labels(self, number: int, *labels: str) -> None:
        await self._call(
            self._gh.rest.issues.async_add_labels, issue_number=number, labels=list(labels)
        )

    async def remove_label(self, number: int, label: str) -> bool:
        """Remove a label; False if the issue did not carry it."""
        try:
            await self._call(
                self._gh.rest.issues.async_remove_label, issue_number=number, name=label
            )
        except NotFound:
            return False
        return True

    async def close_issue(self, number: int) -> None:
        await self._call(
            self._gh.rest.issues.async_update,
            issue_number=number,
            state="closed",
            state_reason="completed",
        )

    async def react_to_issue(self, number: int, content: str) -> None:
        await self._call(
            self._gh.rest.reactions.async_create_for_issue, issue_number=number, content=content
        )

    async def react_to_comment(self, comment_id: int, content: str) -> None:
        await self._call(
            self._gh.rest.reactions.async_create_for_issue_comment,
            comment_id=comment_id,
            content=content,
        )

    # -- pull requests ----------------------------------------------------------------------

    async def list_open_pulls(self) -> list[PullRequest]:
        raw = await self._pages(self._gh.rest.pulls.async_list, state="open")
        return [_pull(p) for p in raw]

    async def find_pull(self, head_branch: str, base: str) -> PullRequest | None:
        """The newest pull request (open or closed) from our `head_branch` into `base`."""
        raw = await self._pages(
            self._gh.rest.pulls.async_list,
            state="all",
            head=f"{self.owner}:{head_branch}",
            base=base,
        )
        pulls = [_pull(p) for p in raw if p.head.ref == head_branch]
        return max(pulls, key=lambda p: p.number) if pulls else None

    async def get_pull(self, number: int) -> PullRequest:
        raw = await self._call(self._gh.rest.pulls.async_get, pull_number=number)
        return _pull(raw)

    async def create_pull(
        self, *, title: str, head: str, base: str, body: str, draft: bool = False
    ) -> PullRequest:
        created = await self._call(
            self._gh.rest.pulls.async_create,
            title=title,
            head=head,
            base=base,
            body=self._body(body),
            draft=draft,
        )
        return _pull(created)

    async def list_reviews(self, number: int) -> list[Review]:
        raw = await self._pages(self._gh.rest.pulls.async_list_reviews, pull_number=number)
        return [_review(r) for r in raw]

    async def create_review(self, number: int, *, body: str, event: str, commit_id: str) -> Review:
        created = await self._call(
            self._gh.rest.pulls.async_create_review,
            pull_number=number,
            body=self._body(body),
            event=event,
            commit_id=commit_id,
        )
        return _review(created)

    async def merge_pull(self, number: int, *, sha: str, title: str, message: str) -> MergeOutcome:
        """Squash-merge exactly `sha`; `Conflict` (409) if the head moved since."""
        result = await self._call(
            self._gh.rest.pulls.async_merge,
            pull_number=number,
            sha=sha,
            merge_method="squash",
            commit_title=title,
            commit_message=self._body(message),
        )
        return MergeOutcome(bool(result.merged), result.sha, result.message)

    async def delete_branch(self, branch: str) -> None:
        try:  # 204 No Content: nothing to parse
            await self._gh.rest.git.async_delete_ref(self.owner, self.repo, ref=f"heads/{branch}")
        except GitHubException as exc:
            raise map_error(exc) from exc

    # -- CI ---------------------------------------------------------------------------------

    async def check_runs(self, sha: str) -> list[CheckRun]:
        runs: list[CheckRun] = []
        page = 1
        while True:  # the check-runs list is wrapped in an object, so paginate by hand
            data = await self._call(
                self._gh.rest.checks.async_list_for_ref, ref=sha, per_page=PER_PAGE, page=page
            )
            runs += [CheckRun(r.name, r.status, r.conclusion) for r in data.check_runs]
            if len(data.check_runs) < PER_PAGE or len(runs) >= data.total_count:
                return runs
            page += 1

    async def statuses(self, sha: str) -> list[CommitStatus]:
        data = await self._call(self._gh.rest.repos.async_get_combined_status_for_ref, ref=sha)
        return [CommitStatus(s.context, s.state) for s in data.statuses]


def github_time(when: datetime) -> str:
    """A date-time query parameter as GitHub documents it: `YYYY-MM-DDTHH:MM:SSZ`.

    githubkit hands a `datetime` to httpx, which writes `str(datetime)` (a space and `+00:00`);
    GitHub answers that with 422. Naive datetimes are taken as UTC; sub-seconds are dropped,
    which only widens an inclusive `since`.
    """
    aware = when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)
    return aware.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _next_link(header: str) -> str | None:
    match = re.search(r'<([^>]+)>;\s*rel="next"', header)
    return match.group(1) if match else None


def _login(user: Any) -> str:
    return str(user.login) if user is not None else "ghost"


def _issue(raw: gk.Issue) -> Issue:
    labels = tuple(label if isinstance(label, str) else (label.name or "") for label in raw.labels)
    return Issue(
        number=raw.number,
        title=raw.title,
        body=raw.body or "",
        author=_login(raw.user),
        labels=labels,
        state=raw.state,
        is_pull_request=bool(raw.pull_request),
        updated_at=raw.updated_at,
    )


def _comment(raw: gk.IssueComment) -> Comment:
    number = int(str(raw.issue_url).rstrip("/").rsplit("/", 1)[1])
    return Comment(
        id=raw.id,
        issue_number=number,
        author=_login(raw.user),
        body=raw.body or "",
        created_at=raw.created_at,
        updated_at=raw.updated_at,
    )


def _pull(raw: gk.PullRequest | gk.PullRequestSimple) -> PullRequest:
    head_repo = raw.head.repo.full_name if raw.head.repo is not None else None
    return PullRequest(
        number=raw.number,
        title=raw.title,
        body=raw.body or "",
        author=_login(raw.user),
        state=raw.state,
        draft=bool(raw.draft),
        merged=bool(getattr(raw, "merged", False) or raw.merged_at),
        head_ref=raw.head.ref,
        head_sha=raw.head.sha,
        head_repo=head_repo,
        base_ref=raw.base.ref,
        base_sha=raw.base.sha,
        base_repo=raw.base.repo.full_name,
        created_at=raw.created_at,
        mergeable=getattr(raw, "mergeable", None),
    )


def _review(raw: gk.PullRequestReview) -> Review:
    return Review(
        id=raw.id,
        author=_login(raw.user),
        commit_id=raw.commit_id,
        state=raw.state,
        body=raw.body or "",
    )
