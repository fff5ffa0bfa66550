"""Tests for GitHubClient and its HTTP policy, over real HTTP against the fake GitHub."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from githubkit import Response
from githubkit.exception import (
    RequestError,
    RequestFailed,
    RequestTimeout,
    SecondaryRateLimitExceeded,
)

from scripts.orchestrator.core.models import Labelling
from scripts.orchestrator.core.redact import REDACTED
from scripts.orchestrator.core.text import MAX_BODY, fit_body
from scripts.orchestrator.fakes.fake_github import FakeGitHub
from scripts.orchestrator.fakes.fake_github.faults import SECONDARY_MESSAGE
from scripts.orchestrator.github_http import (
    Conflict,
    GitHubError,
    NotFound,
    NotMergeable,
    RateLimited,
    RetryPolicy,
    Unprocessable,
    environment_proxy,
    map_error,
)
from scripts.orchestrator.github_watcher import (
    API_VERSION,
    GitHubClient,
    github_time,
)

from .fixtures_world import FAST_RETRY

ISSUES = "/repos/acme/widgets/issues"


def client_for(fake: FakeGitHub, **options: Any) -> GitHubClient:
    options.setdefault("retry", FAST_RETRY)
    options.setdefault("write_interval", 0)
    return GitHubClient(fake.token, fake.full_name, api_url=fake.url, **options)


@pytest.fixture
async def client(fake_github: FakeGitHub) -> AsyncIterator[GitHubClient]:
    async with client_for(fake_github) as gh:
        yield gh


def statuses(fake: FakeGitHub, method: str, path: str) -> list[int]:
    """Statuses of the logged requests to exactly `path`."""
    return [r.status for r in fake.requests if r.method == method and r.path == path]


def open_pull(fake: FakeGitHub, branch: str, files: dict[str, str | None], **kw: Any) -> int:
    fake.commit(branch, files)
    return fake.create_pull(f"Change {branch}", branch, **kw)


# -- listing and conditional polling --------------------------------------------------------


async def test_list_open_issues_paginates_and_flags_pulls(
    fake_github: FakeGitHub, client: GitHubClient
) -> None:
    issues = [fake_github.create_issue(f"issue {i}") for i in range(104)]
    closed = fake_github.create_issue("closed one")
    fake_github.close_issue(closed)
    pull = open_pull(fake_github, "feature", {"f.txt": "f\n"})

    listed = await client.list_open_issues()

    assert sorted(i.number for i in listed) == sorted([*issues, pull])
    assert [i.number for i in listed if i.is_pull_request] == [pull]
    assert all(i.state == "open" for i in listed)
    pages = fake_github.requests_to("GET", ISSUES)
    assert [r.query.get("page", "1") for r in pages] == ["1", "2"]
    assert pages[0].query["per_page"] == "100"
    # Every page asks for the same API version (githubkit's paginator dropped it after page 1).
    assert [r.headers["x-github-api-version"] for r in pages] == [API_VERSION] * 2


async def test_list_open_issues_label_filter(fake_github: FakeGitHub, client: GitHubClient) -> None:
    ready = fake_github.create_issue("ready", labels=["ready", "bug"])
    fake_github.create_issue("not ready", labels=["bug"])
    fake_github.create_issue("plain")

    listed = await client.list_open_issues("ready")

    assert [i.number for i in listed] == [ready]
    assert set(listed[0].labels) == {"ready", "bug"}
    assert fake_github.requests_to("GET", ISSUES)[-1].query["labels"] == "ready"


async def test_a_repeated_list_is_revalidated_with_304(
    fake_github: FakeGitHub, client: GitHubClient
) -> None:
    fake_github.create_issue("one", labels=["ready"])

    first = await client.list_open_issues()
    second = await client.list_open_issues()

    assert second == first
    logged = fake_github.requests_to("GET", ISSUES)
    assert [r.status for r in logged] == [200, 304]
    assert "if-none-match" not in logged[0].headers
    assert logged[1].headers["if-none-match"]

    # A change on GitHub: the ETag no longer matches and the new data comes through.
    added = fake_github.create_issue("two")
    third = await client.list_open_issues()
    assert added in [i.number for i in third]
    assert statuses(fake_github, "GET", ISSUES) == [200, 304, 200]


async def test_clients_do_not_share_a_cache(fake_github: FakeGitHub) -> None:
    fake_github.create_issue("one")
    async with client_for(fake_github) as first, client_for(fake_github) as second:
        assert await first.list_open_issues() == await second.list_open_issues()
    logged = fake_github.requests_to("GET", ISSUES)
    assert [r.status for r in logged] == [200, 200]
    assert all("if-none-match" not in r.headers for r in logged)


async def test_default_branch_and_login_are_asked_once(
    fake_github: FakeGitHub, client: GitHubClient
) -> None:
    assert await client.default_branch() == "main"
    assert await client.default_branch() == "main"
    assert await client.login() == "orchestrator-bot"
    assert await client.login() == "orchestrator-bot"
    assert len(fake_github.requests_to("GET", "/repos/acme/widgets")) == 1
    assert len([r for r in fake_github.requests if r.path == "/user"]) == 1


async def test_a_rate_limited_login_is_asked_again(
    fake_github: FakeGitHub, client: GitHubClient
) -> None:
    """A 403 rate limit is not the 403 of an App's token: no login is not remembered."""
    fake_github.faults.secondary_limit_next(retry_after=3600, path=r"^/user$")
    with pytest.raises(RateLimited):
        await client.login()
    assert await client.login() == "orchestrator-bot"


