"""The listings view and the persisted HTTP cache, over real HTTP against the fake GitHub: an
idle poll is two requests answered 304, before and after a restart, and nothing is missed."""

from __future__ import annotations

import email.utils
import json
import sqlite3
import stat
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from hishel import AsyncSqliteStorage

from scripts.orchestrator.fakes.fake_github import FakeGitHub
from scripts.orchestrator.github_cache import (
    AuthTransport,
    RateBudget,
    cache_file,
    drop_other_caches,
)
from scripts.orchestrator.github_http import TimeoutTransport
from scripts.orchestrator.github_view import ListingView, listings_file
from scripts.orchestrator.github_watcher import GitHubClient

from .fixtures_world import FAST_RETRY

ISSUES = "/repos/acme/widgets/issues"
COMMENTS = "/repos/acme/widgets/issues/comments"
COMMENTS_CURSOR = datetime(2024, 1, 1, tzinfo=timezone.utc)  # the comment feed's, unmoved


def client_for(fake: FakeGitHub, home: Path, **options: Any) -> GitHubClient:
    """A client as the daemon builds it: answers kept in `home`, and the view beside them."""
    state = home / "state.json"
    return GitHubClient(
        fake.token,
        fake.full_name,
        api_url=fake.url,
        retry=FAST_RETRY,
        write_interval=0,
        cache_path=cache_file(state, fake.token),
        view=ListingView(listings_file(state), "ready", f"{fake.url} {fake.full_name}"),
        **options,
    )


async def cycle(gh: GitHubClient) -> None:
    """What a poll cycle asks GitHub: the changes, then the new comments."""
    await gh.refresh_view()
    await gh.list_repo_comments(since=COMMENTS_CURSOR)


def pull(fake: FakeGitHub, branch: str) -> int:
    fake.commit(branch, {f"{branch}.txt": f"{branch}\n"})
    return fake.create_pull(f"Change {branch}", branch)


def logged(fake: FakeGitHub) -> list[tuple[str, int]]:
    return [(r.path, r.status) for r in fake.requests]


async def test_an_idle_cycle_is_two_requests_answered_304_also_after_a_restart(
    fake_github: FakeGitHub, tmp_path: Path
) -> None:
    pulls = [pull(fake_github, f"topic-{i}") for i in range(3)]
    ready = [fake_github.create_issue(f"issue {i}", labels=["ready"]) for i in range(3)]
    for i in range(120):  # more than a page of issues that are not ready
        fake_github.create_issue(f"other {i}")
        fake_github.advance(1)
    fake_github.comment(ready[0], "a comment")

    async with client_for(fake_github, tmp_path) as gh:
        await cycle(gh)  # lists what is open: the only cycle that pages
        fake_github.advance(60)  # a poll interval later
        await cycle(gh)  # the cursor moved past the changes: its new question is answered 200
        fake_github.advance(60)
        await cycle(gh)
        assert [p.number for p in await gh.list_open_pulls()] == pulls
        assert [i.number for i in await gh.list_open_issues("ready")] == ready
        fake_github.advance(60)
        fake_github.clear_logs()
        await cycle(gh)
        assert logged(fake_github) == [(ISSUES, 304), (COMMENTS, 304)]

    fake_github.clear_logs()
    async with client_for(fake_github, tmp_path) as again:  # a restart: nothing in memory
        await cycle(again)
        assert logged(fake_github) == [(ISSUES, 304), (COMMENTS, 304)]
        assert [p.number for p in await again.list_open_pulls()] == pulls
        assert [i.number for i in await again.list_open_issues("ready")] == ready
        assert logged(fake_github) == [(ISSUES, 304), (COMMENTS, 304)]


