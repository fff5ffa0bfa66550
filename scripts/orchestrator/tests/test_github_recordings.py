"""GitHubClient against answers nobody here wrote: GitHub's recordings in `@octokit/fixtures`."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone

import pytest

from scripts.orchestrator.core.models import CommitStatus, RepoAccess
from scripts.orchestrator.github_http import GitHubError, RetryPolicy, Unprocessable
from scripts.orchestrator.github_watcher import API_VERSION, GitHubClient

from .replay import RECORDINGS, ReplayTransport, load, source

ORG = "octokit-fixture-org"
# The recordings were made with this (zeroed) token; the replay does not check it.
TOKEN = "0000000000000000000000000000000000000001"
SHA = "0000000000000000000000000000000000000001"
NO_RETRY = RetryPolicy(max_retries=0)


@asynccontextmanager
async def replayed(
    repo: str, *scenarios: str, ignore_query: frozenset[str] = frozenset()
) -> AsyncIterator[GitHubClient]:
    """A client for `octokit-fixture-org/<repo>` whose every request must have been recorded,
    and which must make every recorded request."""
    transport = ReplayTransport.of(*scenarios, ignore_query=ignore_query)
    async with GitHubClient(
        TOKEN, f"{ORG}/{repo}", retry=NO_RETRY, write_interval=0, transport=transport
    ) as client:
        yield client
    assert transport.unmatched == []
    assert transport.unused == []
    assert all(r.headers["x-github-api-version"] == API_VERSION for r in transport.requests)


def test_the_recordings_are_the_pinned_package_and_nothing_else() -> None:
    spec = importlib.util.spec_from_file_location(
        "update_octokit_fixtures", RECORDINGS.parents[4] / "tools" / "update_octokit_fixtures.py"
    )
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)

    info = source()
    assert (info["package"], info["version"]) == ("@octokit/fixtures", tool.PINNED)
    assert info["scenarios"] == sorted(tool.SCENARIOS)
    assert sorted(p.stem for p in RECORDINGS.glob("*.json") if p.stem != "source") == sorted(
        tool.SCENARIOS
    )


# -- the repository ---------------------------------------------------------------------------


async def test_get_repository() -> None:
    # GitHub's answer lacks fields githubkit's 2026-03-10 model requires (has_discussions):
    # parsed by that model it raised a raw pydantic ValidationError here.
    async with replayed("hello-world", "get-repository") as client:
        assert await client.default_branch() == "master"


async def test_access_reads_the_role_from_a_recorded_repository() -> None:
    # The recording keeps no X-OAuth-Scopes (tools/update_octokit_fixtures.py drops it), so
    # the scopes read as a token's that has none.
    async with replayed("hello-world", "get-repository") as client:
        assert await client.access() == RepoAccess(private=False, role="admin", scopes=None)


async def test_a_renamed_repository_is_followed_through_its_redirect() -> None:
    # GitHub answers 301 to /repositories/{id}; the daemon keeps working after a rename.
    async with replayed("rename-repository", "rename-repository") as client:
        assert await client.default_branch() == "main"


# -- issues and labels ------------------------------------------------------------------------


async def test_add_labels() -> None:
    # The answer's labels lack archived_at/archived_by, which githubkit's 2026-03-10 model
    # requires: a label GitHub had added counted as a failure. The answer is not read now.
    async with replayed("add-labels-to-issue", "add-labels-to-issue") as client:
        await client.add_labels(1, "Foo", "bAr", "baZ")


async def test_list_open_issues_follows_links_to_repositories_by_id() -> None:
    # The recording asked for 3 per page and no state (GitHub's default is open); the client
    # asks for 100 and state=open. Pages 2 to 5 live under /repositories/1000/issues.
    async with replayed(
        "paginate-issues", "paginate-issues", ignore_query=frozenset({"per_page", "state"})
    ) as client:
        issues = await client.list_open_issues()

    assert [i.number for i in issues] == list(range(13, 0, -1))
    assert {(i.state, i.is_pull_request, i.author) for i in issues} == {
        ("open", False, "octokit-fixture-user-a")
    }
    assert issues[0].title == "Test issue 13"
    assert issues[0].body == ""  # GitHub sends null
    assert issues[0].labels == ()
    assert issues[0].updated_at == datetime(2017, 10, 10, 16, tzinfo=timezone.utc)


# -- CI and branches --------------------------------------------------------------------------


async def test_combined_status() -> None:
    async with replayed("create-status", "create-status") as client:
        assert await client.statuses(SHA) == [
            CommitStatus("example/1", "failure"),
            CommitStatus("example/2", "success"),
        ]


async def test_delete_branch() -> None:
    async with replayed("git-refs", "git-refs") as client:
        await client.delete_branch("test")


# -- errors -----------------------------------------------------------------------------------


async def test_a_recorded_422_names_what_github_refused() -> None:
    # GitHub's real 422 body for a label's color, whose error entry has a code but no message.
    async with replayed("errors", "errors") as client:
        with pytest.raises(Unprocessable) as caught:
            await client.create_label("foo", color="invalid")
    assert caught.value.status == 422
    assert caught.value.message == "Validation Failed; Label color invalid"


async def test_a_request_nobody_recorded_fails_loudly() -> None:
    transport = ReplayTransport(load("get-repository"))
    async with GitHubClient(
        TOKEN, f"{ORG}/hello-world", retry=NO_RETRY, write_interval=0, transport=transport
    ) as client:
        with pytest.raises(GitHubError):
            await client.get_issue(1)
    assert transport.unmatched == [f"GET api.github.com/repos/{ORG}/hello-world/issues/1 {{}} b''"]
    assert transport.unused == [f"GET /repos/{ORG}/hello-world"]