# -- retries and errors, over HTTP ----------------------------------------------------------


async def test_a_502_is_retried(fake_github: FakeGitHub, client: GitHubClient) -> None:
    number = fake_github.create_issue("x")
    fake_github.faults.fail_next(502, count=2)

    assert (await client.get_issue(number)).number == number
    assert statuses(fake_github, "GET", f"{ISSUES}/{number}") == [502, 502, 200]


async def test_a_persistent_502_gives_up_after_max_retries(
    fake_github: FakeGitHub, client: GitHubClient
) -> None:
    number = fake_github.create_issue("x")
    fake_github.faults.fail_next(502, count=FAST_RETRY.max_retries + 1)

    with pytest.raises(GitHubError) as caught:
        await client.get_issue(number)

    assert type(caught.value) is GitHubError
    assert caught.value.status == 502
    assert statuses(fake_github, "GET", f"{ISSUES}/{number}") == [502] * (
        FAST_RETRY.max_retries + 1
    )


async def test_a_secondary_limit_with_retry_after_is_retried_after_it(
    fake_github: FakeGitHub, client: GitHubClient
) -> None:
    number = fake_github.create_issue("x")
    fake_github.faults.secondary_limit_next(status=403, retry_after=1)

    started = time.monotonic()
    assert (await client.get_issue(number)).number == number

    assert time.monotonic() - started >= 1.0  # retry-after is honoured, a lower bound
    assert statuses(fake_github, "GET", f"{ISSUES}/{number}") == [403, 200]


@pytest.mark.parametrize(
    ("status", "retry_after"),
    [(403, None), (429, 0), (429, None)],
    ids=["403-reset-only", "429-retry-after", "429-reset-only"],
)
async def test_secondary_limits_are_retried(
    fake_github: FakeGitHub, client: GitHubClient, status: int, retry_after: int | None
) -> None:
    number = fake_github.create_issue("x")
    fake_github.faults.secondary_limit_next(status=status, retry_after=retry_after)

    assert (await client.get_issue(number)).number == number
    assert statuses(fake_github, "GET", f"{ISSUES}/{number}") == [status, 200]


async def test_a_secondary_limit_without_any_header_is_retried(
    fake_github: FakeGitHub, client: GitHubClient
) -> None:
    number = fake_github.create_issue("x")
    # Only the message says what it is (githubkit alone would not retry this one).
    fake_github.faults.fail_next(403, body={"message": SECONDARY_MESSAGE})

    assert (await client.get_issue(number)).number == number
    assert statuses(fake_github, "GET", f"{ISSUES}/{number}") == [403, 200]


