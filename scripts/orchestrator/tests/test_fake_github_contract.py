"""The fake GitHub against GitHub's OpenAPI description: it refuses what GitHub refuses, its
replies keep to the schemas, and a test that breaks the contract fails."""

from __future__ import annotations

import importlib.util
import inspect
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from githubkit.exception import RequestFailed

from scripts.orchestrator.fakes.fake_github import FakeGitHub, shapes_issues
from scripts.orchestrator.fakes.fake_github.app import GRAPHQL_PATHS
from scripts.orchestrator.fakes.fake_github.fake import build_router
from scripts.orchestrator.fakes.fake_github.openapi import (
    Description,
    description_path,
    template_shape,
)
from scripts.orchestrator.fakes.fake_github.versions import VERSIONS
from scripts.orchestrator.fakes.git_world import GitWorld
from scripts.orchestrator.github_watcher import API_VERSION, GitHubClient

from .fixtures_github import FAKE_TOKEN
from .fixtures_world import FAST_RETRY

REPO = "/repos/acme/widgets"
AUTH = {"Authorization": f"token {FAKE_TOKEN}"}
NOON = datetime(2024, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


def send(gh: FakeGitHub, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {**AUTH, **kwargs.pop("headers", {})}
    return httpx.request(method, f"{gh.url}{path}", headers=headers, timeout=5, **kwargs)


# -- requests GitHub refuses ----------------------------------------------------------------


def test_since_as_str_datetime_is_refused_and_names_since(fake_github: FakeGitHub, github_client):
    """The bug that started this: githubkit hands a datetime to httpx, which sends
    `str(datetime)`; GitHub answers 422, and so does the fake."""
    with fake_github.expect_violations() as seen, pytest.raises(RequestFailed) as caught:
        github_client.rest.issues.list_comments_for_repo("acme", "widgets", since=NOON)
    assert caught.value.response.status_code == 422
    assert caught.value.response.json()["message"] == (
        "The since parameter needs to be in ISO 8601 format"
    )
    assert seen == [
        "GET /repos/{owner}/{repo}/issues/comments: "
        "query parameter since='2024-01-01 12:00:00+00:00': "
        "'2024-01-01 12:00:00+00:00' is not a 'date-time'"
    ]


def test_a_test_that_breaks_the_contract_fails(git_world: GitWorld):
    """No `expect_violations()`: leaving the fake fails, naming the parameter."""
    refused = pytest.raises(AssertionError, match=r"query parameter since=")
    with refused, FakeGitHub(git_world.origin, token=FAKE_TOKEN) as gh:
        reply = send(gh, "GET", f"{REPO}/issues", params={"since": str(NOON)})
        assert reply.status_code == 422


def test_expecting_violations_that_do_not_come_fails(fake_github: FakeGitHub):
    with pytest.raises(AssertionError, match="expected"), fake_github.expect_violations():
        assert send(fake_github, "GET", f"{REPO}/issues").status_code == 200


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"colour": "red"}, "'colour' is not documented"),
        ({"state": "shut"}, "state='shut'"),
        ({"per_page": "many"}, "per_page='many'"),
        ({"page": "1", "per_page": "5", "sort": "size"}, "sort='size'"),
    ],
)
def test_an_undocumented_or_invalid_query_parameter_is_422(
    fake_github: FakeGitHub, query: dict[str, str], named: str
):
    with fake_github.expect_violations() as seen:
        reply = send(fake_github, "GET", f"{REPO}/issues", params=query)
    assert reply.status_code == 422
    assert reply.json()["message"] == "Validation Failed"
    assert len(seen) == 1
    assert seen[0].startswith("GET /repos/{owner}/{repo}/issues: query parameter ")
    assert named in seen[0]


def test_a_repeated_query_parameter_is_422(fake_github: FakeGitHub):
    with fake_github.expect_violations() as seen:
        reply = send(fake_github, "GET", f"{REPO}/issues?state=open&state=closed")
    assert reply.status_code == 422
    assert "'state' is given more than once" in seen[0]


