"""GitHub API integration: every endpoint the daemon uses, as plain models (`GitHubClient`)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from githubkit.exception import GitHubException, GraphQLFailed

from . import github_parse as gp
from .core.models import (
    CheckRun,
    Comment,
    CommitStatus,
    Issue,
    Labelling,
    MergeOutcome,
    PullRequest,
    RepoAccess,
    Review,
    ReviewComment,
)
from .github_http import (
    GitHubError,
    MalformedAnswer,
    NotFound,
    RateLimited,
    Unprocessable,
    map_error,
)
from .github_rest import (
    API_HEADERS,
    API_VERSION,
    PER_PAGE,
    RestClient,
    answer_date,
    comment_key,
    github_time,
    issue_key,
    parsed,
    stamp_seen,
)
from .github_view import Changes

__all__ = ["API_HEADERS", "API_VERSION", "PER_PAGE", "GitHubClient", "github_time"]

log = logging.getLogger(__name__)

EDITED_QUERY = """
query($owner: String!, $name: String!, $number: Int!) {
  repository(owner: $owner, name: $name) { issue(number: $number) { lastEditedAt } }
}
"""


class GitHubClient(RestClient):
    """The daemon's only door to GitHub; returns plain models, raises `GitHubError`s."""

    # -- repository and identity ------------------------------------------------------------

    async def default_branch(self) -> str:
        if self._default_branch is None:
            self._default_branch = await self._read(self._repo_url(), gp.default_branch)
        return self._default_branch

    @property
    def known_login(self) -> str | None:
        """The token account's login if `login` has read it, without asking GitHub."""
        return self._login or None

    async def login(self) -> str | None:
        """The login of the token's account, or None if GitHub will not say (an App's
        installation token gets 403 from `/user`)."""
        if self._login is None:
            try:
                self._login = await self._read("/user", gp.login)
            except GitHubError as exc:
                if exc.status != 403 or isinstance(exc, RateLimited):
                    raise
                self._login = ""
        return self._login or None

    async def access(self) -> RepoAccess:
        """What the token may do in the repository, as far as GitHub says without a write."""
        response = await self._send("GET", self._repo_url())
        scopes = gp.scopes(response.headers.get("x-oauth-scopes"))
        return parsed(response, lambda data: gp.repo_access(gp.Json(data), scopes))

    async def permission(self, login: str) -> str:
        """admin, maintain, write, triage, read or none."""
        url = self._repo_url(f"/collaborators/{quote(login, safe='')}/permission")
        try:
            return await self._read(url, gp.permission)
        except NotFound:
            return "none"

    # -- issues and comments ----------------------------------------------------------------

    async def refresh_view(self) -> None:
        """Bring the view up to date (once per cycle, before anything reads it)."""
        if self.view is not None:
            await self.view.refresh(self)

    async def list_open_issues(self, label: str | None = None) -> list[Issue]:
        """Open issues, with pull requests among them (`is_pull_request`) as GitHub lists them;
        the view's ready issues (no pull requests) when it keeps `label`."""
        if self.view is not None and label == self.view.label:
            if not self.view.seeded:
                await self.view.refresh(self)
            return self.view.issues()
        return await self.open_issues_now(label)

    async def open_issues_now(self, label: str | None) -> list[Issue]:
        """Open issues (`label`ed), listed now, with pull requests among them."""
        filters = {"labels": label} if label else {}
        return await self._pages(self._repo_url("/issues"), gp.issue, state="open", **filters)

    async def get_issue(self, number: int) -> Issue:
        return await self._read(self._repo_url(f"/issues/{number}"), gp.issue)

    async def list_issue_comments(self, number: int) -> list[Comment]:
        return await self._pages(self._repo_url(f"/issues/{number}/comments"), gp.comment)

    async def list_repo_comments(self, since: datetime | None) -> list[Comment]:
        """Every issue and pull request comment of the repository updated since `since`."""
        params: dict[str, Any] = {"sort": "updated", "direction": "asc"}
        url = self._repo_url("/issues/comments")
        comments, _ = await self._since_pages(url, gp.comment, params, since, comment_key)
        return comments

    async def list_changed(self, since: datetime) -> Changes:
        """Every issue and pull request (open or closed) updated since `since`, oldest first:
        a comment, a label, an edit, a push to a pull request and a close all move it."""
        params: dict[str, Any] = {"state": "all", "sort": "updated", "direction": "asc"}
        url = self._repo_url("/issues")
        return Changes(*await self._since_pages(url, gp.issue, params, since, issue_key))

    async def server_time(self) -> datetime:
        """GitHub's clock now: the `Date` of `GET /rate_limit`, which costs no rate limit."""
        response = await self._send("GET", "/rate_limit")
        return answer_date(response) or datetime.now(timezone.utc)

    async def count_labelled(self, number: int, label: str) -> int:
        """How many times `label` has been added to the issue (from its events)."""
        added = await self._pages(self._repo_url(f"/issues/{number}/events"), gp.labelled)
        return added.count(label)

    async def labelling(self, number: int, label: str) -> Labelling | None:
        """Who last added `label` to the issue, and when (its last `labeled` event), if anyone;
        with the time of its last rename."""
        events = await self._pages(self._repo_url(f"/issues/{number}/events"), gp.issue_event)
        added = [who for kind, name, who in events if kind == "labeled" and name == label]
        if not added:
            return None
        renamed = [who.at for kind, _, who in events if kind == "renamed"]
        return dataclasses.replace(added[-1], renamed_at=max(renamed, default=None))

    async def edited_at(self, number: int) -> datetime | None:
        """When the issue's body was last edited, None if never: GraphQL's `lastEditedAt`
        (REST shows no edits, and its `updated_at` moves with every comment and label)."""
        variables = {"owner": self.owner, "name": self.repo, "number": number}
        try:
            data = await self._gh.async_graphql(EDITED_QUERY, variables)
        except GraphQLFailed as exc:
            errors = exc.response.errors or []
            message = "; ".join(e.message for e in errors) or "GraphQL query failed"
            if any(e.type == "NOT_FOUND" for e in errors):
                raise NotFound(404, message, "POST", "/graphql") from exc
            raise Unprocessable(422, message, "POST", "/graphql") from exc
        except GitHubException as exc:
            raise map_error(exc) from exc
        try:
            return gp.edited_at(data)
        except gp.ShapeError as exc:
            raise MalformedAnswer(200, "POST", "/graphql", exc.field, exc.problem) from None

    async def latest_comments(self) -> list[Comment]:
        """The most recently updated comments of the repository (one page, no pagination)."""
        return await self._read_page(
            self._repo_url("/issues/comments"),
            gp.comment,
            sort="updated",
            direction="desc",
            per_page=10,
        )

    async def create_comment(self, number: int, body: str) -> Comment:
        """The new comment. A 2xx means it was posted: should the answer be unreadable, what
        was sent stands in for it (id 0) rather than an error that would post it again."""
        text = self._body(body)
        url = self._repo_url(f"/issues/{number}/comments")
        response = await self._send("POST", url, body={"body": text})
        try:
            return parsed(response, lambda data: gp.one(data, gp.comment))
        except MalformedAnswer as exc:
            log.warning("comment posted on #%d; %s", number, exc)
            now = datetime.now(timezone.utc)
            return Comment(0, number, self._login or "", text, now, now)

    async def edit_comment(self, comment_id: int, body: str) -> None:
        url = self._repo_url(f"/issues/comments/{comment_id}")
        await self._send("PATCH", url, body={"body": self._body(body)})

    async def add_labels(self, number: int, *labels: str) -> None:
        url = self._repo_url(f"/issues/{number}/labels")
        await self._send("POST", url, body={"labels": list(labels)})

    async def remove_label(self, number: int, label: str) -> bool:
        """Remove a label; False if the issue did not carry it."""
        url = self._repo_url(f"/issues/{number}/labels/{quote(label, safe='')}")
        try:
            await self._send("DELETE", url)
        except NotFound:
            return False
        return True

    async def has_label(self, name: str) -> bool:
        """Whether the repository has the label `name`."""
        try:
            await self._send("GET", self._repo_url(f"/labels/{quote(name, safe='')}"))
        except NotFound:
            return False
        return True

    async def create_label(self, name: str, *, color: str, description: str = "") -> None:
        """A new repository label; `color` is six hex digits without `#`. GitHub answers 422
        (`Unprocessable`) if the label exists already."""
        fields = {"name": name, "color": color}
        if description:
            fields["description"] = description
        await self._send("POST", self._repo_url("/labels"), body=fields)

    async def close_issue(self, number: int) -> None:
        body = {"state": "closed", "state_reason": "completed"}
        await self._send("PATCH", self._repo_url(f"/issues/{number}"), body=body)

    async def react_to_issue(self, number: int, content: str) -> None:
        url = self._repo_url(f"/issues/{number}/reactions")
        await self._send("POST", url, body={"content": content})

    async def react_to_comment(self, comment_id: int, content: str) -> None:
        url = self._repo_url(f"/issues/comments/{comment_id}/reactions")
        await self._send("POST", url, body={"content": content})

    # -- pull requests ----------------------------------------------------------------------

    async def list_open_pulls(self) -> list[PullRequest]:
        """The open pull requests: the view's, if there is one."""
        if self.view is not None:
            if not self.view.seeded:
                await self.view.refresh(self)
            return self.view.pulls()
        return await self.open_pulls_now()

    async def open_pulls_now(self) -> list[PullRequest]:
        url = self._repo_url("/pulls")
        return await self._stamped_pages(url, gp.pull, {"state": "open"}, stamp_seen)

    async def find_pull(self, head_branch: str, base: str) -> PullRequest | None:
        """The newest pull request (open or closed) from our `head_branch` into `base`."""
        pulls = await self._pages(
            self._repo_url("/pulls"),
            gp.pull,
            state="all",
            head=f"{self.owner}:{head_branch}",
            base=base,
        )
        ours = [p for p in pulls if p.head_ref == head_branch]
        return max(ours, key=lambda p: p.number) if ours else None

    async def get_pull(self, number: int) -> PullRequest:
        response = await self._send("GET", self._repo_url(f"/pulls/{number}"))
        return stamp_seen(parsed(response, lambda data: gp.one(data, gp.pull)), response)

    async def create_pull(
        self, *, title: str, head: str, base: str, body: str, draft: bool = False
    ) -> PullRequest:
        """The new pull request. Its answer is read: an unreadable one raises
        `MalformedAnswer` although the pull request exists (`find_pull` finds it)."""
        fields = {"title": title, "head": head, "base": base, "body": self._body(body)}
        response = await self._send(
            "POST", self._repo_url("/pulls"), body={**fields, "draft": draft}
        )
        return parsed(response, lambda data: gp.one(data, gp.pull))

    async def list_reviews(self, number: int) -> list[Review]:
        return await self._pages(self._repo_url(f"/pulls/{number}/reviews"), gp.review)

    async def create_review(self, number: int, *, body: str, event: str, commit_id: str) -> None:
        fields = {"body": self._body(body), "event": event, "commit_id": commit_id}
        await self._send("POST", self._repo_url(f"/pulls/{number}/reviews"), body=fields)

    async def list_review_comments(self, number: int) -> list[ReviewComment]:
        """Every comment in the pull request's diff, oldest first (GitHub's default order,
        by ID): each thread's first comment before its replies."""
        return await self._pages(self._repo_url(f"/pulls/{number}/comments"), gp.review_comment)

    async def reply_to_review_comment(self, number: int, comment_id: int, body: str) -> int:
        """Reply in the thread that `comment_id` starts (GitHub refuses a reply to a reply);
        the new comment's ID. The answer is read: an unreadable one raises `MalformedAnswer`
        although the reply was posted."""
        url = self._repo_url(f"/pulls/{number}/comments/{comment_id}/replies")
        response = await self._send("POST", url, body={"body": self._body(body)})
        return parsed(response, lambda data: gp.one(data, gp.review_comment)).id

    async def request_reviewers(self, number: int, logins: Sequence[str]) -> None:
        """Ask `logins` for a review; GitHub answers 422 (`Unprocessable`) for the pull
        request's author and for anyone who is not a collaborator."""
        url = self._repo_url(f"/pulls/{number}/requested_reviewers")
        await self._send("POST", url, body={"reviewers": list(logins)})

    async def merge_pull(self, number: int, *, sha: str, title: str, message: str) -> MergeOutcome:
        """Squash-merge exactly `sha`; `Conflict` (409) if the head moved since."""
        fields = {
            "sha": sha,
            "merge_method": "squash",
            "commit_title": title,
            "commit_message": self._body(message),
        }
        response = await self._send("PUT", self._repo_url(f"/pulls/{number}/merge"), body=fields)
        try:
            answer = response.raw_response.json()
        except ValueError:
            answer = None
        return gp.merge_outcome(answer)

    async def delete_branch(self, branch: str) -> None:
        url = self._repo_url(f"/git/refs/heads/{quote(branch, safe='/')}")
        await self._send("DELETE", url)

    # -- files and commits ------------------------------------------------------------------

    async def branch_sha(self, branch: str) -> str:
        """The commit `branch` points at now (`NotFound` without the branch). Asked through
        the cache, so an unchanged branch is answered 304, which costs no rate limit."""
        url = self._repo_url(f"/git/ref/heads/{quote(branch, safe='/')}")
        return await self._read(url, gp.ref_sha)

    async def file_text(self, path: str, ref: str) -> str | None:
        """The text of the file `path` at `ref` (a branch, tag or SHA), undecodable bytes
        replaced; None if there is no such file or ref. Anything but a file (a directory, a
        symlink leading out of the repository) is `MalformedAnswer`; a file over 1 MB, which
        GitHub sends only raw, its refusal (403)."""
        url = self._repo_url(f"/contents/{quote(path, safe='/')}")
        try:
            return await self._read(url, gp.file_text, ref=ref)
        except NotFound:
            return None

    async def comment_on_commit(self, sha: str, body: str) -> None:
        """Comment on the commit `sha` (in full); `Unprocessable` for a commit GitHub does
        not have. The body is redacted and fitted like every body sent."""
        url = self._repo_url(f"/commits/{sha}/comments")
        await self._send("POST", url, body={"body": self._body(body)})

    # -- CI ---------------------------------------------------------------------------------

    async def check_runs(self, sha: str) -> list[CheckRun]:
        runs: list[CheckRun] = []
        page = 1
        url = self._repo_url(f"/commits/{sha}/check-runs")
        while True:  # the check-runs list is wrapped in an object, so paginate by hand
            total, found = await self._read(url, gp.check_runs, per_page=PER_PAGE, page=page)
            runs += found
            if len(found) < PER_PAGE or len(runs) >= total:
                return runs
            page += 1

    async def statuses(self, sha: str) -> list[CommitStatus]:
        return await self._read(self._repo_url(f"/commits/{sha}/status"), gp.statuses)