async def test_a_plain_403_is_not_retried(fake_github: FakeGitHub, client: GitHubClient) -> None:
    number = fake_github.create_issue("x")
    fake_github.faults.fail_next(403, body={"message": "Resource not accessible by integration"})

    with pytest.raises(GitHubError) as caught:
        await client.get_issue(number)

    assert caught.value.status == 403
    assert caught.value.message == "Resource not accessible by integration"
    assert statuses(fake_github, "GET", f"{ISSUES}/{number}") == [403]


async def test_a_404_is_not_found_without_retry(
    fake_github: FakeGitHub, client: GitHubClient
) -> None:
    with pytest.raises(NotFound) as caught:
        await client.get_issue(999)
    assert caught.value.status == 404
    assert statuses(fake_github, "GET", f"{ISSUES}/999") == [404]


async def test_a_long_rate_limit_is_not_waited_for(
    fake_github: FakeGitHub, client: GitHubClient
) -> None:
    number = fake_github.create_issue("x")
    assert FAST_RETRY.max_wait < 60
    fake_github.faults.fail_next(
        403, body={"message": SECONDARY_MESSAGE}, headers={"retry-after": "60"}
    )

    with pytest.raises(RateLimited) as caught:
        await client.get_issue(number)
    assert caught.value.status == 403
    assert "60s" in caught.value.message

    # The primary limit, exhausted for the rest of the hour.
    fake_github.set_rate_limit(remaining=0, reset_in=3600)
    with pytest.raises(RateLimited):
        await client.get_issue(number)

    assert statuses(fake_github, "GET", f"{ISSUES}/{number}") == [403, 403]


async def test_rate_limited_message_names_the_request(
    fake_github: FakeGitHub, client: GitHubClient
) -> None:
    number = fake_github.create_issue("x")
    fake_github.set_rate_limit(remaining=0, reset_in=3600)
    with pytest.raises(RateLimited) as caught:
        await client.get_issue(number)
    assert f"{ISSUES}/{number}" in str(caught.value)


async def test_a_slow_answer_times_out_and_is_retried(
    fake_github: FakeGitHub, caplog: pytest.LogCaptureFixture
) -> None:
    number = fake_github.create_issue("x")
    fake_github.faults.slow_next(2.0, method="GET", path=rf"/issues/{number}$")

    async with client_for(fake_github, timeout=0.3) as gh:
        started = time.monotonic()
        assert (await gh.get_issue(number)).number == number
        elapsed = time.monotonic() - started

    assert elapsed < 1.5, f"waited {elapsed:.1f}s for a 0.3s timeout"
    # The log names what the daemon was waiting for, at the first timeout.
    [said] = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert said.startswith(f"GitHub GET {ISSUES}/{number} gave no answer in time; retrying in")
    assert said.endswith("(retry 1 of 3)")


async def test_no_answer_is_status_0() -> None:
    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        async with GitHubClient(
            "ghp_unused", "acme/widgets", api_url=f"http://127.0.0.1:{port}", retry=FAST_RETRY
        ) as gh:
            with pytest.raises(GitHubError) as caught:
                await gh.get_issue(1)
    assert caught.value.status == 0


async def test_a_duplicate_pull_is_unprocessable(
    fake_github: FakeGitHub, client: GitHubClient
) -> None:
    fake_github.commit("feature", {"f.txt": "f\n"})
    await client.create_pull(title="t", head="feature", base="main", body="b")

    with pytest.raises(Unprocessable) as caught:
        await client.create_pull(title="t", head="feature", base="main", body="b")

    assert caught.value.status == 422
    assert "A pull request already exists for acme:feature." in caught.value.message
    assert statuses(fake_github, "POST", "/repos/acme/widgets/pulls") == [201, 422]


async def test_merging_a_stale_sha_is_a_conflict(
    fake_github: FakeGitHub, client: GitHubClient
) -> None:
    number = open_pull(fake_github, "feature", {"f.txt": "f\n"})
    stale = (await client.get_pull(number)).head_sha
    fake_github.commit("feature", {"g.txt": "g\n"})

    with pytest.raises(Conflict) as caught:
        await client.merge_pull(number, sha=stale, title="t", message="m")

    assert caught.value.status == 409
    assert not fake_github.pull(number)["merged"]
    head = (await client.get_pull(number)).head_sha
    outcome = await client.merge_pull(number, sha=head, title="t", message="m")
    assert outcome.merged
    assert fake_github.pull(number)["merged"]


