"""Repository-level answers of the fake GitHub: CI results, permissions, the repo and the user."""

from __future__ import annotations

import pytest
from githubkit.exception import RequestFailed

from scripts.orchestrator.fakes.fake_github import FakeGitHub
from scripts.orchestrator.fakes.git_world import GitWorld

from .fixtures_github import FAKE_TOKEN, make_client

OWNER, REPO = "acme", "widgets"


def test_combined_status_is_pending_without_statuses(
    fake_github: FakeGitHub, git_world: GitWorld, github_client
):
    sha = git_world.sha("main")
    combined = github_client.rest.repos.get_combined_status_for_ref(OWNER, REPO, sha).parsed_data
    assert (combined.state, combined.total_count, combined.statuses) == ("pending", 0, [])
    assert combined.sha == sha


@pytest.mark.parametrize(
    ("reports", "expected"),
    [
        ([("ci", "success")], "success"),
        ([("ci", "success"), ("lint", "pending")], "pending"),
        ([("ci", "success"), ("lint", "failure")], "failure"),
        ([("ci", "pending"), ("lint", "error")], "failure"),
        ([("ci", "failure"), ("ci", "success")], "success"),  # the newest per context counts
    ],
)
def test_combined_status_state(
    fake_github: FakeGitHub, github_client, reports: list[tuple[str, str]], expected: str
):
    for context, state in reports:
        fake_github.set_status("main", context, state)
    combined = github_client.rest.repos.get_combined_status_for_ref(OWNER, REPO, "main").parsed_data
    assert combined.state == expected
    assert combined.total_count == len({c for c, _ in reports})


def test_check_runs_latest_per_name_and_filters(
    fake_github: FakeGitHub, git_world: GitWorld, github_client
):
    sha = git_world.push_branch("feature/ci", {"c.txt": "c\n"})
    fake_github.set_check_run(sha, "tests", conclusion="failure")
    fake_github.set_check_run(sha, "tests", conclusion="success")
    fake_github.set_check_run("feature/ci", "lint", status="in_progress")
    fake_github.set_check_run("main", "tests", conclusion="failure")  # another commit
    runs = github_client.rest.checks.list_for_ref(OWNER, REPO, sha).parsed_data
    assert runs.total_count == 2
    assert {(r.name, r.status, r.conclusion) for r in runs.check_runs} == {
        ("tests", "completed", "success"),
        ("lint", "in_progress", None),
    }
    assert all(r.head_sha == sha for r in runs.check_runs)
    by_branch = github_client.rest.checks.list_for_ref(OWNER, REPO, "feature/ci").parsed_data
    assert by_branch.total_count == 2
    every = github_client.rest.checks.list_for_ref(OWNER, REPO, sha, filter_="all").parsed_data
    assert every.total_count == 3
    named = github_client.rest.checks.list_for_ref(OWNER, REPO, sha, check_name="lint").parsed_data
    assert [r.name for r in named.check_runs] == ["lint"]
    paged = github_client.rest.checks.list_for_ref(OWNER, REPO, sha, per_page=1).parsed_data
    assert (paged.total_count, len(paged.check_runs)) == (2, 1)


def test_unknown_ref_is_refused(fake_github: FakeGitHub, github_client):
    with pytest.raises(RequestFailed) as caught:
        github_client.rest.checks.list_for_ref(OWNER, REPO, "no-such-branch")
    assert caught.value.response.status_code == 422


@pytest.mark.parametrize(
    ("role", "permission"),
    [
        ("admin", "admin"),
        ("maintain", "write"),
        ("write", "write"),
        ("triage", "read"),
        ("read", "read"),
        ("none", "none"),
    ],
)
def test_permission_legacy_field_and_role_name(
    fake_github: FakeGitHub, github_client, role: str, permission: str
):
    fake_github.set_permission("carol", role)
    answer = github_client.rest.repos.get_collaborator_permission_level(
        OWNER, REPO, "carol"
    ).parsed_data
    assert (answer.permission, answer.role_name) == (permission, role)
    assert answer.user and answer.user.login == "carol"


def test_permission_defaults(fake_github: FakeGitHub, git_world: GitWorld, github_client):
    def level(login: str) -> str:
        return str(
            github_client.rest.repos.get_collaborator_permission_level(
                OWNER, REPO, login
            ).parsed_data.permission
        )

    assert level("acme") == "admin"
    assert level("orchestrator-bot") == "write"
    assert level("stranger") == "read"  # anyone can read a public repository
    with FakeGitHub(git_world.origin, token=FAKE_TOKEN, private=True) as private:
        client = make_client(private)
        answer = client.rest.repos.get_collaborator_permission_level(OWNER, REPO, "stranger")
        assert answer.parsed_data.permission == "none"


def test_repository_and_authenticated_user(fake_github: FakeGitHub, github_client):
    repo = github_client.rest.repos.get(OWNER, REPO).parsed_data
    assert (repo.full_name, repo.default_branch, repo.private) == ("acme/widgets", "main", False)
    assert repo.permissions and repo.permissions.push and not repo.permissions.admin
    assert repo.clone_url == str(fake_github.store.origin)
    me = github_client.rest.users.get_authenticated().parsed_data
    assert me.login == "orchestrator-bot"
