"""The fake GitHub's HTTP behaviour: lifecycle, auth, 404s, ETag/304, rate limits, pagination."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import httpx
import pytest
from githubkit.exception import PrimaryRateLimitExceeded

from scripts.orchestrator.fakes.fake_github import FakeClock, FakeGitHub
from scripts.orchestrator.fakes.git_world import GitWorld

from .fixtures_github import FAKE_TOKEN, make_client

AUTH = {"Authorization": f"token {FAKE_TOKEN}"}
REPO = "/repos/acme/widgets"


def get(gh: FakeGitHub, path: str, **kwargs) -> httpx.Response:
    headers = {**AUTH, **kwargs.pop("headers", {})}
    return httpx.get(f"{gh.url}{path}", headers=headers, timeout=5, **kwargs)


def test_context_manager_serves_on_loopback_and_stops(git_world: GitWorld):
    with FakeGitHub(git_world.origin, token="secret") as gh:
        assert gh.url.startswith("http://127.0.0.1:")
        reply = httpx.get(f"{gh.url}/user", headers={"Authorization": "Bearer secret"})
        assert reply.status_code == 200
        assert reply.json()["login"] == "orchestrator-bot"
        assert reply.headers["content-type"] == "application/json; charset=utf-8"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{gh.url}/user", headers={"Authorization": "Bearer secret"}, timeout=1)


def test_stop_is_bounded_with_kept_alive_and_slow_requests(git_world: GitWorld):
    gh = FakeGitHub(git_world.origin, token="secret").start()
    client = httpx.Client(headers={"Authorization": "token secret"}, timeout=60)
    assert client.get(f"{gh.url}/user").status_code == 200  # leaves a kept-alive connection
    gh.faults.slow_next(30.0)
    outcome: list[object] = []

    def slow_call() -> None:
        try:
            outcome.append(client.get(f"{gh.url}/user").status_code)
        except httpx.TransportError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=slow_call)
    worker.start()
    assert gh.faults.wait_injected(1)
    started = time.monotonic()
    gh.stop()
    worker.join(10)
    client.close()
    assert time.monotonic() - started < 5
    assert not worker.is_alive()
    assert outcome  # answered early or cut off; either way the client was not left hanging


def test_missing_or_wrong_token_is_401_bad_credentials(fake_github: FakeGitHub):
    for headers in ({}, {"Authorization": "token wrong"}, {"Authorization": "Basic abc"}):
        reply = httpx.get(f"{fake_github.url}{REPO}", headers=headers)
        assert reply.status_code == 401
        assert reply.json()["message"] == "Bad credentials"
        assert "documentation_url" in reply.json()
    assert get(fake_github, REPO, headers={"Authorization": f"Bearer {FAKE_TOKEN}"}).is_success


def test_unknown_route_is_github_404_and_recorded(fake_github: FakeGitHub):
    with fake_github.expect_violations() as seen:
        reply = get(fake_github, f"{REPO}/branches/main/protection")
        assert reply.status_code == 404
        assert reply.json() == {
            "message": "Not Found",
            "documentation_url": "https://docs.github.com/rest",
            "status": "404",
        }
        post = httpx.post(f"{fake_github.url}{REPO}/issues/1/lock", headers=AUTH)
        assert post.status_code == 404
    assert len(seen) == 2
    assert fake_github.unknown_routes == [
        ("GET", f"{REPO}/branches/main/protection"),
        ("POST", f"{REPO}/issues/1/lock"),
    ]


def test_other_repository_is_404_but_not_an_unknown_route(fake_github: FakeGitHub):
    assert get(fake_github, "/repos/acme/other/issues").status_code == 404
    assert get(fake_github, "/repos/ACME/Widgets/issues").status_code == 200
    assert fake_github.unknown_routes == []


def test_etag_and_304_not_counted_against_rate_limit(fake_github: FakeGitHub):
    fake_github.create_issue("One")
    first = get(fake_github, f"{REPO}/issues")
    etag = first.headers["etag"]
    assert etag.startswith('W/"')
    used = int(first.headers["x-ratelimit-used"])
    again = get(fake_github, f"{REPO}/issues", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert int(again.headers["x-ratelimit-used"]) == used
    assert int(again.headers["x-ratelimit-remaining"]) == 5000 - used
    fake_github.comment(1, "changes the issue's comment count, so its ETag")
    changed = get(fake_github, f"{REPO}/issues", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert int(changed.headers["x-ratelimit-used"]) == used + 1


def test_githubkit_http_cache_revalidates_with_304(fake_github: FakeGitHub):
    fake_github.create_issue("Cached")
    client = make_client(fake_github)
    first = client.rest.issues.list_for_repo("acme", "widgets")
    second = client.rest.issues.list_for_repo("acme", "widgets")
    # cast: githubkit's `list[...]` annotations resolve to its methods named `list` under mypy.
    titles = [i.title for i in cast(Any, second.parsed_data)]
    assert titles == [i.title for i in cast(Any, first.parsed_data)]
    statuses = [r.status for r in fake_github.requests_to("GET", "/issues")]
    assert statuses == [200, 304]


def test_rate_limit_headers_and_endpoint(fake_github: FakeGitHub, github_client):
    reply = get(fake_github, REPO)
    assert reply.headers["x-ratelimit-limit"] == "5000"
    assert reply.headers["x-ratelimit-resource"] == "core"
    assert int(reply.headers["x-ratelimit-reset"]) > time.time()
    overview = github_client.rest.rate_limit.get().parsed_data
    assert overview.resources.core.used == 1  # /rate_limit itself is free
    assert overview.resources.core.remaining == 4999


def test_exhausted_primary_rate_limit_is_403_with_remaining_zero(
    fake_github: FakeGitHub, github_client
):
    fake_github.set_rate_limit(remaining=0, reset_in=120)
    reply = get(fake_github, REPO)
    assert reply.status_code == 403
    assert reply.headers["x-ratelimit-remaining"] == "0"
    assert "API rate limit exceeded" in reply.json()["message"]
    with pytest.raises(PrimaryRateLimitExceeded) as caught:
        github_client.rest.repos.get("acme", "widgets")
    assert 100 <= caught.value.retry_after.total_seconds() <= 120
    assert get(fake_github, "/rate_limit").status_code == 200


def test_link_headers_are_absolute_and_keep_other_parameters(fake_github: FakeGitHub):
    for n in range(7):
        fake_github.create_issue(f"Issue {n}", labels=["ready"])
    reply = get(fake_github, f"{REPO}/issues", params={"labels": "ready", "per_page": 3})
    assert [i["number"] for i in reply.json()] == [7, 6, 5]
    links = httpx.Response(200, headers={"link": reply.headers["link"]}).links
    assert set(links) == {"next", "last"}
    assert links["next"]["url"] == f"{fake_github.url}{REPO}/issues?labels=ready&per_page=3&page=2"
    assert links["last"]["url"].endswith("page=3")
    middle = httpx.get(links["next"]["url"], headers=AUTH)
    assert set(middle.links) == {"prev", "next", "last", "first"}
    last = httpx.get(links["last"]["url"], headers=AUTH)
    assert [i["number"] for i in last.json()] == [1]
    assert set(last.links) == {"prev", "first"}


def test_single_page_has_no_link_and_per_page_is_capped(fake_github: FakeGitHub):
    fake_github.create_issue("Only")
    assert "link" not in get(fake_github, f"{REPO}/issues").headers
    for n in range(101):
        fake_github.comment(1, f"comment {n}")
    page = get(fake_github, f"{REPO}/issues/comments", params={"per_page": 500})
    assert len(page.json()) == 100
    default = get(fake_github, f"{REPO}/issues/1/comments")
    assert len(default.json()) == 30


def test_githubkit_paginate_walks_every_page(fake_github: FakeGitHub, github_client):
    for n in range(65):
        fake_github.create_issue(f"Issue {n}")
    numbers = [
        issue.number
        for issue in github_client.rest.paginate(
            github_client.rest.issues.list_for_repo, owner="acme", repo="widgets", per_page=30
        )
    ]
    assert numbers == list(range(65, 0, -1))
    pages = fake_github.requests_to("GET", "/issues")
    assert [r.query.get("page") for r in pages] == [None, "2", "3"]


def test_repository_id_links_are_served(fake_github: FakeGitHub):
    fake_github.create_issue("Via ID")
    repo_id = get(fake_github, REPO).json()["id"]
    reply = get(fake_github, f"/repositories/{repo_id}/issues")
    assert [i["title"] for i in reply.json()] == ["Via ID"]


def test_request_and_mutation_logs(fake_github: FakeGitHub, github_client):
    number = fake_github.create_issue("Logged")
    github_client.rest.issues.create_comment("acme", "widgets", number, body="hello")
    github_client.rest.issues.list_for_repo("acme", "widgets", state="all")
    record = fake_github.requests_to("POST")[0]
    assert record.path == f"{REPO}/issues/{number}/comments"
    assert record.status == 201
    assert record.json == {"body": "hello"}
    assert record.login == "orchestrator-bot"
    assert record.route == "create_comment"
    assert "x-github-api-version" in record.headers
    assert fake_github.requests_to("GET")[0].query == {"state": "all"}
    (mutation,) = fake_github.mutations
    assert (mutation.name, mutation.params, mutation.body) == (
        "create_comment",
        {"number": str(number)},
        {"body": "hello"},
    )
    assert mutation.result["body"] == "hello"
    fake_github.clear_logs()
    assert fake_github.requests == [] and fake_github.mutations == []


def test_bad_json_body_is_400(fake_github: FakeGitHub):
    fake_github.create_issue("x")
    with fake_github.expect_violations():
        reply = httpx.post(
            f"{fake_github.url}{REPO}/issues/1/comments", headers=AUTH, content=b"{not json"
        )
    assert reply.status_code == 400
    assert reply.json()["message"] == "Problems parsing JSON"


def test_date_header_and_timestamps_follow_the_fake_clock(
    fake_github: FakeGitHub, fake_clock: FakeClock
):
    fake_clock.advance(3600)
    fake_github.create_issue("Timed")
    reply = get(fake_github, f"{REPO}/issues/1")
    assert reply.json()["created_at"] == "2024-01-01T13:00:00Z"
    assert reply.headers["date"] == "Mon, 01 Jan 2024 13:00:00 GMT"


def test_concurrent_writes_are_all_kept(fake_github: FakeGitHub):
    number = fake_github.create_issue("Busy")

    def post(n: int) -> int:
        with httpx.Client(headers=AUTH, timeout=10) as client:
            url = f"{fake_github.url}{REPO}/issues/{number}/comments"
            return int(client.post(url, json={"body": f"c{n}"}).json()["id"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(post, range(40)))
    assert len(set(ids)) == 40
    assert len(fake_github.comments_on(number)) == 40
    assert fake_github.issue(number)["comments"] == 40


def test_other_tokens_act_as_other_users(fake_github: FakeGitHub):
    fake_github.add_token("alice-token", "alice")
    reply = httpx.get(f"{fake_github.url}/user", headers={"Authorization": "token alice-token"})
    assert reply.json()["login"] == "alice"


def test_a_classic_tokens_scopes_come_with_every_answer(fake_github: FakeGitHub):
    """GitHub names a classic token's scopes in `X-OAuth-Scopes`, and sends no such header for
    a fine-grained or App token."""
    fake_github.add_token("ghp_wide_token", "alice", scopes=("repo", "workflow"))
    fake_github.add_token("github_pat_fine_token", "alice", scopes=None)
    assert get(fake_github, REPO).headers["x-oauth-scopes"] == "repo"
    wide = {"Authorization": "token ghp_wide_token"}
    first = httpx.get(f"{fake_github.url}{REPO}", headers=wide)
    assert first.headers["x-oauth-scopes"] == "repo, workflow"
    again = httpx.get(
        f"{fake_github.url}{REPO}", headers={**wide, "If-None-Match": first.headers["etag"]}
    )
    assert again.status_code == 304 and again.headers["x-oauth-scopes"] == "repo, workflow"
    missing = httpx.get(f"{fake_github.url}{REPO}/issues/404", headers=wide)
    assert missing.status_code == 404 and missing.headers["x-oauth-scopes"] == "repo, workflow"
    fine = httpx.get(
        f"{fake_github.url}{REPO}", headers={"Authorization": "token github_pat_fine_token"}
    )
    assert fine.status_code == 200 and "x-oauth-scopes" not in fine.headers
    assert "x-oauth-scopes" not in httpx.get(f"{fake_github.url}{REPO}").headers  # 401


def test_labels_body_of_the_wrong_type_is_422(fake_github: FakeGitHub):
    fake_github.create_issue("x")
    with fake_github.expect_violations():
        reply = httpx.post(
            f"{fake_github.url}{REPO}/issues/1/labels", headers=AUTH, content=json.dumps(5)
        )
    assert reply.status_code == 422
    assert fake_github.server_errors == []