async def test_an_unmergeable_pull_is_not_mergeable(
    fake_github: FakeGitHub, client: GitHubClient
) -> None:
    draft = open_pull(fake_github, "draft", {"d.txt": "d\n"}, draft=True)
    with pytest.raises(NotMergeable) as caught:
        await client.merge_pull(
            draft, sha=fake_github.pull(draft)["head"]["sha"], title="t", message="m"
        )
    assert caught.value.status == 405

    clash = open_pull(fake_github, "clash", {"calc.py": "theirs\n"})
    fake_github.commit("main", {"calc.py": "ours\n"})
    with pytest.raises(NotMergeable):
        await client.merge_pull(
            clash, sha=fake_github.pull(clash)["head"]["sha"], title="t", message="m"
        )


# -- RetryPolicy and map_error, without HTTP -------------------------------------------------


def _request() -> httpx.Request:
    return httpx.Request("GET", "https://api.github.invalid/repos/o/r/issues")


def _failed(status: int, message: str = "x", headers: dict[str, str] | None = None) -> Any:
    raw = httpx.Response(status, json={"message": message}, headers=headers, request=_request())
    return Response(raw, dict)


POLICY = RetryPolicy(max_retries=3, base_delay=1.0, secondary_delay=60.0, max_wait=120.0)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_policy_backs_off_on_server_errors(status: int) -> None:
    exc = RequestFailed(_failed(status))
    waits = [POLICY(exc, n) for n in range(4)]
    assert waits[:3] == [(True, timedelta(seconds=s)) for s in (1, 2, 4)]
    assert waits[3].do_retry is False


@pytest.mark.parametrize("status", [403, 429])
def test_policy_waits_long_on_a_secondary_limit_message(status: int) -> None:
    exc = RequestFailed(_failed(status, SECONDARY_MESSAGE))
    assert POLICY(exc, 0) == (True, timedelta(seconds=60))
    assert POLICY(exc, 1) == (True, timedelta(seconds=120))  # max_wait itself is allowed
    assert POLICY(exc, 2).do_retry is False  # 240 s is above max_wait
    assert RetryPolicy(max_wait=1000)(exc, 2) == (True, timedelta(seconds=240))


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 422])
def test_policy_does_not_retry_client_errors(status: int) -> None:
    assert POLICY(RequestFailed(_failed(status, "Nope")), 0).do_retry is False


def test_policy_follows_rate_limits_up_to_max_wait() -> None:
    def limited(seconds: float) -> SecondaryRateLimitExceeded:
        return SecondaryRateLimitExceeded(_failed(403), timedelta(seconds=seconds))

    assert POLICY(limited(30), 0) == (True, timedelta(seconds=30))
    assert POLICY(limited(0), 0) == (True, timedelta(seconds=1))  # never a zero wait
    assert POLICY(limited(121), 0).do_retry is False
    assert POLICY(limited(1), 3).do_retry is False


def test_policy_retries_timeouts_and_connection_errors() -> None:
    timeout = RequestTimeout(httpx.ReadTimeout("slow", request=_request()))
    refused = RequestError(httpx.ConnectError("refused", request=_request()))
    assert POLICY(timeout, 1) == (True, timedelta(seconds=2))
    assert POLICY(refused, 0) == (True, timedelta(seconds=1))
    assert POLICY(refused, 3).do_retry is False


@pytest.mark.parametrize(
    ("status", "cls"),
    [(404, NotFound), (405, NotMergeable), (409, Conflict), (422, Unprocessable), (500, None)],
)
def test_map_error_by_status(status: int, cls: type[GitHubError] | None) -> None:
    error = map_error(RequestFailed(_failed(status, "Bad thing")))
    assert type(error) is (cls or GitHubError)
    assert (error.status, error.message) == (status, "Bad thing")
    assert "/repos/o/r/issues" in str(error)


def test_map_error_joins_validation_details() -> None:
    raw = httpx.Response(
        422,
        json={"message": "Validation Failed", "errors": [{"code": "custom", "message": "Dup"}]},
        request=_request(),
    )
    assert map_error(RequestFailed(Response(raw, dict))).message == "Validation Failed; Dup"


