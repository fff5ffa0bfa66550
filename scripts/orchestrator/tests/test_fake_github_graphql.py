"""The fake's GraphQL endpoint: GitHub's schema decides what is a valid query, the store answers,
and the client reads `lastEditedAt` through it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from scripts.orchestrator.core.errors import NotFound
from scripts.orchestrator.fakes.fake_github import FakeGitHub
from scripts.orchestrator.fakes.fake_github.clock import iso
from scripts.orchestrator.fakes.git_world import GitWorld
from scripts.orchestrator.github_watcher import EDITED_QUERY, GitHubClient

from .fixtures_world import FAST_RETRY

QUERY = """query($n: Int!) { repository(owner: "acme", name: "widgets") {
  issue(number: $n) { number title body lastEditedAt } } }"""


def _post(gh: FakeGitHub, body: Any, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"token {token or gh.token}"}
    return httpx.post(f"{gh.url}/graphql", json=body, headers=headers, timeout=30)


@pytest.fixture
async def client(fake_github: FakeGitHub) -> AsyncIterator[GitHubClient]:
    async with GitHubClient(
        fake_github.token, fake_github.full_name, api_url=fake_github.url, retry=FAST_RETRY,
        write_interval=0,
    ) as gh:  # fmt: skip
        yield gh


def test_an_issue_reads_as_github_shows_it(fake_github: FakeGitHub) -> None:
    number = fake_github.create_issue("Bug", "It breaks")
    answer = _post(fake_github, {"query": QUERY, "variables": {"n": number}})
    assert answer.status_code == 200
    issue = answer.json()["data"]["repository"]["issue"]
    assert issue == {"number": number, "title": "Bug", "body": "It breaks", "lastEditedAt": None}
    edited = fake_github.advance(30)
    fake_github.edit_issue(number, "It breaks badly")
    answer = _post(fake_github, {"query": QUERY, "variables": {"n": number}})
    assert answer.json()["data"]["repository"]["issue"]["lastEditedAt"] == iso(edited)


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("{ repository(owner: \"acme\", name: \"widgets\") { issue(number: 1) { lastEdited } } }",
         "Cannot query field 'lastEdited' on type 'Issue'"),
        ("{ repository(owner: \"acme\") { id } }", "(name:)' of type 'String!' is required"),
        ("{ repository(owner: \"acme\", name: \"widgets\") { issue(number: 1) { title }", "Syntax"),
    ],
)  # fmt: skip
def test_a_query_github_refuses_is_refused_with_errors(
    fake_github: FakeGitHub, query: str, says: str
) -> None:
    fake_github.create_issue("Bug")
    answer = _post(fake_github, {"query": query})
    assert answer.status_code == 200  # as GitHub: the errors are in the body
    body = answer.json()
    assert "data" not in body and says in body["errors"][0]["message"]


def test_a_missing_issue_or_repository_is_not_found(
    fake_github: FakeGitHub, git_world: GitWorld
) -> None:
    git_world.push_branch("topic", {"t.txt": "t\n"})
    pull = fake_github.create_pull("A change", "topic")
    answer = _post(fake_github, {"query": QUERY, "variables": {"n": pull}}).json()
    assert answer["data"]["repository"]["issue"] is None
    assert answer["errors"][0]["type"] == "NOT_FOUND"  # a pull request is no Issue
    other = QUERY.replace('"widgets"', '"gadgets"')
    answer = _post(fake_github, {"query": other, "variables": {"n": 1}}).json()
    assert answer["data"]["repository"] is None and answer["errors"][0]["type"] == "NOT_FOUND"


def test_without_a_token_graphql_is_401(fake_github: FakeGitHub) -> None:
    assert _post(fake_github, {"query": QUERY}, token="nope").status_code == 401


def test_a_valid_field_the_fake_does_not_serve_fails_loudly(fake_github: FakeGitHub) -> None:
    number = fake_github.create_issue("Bug")
    query = QUERY.replace("lastEditedAt", "lastEditedAt viewerCanUpdate")
    answer = _post(fake_github, {"query": query, "variables": {"n": number}}).json()
    assert "the fake GitHub does not serve Issue.viewerCanUpdate" in answer["errors"][0]["message"]


async def test_the_client_reads_when_the_body_was_last_edited(
    fake_github: FakeGitHub, client: GitHubClient, git_world: GitWorld
) -> None:
    number = fake_github.create_issue("Bug", "It breaks")
    assert await client.edited_at(number) is None
    fake_github.comment(number, "A comment moves updated_at, not lastEditedAt")
    assert await client.edited_at(number) is None
    edited = fake_github.advance(10)
    fake_github.edit_issue(number, "It breaks badly")
    assert await client.edited_at(number) == edited
    git_world.push_branch("topic", {"t.txt": "t\n"})
    with pytest.raises(NotFound):
        await client.edited_at(fake_github.create_pull("A change", "topic"))
    assert "lastEditedAt" in EDITED_QUERY
