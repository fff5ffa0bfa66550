"""Answers shaped differently never break the daemon: lenient reads, one error, writes done."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scripts.orchestrator import github_parse as gp
from scripts.orchestrator.fakes.fake_github import FakeGitHub
from scripts.orchestrator.fakes.git_world import GitWorld
from scripts.orchestrator.github_http import GitHubError, MalformedAnswer
from scripts.orchestrator.github_watcher import GitHubClient

from .fixtures_world import FAST_RETRY

REPO_PATH = r"^/repos/acme/widgets$"


@pytest.fixture
async def client(fake_github: FakeGitHub) -> AsyncIterator[GitHubClient]:
    async with GitHubClient(
        fake_github.token,
        fake_github.full_name,
        api_url=fake_github.url,
        retry=FAST_RETRY,
        write_interval=0,
    ) as gh:
        yield gh


def answer_next(fake: FakeGitHub, method: str, path: str, body: dict[str, Any]) -> None:
    """The next `method` request to `path` (a regex) is applied, then answered 2xx with `body`."""
    status = {"POST": 201, "DELETE": 204}.get(method, 200)
    fake.faults.fail_next(status, method=method, path=path, body=body, after=True)


# -- reads: one GitHubError naming the endpoint and the field ------------------------------


async def test_a_repository_answer_without_its_default_branch(
    fake_github: FakeGitHub, client: GitHubClient
) -> None:
    answer_next(fake_github, "GET", REPO_PATH, {"full_name": "acme/widgets"})

    with pytest.raises(MalformedAnswer) as caught:
        await client.default_branch()

    error = caught.value
    assert isinstance(error, GitHubError)
    assert (error.status, error.field) == (200, "default_branch")
    assert str(error) == (
        "GitHub GET /repos/acme/widgets answered 200: unreadable answer: default_branch is missing"
    )
    assert await client.default_branch() == "main"  # the next answer is GitHub's usual one


async def test_a_list_item_of_another_type_is_named_by_its_path(
    fake_github: FakeGitHub, client: GitHubClient
) -> None:
    for title in ("one", "two"):
        fake_github.create_issue(title)
    real = fake_github.issue(2)
    fake_github.faults.fail_next(
        200, method="GET", path=r"/issues$", body={"not": "a list", **real}
    )
    with pytest.raises(MalformedAnswer, match=r"GET /repos/acme/widgets/issues .* body is an obj"):
        await client.list_open_issues()


async def test_an_html_page_where_the_api_should_be() -> None:
    # GITHUB_API_URL set to a GitHub Enterprise host without /api/v3 answers its web page.
    page = httpx.MockTransport(lambda r: httpx.Response(200, html="<html>Sign in</html>"))
    async with GitHubClient("t", "acme/widgets", transport=page, retry=FAST_RETRY) as gh:
        with pytest.raises(MalformedAnswer, match="answered 200: unreadable answer: body is not"):
            await gh.default_branch()


def test_reads_take_only_the_fields_they_use() -> None:
    issues = gp.many(
        [
            {
                "number": 1,
                "title": "t",
                "state": "open",
                "updated_at": "2024-01-01T12:00:00Z",
                "labels": ["bare", {"name": "object"}, {"color": "no name"}],
                "user": None,  # a deleted account
                "body": None,
                "archived_at": "whatever GitHub adds next",
            },
            {"number": 2, "title": "t", "state": "open", "updated_at": "2024-01-01T12:00:00Z"},
        ],
        gp.issue,
    )
    assert issues[0].labels == ("bare", "object", "")
    assert (issues[0].author, issues[0].body, issues[1].labels) == ("ghost", "", ())


@pytest.mark.parametrize(
    ("item", "field", "problem"),
    [
        ({"title": "t"}, "[0].number", "is missing"),
        ({"number": "7"}, "[0].number", "is a string, not an integer"),
        ({"number": True}, "[0].number", "is a boolean, not an integer"),
        ({"number": 7, "title": None}, "[0].title", "is null"),
        (
            {"number": 7, "title": "t", "state": "open", "updated_at": "yesterday"},
            "[0].updated_at",
            "is 'yesterday', not a date-time",
        ),
        (
            {
                "number": 7,
                "title": "t",
                "state": "o",
                "updated_at": "2024-01-01T00:00:00Z",
                "user": {"login": 3},
            },
            "[0].user.login",
            "is a number, not a string",
        ),
        ("text", "[0]", "is a string, not an object"),
    ],
)
def test_a_field_the_daemon_reads_is_checked(item: Any, field: str, problem: str) -> None:
    with pytest.raises(gp.ShapeError) as caught:
        gp.many([item], gp.issue)
    assert (caught.value.field, caught.value.problem) == (field, problem)


# -- writes: a 2xx is done, and an answer nobody uses is not read ---------------------------


async def test_writes_answered_2xx_are_done_whatever_the_body(
    fake_github: FakeGitHub, client: GitHubClient
) -> None:
    number = fake_github.create_issue("x", labels=["ready"])
    odd = {"unexpected": ["shape"]}
    issue_path = rf"^/repos/acme/widgets/issues/{number}"

    answer_next(fake_github, "POST", rf"{issue_path}/labels$", odd)
    await client.add_labels(number, "claude-failed")
    answer_next(fake_github, "DELETE", rf"{issue_path}/labels/ready$", odd)
    assert await client.remove_label(number, "ready") is True
    answer_next(fake_github, "POST", rf"{issue_path}/reactions$", odd)
    await client.react_to_issue(number, "eyes")
    answer_next(fake_github, "PATCH", rf"{issue_path}$", odd)
    await client.close_issue(number)

    assert fake_github.labels_of(number) == ["claude-failed"]
    assert fake_github.issue(number)["state"] == "closed"


async def test_a_comment_posted_with_an_unreadable_answer_is_not_an_error(
    fake_github: FakeGitHub, client: GitHubClient
) -> None:
    number = fake_github.create_issue("x")
    answer_next(fake_github, "POST", r"/comments$", {"id": "not a number"})

    comment = await client.create_comment(number, "hello")

    assert (comment.id, comment.issue_number, comment.body) == (0, number, "hello")
    assert [c["body"] for c in fake_github.comments_on(number)] == ["hello"]  # posted once


async def test_a_merge_answered_200_is_a_merge(
    fake_github: FakeGitHub, client: GitHubClient
) -> None:
    fake_github.commit("feature", {"f.txt": "f\n"})
    number = fake_github.create_pull("Feature", "feature")
    head = fake_github.pull(number)["head"]["sha"]
    answer_next(fake_github, "PUT", r"/merge$", {"unexpected": True})

    outcome = await client.merge_pull(number, sha=head, title="t", message="m")

    assert outcome.merged and outcome.sha is None
    assert fake_github.pull(number)["merged"]


# -- start-up: one line, exit code 2 ----------------------------------------------------------


def test_start_up_with_an_unreadable_repository_answer_is_one_line(
    tmp_path: Path, fake_github: FakeGitHub, git_world: GitWorld
) -> None:
    answer_next(fake_github, "GET", REPO_PATH, {"default_branch": 42})
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(shutil.which("git") or "git", bin_dir / "git")
    env = {
        "PATH": str(bin_dir),
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "GITHUB_REPO": "acme/widgets",
        "GITHUB_TOKEN": fake_github.token,
        "GITHUB_API_URL": fake_github.url,
        "ANTHROPIC_API_KEY": "sk-ant-" + "test" * 8,  # the model's credential (never used)
    }
    result = subprocess.run(
        [sys.executable, "-m", "scripts.orchestrator.main", "--once"],
        cwd=git_world.clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert (
        "GET /repos/acme/widgets answered 200: unreadable answer: default_branch is a" in lines[0]
    )
    assert "GITHUB_API_URL=" in lines[0]
    assert "Traceback" not in result.stderr