async def test_what_changes_is_seen_by_the_next_refresh(
    fake_github: FakeGitHub, tmp_path: Path
) -> None:
    kept, closed = pull(fake_github, "kept"), pull(fake_github, "closed")
    later = fake_github.create_issue("later")
    dropped = fake_github.create_issue("dropped", labels=["ready"])
    async with client_for(fake_github, tmp_path) as gh:
        await gh.refresh_view()
        fake_github.advance(5)
        fake_github.commit("kept", {"more.txt": "more\n"})  # a push moves the PR's updated_at
        new_head = fake_github.branch_sha("kept")
        fake_github.close_issue(closed)
        opened = pull(fake_github, "opened")
        fake_github.add_labels(later, "ready")
        fake_github.remove_label(dropped, "ready")

        await gh.refresh_view()

        by_number = {p.number: p for p in await gh.list_open_pulls()}
        assert sorted(by_number) == [kept, opened]
        assert by_number[kept].head_sha == new_head
        assert [i.number for i in await gh.list_open_issues("ready")] == [later]
        # A pull request is fetched only when it changed.
        fetched = [r.path for r in fake_github.requests if "/pulls/" in r.path]
        assert sorted(fetched) == sorted({f"/repos/acme/widgets/pulls/{n}" for n in (kept, opened)})


async def test_more_than_a_page_of_changes_is_read_whole_even_while_they_change(
    fake_github: FakeGitHub, tmp_path: Path
) -> None:
    """An issue updated between two pages moves to the end of the list; with page numbers
    the one after it would slip onto the page already read."""
    numbers = [fake_github.create_issue(f"issue {i}") for i in range(150)]
    moved = False

    def between_pages(request: httpx.Request) -> None:
        nonlocal moved
        if request.url.path == ISSUES and "since" in request.url.params and not moved:
            moved = True  # after the first page is answered, the first issue changes
            fake_github.advance(1)
            fake_github.add_labels(numbers[0], "bug")

    async with client_for(fake_github, tmp_path, transport=After(between_pages)) as gh:
        await gh.refresh_view()  # seeds: no ready issue yet
        for number in numbers:
            fake_github.advance(1)
            fake_github.add_labels(number, "ready")
        await gh.refresh_view()
        await gh.refresh_view()  # the change made during the read, if it came too late

        assert moved
        assert [i.number for i in await gh.list_open_issues("ready")] == numbers
    sinces = [
        r.query["since"] for r in fake_github.requests_to("GET", ISSUES) if "since" in r.query
    ]
    assert len(set(sinces)) >= 2, "the second page is asked for by time, not page number"


async def test_a_change_during_the_cycle_is_seen_by_the_next_one(
    fake_github: FakeGitHub, tmp_path: Path
) -> None:
    issue = fake_github.create_issue("soon ready")

    def label_after_the_answer(request: httpx.Request) -> None:
        if request.url.path == ISSUES and "since" in request.url.params:
            fake_github.add_labels(issue, "ready")  # lands right after GitHub answered

    async with client_for(fake_github, tmp_path) as gh:
        await gh.refresh_view()
    async with client_for(fake_github, tmp_path, transport=After(label_after_the_answer)) as gh:
        await gh.refresh_view()
        assert await gh.list_open_issues("ready") == []
    async with client_for(fake_github, tmp_path) as gh:
        await gh.refresh_view()
        assert [i.number for i in await gh.list_open_issues("ready")] == [issue]


async def test_the_token_never_reaches_the_cache_or_the_view(
    fake_github: FakeGitHub, tmp_path: Path
) -> None:
    fake_github.create_issue("a ready issue", labels=["ready"])
    pull(fake_github, "topic")
    async with client_for(fake_github, tmp_path) as gh:
        await cycle(gh)
        await cycle(gh)
    files = [p for p in tmp_path.iterdir() if p.is_file()]
    kept = b"".join(p.read_bytes() for p in files)
    # The control: GitHub got the token, and the files hold its answers.
    assert all(r.login == fake_github.bot_login for r in fake_github.requests)
    assert b"a ready issue" in kept and b"etag" in kept.lower()
    # The attack: read the files for the token.
    assert fake_github.token.encode() not in kept
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


