"""Every route of the fake GitHub, called through githubkit and checked against its models.

githubkit validates each body with the pydantic model generated from GitHub's OpenAPI
description (API version 2026-03-10), so a missing or mistyped field fails here. The test also
fails if the fake sends a field that model does not know (drift from the schema), or if a route
was added to the fake without being exercised here.
"""

from __future__ import annotations

from typing import Any

import pytest
from githubkit.exception import RequestFailed
from githubkit.response import Response
from pydantic import BaseModel

from scripts.orchestrator.fakes.fake_github import FakeGitHub
from scripts.orchestrator.fakes.fake_github.fake import build_router
from scripts.orchestrator.fakes.git_world import GitWorld

from .fixtures_github import make_client

OWNER, REPO = "acme", "widgets"


def unknown_keys(raw: Any, parsed: Any, path: str = "") -> list[str]:
    """Keys in the raw JSON that the parsed model has no field for."""
    if isinstance(parsed, BaseModel) and isinstance(raw, dict):
        fields = {(f.alias or name): name for name, f in type(parsed).model_fields.items()}
        extra = parsed.model_extra or {}
        found: list[str] = []
        for key, value in raw.items():
            if key in extra:
                continue
            if key not in fields:
                found.append(f"{type(parsed).__name__}{path}.{key}")
                continue
            found += unknown_keys(value, getattr(parsed, fields[key]), f"{path}.{key}")
        return found
    if isinstance(parsed, list) and isinstance(raw, list):
        return [
            k for r, p in zip(raw, parsed, strict=True) for k in unknown_keys(r, p, f"{path}[]")
        ]
    return []


def checked(response: Response[Any]) -> Any:
    """Parse (validate) the body and return it, recording any field the schema lacks."""
    parsed = response.parsed_data
    drift = unknown_keys(response.json(), parsed) if response.content else []
    assert drift == [], f"{response.raw_request.url}: fields not in the schema: {drift}"
    return parsed


def test_every_route_matches_githubs_schema(fake_github: FakeGitHub, git_world: GitWorld):
    gh = fake_github
    gh.add_token("reviewer-token", "reviewer")
    api = make_client(gh)
    reviewer = make_client(gh, token="reviewer-token")
    rest = api.rest

    # Repository, user, limits.
    checked(rest.repos.get(OWNER, REPO))
    checked(rest.users.get_authenticated())
    checked(rest.rate_limit.get())
    checked(rest.repos.get_collaborator_permission_level(OWNER, REPO, "someone"))

    # Issues, labels, comments, reactions, events.
    issue = checked(
        rest.issues.create(OWNER, REPO, title="Schema", body="b", labels=["ready"])
    ).number
    gh.add_labels(issue, "bug", user="maintainer")
    checked(rest.issues.get(OWNER, REPO, issue))
    checked(rest.issues.update(OWNER, REPO, issue, title="Schema!", labels=["ready", "x"]))
    checked(rest.issues.list_for_repo(OWNER, REPO, state="all"))
    checked(rest.issues.add_labels(OWNER, REPO, issue, labels=["more"]))
    checked(rest.issues.set_labels(OWNER, REPO, issue, labels=["ready", "more"]))
    checked(rest.issues.remove_label(OWNER, REPO, issue, "more"))
    checked(rest.issues.list_labels_on_issue(OWNER, REPO, issue))
    checked(rest.issues.create_label(OWNER, REPO, name="new-label", color="00ff00"))
    checked(rest.issues.get_label(OWNER, REPO, "new-label"))
    checked(rest.issues.list_labels_for_repo(OWNER, REPO))
    comment = checked(rest.issues.create_comment(OWNER, REPO, issue, body="hello")).id
    checked(rest.issues.get_comment(OWNER, REPO, comment))
    checked(rest.issues.update_comment(OWNER, REPO, comment, body="hello again"))
    checked(rest.issues.list_comments(OWNER, REPO, issue))
    checked(rest.issues.list_comments_for_repo(OWNER, REPO))
    reaction = checked(
        rest.reactions.create_for_issue_comment(OWNER, REPO, comment, content="eyes")
    )
    checked(rest.reactions.list_for_issue_comment(OWNER, REPO, comment))
    rest.reactions.delete_for_issue_comment(OWNER, REPO, comment, reaction.id)
    issue_reaction = checked(rest.reactions.create_for_issue(OWNER, REPO, issue, content="+1"))
    checked(rest.reactions.list_for_issue(OWNER, REPO, issue))
    rest.reactions.delete_for_issue(OWNER, REPO, issue, issue_reaction.id)
    checked(rest.issues.list_events(OWNER, REPO, issue))
    rest.issues.update(OWNER, REPO, issue, state="closed")
    # Not list_events: githubkit's model for it has no `closed` event (see the test below).
    checked(rest.issues.list_events_for_timeline(OWNER, REPO, issue))

    # Pull requests, reviews, CI, merging, refs.
    git_world.push_branch("feature/schema", {"s.py": "s = 1\n"})
    pull = checked(
        rest.pulls.create(
            OWNER,
            REPO,
            title="Schema PR",
            head="feature/schema",
            base="main",
            body=f"Fixes #{issue}",
        )
    ).number
    head = checked(rest.pulls.get(OWNER, REPO, pull)).head.sha
    checked(rest.pulls.list(OWNER, REPO))
    checked(rest.pulls.update(OWNER, REPO, pull, body="Updated"))
    checked(rest.pulls.list_files(OWNER, REPO, pull))
    checked(rest.pulls.list_commits(OWNER, REPO, pull))
    review = checked(
        reviewer.rest.pulls.create_review(OWNER, REPO, pull, event="APPROVE", body="ok")
    )
    checked(rest.pulls.get_review(OWNER, REPO, pull, review.id))
    checked(rest.pulls.list_reviews(OWNER, REPO, pull))
    thread = [{"path": "s.py", "line": 1, "body": "why 1?"}]
    reviewer.rest.pulls.create_review(OWNER, REPO, pull, event="COMMENT", body="b", comments=thread)
    first = checked(rest.pulls.list_review_comments(OWNER, REPO, pull))[0].id
    checked(rest.pulls.create_reply_for_review_comment(OWNER, REPO, pull, first, body="why not"))
    gh.set_permission("maintainer", "write")
    checked(rest.pulls.request_reviewers(OWNER, REPO, pull, reviewers=["maintainer"]))
    checked(rest.pulls.list_requested_reviewers(OWNER, REPO, pull))
    checked(rest.pulls.remove_requested_reviewers(OWNER, REPO, pull, reviewers=["maintainer"]))
    gh.comment(pull, "/merge", user="maintainer")
    checked(rest.issues.list_events_for_timeline(OWNER, REPO, pull))
    gh.set_check_run(head, "tests")
    gh.set_status(head, "ci/legacy", "success")
    checked(rest.checks.list_for_ref(OWNER, REPO, head))
    checked(rest.repos.get_combined_status_for_ref(OWNER, REPO, head))
    checked(rest.repos.list_commit_statuses_for_ref(OWNER, REPO, head))
    checked(rest.git.get_ref(OWNER, REPO, "heads/feature/schema"))

    # Files (a file, a directory) and comments on commits.
    gh.commit("feature/files", {"pkg/a.py": "a = 1\n", "pkg/b.py": "b = 2\n"})
    checked(rest.repos.get_content(OWNER, REPO, "calc.py"))
    checked(rest.repos.get_content(OWNER, REPO, "pkg", ref="feature/files"))
    checked(rest.repos.get_content(OWNER, REPO, "s.py", ref=head))
    checked(rest.repos.create_commit_comment(OWNER, REPO, head, body="Nice"))
    checked(
        rest.repos.create_commit_comment(OWNER, REPO, head, body="Here", path="s.py", position=1)
    )
    checked(rest.repos.list_comments_for_commit(OWNER, REPO, head))
    checked(rest.pulls.merge(OWNER, REPO, pull, merge_method="squash", sha=head))
    assert rest.pulls.check_if_merged(OWNER, REPO, pull).status_code == 204
    checked(rest.pulls.get(OWNER, REPO, pull))
    assert rest.git.delete_ref(OWNER, REPO, "heads/feature/schema").status_code == 204
    assert rest.issues.remove_all_labels(OWNER, REPO, issue).status_code == 204
    assert rest.issues.delete_comment(OWNER, REPO, comment).status_code == 204

    # A fork's pull request and a timeline with every kind of item.
    fork = gh.create_fork_pull(
        "Fork", fork_owner="outsider", head_ref="patch-1", files={"f.txt": "f\n"}
    )
    checked(rest.pulls.get(OWNER, REPO, fork))
    checked(rest.pulls.list(OWNER, REPO, state="all"))

    exercised = {r.route for r in gh.requests}
    routes = {route.name for route in build_router().routes}
    assert routes - exercised == set(), "routes not checked against the schema"