@pytest.mark.parametrize(
    ("method", "path", "body", "message", "named"),
    [
        (
            "POST",
            "/issues",
            {"title": "x", "colour": "red"},
            '"colour" is not a permitted key.',
            "request body field colour: Additional properties",
        ),
        ("POST", "/issues", {"body": "no title"}, '"title" wasn\'t supplied.', "field title:"),
        (
            "PATCH",
            "/issues/1",
            {"state": "shut"},
            "For 'properties/state', 'shut' is not one of ['open', 'closed'].",
            "field state: 'shut' is not one of",
        ),
        (
            "POST",
            "/issues/1/comments",
            {"body": 5},
            "For 'properties/body', 5 is not of type 'string'.",
            "field body: 5 is not of type",
        ),
        (
            # GitHub's prose allows a bare array of names; its schema does not. Stricter.
            "POST",
            "/issues/1/labels",
            ["ready"],
            "['ready'] is not valid under any of the given schemas.",
            "field (the body):",
        ),
    ],
)
def test_an_undocumented_or_invalid_body_is_422(
    fake_github: FakeGitHub, method: str, path: str, body: Any, message: str, named: str
):
    fake_github.create_issue("x")
    with fake_github.expect_violations() as seen:
        reply = send(fake_github, method, f"{REPO}{path}", json=body)
    assert reply.status_code == 422
    assert reply.json()["message"] == f"Invalid request.\n\n{message}"
    assert len(seen) == 1
    assert seen[0].startswith(f"{method} /repos/{{owner}}/{{repo}}/")
    assert named in seen[0]
    assert fake_github.mutations == []


def test_a_missing_required_body_is_422(fake_github: FakeGitHub):
    with fake_github.expect_violations() as seen:
        reply = send(fake_github, "POST", f"{REPO}/issues")
    assert reply.status_code == 422
    assert "nil is not an object" in reply.json()["message"]
    assert seen == ["POST /repos/{owner}/{repo}/issues: the required request body is missing"]


def test_a_body_where_none_is_documented_is_refused(fake_github: FakeGitHub):
    with fake_github.expect_violations() as seen:
        reply = send(fake_github, "GET", f"{REPO}/issues", json={"state": "open"})
    assert reply.status_code == 422
    assert "takes no request body" in seen[0]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"{REPO}/branches/main/protection"),  # GitHub has it; the fake does not serve it
        ("GET", f"{REPO}/nonsense"),
        ("POST", "/user"),  # a documented path, an undocumented method
        ("GET", f"{REPO}/issues/abc"),  # a path value of the wrong type names nothing
        ("DELETE", f"{REPO}/issues/1/labels/area/api"),  # a label name is one segment
    ],
)
def test_an_unknown_route_is_404(fake_github: FakeGitHub, method: str, path: str):
    with fake_github.expect_violations() as seen:
        reply = send(fake_github, method, path)
    assert reply.status_code == 404
    assert reply.json()["message"] == "Not Found"
    assert len(seen) == 1


def test_an_encoded_slash_stays_in_its_segment(fake_github: FakeGitHub):
    number = fake_github.create_issue("x", labels=["area/api"])
    reply = send(fake_github, "DELETE", f"{REPO}/issues/{number}/labels/area%2Fapi")
    assert reply.status_code == 200
    assert fake_github.labels_of(number) == []


def test_an_api_version_github_does_not_serve_is_400(fake_github: FakeGitHub):
    with fake_github.expect_violations() as seen:
        reply = send(fake_github, "GET", "/user", headers={"X-GitHub-Api-Version": "v3"})
    assert reply.status_code == 400
    assert '"v3", is not a supported version' in reply.json()["message"]
    assert seen == ["GET /user: API version 'v3' is not one GitHub serves"]


# -- replies the fake must not send ---------------------------------------------------------


