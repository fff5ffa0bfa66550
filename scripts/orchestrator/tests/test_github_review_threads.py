"""GitHubClient on review threads and review requests, over real HTTP against the fake GitHub."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timezone

import httpx
import pytest

from scripts.orchestrator import github_parse as gp
from scripts.orchestrator.core.redact import REDACTED
from scripts.orchestrator.core.text import MAX_BODY
from scripts.orchestrator.fakes.fake_github import FakeGitHub
from scripts.orchestrator.github_http import NotFound, Unprocessable
from scripts.orchestrator.github_spacing import COURTESY, write_priority
from scripts.orchestrator.github_watcher import GitHubClient

from .fixtures_github import make_client
from .fixtures_world import FAST_RETRY
from .ports_fakes_github import RecordingGitHub

PULLS = "/repos/acme/widgets/pulls"


@pytest.fixture
async def client(fake_github: FakeGitHub) -> AsyncIterator[GitHubClient]:
    async with GitHubClient(
        fake_github.token, fake_github.full_name, api_url=fake_github.url, retry=FAST_RETRY,
        write_interval=0,
    ) as gh:  # fmt: skip
        yield gh


@pytest.fixture
def pull(fake_github: FakeGitHub) -> int:
    """A pull request by `dave` adding greet.py; `carol` may review (write access)."""
    fake_github.commit("feature", {"greet.py": "def greet():\n    return 'hi'\n"})
    fake_github.set_permission("carol", "write")
    return fake_github.create_pull("Greet", "feature", user="dave")


def thread(fake_github: FakeGitHub, number: int, *bodies: str, line: int = 2) -> list[int]:
    """carol's review with one thread per body on greet.py; the threads' first comments."""
    notes = [{"path": "greet.py", "line": line, "body": body} for body in bodies]
    fake_github.review(number, "Notes", "REQUEST_CHANGES", user="carol", comments=notes)
    return [c["id"] for c in fake_github.review_comments(number)[-len(bodies) :]]


# -- reading ----------------------------------------------------------------------------------


async def test_review_comments_come_oldest_first_with_their_threads(
    fake_github: FakeGitHub, client: GitHubClient, pull: int
) -> None:
    [first, second] = thread(fake_github, pull, "Say hello", "Type it")
    fake_github.advance(5)
    reply = fake_github.review_comment_reply(pull, first, "Will do", user="dave")

    found = await client.list_review_comments(pull)

    assert [c.id for c in found] == [first, second, reply]
    top = found[0]
    assert (top.pull_number, top.author, top.body, top.path, top.line) == (
        pull, "carol", "Say hello", "greet.py", 2,
    )  # fmt: skip
    assert top.in_reply_to is None and found[2].in_reply_to == first
    assert top.review_id == fake_github.reviews_on(pull)[0]["id"]
    assert found[2].review_id not in (None, top.review_id)  # a reply's own review
    assert found[2].created_at > top.created_at and top.created_at.tzinfo is not None
    # GitHub's default order (by ID): nothing to ask for, so nothing is sent.
    [request] = fake_github.requests_to("GET", f"{PULLS}/{pull}/comments")
    assert request.query == {"per_page": "100"}


async def test_review_comments_are_read_past_the_first_page(
    fake_github: FakeGitHub, client: GitHubClient, pull: int
) -> None:
    made = thread(fake_github, pull, *(f"note {i}" for i in range(130)))

    found = await client.list_review_comments(pull)

    assert [c.id for c in found] == made
    pages = fake_github.requests_to("GET", f"{PULLS}/{pull}/comments")
    assert [r.query.get("page", "1") for r in pages] == ["1", "2"]


async def test_reviews_carry_when_they_were_submitted(
    fake_github: FakeGitHub, client: GitHubClient, pull: int
) -> None:
    fake_github.review(pull, "Fine", "APPROVE", user="carol")
    fake_github.review(pull, "draft", None)  # pending: invisible to the bot

    [review] = await client.list_reviews(pull)

    assert review.submitted_at == fake_github.clock.now().replace(microsecond=0)
    assert review.submitted_at.tzinfo == timezone.utc


async def test_maintainer_can_modify_is_read_from_the_full_pull_request(
    fake_github: FakeGitHub, client: GitHubClient, pull: int
) -> None:
    assert (await client.get_pull(pull)).maintainer_can_modify is False
    author = make_client(fake_github)
    author.rest.pulls.update("acme", "widgets", pull, maintainer_can_modify=True)

    assert (await client.get_pull(pull)).maintainer_can_modify is True
    # GitHub's description leaves it out of list items: a list reads it as not granted.
    [listed] = await client.open_pulls_now()
    assert listed.maintainer_can_modify is False


def test_a_review_comment_of_a_deleted_account_or_an_outdated_line() -> None:
    answer = {
        "id": 7,
        "pull_request_url": "https://api.github.com/repos/acme/widgets/pulls/12",
        "pull_request_review_id": None,
        "user": None,
        "body": "old",
        "path": "a.py",
        "line": None,
        "created_at": "2024-01-01T12:00:00Z",
    }
    found = gp.one(answer, gp.review_comment)
    assert (found.pull_number, found.author, found.line, found.review_id) == (
        12,
        "ghost",
        None,
        None,
    )
    with pytest.raises(gp.ShapeError, match="pull_request_url"):
        gp.one({**answer, "pull_request_url": "https://x/pulls"}, gp.review_comment)


# -- writing ----------------------------------------------------------------------------------


async def test_a_reply_is_posted_redacted_and_fitted(
    fake_github: FakeGitHub, client: GitHubClient, pull: int
) -> None:
    [first] = thread(fake_github, pull, "Why?")

    made = await client.reply_to_review_comment(pull, first, f"token {fake_github.token}")

    reply = fake_github.review_comments(pull)[-1]
    assert (reply["id"], reply["in_reply_to_id"], reply["body"]) == (
        made,
        first,
        f"token {REDACTED}",
    )
    long = "start\n" + "z" * 100_000 + "\nend"
    await client.reply_to_review_comment(pull, first, long)
    body = fake_github.review_comments(pull)[-1]["body"]
    assert len(body) <= MAX_BODY and body.startswith("start\n") and body.endswith("\nend")
    assert len(fake_github.mutations_named("create_reply_for_review_comment")) == 2


def test_replies_and_review_requests_wait_behind_the_work() -> None:
    """Courtesy writes: a pull request opened or merged goes first when writes queue."""
    for path in (f"{PULLS}/3/comments/9/replies", f"{PULLS}/3/requested_reviewers"):
        request = httpx.Request("POST", f"https://api.github.com{path}")
        assert write_priority(request) == COURTESY


async def test_github_refuses_a_reply_to_a_reply_or_another_pulls_comment(
    fake_github: FakeGitHub, client: GitHubClient, pull: int
) -> None:
    [first] = thread(fake_github, pull, "Why?")
    reply = await client.reply_to_review_comment(pull, first, "Because")

    with pytest.raises(Unprocessable) as caught:
        await client.reply_to_review_comment(pull, reply, "And?")
    assert "Replies to replies are not supported" in caught.value.message
    other = fake_github.create_issue("Not a pull request")
    with pytest.raises(NotFound):
        await client.reply_to_review_comment(other, first, "Lost")
    with pytest.raises(NotFound):
        await client.reply_to_review_comment(pull, 1, "Nowhere")


async def test_request_reviewers(fake_github: FakeGitHub, client: GitHubClient, pull: int) -> None:
    fake_github.set_permission("erin", "maintain")

    await client.request_reviewers(pull, ["carol", "erin"])

    assert fake_github.requested_reviewers(pull) == ["carol", "erin"]
    [sent] = fake_github.mutations_named("request_reviewers")
    assert sent.body == {"reviewers": ["carol", "erin"]}


@pytest.mark.parametrize(
    ("login", "words"),
    [("dave", "from pull request author"), ("stranger", "only be requested from collaborators")],
)
async def test_a_review_request_github_refuses_is_unprocessable(
    fake_github: FakeGitHub, client: GitHubClient, pull: int, login: str, words: str
) -> None:
    with pytest.raises(Unprocessable) as caught:
        await client.request_reviewers(pull, [login])
    assert words in caught.value.message
    assert fake_github.requested_reviewers(pull) == []


# -- the port's recording fake answers alike --------------------------------------------------


async def test_the_recording_fake_keeps_githubs_rules(gh: RecordingGitHub) -> None:
    number = gh.add_pull(author="dave")
    gh.permissions["carol"] = "write"
    await gh.request_reviewers(number, ["carol"])
    review = gh.add_review(
        number, user="carol", comments=[{"path": "a.py", "line": 3, "body": "Why?"}]
    )
    assert gh.requested_reviewers(number) == []  # her review answered the request
    [first] = await gh.list_review_comments(number)
    assert (first.review_id, first.line, first.in_reply_to) == (review, 3, None)
    reply = await gh.reply_to_review_comment(number, first.id, "Because")
    assert [c.id for c in gh.replies_sent(number)] == [reply]
    assert gh.reviews[number][-1].state == "COMMENTED"  # the reply's own review
    assert all(r.submitted_at is not None for r in gh.reviews[number])
    with pytest.raises(Unprocessable):
        await gh.reply_to_review_comment(number, reply, "And?")
    with pytest.raises(NotFound):
        await gh.reply_to_review_comment(number, 999, "Nowhere")
    for login in ("dave", "stranger"):
        with pytest.raises(Unprocessable):
            await gh.request_reviewers(number, [login])
    assert gh.called("request_reviewers")[0] == (number, ["carol"])
