"""Issues, labels, comments, reactions, events and timelines in the fake GitHub, via githubkit."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import httpx
import pytest
from githubkit.exception import RequestFailed

from scripts.orchestrator.fakes.fake_github import FakeClock, FakeGitHub
from scripts.orchestrator.fakes.fake_github.clock import iso
from scripts.orchestrator.fakes.git_world import GitWorld

from .fixtures_github import FAKE_TOKEN

OWNER, REPO = "acme", "widgets"


def open_pull(gh: FakeGitHub, git_world: GitWorld, branch: str = "feature/x", **kwargs) -> int:
    git_world.push_branch(branch, {f"{branch.replace('/', '_')}.txt": "new\n"})
    return gh.create_pull(kwargs.pop("title", "A change"), branch, **kwargs)


def test_issue_list_includes_pull_requests_with_pull_request_key(
    fake_github: FakeGitHub, git_world: GitWorld, github_client
):
    issue = fake_github.create_issue("Bug", "It breaks", user="alice", labels=["bug"])
    pull = open_pull(fake_github, git_world)
    items = github_client.rest.issues.list_for_repo(OWNER, REPO).parsed_data
    assert [i.number for i in items] == [pull, issue]
    by_number = {i.number: i for i in items}
    assert by_number[pull].pull_request and by_number[pull].pull_request.url
    assert not by_number[issue].pull_request
    assert by_number[issue].user.login == "alice"
    assert [lab.name for lab in by_number[issue].labels] == ["bug"]


def test_issue_filters_state_labels_creator_and_sort(
    fake_github: FakeGitHub, fake_clock: FakeClock, github_client
):
    a = fake_github.create_issue("a", labels=["ready", "bug"])
    fake_clock.advance(60)
    b = fake_github.create_issue("b", labels=["ready"], user="bob")
    fake_clock.advance(60)
    c = fake_github.create_issue("c")
    fake_github.close_issue(c)
    fake_clock.advance(60)
    fake_github.comment(a, "bump")

    def numbers(**query) -> list[int]:
        return [
            i.number
            for i in github_client.rest.issues.list_for_repo(OWNER, REPO, **query).parsed_data
        ]

    assert numbers() == [b, a]
    assert numbers(state="closed") == [c]
    assert numbers(state="all", direction="asc") == [a, b, c]
    assert numbers(labels="ready,bug") == [a]
    assert numbers(labels="READY") == [b, a]
    assert numbers(creator="bob") == [b]
    assert numbers(sort="updated") == [a, b]
    assert numbers(sort="comments", state="all") == [a, c, b]


def test_since_is_exclusive_and_filters_on_updated_at(
    fake_github: FakeGitHub, fake_clock: FakeClock, github_client
):
    """GitHub documents `since` as "updated after": an item updated at `since` is left out."""
    old = fake_github.create_issue("old")
    fake_clock.advance(3600)
    mark = fake_clock.now()
    fake_github.create_issue("at the mark")
    fake_clock.advance(1)
    new = fake_github.create_issue("new")
    assert [
        i.number
        for i in github_client.rest.issues.list_for_repo(OWNER, REPO, since=iso(mark)).parsed_data
    ] == [new]
    fake_clock.advance(10)
    fake_github.comment(old, "touches the old issue")
    listed = github_client.rest.issues.list_for_repo(OWNER, REPO, since=iso(mark)).parsed_data
    assert {i.number for i in listed} == {old, new}


def test_bad_query_values_are_422(fake_github: FakeGitHub):
    headers = {"Authorization": f"token {FAKE_TOKEN}"}
    for query in ({"state": "bogus"}, {"direction": "up"}):
        with fake_github.expect_violations():
            reply = httpx.get(
                f"{fake_github.url}/repos/{OWNER}/{REPO}/issues", params=query, headers=headers
            )
        assert reply.status_code == 422
        assert reply.json()["message"] == "Validation Failed"


def test_create_get_and_update_issue(fake_github: FakeGitHub, github_client):
    created = github_client.rest.issues.create(
        OWNER, REPO, title="New", body="text", labels=["ready"]
    )
    assert created.status_code == 201
    assert created.headers["location"] == created.parsed_data.url
    number = created.parsed_data.number
    assert created.parsed_data.user.login == "orchestrator-bot"
    fetched = github_client.rest.issues.get(OWNER, REPO, number).parsed_data
    assert (fetched.title, fetched.body, fetched.state) == ("New", "text", "open")
    updated = github_client.rest.issues.update(
        OWNER,
        REPO,
        number,
        title="Renamed",
        state="closed",
        state_reason="not_planned",
        labels=["x"],
    ).parsed_data
    assert (updated.title, updated.state, updated.state_reason) == (
        "Renamed",
        "closed",
        "not_planned",
    )
    assert updated.closed_by and updated.closed_by.login == "orchestrator-bot"
    assert fake_github.labels_of(number) == ["x"]
    events = [(e["event"], e.get("label", {}).get("name")) for e in fake_github.events_of(number)]
    assert events == [
        ("labeled", "ready"),
        ("renamed", None),
        ("unlabeled", "ready"),
        ("labeled", "x"),
        ("closed", None),
    ]
    reopened = github_client.rest.issues.update(OWNER, REPO, number, state="open").parsed_data
    assert (reopened.state, reopened.state_reason, reopened.closed_at) == ("open", "reopened", None)


def test_missing_issue_and_missing_title(fake_github: FakeGitHub, github_client):
    with pytest.raises(RequestFailed) as caught:
        github_client.rest.issues.get(OWNER, REPO, 99)
    assert caught.value.response.status_code == 404
    with pytest.raises(RequestFailed) as caught:
        github_client.rest.issues.create(OWNER, REPO, title="")
    assert caught.value.response.status_code == 422


def test_labels_add_remove_set(fake_github: FakeGitHub, github_client):
    number = fake_github.create_issue("Labels")
    added = github_client.rest.issues.add_labels(OWNER, REPO, number, labels=["ready", "area/api"])
    assert [lab.name for lab in added.parsed_data] == ["ready", "area/api"]
    github_client.rest.issues.add_labels(OWNER, REPO, number, labels=["ready"])  # already there
    # A label name is one path segment in GitHub's description; githubkit puts it in the path
    # as it is, so a slash must be percent-encoded by the caller.
    encoded = quote("area/api", safe="")
    removed = github_client.rest.issues.remove_label(OWNER, REPO, number, encoded)
    assert [lab.name for lab in removed.parsed_data] == ["ready"]
    with pytest.raises(RequestFailed) as caught:
        github_client.rest.issues.remove_label(OWNER, REPO, number, encoded)
    assert caught.value.response.status_code == 404
    assert caught.value.response.json()["message"] == "Label does not exist"
    replaced = github_client.rest.issues.set_labels(OWNER, REPO, number, labels=["a", "b"])
    assert [lab.name for lab in replaced.parsed_data] == ["a", "b"]
    github_client.rest.issues.remove_all_labels(OWNER, REPO, number)
    assert fake_github.labels_of(number) == []
    assert [
        lab.name
        for lab in github_client.rest.issues.list_labels_on_issue(OWNER, REPO, number).parsed_data
    ] == []
    repo_labels = github_client.rest.issues.list_labels_for_repo(OWNER, REPO).parsed_data
    assert {lab.name for lab in repo_labels} >= {"ready", "area/api", "a", "b"}


def test_create_label_is_as_strict_as_github(fake_github: FakeGitHub, github_client):
    created = github_client.rest.issues.create_label(
        OWNER, REPO, name="ready", color="0E8A16", description="Go"
    )
    assert created.status_code == 201
    assert github_client.rest.issues.get_label(OWNER, REPO, "Ready").parsed_data.name == "ready"
    refused = [
        ({"name": "READY", "color": "0e8a16"}, {"code": "already_exists", "field": "name"}),
        ({"name": "new", "color": "#0e8a16"}, {"code": "invalid", "field": "color"}),
        ({"name": "new", "color": "green"}, {"code": "invalid", "field": "color"}),
        ({"name": "new", "description": "x" * 101}, {"code": "invalid", "field": "description"}),
    ]
    for body, error in refused:
        reply = httpx.post(
            f"{fake_github.url}/repos/{OWNER}/{REPO}/labels",
            headers={"Authorization": f"token {FAKE_TOKEN}"},
            json=body,
        )
        assert reply.status_code == 422, body
        assert reply.json()["errors"] == [{"resource": "Label", **error}], body
    assert [m.body["name"] for m in fake_github.mutations_named("create_label")] == ["ready"]
    with pytest.raises(RequestFailed) as caught:
        github_client.rest.issues.get_label(OWNER, REPO, "new")
    assert caught.value.response.status_code == 404


def test_labeled_events_name_who_applied_the_label(fake_github: FakeGitHub, github_client):
    number = fake_github.create_issue("Who labeled?", user="mallory")
    fake_github.add_labels(number, "ready", user="mallory")
    fake_github.remove_label(number, "ready", user="maintainer")
    fake_github.add_labels(number, "ready", user="maintainer")
    events = github_client.rest.issues.list_events(OWNER, REPO, number).parsed_data
    assert [(e.event, e.actor.login, e.label.name) for e in events] == [
        ("labeled", "mallory", "ready"),
        ("unlabeled", "maintainer", "ready"),
        ("labeled", "maintainer", "ready"),
    ]
    assert events[0].label.color


def test_label_events_via_api_name_the_token_user(fake_github: FakeGitHub, github_client):
    number = fake_github.create_issue("API labels")
    github_client.rest.issues.add_labels(OWNER, REPO, number, labels=["in-progress"])
    github_client.rest.issues.remove_label(OWNER, REPO, number, "in-progress")
    actors = [(e["event"], e["actor"]["login"]) for e in fake_github.events_of(number)]
    assert actors == [("labeled", "orchestrator-bot"), ("unlabeled", "orchestrator-bot")]


def test_comments_crud_and_author_association(fake_github: FakeGitHub, github_client):
    fake_github.set_permission("carol", "write")
    number = fake_github.create_issue("Talk")
    fake_github.comment(number, "from the owner")
    fake_github.comment(number, "from a collaborator", user="carol")
    fake_github.comment(number, "from a stranger", user="eve")
    fake_github.comment(number, "claims", user="eve", author_association="MEMBER")
    listed = github_client.rest.issues.list_comments(OWNER, REPO, number).parsed_data
    assert [(c.user.login, c.author_association) for c in listed] == [
        ("acme", "OWNER"),
        ("carol", "COLLABORATOR"),
        ("eve", "NONE"),
        ("eve", "MEMBER"),
    ]
    created = github_client.rest.issues.create_comment(OWNER, REPO, number, body="bot says hi")
    assert created.status_code == 201
    ident = created.parsed_data.id
    assert (
        github_client.rest.issues.get_comment(OWNER, REPO, ident).parsed_data.body == "bot says hi"
    )
    edited = github_client.rest.issues.update_comment(OWNER, REPO, ident, body="edited").parsed_data
    assert edited.body == "edited"
    assert github_client.rest.issues.delete_comment(OWNER, REPO, ident).status_code == 204
    with pytest.raises(RequestFailed):
        github_client.rest.issues.get_comment(OWNER, REPO, ident)
    assert github_client.rest.issues.get(OWNER, REPO, number).parsed_data.comments == 4


def test_comment_body_limit_is_65536(fake_github: FakeGitHub, github_client):
    number = fake_github.create_issue("Long")
    github_client.rest.issues.create_comment(OWNER, REPO, number, body="x" * 65536)
    with pytest.raises(RequestFailed) as caught:
        github_client.rest.issues.create_comment(OWNER, REPO, number, body="x" * 65537)
    assert caught.value.response.status_code == 422
    assert "too long" in caught.value.response.json()["errors"][0]["message"]


def test_repo_wide_comments_since_sort_and_pages(
    fake_github: FakeGitHub, fake_clock: FakeClock, git_world: GitWorld, github_client
):
    issue = fake_github.create_issue("Issue")
    pull = open_pull(fake_github, git_world)
    first = fake_github.comment(issue, "first")
    fake_clock.advance(60)
    mark = fake_clock.now()
    fake_clock.advance(1)
    second = fake_github.comment(pull, "/merge", user="carol")
    fake_clock.advance(60)
    fake_github.edit_comment(first, "first, edited")
    listed = github_client.rest.issues.list_comments_for_repo(OWNER, REPO).parsed_data
    assert [c.id for c in listed] == [first, second]
    recent = github_client.rest.issues.list_comments_for_repo(
        OWNER, REPO, since=iso(mark)
    ).parsed_data
    assert [c.id for c in recent] == [first, second]
    newest = github_client.rest.issues.list_comments_for_repo(
        OWNER, REPO, sort="updated", direction="desc"
    ).parsed_data
    assert [c.id for c in newest] == [first, second]
    assert newest[1].issue_url.endswith(f"/issues/{pull}")
    for n in range(40):
        fake_github.comment(issue, f"n{n}")
    everything = list(
        github_client.rest.paginate(
            github_client.rest.issues.list_comments_for_repo, owner=OWNER, repo=REPO, per_page=15
        )
    )
    assert len(everything) == 42


def test_reactions_on_comments_and_issues(fake_github: FakeGitHub, github_client):
    number = fake_github.create_issue("React")
    ident = fake_github.comment(number, "/merge", user="carol")
    first = github_client.rest.reactions.create_for_issue_comment(
        OWNER, REPO, ident, content="eyes"
    )
    again = github_client.rest.reactions.create_for_issue_comment(
        OWNER, REPO, ident, content="eyes"
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.parsed_data.id == again.parsed_data.id
    fake_github.react(ident, "+1", user="carol")
    listed = github_client.rest.reactions.list_for_issue_comment(OWNER, REPO, ident).parsed_data
    assert [(r.user.login, r.content) for r in listed] == [
        ("orchestrator-bot", "eyes"),
        ("carol", "+1"),
    ]
    only = github_client.rest.reactions.list_for_issue_comment(OWNER, REPO, ident, content="+1")
    assert len(only.parsed_data) == 1
    comment = github_client.rest.issues.get_comment(OWNER, REPO, ident).parsed_data
    assert comment.reactions.total_count == 2 and comment.reactions.eyes == 1
    assert fake_github.reactions_on_comment(ident) == ["orchestrator-bot:eyes", "carol:+1"]
    # githubkit refuses an unknown reaction itself, so send it raw.
    with fake_github.expect_violations():
        bad = httpx.post(
            f"{fake_github.url}/repos/{OWNER}/{REPO}/issues/comments/{ident}/reactions",
            json={"content": "party"},
            headers={"Authorization": f"token {FAKE_TOKEN}"},
        )
    assert bad.status_code == 422
    made = github_client.rest.reactions.create_for_issue(OWNER, REPO, number, content="rocket")
    assert made.status_code == 201
    assert len(github_client.rest.reactions.list_for_issue(OWNER, REPO, number).parsed_data) == 1
    github_client.rest.reactions.delete_for_issue(OWNER, REPO, number, made.parsed_data.id)
    github_client.rest.reactions.delete_for_issue_comment(OWNER, REPO, ident, first.parsed_data.id)
    assert fake_github.reactions_on_comment(ident) == ["carol:+1"]


def test_timeline_has_events_comments_and_reviews(
    fake_github: FakeGitHub, fake_clock: FakeClock, git_world: GitWorld, github_client
):
    pull = open_pull(fake_github, git_world)
    fake_github.add_labels(pull, "ready", user="carol")
    fake_clock.advance(1)
    fake_github.comment(pull, "looks good", user="carol")
    fake_clock.advance(1)
    fake_github.review(pull, "nit", "COMMENT", user="carol")
    fake_github.review(pull, "draft thoughts", None, user="dave")  # pending: dave only
    items = github_client.rest.issues.list_events_for_timeline(OWNER, REPO, pull).parsed_data
    assert [type(i).__name__ for i in items] == [
        "LabeledIssueEvent",
        "TimelineCommentEvent",
        "TimelineReviewedEvent",
    ]


def test_since_takes_only_githubs_documented_form(fake_github: FakeGitHub):
    """GitHub documents `since` as YYYY-MM-DDTHH:MM:SSZ; `str(datetime)` once went out and
    GitHub answered 422, so the fake refuses every other spelling too."""
    fake_github.create_issue("at noon")
    headers = {"Authorization": f"token {FAKE_TOKEN}"}
    noon = datetime(2024, 1, 1, 11, 59, 59, tzinfo=timezone.utc)
    url = f"{fake_github.url}/repos/{OWNER}/{REPO}/issues"
    with fake_github.expect_violations():
        for bad in (str(noon), str(noon.replace(tzinfo=None)), "yesterday", ""):
            reply = httpx.get(url, params={"since": bad}, headers=headers)
            assert reply.status_code == 422, bad
            assert reply.json()["message"] == "The since parameter needs to be in ISO 8601 format"
    # RFC 3339 allows an offset, so the description (`format: date-time`) lets this through;
    # GitHub documents only the `Z` form, and the fake answers the rest as GitHub does.
    reply = httpx.get(url, params={"since": noon.isoformat()}, headers=headers)
    assert reply.status_code == 422
    assert reply.json()["message"] == "The since parameter needs to be in ISO 8601 format"
    assert len(httpx.get(url, params={"since": iso(noon)}, headers=headers).json()) == 1
    later = iso(noon + timedelta(seconds=1))
    assert httpx.get(url, params={"since": later}, headers=headers).json() == []