def test_map_error_without_an_answer() -> None:
    timeout = map_error(RequestTimeout(httpx.ReadTimeout("slow", request=_request())))
    assert (timeout.status, timeout.message) == (0, "timed out")
    refused = map_error(RequestError(httpx.ConnectError("refused", request=_request())))
    assert refused.status == 0
    assert "ConnectError" in refused.message


# -- write spacing --------------------------------------------------------------------------


async def test_writes_are_spaced(fake_github: FakeGitHub) -> None:
    number = fake_github.create_issue("x")
    interval = 0.2
    starts: list[float] = []
    ends: list[float] = []
    async with client_for(fake_github, write_interval=interval) as gh:
        for label in ("a", "b", "c"):
            starts.append(time.monotonic())
            await gh.add_labels(number, label)
            ends.append(time.monotonic())
    # Lower bounds the throttler enforces: write n+1 cannot finish before write n started
    # plus the interval.
    assert ends[1] - starts[0] >= interval
    assert ends[2] - starts[1] >= interval
    assert ends[2] - starts[0] >= 2 * interval
    assert len(fake_github.mutations_named("add_labels")) == 3


async def test_reads_are_not_spaced(fake_github: FakeGitHub) -> None:
    number = fake_github.create_issue("x")
    async with client_for(fake_github, write_interval=30.0) as gh:
        await gh.add_labels(number, "a")  # the first write goes at once
        started = time.monotonic()
        for _ in range(3):
            await gh.get_issue(number)
            await gh.list_open_issues()
            # A GraphQL query is a POST, but a read: GitHub counts it as one (found by the
            # concurrency benchmark: it was spaced like a write, a second per issue started).
            await gh.edited_at(number)
        assert time.monotonic() - started < 15.0  # far below one write interval


# -- bodies ---------------------------------------------------------------------------------


def test_fit_body_keeps_short_text() -> None:
    assert fit_body("hello") == "hello"
    exact = "x" * MAX_BODY
    assert fit_body(exact) == exact


def test_fit_body_keeps_start_and_end() -> None:
    text = "START\n" + "m" * 200_000 + "\nEND"
    fitted = fit_body(text)
    assert len(fitted) == MAX_BODY
    assert fitted.startswith("START\n")
    assert fitted.endswith("\nEND")
    assert "truncated" in fitted
    assert len(fit_body("y" * (MAX_BODY + 1))) == MAX_BODY
    assert len(fit_body(text, limit=100)) == 100


async def test_create_comment_redacts_and_fits(
    fake_github: FakeGitHub, client: GitHubClient
) -> None:
    number = fake_github.create_issue("x")
    other = "ghp_" + "A1b2C3d4" * 5
    comment = await client.create_comment(
        number, f"token {fake_github.token} and {other} in the log"
    )

    stored = fake_github.comments_on(number)[-1]["body"]
    assert stored == f"token {REDACTED} and {REDACTED} in the log"
    assert comment.body == stored
    assert comment.issue_number == number

    long = "first line\n" + "z" * 100_000 + f"\nlast line {fake_github.token}"
    await client.create_comment(number, long)
    stored = fake_github.comments_on(number)[-1]["body"]
    assert len(stored) <= MAX_BODY
    assert stored.startswith("first line\n")
    assert stored.endswith(f"last line {REDACTED}")


async def test_pull_body_is_redacted(fake_github: FakeGitHub, client: GitHubClient) -> None:
    fake_github.commit("feature", {"f.txt": "f\n"})
    pull = await client.create_pull(
        title="t", head="feature", base="main", body=f"uses {fake_github.token}"
    )
    assert fake_github.pull(pull.number)["body"] == f"uses {REDACTED}"


async def test_pull_views_carry_githubs_time_of_answer(
    fake_github: FakeGitHub, client: GitHubClient
) -> None:
    """The `Date` of the answer that showed a head: what a later `/merge` is compared with."""
    fake_github.commit("feature", {"f.txt": "f\n"})
    number = fake_github.create_pull("t", "feature")
    listed_at = fake_github.advance(7)
    (listed,) = await client.list_open_pulls()
    fetched_at = fake_github.advance(3)
    fetched = await client.get_pull(number)
    assert (listed.seen_at, fetched.seen_at) == (listed_at, fetched_at)
    assert listed.head_sha == fetched.head_sha