def test_a_reply_that_breaks_the_schema_is_caught(
    fake_github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
):
    number = fake_github.create_issue("x")
    real = shapes_issues.issue

    def broken(store: Any, item: Any) -> dict[str, Any]:
        data = real(store, item)
        del data["number"]
        return {**data, "locked": "no", "comments": "none"}

    monkeypatch.setattr(shapes_issues, "issue", broken)
    with fake_github.expect_violations() as seen:
        assert send(fake_github, "GET", f"{REPO}/issues/{number}").status_code == 200
    route = "GET /repos/{owner}/{repo}/issues/{issue_number}: response 200"
    assert set(seen) == {
        f"{route} at $: 'number' is a required property",
        f"{route} at $.comments: 'none' is not of type 'integer'",
        f"{route} at $.locked: 'no' is not of type 'boolean'",
    }


def test_replies_follow_the_version_asked_for(fake_github: FakeGitHub):
    """2026-03-10 dropped `rate` from /rate_limit and `assignee` from issues; 2022-11-28,
    GitHub's default, requires them. Each reply is checked against its own version."""
    fake_github.create_issue("x")
    old = send(fake_github, "GET", "/rate_limit", headers={"X-GitHub-Api-Version": "2022-11-28"})
    new = send(fake_github, "GET", "/rate_limit", headers={"X-GitHub-Api-Version": "2026-03-10"})
    assert old.json()["rate"] == old.json()["resources"]["core"]
    assert "rate" not in new.json()
    assert "assignee" in send(fake_github, "GET", f"{REPO}/issues/1").json()
    latest = {"X-GitHub-Api-Version": "2026-03-10"}
    assert "assignee" not in send(fake_github, "GET", f"{REPO}/issues/1", headers=latest).json()


# -- the committed description --------------------------------------------------------------