def test_githubkit_cannot_parse_closed_events_from_list_events(
    fake_github: FakeGitHub, github_client
):
    """A trap of the real API, kept faithfully: read `/events` raw, or use the timeline.

    GitHub lists `closed`/`reopened`/`merged` events in `/issues/{n}/events`, but githubkit's
    response model for that endpoint has no variant for them, so `parsed_data` raises.
    """
    number = fake_github.create_issue("Closing")
    fake_github.close_issue(number)
    response = github_client.rest.issues.list_events(OWNER, REPO, number)
    assert [e["event"] for e in response.json()] == ["closed"]
    with pytest.raises(ValueError, match="validation error"):
        _ = response.parsed_data
    timeline = github_client.rest.issues.list_events_for_timeline(OWNER, REPO, number).parsed_data
    assert [type(t).__name__ for t in timeline] == ["StateChangeIssueEvent"]


@pytest.mark.parametrize(
    ("call", "status"),
    [
        (lambda rest: rest.issues.get(OWNER, REPO, 404), 404),
        (lambda rest: rest.issues.create(OWNER, REPO, title=""), 422),
        (lambda rest: rest.pulls.create(OWNER, REPO, title="t", head="nope", base="main"), 422),
        (lambda rest: rest.pulls.merge(OWNER, REPO, 1, sha="0" * 40), 409),
        (lambda rest: rest.pulls.create_review(OWNER, REPO, 1, event="APPROVE"), 422),
    ],
)
def test_error_bodies_match_githubs_error_models(
    fake_github: FakeGitHub, git_world: GitWorld, github_client, call, status: int
):
    git_world.push_branch("feature/e", {"e.txt": "e\n"})
    github_client.rest.pulls.create(OWNER, REPO, title="Mine", head="feature/e", base="main")
    with pytest.raises(RequestFailed) as caught:
        call(github_client.rest)
    response = caught.value.response
    assert response.status_code == status
    error = response.parsed_data
    assert isinstance(error, BaseModel)
    assert error.message  # type: ignore[attr-defined]


def test_not_mergeable_error_parses(fake_github: FakeGitHub, git_world: GitWorld, github_client):
    git_world.push_branch("feature/c", {"README.md": "theirs\n"})
    number = fake_github.create_pull("Conflict", "feature/c")
    git_world.push_branch("main", {"README.md": "ours\n"})
    with pytest.raises(RequestFailed) as caught:
        github_client.rest.pulls.merge(OWNER, REPO, number)
    assert type(caught.value.response.parsed_data).__name__ == (
        "ReposOwnerRepoPullsPullNumberMergePutResponse405"
    )
