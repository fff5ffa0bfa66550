"""Tests for the comment feed: commands, first start, exactly-once delivery across restarts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from scripts.orchestrator.core.triggers import Command, parse_command
from scripts.orchestrator.fakes.fake_github import FakeGitHub
from scripts.orchestrator.github_watcher import GitHubClient
from scripts.orchestrator.state import State
from scripts.orchestrator.workflows.comment_feed import CommentFeed, is_command

from .fixtures_world import FAST_RETRY


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("/merge", True),
        ("/merge  \t", True),
        ("/merge\nThanks!", True),
        ("\ufeff/merge", True),
        (" /merge", False),
        ("/merged", False),
        ("/merge now", False),
        ("Please /merge", False),
        ("LGTM\n/merge", False),
        ("> /merge", False),
        ("", False),
    ],
)
def test_is_command(body: str, expected: bool) -> None:
    assert is_command(body, "/merge") is expected


@pytest.mark.parametrize(
    ("body", "sha"),
    [
        ("/merge", None),
        ("/merge 1a2b3c4", "1a2b3c4"),
        ("/merge  1A2B3C4D\nchecked it", "1a2b3c4d"),
        ("/merge " + "f" * 40, "f" * 40),
    ],
)
def test_a_command_may_name_the_head(body: str, sha: str | None) -> None:
    assert parse_command(body, "/merge") == Command(sha)


@pytest.mark.parametrize(
    "body",
    ["/merge 1a2b3c", "/merge " + "f" * 41, "/merge 1a2b3c4 now", "/merge g1a2b3c4", "/merge main"],
)
def test_anything_else_after_the_trigger_is_no_command(body: str) -> None:
    assert parse_command(body, "/merge") is None


@pytest.fixture
async def client(fake_github: FakeGitHub) -> AsyncIterator[GitHubClient]:
    async with GitHubClient(
        fake_github.token, fake_github.full_name, api_url=fake_github.url, retry=FAST_RETRY,
        write_interval=0,
    ) as gh:  # fmt: skip
        yield gh


async def test_exactly_once_across_restarts(
    fake_github: FakeGitHub, client: GitHubClient, tmp_path: Path
) -> None:
    number = fake_github.create_issue("x")
    old = fake_github.comment(number, "/merge", user="carol")
    path = tmp_path / "state.json"
    with State(path) as state:
        feed = CommentFeed(client, state)
        await feed.refresh()
        assert feed.comments == []  # older than the first watch
        await feed.commit()

    fake_github.advance(5)
    first = fake_github.comment(number, "/merge", user="carol")
    second = fake_github.comment(number, "just chatting", user="carol")
    fake_github.edit_comment(old, "/merge")  # an edit of an old comment is no new command
    with State(path) as state:
        feed = CommentFeed(client, state)
        await feed.refresh()
        assert [c.id for c in feed.comments] == [first, second]
        assert [c.id for c in feed.new("/merge")] == [first]
        # The daemon dies before `commit`: the comment comes again, until marked handled.
    with State(path) as state:
        feed = CommentFeed(client, state)
        await feed.refresh()
        assert [c.id for c in feed.new("/merge")] == [first]
        feed.mark_handled(first)
        await feed.commit()
    with State(path) as state:
        feed = CommentFeed(client, state)
        await feed.refresh()
        assert feed.new("/merge") == []
    # One repo-wide call per refresh, never one per issue.
    assert not fake_github.requests_to("GET", f"/issues/{number}/comments")


async def test_an_empty_repository_delivers_every_later_comment(
    fake_github: FakeGitHub, client: GitHubClient, tmp_path: Path
) -> None:
    number = fake_github.create_issue("x")
    with State(tmp_path / "s.json") as state:
        feed = CommentFeed(client, state)
        await feed.refresh()
        await feed.commit()
        made = fake_github.comment(number, "/review", user="carol")
        await feed.refresh()
        assert [c.id for c in feed.new("/review")] == [made]


async def test_a_command_after_many_comments_is_found(
    fake_github: FakeGitHub, client: GitHubClient, tmp_path: Path
) -> None:
    number = fake_github.create_issue("busy")
    with State(tmp_path / "s.json") as state:
        feed = CommentFeed(client, state)
        await feed.refresh()
        await feed.commit()
        for n in range(150):
            fake_github.comment(number, f"comment {n}", user="carol")
        last = fake_github.comment(number, "/merge", user="carol")
        await feed.refresh()
        assert [c.id for c in feed.new("/merge")] == [last]
    pages = fake_github.requests_to("GET", "/issues/comments")
    assert any(r.query.get("page") == "2" for r in pages)