def _update_tool() -> ModuleType:
    path = Path(__file__).resolve().parents[3] / "tools" / "update_openapi.py"
    spec = importlib.util.spec_from_file_location("update_openapi", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("version", VERSIONS)
def test_the_committed_description_is_the_pinned_package(version: str):
    tool = _update_tool()
    source = json.loads(description_path(version).read_text(encoding="utf-8"))["info"]["x-source"]
    assert source == {
        "package": tool.PACKAGE,
        "version": tool.VERSION,
        "file": "generated/api.github.com.json",
        "api-version": version,
        "written-by": "tools/update_openapi.py",
    }


@pytest.mark.parametrize("version", VERSIONS)
def test_the_description_has_exactly_the_routes_the_fake_serves(version: str):
    """A route added to the fake needs its operation in the description (rerun the tool);
    GitHub documents every route the fake serves, so none needs an exemption."""
    described = {
        (op.method, template_shape(op.template)) for op in Description.load(version).operations
    }
    served = {(route.method, route.shape) for route in build_router().routes}
    assert served == described


Driver = Callable[[GitHubClient], Awaitable[object]]


async def test_every_client_call_is_in_the_description(fake_github: FakeGitHub):
    """Each method of the daemon's client, driven against the fake: every request it sends
    must be a described operation of the version it asks for. A new method must be added
    here, so its requests are checked too."""
    gh = fake_github
    number = gh.create_issue("Walk", labels=["ready"])
    comment = gh.comment(number, "hello", user="carol")
    gh.commit("feature/walk", {"walk.txt": "walk\n"})
    gh.commit("feature/other", {"other.txt": "other\n"})
    pull = gh.create_pull("Walk", "feature/walk")
    head = gh.pull(pull)["head"]["sha"]
    gh.set_check_run(head, "ci")
    gh.set_status(head, "lint", "success")
    gh.set_permission("carol", "write")
    gh.review(pull, "see", user="carol", comments=[{"path": "walk.txt", "line": 1, "body": "?"}])
    thread = gh.review_comments(pull)[0]["id"]
    drivers: dict[str, Driver] = {
        "default_branch": lambda c: c.default_branch(),
        "login": lambda c: c.login(),
        "access": lambda c: c.access(),
        "permission": lambda c: c.permission("carol"),
        "list_open_issues": lambda c: c.list_open_issues("ready"),
        "get_issue": lambda c: c.get_issue(number),
        "list_issue_comments": lambda c: c.list_issue_comments(number),
        "list_repo_comments": lambda c: c.list_repo_comments(NOON),
        "count_labelled": lambda c: c.count_labelled(number, "ready"),
        "labelling": lambda c: c.labelling(number, "ready"),
        # GraphQL, not REST: checked against GitHub's GraphQL schema instead (below).
        "edited_at": lambda c: c.edited_at(number),
        "latest_comments": lambda c: c.latest_comments(),
        "create_comment": lambda c: c.create_comment(number, "hi"),
        "edit_comment": lambda c: c.edit_comment(comment, "edited"),
        "add_labels": lambda c: c.add_labels(number, "x", "area/api"),
        "remove_label": lambda c: c.remove_label(number, "area/api"),
        "has_label": lambda c: c.has_label("area/api"),
        "create_label": lambda c: c.create_label("needs/you", color="0e8a16", description="d"),
        "react_to_issue": lambda c: c.react_to_issue(number, "eyes"),
        "react_to_comment": lambda c: c.react_to_comment(comment, "eyes"),
        "close_issue": lambda c: c.close_issue(number),
        "list_open_pulls": lambda c: c.list_open_pulls(),
        "open_pulls_now": lambda c: c.open_pulls_now(),
        "open_issues_now": lambda c: c.open_issues_now("ready"),
        "list_changed": lambda c: c.list_changed(NOON),
        "server_time": lambda c: c.server_time(),
        # Without a view it sends nothing; the view's requests are the four above, and get_pull.
        "refresh_view": lambda c: c.refresh_view(),
        "find_pull": lambda c: c.find_pull("feature/walk", "main"),
        "get_pull": lambda c: c.get_pull(pull),
        "create_pull": lambda c: c.create_pull(
            title="Other", head="feature/other", base="main", body="b"
        ),
        "list_reviews": lambda c: c.list_reviews(pull),
        "create_review": lambda c: c.create_review(
            pull, body="ok", event="COMMENT", commit_id=head
        ),
        "list_review_comments": lambda c: c.list_review_comments(pull),
        "reply_to_review_comment": lambda c: c.reply_to_review_comment(pull, thread, "fixed"),
        "request_reviewers": lambda c: c.request_reviewers(pull, ["carol"]),
        "check_runs": lambda c: c.check_runs(head),
        "statuses": lambda c: c.statuses(head),
        "merge_pull": lambda c: c.merge_pull(pull, sha=head, title="Walk", message="m"),
        "delete_branch": lambda c: c.delete_branch("feature/walk"),
        "branch_sha": lambda c: c.branch_sha("main"),
        "file_text": lambda c: c.file_text("walk.txt", head),
        "comment_on_commit": lambda c: c.comment_on_commit(head, "seen"),
    }
    methods = {
        name
        for name, _ in inspect.getmembers(GitHubClient, inspect.iscoroutinefunction)
        if not name.startswith("_")
    }
    assert methods == set(drivers), "drive each GitHubClient method here"
    client = GitHubClient(
        gh.token, gh.full_name, api_url=gh.url, retry=FAST_RETRY, write_interval=0
    )
    async with client:
        for drive in drivers.values():
            await drive(client)
    described = {op.name for op in Description.load(API_VERSION).operations}
    rest = [r for r in gh.requests if r.path not in GRAPHQL_PATHS]
    sent = {r.operation for r in rest}
    assert "" not in sent and sent <= described
    assert {r.headers.get("x-github-api-version") for r in rest} == {API_VERSION}
    [graphql] = [r for r in gh.requests if r.path in GRAPHQL_PATHS]
    assert graphql.status == 200 and gh.server_errors == []