# -- events, permissions, CI, branches ------------------------------------------------------


async def test_count_labelled_with_closed_and_reopened_events(
    fake_github: FakeGitHub, client: GitHubClient
) -> None:
    number = fake_github.create_issue("x", labels=["ready"])
    fake_github.close_issue(number)
    fake_github.reopen_issue(number)
    fake_github.remove_label(number, "ready")
    fake_github.add_labels(number, "ready", "other")
    fake_github.comment(number, "hi")
    events = [e["event"] for e in fake_github.events_of(number)]
    assert {"closed", "reopened", "unlabeled"} <= set(events)

    assert await client.count_labelled(number, "ready") == 2
    assert await client.count_labelled(number, "other") == 1
    assert await client.count_labelled(number, "missing") == 0


async def test_labelling_names_who_added_the_label_last_and_when(
    fake_github: FakeGitHub, client: GitHubClient
) -> None:
    first = fake_github.advance(0)
    number = fake_github.create_issue("x", user="alice", labels=["ready"])
    assert await client.labelling(number, "ready") == Labelling("alice", first)
    fake_github.remove_label(number, "ready")
    later = fake_github.advance(7)
    fake_github.add_labels(number, "ready", user="trent")
    fake_github.advance(5)
    fake_github.add_labels(number, "other", user="bob")
    assert await client.labelling(number, "ready") == Labelling("trent", later)
    assert await client.labelling(number, "missing") is None


async def test_count_labelled_paginates(fake_github: FakeGitHub, client: GitHubClient) -> None:
    number = fake_github.create_issue("x")
    for _ in range(60):
        fake_github.add_labels(number, "ready")
        fake_github.remove_label(number, "ready")
    assert await client.count_labelled(number, "ready") == 60
    assert len(fake_github.requests_to("GET", f"/issues/{number}/events")) == 2


@pytest.mark.parametrize("role", ["admin", "maintain", "write", "triage", "read", "none"])
async def test_permission(fake_github: FakeGitHub, client: GitHubClient, role: str) -> None:
    fake_github.set_permission("carol", role)
    assert await client.permission("carol") == role


async def test_permission_of_strangers(fake_github: FakeGitHub, client: GitHubClient) -> None:
    assert await client.permission("stranger") == "read"  # the fake's repository is public
    fake_github.faults.fail_next(404, path="/collaborators/", body={"message": "Not Found"})
    assert await client.permission("ghost-user") == "none"


async def test_check_runs_paginate(fake_github: FakeGitHub, client: GitHubClient) -> None:
    sha = fake_github.branch_sha("main")
    assert sha is not None
    for i in range(101):
        fake_github.set_check_run(sha, f"check-{i:03d}", conclusion="failure" if i else "success")

    runs = await client.check_runs(sha)

    assert sorted(r.name for r in runs) == [f"check-{i:03d}" for i in range(101)]
    assert [r.conclusion for r in runs].count("success") == 1
    pages = fake_github.requests_to("GET", f"/commits/{sha}/check-runs")
    assert [r.query["page"] for r in pages] == ["1", "2"]


async def test_check_runs_and_statuses_when_empty(
    fake_github: FakeGitHub, client: GitHubClient
) -> None:
    sha = fake_github.branch_sha("main")
    assert sha is not None
    assert await client.check_runs(sha) == []
    fake_github.set_status(sha, "ci/legacy", "pending")
    assert [(s.context, s.state) for s in await client.statuses(sha)] == [("ci/legacy", "pending")]


async def test_delete_branch(fake_github: FakeGitHub, client: GitHubClient) -> None:
    fake_github.commit("old-branch", {"o.txt": "o\n"})

    await client.delete_branch("old-branch")

    assert fake_github.branch_sha("old-branch") is None
    path = "/repos/acme/widgets/git/refs/heads/old-branch"
    assert statuses(fake_github, "DELETE", path) == [204]
    with pytest.raises(GitHubError) as caught:
        await client.delete_branch("old-branch")
    assert caught.value.status in (404, 422)
    assert statuses(fake_github, "DELETE", path) == [204, 422]


