"""Fault injection in the fake GitHub: seeded 502s, secondary rate limits, slow and lost replies."""

from __future__ import annotations

import time

import httpx
import pytest
from githubkit.exception import RequestFailed, SecondaryRateLimitExceeded

from scripts.orchestrator.fakes.fake_github import FakeGitHub
from scripts.orchestrator.fakes.git_world import GitWorld

from .fixtures_github import FAKE_TOKEN

AUTH = {"Authorization": f"token {FAKE_TOKEN}"}


def statuses(gh: FakeGitHub, count: int) -> list[int]:
    with httpx.Client(headers=AUTH, timeout=5) as client:
        return [client.get(f"{gh.url}/repos/acme/widgets").status_code for _ in range(count)]


def test_fail_rate_is_deterministic_for_a_seed(git_world: GitWorld):
    runs = []
    for seed in (7, 7, 8):
        with FakeGitHub(git_world.origin, token=FAKE_TOKEN, seed=seed, fail_rate=0.5) as gh:
            runs.append(statuses(gh, 20))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert set(runs[0]) == {200, 502}


def test_faults_change_at_runtime(fake_github: FakeGitHub):
    fake_github.faults.set(fail_rate=1.0)
    assert statuses(fake_github, 3) == [502, 502, 502]
    fake_github.faults.clear()
    assert statuses(fake_github, 2) == [200, 200]
    assert [s for _, _, s in fake_github.faults.injected] == [502, 502, 502]


def test_random_secondary_limits_use_the_configured_status(fake_github: FakeGitHub):
    fake_github.faults.set(secondary_rate=1.0, secondary_status=429, retry_after=3)
    reply = httpx.get(f"{fake_github.url}/user", headers=AUTH)
    assert reply.status_code == 429
    assert reply.headers["retry-after"] == "3"


def test_fail_next_matches_method_and_path_once(fake_github: FakeGitHub, github_client):
    number = fake_github.create_issue("Target")
    fake_github.faults.fail_next(503, method="POST", path=r"/comments$", count=2)
    assert statuses(fake_github, 1) == [200]  # a GET is not matched
    for _ in range(2):
        with pytest.raises(RequestFailed) as caught:
            github_client.rest.issues.create_comment("acme", "widgets", number, body="x")
        assert caught.value.response.status_code == 503
    github_client.rest.issues.create_comment("acme", "widgets", number, body="third time")
    assert [c["body"] for c in fake_github.comments_on(number)] == ["third time"]


@pytest.mark.parametrize("status", [403, 429])
def test_secondary_limit_with_retry_after(fake_github: FakeGitHub, github_client, status: int):
    fake_github.faults.secondary_limit_next(status=status, retry_after=7)
    with pytest.raises(SecondaryRateLimitExceeded) as caught:
        github_client.rest.repos.get("acme", "widgets")
    assert caught.value.retry_after.total_seconds() == 7
    assert caught.value.response.status_code == status
    assert "secondary rate limit" in caught.value.response.json()["message"]


def test_secondary_limit_without_retry_after_has_reset_instead(
    fake_github: FakeGitHub, github_client
):
    fake_github.faults.secondary_limit_next(retry_after=None)
    reply = httpx.get(f"{fake_github.url}/repos/acme/widgets", headers=AUTH)
    assert reply.status_code == 403
    assert "retry-after" not in reply.headers
    assert reply.headers["x-ratelimit-remaining"] == "0"
    assert int(reply.headers["x-ratelimit-reset"]) >= int(time.time())
    fake_github.faults.secondary_limit_next(retry_after=None)
    with pytest.raises(SecondaryRateLimitExceeded):
        github_client.rest.repos.get("acme", "widgets")


def test_slow_reply(fake_github: FakeGitHub):
    fake_github.faults.slow_next(0.3, path="/user")
    started = time.monotonic()
    assert statuses(fake_github, 1) == [200]  # not /user: not slowed
    fast = time.monotonic() - started
    started = time.monotonic()
    reply = httpx.get(f"{fake_github.url}/user", headers=AUTH)
    assert reply.status_code == 200
    assert time.monotonic() - started >= 0.3 > fast


def test_failure_after_the_write_leaves_the_write_done(fake_github: FakeGitHub, github_client):
    number = fake_github.create_issue("Lost reply")
    fake_github.faults.fail_next(502, method="POST", after=True)
    with pytest.raises(RequestFailed):
        github_client.rest.issues.create_comment("acme", "widgets", number, body="once?")
    # The comment exists although the client saw a 502: a blind retry would duplicate it.
    assert [c["body"] for c in fake_github.comments_on(number)] == ["once?"]
    assert fake_github.mutations_named("create_comment")