async def test_an_unreadable_view_is_listed_again(
    fake_github: FakeGitHub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ready = fake_github.create_issue("ready", labels=["ready"])
    listings_file(tmp_path / "state.json").write_text("{not json")
    async with client_for(fake_github, tmp_path) as gh:
        await gh.refresh_view()
        assert [i.number for i in await gh.list_open_issues("ready")] == [ready]
    assert "unreadable" in caplog.text
    assert json.loads(listings_file(tmp_path / "state.json").read_text())["version"] == 1


async def test_another_ready_label_lists_again(fake_github: FakeGitHub, tmp_path: Path) -> None:
    first = fake_github.create_issue("a", labels=["ready"])
    second = fake_github.create_issue("b", labels=["go"])
    async with client_for(fake_github, tmp_path) as gh:
        assert [i.number for i in await gh.list_open_issues("ready")] == [first]
    state = tmp_path / "state.json"
    view = ListingView(listings_file(state), "go", f"{fake_github.url} {fake_github.full_name}")
    async with GitHubClient(fake_github.token, fake_github.full_name, api_url=fake_github.url,
                            view=view) as gh:  # fmt: skip
        assert [i.number for i in await gh.list_open_issues("go")] == [second]


def test_each_token_has_its_own_cache_file(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    old, new = cache_file(state, "ghp_old"), cache_file(state, "ghp_new")
    assert old != new and "ghp_" not in old.name
    for path in (old, old.with_name(old.name + "-journal"), new):
        path.write_bytes(b"x")
    unrelated = tmp_path / "state.json.listings.json"
    unrelated.write_text("{}")
    drop_other_caches(new)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([new.name, unrelated.name])


async def test_the_token_goes_only_to_githubs_own_origin() -> None:
    seen: list[tuple[str, str | None]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.headers.get("authorization")))
        return httpx.Response(200, headers={"x-ratelimit-limit": "5000",
                                            "x-ratelimit-remaining": "4321",
                                            "x-ratelimit-reset": "1700000000"})  # fmt: skip

    budget = RateBudget()
    wire = AuthTransport(
        httpx.MockTransport(answer), "ghp_secret", "https://api.github.com", budget
    )
    async with httpx.AsyncClient(transport=wire) as http:
        await http.get("https://api.github.com/repos/a/b")
        await http.get("https://elsewhere.example/x", headers={"Authorization": "token ghp_secret"})
    assert seen == [("api.github.com", "token ghp_secret"), ("elsewhere.example", None)]
    assert (budget.limit, budget.remaining) == (5000, 4321)
    assert wire.sent == 2


class After(httpx.AsyncBaseTransport):
    """The real transport, then `hook` with the request once GitHub answered it."""

    def __init__(self, hook: Callable[[httpx.Request], None]) -> None:
        self._inner = TimeoutTransport(10.0)
        self._hook = hook

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        self._hook(request)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_a_push_in_the_second_of_the_last_read_is_still_seen(
    fake_github: FakeGitHub, tmp_path: Path
) -> None:
    """GitHub's `updated_at` has whole seconds: a push in the same second as the answer that
    showed the pull request does not change its entry in the feed."""
    number = pull(fake_github, "topic")
    async with client_for(fake_github, tmp_path) as gh:
        await gh.refresh_view()
        await gh.refresh_view()  # the pull request is read in the second it was updated
        fake_github.commit("topic", {"again.txt": "again\n"})  # the clock stands still
        head = fake_github.branch_sha("topic")
        await gh.refresh_view()
        assert [p.head_sha for p in await gh.list_open_pulls()] == [head]
        fake_github.advance(60)
        await gh.refresh_view()  # read again a second later: settled
        fake_github.advance(60)
        fake_github.clear_logs()
        await gh.refresh_view()
        assert logged(fake_github) == [(ISSUES, 304)]
    assert number


async def test_a_broken_cache_file_is_moved_aside_and_the_reads_go_on(
    fake_github: FakeGitHub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by an outside review: a corrupt cache stopped every GitHub read with an
    AttributeError no handler expected. A cache may only make reads slower, never stop them."""
    ready = fake_github.create_issue("ready", labels=["ready"])
    cache = cache_file(tmp_path / "state.json", fake_github.token)
    cache.write_bytes(b"this is not a database" * 100)
    async with client_for(fake_github, tmp_path) as gh:
        assert [i.number for i in await gh.list_open_issues("ready")] == [ready]
        await cycle(gh)
    assert "unreadable" in caplog.text and cache.with_name(cache.name + ".broken").exists()
    fake_github.advance(60)
    fake_github.clear_logs()
    async with client_for(fake_github, tmp_path) as gh:  # the new file keeps answers again
        await cycle(gh)
        await cycle(gh)
    assert logged(fake_github)[-2:] == [(ISSUES, 304), (COMMENTS, 304)]


async def test_a_cache_that_cannot_be_written_costs_the_cache_not_the_read(
    fake_github: FakeGitHub, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A full disk: every write of hishel's storage fails; the answers still come through."""

    async def full(*_: object, **__: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(AsyncSqliteStorage, "create_entry", full)
    monkeypatch.setattr(AsyncSqliteStorage, "update_entry", full)
    ready = fake_github.create_issue("ready", labels=["ready"])
    async with client_for(fake_github, tmp_path) as gh:
        assert [i.number for i in await gh.list_open_issues("ready")] == [ready]
        await cycle(gh)
        await cycle(gh)
        assert await gh.default_branch() == "main"
    assert caplog.text.count("cannot be kept") == 1


async def test_one_pull_request_that_cannot_be_read_holds_up_nothing_else(
    fake_github: FakeGitHub, tmp_path: Path
) -> None:
    """Found by an outside review: a pull request whose read kept failing stopped every
    refresh at it, so a ready issue labelled later was never seen."""
    broken = pull(fake_github, "broken")
    async with client_for(fake_github, tmp_path) as gh:
        await gh.refresh_view()
        fake_github.advance(5)
        fake_github.commit("broken", {"b.txt": "b\n"})
        new_head = fake_github.branch_sha("broken")
        fake_github.faults.fail_next(403, count=100, method="GET", path=rf"/pulls/{broken}$")
        ready = fake_github.create_issue("later", labels=["ready"])
        await gh.refresh_view()
        assert [i.number for i in await gh.list_open_issues("ready")] == [ready]
        fake_github.faults.clear()
        fake_github.advance(600)  # the cursor has long passed the pull request's change
        await gh.refresh_view()
        assert [p.head_sha for p in await gh.list_open_pulls()] == [new_head]


async def test_another_repository_or_a_day_lists_everything_again(
    fake_github: FakeGitHub, tmp_path: Path
) -> None:
    pull(fake_github, "topic")
    state = tmp_path / "state.json"
    async with client_for(fake_github, tmp_path) as gh:
        await gh.refresh_view()
    other = ListingView(listings_file(state), "ready", "https://api.github.com acme/other")
    assert not other.seeded  # another repository's view is not this one's
    fake_github.clear_logs()
    async with client_for(fake_github, tmp_path) as gh:
        await gh.refresh_view()
        assert not [r for r in fake_github.requests if r.path.endswith("/pulls")]
        fake_github.advance(25 * 3600)
        await gh.refresh_view()
        assert [r for r in fake_github.requests if r.path.endswith("/pulls")], "listed again"


async def test_a_view_file_with_a_naive_time_is_listed_again(
    fake_github: FakeGitHub, tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    async with client_for(fake_github, tmp_path) as gh:
        await gh.refresh_view()
    data = json.loads(listings_file(state).read_text())
    data["cursor"] = "2024-01-01T00:00:00"  # hand-edited, without a time zone
    listings_file(state).write_text(json.dumps(data))
    ready = fake_github.create_issue("ready", labels=["ready"])
    async with client_for(fake_github, tmp_path) as gh:
        await gh.refresh_view()
        assert [i.number for i in await gh.list_open_issues("ready")] == [ready]


def test_the_reset_is_counted_on_githubs_clock() -> None:
    """Found by an outside review: a local clock hours behind GitHub's made the pace wait
    those hours. The reset is taken relative to the answer's own Date."""
    budget = RateBudget()
    github_now = 2_000_000_000  # years ahead of this machine's clock
    budget.note(httpx.Headers({
        "date": email.utils.formatdate(github_now, usegmt=True),
        "x-ratelimit-limit": "5000", "x-ratelimit-remaining": "100",
        "x-ratelimit-reset": str(github_now + 1800),
    }))  # fmt: skip
    left = budget.until_reset()
    assert left is not None and 1790 < left <= 1800