@pytest.fixture
def _no_leaks(fake_github: FakeGitHub) -> Iterator[None]:
    yield
    assert fake_github.unknown_routes == []


@pytest.mark.usefixtures("_no_leaks")
async def test_reactions_labels_and_close(fake_github: FakeGitHub, client: GitHubClient) -> None:
    number = fake_github.create_issue("x", labels=["ready"])
    comment = fake_github.comment(number, "hello")

    await client.add_labels(number, "working", "needs review")
    assert await client.remove_label(number, "ready")
    assert not await client.remove_label(number, "ready")  # no longer there: False
    assert await client.remove_label(number, "needs review")  # a name to quote in the path
    await client.react_to_issue(number, "eyes")
    await client.react_to_comment(comment, "+1")
    await client.close_issue(number)

    assert fake_github.labels_of(number) == ["working"]
    assert fake_github.reactions_on_comment(comment) == ["orchestrator-bot:+1"]
    assert fake_github.issue(number)["state"] == "closed"


async def test_since_goes_out_as_github_documents_it(
    fake_github: FakeGitHub, client: GitHubClient
) -> None:
    """GitHub answers 422 to `str(datetime)`; the client writes YYYY-MM-DDTHH:MM:SSZ."""
    issue = fake_github.create_issue("Issue")
    fake_github.comment(issue, "first")
    before = (await client.latest_comments())[0].updated_at - timedelta(seconds=1)
    offset = timezone(timedelta(hours=2))
    for since in (before, before.astimezone(offset), before.replace(microsecond=5)):
        assert [c.body for c in await client.list_repo_comments(since=since)] == ["first"]
    sent = [r.query["since"] for r in fake_github.requests if "since" in r.query]
    assert sent == [github_time(before)] * 3
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", sent[0])


def test_github_time_takes_naive_datetimes_as_utc() -> None:
    assert github_time(datetime(2026, 11, 25, 9, 2, 19)) == "2026-11-25T09:02:19Z"
    cet = datetime(2026, 11, 25, 10, 2, 19, tzinfo=timezone(timedelta(hours=1)))
    assert github_time(cet) == "2026-11-25T09:02:19Z"


async def test_requests_go_through_the_proxy_the_environment_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTPS_PROXY and the like are honoured (httpx reads them only for clients without a
    transport of their own); the control: NO_PROXY exempts the host, and nothing reaches
    the proxy."""
    proxy = socket.socket()
    proxy.bind(("127.0.0.1", 0))
    proxy.listen(1)
    proxy.settimeout(10)
    port = proxy.getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    seen: list[str] = []

    def answer_once() -> None:
        conn, _ = proxy.accept()
        with conn:
            seen.append(conn.recv(65536).split(b"\r\n", 1)[0].decode())
            conn.sendall(b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}")

    server = threading.Thread(target=answer_once, daemon=True)
    server.start()
    gh = GitHubClient("ghp_x", "acme/widgets", api_url="http://github.test",
                      retry=RetryPolicy(max_retries=0), timeout=10)  # fmt: skip
    async with gh:
        with pytest.raises(NotFound):
            await gh.default_branch()
    server.join(10)
    proxy.close()
    assert seen == ["GET http://github.test/repos/acme/widgets HTTP/1.1"]

    monkeypatch.setenv("NO_PROXY", "github.test")
    gh = GitHubClient("ghp_x", "acme/widgets", api_url="http://github.test",
                      retry=RetryPolicy(max_retries=0), timeout=10)  # fmt: skip
    async with gh:
        with pytest.raises(GitHubError):  # the name does not resolve: no proxy was asked
            await gh.default_branch()


def test_a_socks_proxy_is_passed_by_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by an outside review: ALL_PROXY=socks5h://... made the client fail to start
    (httpx's SOCKS support is an extra); the control: an http proxy is taken."""
    monkeypatch.setenv("ALL_PROXY", "socks5h://127.0.0.1:1080")
    GitHubClient("ghp_x", "acme/widgets", api_url="https://api.github.com")
    assert environment_proxy("https://api.github.com") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert environment_proxy("https://api.github.com") == "http://proxy.internal:3128"
