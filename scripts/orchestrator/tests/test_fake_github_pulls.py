"""Pull requests in the fake GitHub: creation rules, heads from git, forks, files, reviews."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

import pytest
from githubkit.exception import RequestFailed

from scripts.orchestrator.fakes.fake_github import FakeClock, FakeGitHub
from scripts.orchestrator.fakes.fake_github.clock import iso
from scripts.orchestrator.fakes.git_world import GitWorld, git

from .fixtures_github import make_client

OWNER, REPO = "acme", "widgets"


def error_of(caught: pytest.ExceptionInfo[RequestFailed]) -> tuple[int, dict[str, Any]]:
    return caught.value.response.status_code, caught.value.response.json()


def test_create_pull_via_api(fake_github: FakeGitHub, git_world: GitWorld, github_client):
    head = git_world.push_branch("feature/issue-1", {"calc.py": "# changed\n"}, "Change calc")
    made = github_client.rest.pulls.create(
        OWNER, REPO, title="Fix #1", head="feature/issue-1", base="main", body="Closes #1"
    )
    assert made.status_code == 201
    pr = made.parsed_data
    assert (pr.number, pr.state, pr.draft, pr.merged) == (1, "open", False, False)
    assert (pr.head.ref, pr.head.sha, pr.head.label) == (
        "feature/issue-1",
        head,
        "acme:feature/issue-1",
    )
    assert (pr.base.ref, pr.base.sha) == ("main", git_world.sha("main"))
    assert pr.head.repo and pr.head.repo.full_name == "acme/widgets"
    assert pr.user.login == "orchestrator-bot"
    assert (pr.commits, pr.changed_files, pr.additions, pr.deletions) == (1, 1, 1, 5)
    assert git_world.sha("refs/pull/1/head") == head
    assert fake_github.issue(1)["pull_request"]["url"].endswith("/pulls/1")


def test_duplicate_pull_is_422_with_githubs_message(
    fake_github: FakeGitHub, git_world: GitWorld, github_client
):
    git_world.push_branch("feature/issue-1", {"a.txt": "a\n"})
    github_client.rest.pulls.create(OWNER, REPO, title="One", head="feature/issue-1", base="main")
    with pytest.raises(RequestFailed) as caught:
        github_client.rest.pulls.create(
            OWNER, REPO, title="Two", head="acme:feature/issue-1", base="main"
        )
    status, body = error_of(caught)
    assert status == 422
    assert body["message"] == "Validation Failed"
    assert body["errors"][0]["message"] == "A pull request already exists for acme:feature/issue-1."


def test_pull_needs_an_existing_head_with_commits(
    fake_github: FakeGitHub, git_world: GitWorld, github_client
):
    with pytest.raises(RequestFailed) as caught:
        github_client.rest.pulls.create(OWNER, REPO, title="Ghost", head="nope", base="main")
    status, body = error_of(caught)
    assert status == 422
    assert body["errors"][0] == {"resource": "PullRequest", "field": "head", "code": "invalid"}
    git(git_world.origin, "branch", "same-as-main", "main")
    with pytest.raises(RequestFailed) as caught:
        github_client.rest.pulls.create(
            OWNER, REPO, title="Empty", head="same-as-main", base="main"
        )
    assert error_of(caught)[1]["errors"][0]["message"] == "No commits between main and same-as-main"


def test_list_pulls_filters(
    fake_github: FakeGitHub, fake_clock: FakeClock, git_world: GitWorld, github_client
):
    git_world.push_branch("release", {"r.txt": "r\n"})
    git_world.push_branch("feature/a", {"a.txt": "a\n"})
    git_world.push_branch("feature/b", {"b.txt": "b\n"})
    a = fake_github.create_pull("A", "feature/a")
    b = fake_github.create_pull("B", "feature/b", base="release")
    fork = fake_github.create_fork_pull(
        "F", fork_owner="outsider", head_ref="feature/a", files={"f.txt": "f\n"}
    )
    fake_github.create_issue("plain issue")

    def numbers(**query) -> list[int]:
        return [p.number for p in github_client.rest.pulls.list(OWNER, REPO, **query).parsed_data]

    assert numbers() == [fork, b, a]
    assert numbers(head="acme:feature/a") == [a]
    assert numbers(head="outsider:feature/a") == [fork]
    assert numbers(base="release") == [b]
    assert numbers(direction="asc") == [a, b, fork]
    fake_clock.advance(5)
    github_client.rest.pulls.update(OWNER, REPO, a, state="closed")
    assert numbers(state="closed") == [a]
    assert numbers(state="all", sort="updated", direction="desc")[0] == a


def test_head_sha_follows_pushes_and_pull_ref_moves_on_push(
    fake_github: FakeGitHub, git_world: GitWorld, github_client
):
    first = git_world.push_branch("feature/x", {"x.txt": "1\n"})
    number = fake_github.create_pull("X", "feature/x")
    second = git_world.push_branch("feature/x", {"x.txt": "2\n"})
    # Origin's hook moved the pull ref on the push itself, before any API call.
    assert git_world.sha(f"refs/pull/{number}/head") == second != first
    assert github_client.rest.pulls.get(OWNER, REPO, number).parsed_data.head.sha == second
    listed = github_client.rest.pulls.list(OWNER, REPO).parsed_data
    assert listed[0].head.sha == second
    third = fake_github.commit("feature/x", {"x.txt": "3\n"}, "third")
    assert github_client.rest.pulls.get(OWNER, REPO, number).parsed_data.head.sha == third
    assert git_world.sha(f"refs/pull/{number}/head") == third


def test_mergeable_from_a_real_trial_merge(
    fake_github: FakeGitHub, git_world: GitWorld, github_client
):
    git_world.push_branch("feature/ok", {"new.txt": "new\n"})
    git_world.push_branch("feature/clash", {"README.md": "theirs\n"})
    ok = fake_github.create_pull("OK", "feature/ok")
    clash = fake_github.create_pull("Clash", "feature/clash")
    git_world.push_branch("main", {"README.md": "ours\n"})
    good = github_client.rest.pulls.get(OWNER, REPO, ok).parsed_data
    assert (good.mergeable, good.mergeable_state) == (True, "clean")
    # API version 2026-03-10 has no `merge_commit_sha`; the test merge is refs/pull/N/merge.
    merge_ref = git_world.sha(f"refs/pull/{ok}/merge")
    assert git_world.file_at(merge_ref, "new.txt") == "new"
    assert git_world.file_at(merge_ref, "README.md") == "ours"
    bad = github_client.rest.pulls.get(OWNER, REPO, clash).parsed_data
    assert (bad.mergeable, bad.mergeable_state) == (False, "dirty")


def test_mergeable_can_be_unknown_then_computed(
    fake_github: FakeGitHub, git_world: GitWorld, github_client
):
    git_world.push_branch("feature/x", {"x.txt": "x\n"})
    number = fake_github.create_pull("X", "feature/x")
    fake_github.set_mergeable_unknown(number, times=1)
    first = github_client.rest.pulls.get(OWNER, REPO, number).parsed_data
    assert (first.mergeable, first.mergeable_state) == (None, "unknown")
    assert github_client.rest.pulls.get(OWNER, REPO, number).parsed_data.mergeable is True


def test_draft_and_failing_checks_show_in_mergeable_state(
    fake_github: FakeGitHub, git_world: GitWorld, github_client
):
    git_world.push_branch("feature/d", {"d.txt": "d\n"})
    git_world.push_branch("feature/c", {"c.txt": "c\n"})
    draft = fake_github.create_pull("Draft", "feature/d", draft=True)
    checked = fake_github.create_pull("Checked", "feature/c")
    fake_github.set_check_run("feature/c", "tests", conclusion="failure")
    assert github_client.rest.pulls.get(OWNER, REPO, draft).parsed_data.mergeable_state == "draft"
    assert (
        github_client.rest.pulls.get(OWNER, REPO, checked).parsed_data.mergeable_state == "unstable"
    )
    fake_github.set_check_run("feature/c", "tests", conclusion="success")
    assert github_client.rest.pulls.get(OWNER, REPO, checked).parsed_data.mergeable_state == "clean"


def test_fork_pull_head_exists_only_as_pull_ref(
    fake_github: FakeGitHub, git_world: GitWorld, github_client
):
    number = fake_github.create_fork_pull(
        "From a fork", fork_owner="outsider", head_ref="main", files={"calc.py": "# fork\n"}
    )
    pr = github_client.rest.pulls.get(OWNER, REPO, number).parsed_data
    assert pr.head.ref == "main" and pr.head.label == "outsider:main"
    assert pr.head.repo and pr.head.repo.full_name == "outsider/widgets" and pr.head.repo.fork
    assert pr.head.repo.id != pr.base.repo.id
    assert pr.user.login == "outsider" and pr.author_association == "NONE"
    assert git_world.sha(f"refs/pull/{number}/head") == pr.head.sha
    assert git_world.sha("main") != pr.head.sha  # the fork's "main" is not origin's main
    git(git_world.clone, "fetch", "--quiet", "origin", f"refs/pull/{number}/head")
    assert git(git_world.clone, "rev-parse", "FETCH_HEAD") == pr.head.sha
    new = fake_github.push_to_fork_pull(number, {"calc.py": "# fork v2\n"})
    assert github_client.rest.pulls.get(OWNER, REPO, number).parsed_data.head.sha == new


def test_files_and_commits(fake_github: FakeGitHub, git_world: GitWorld, github_client):
    git_world.push_branch("feature/f", {"added.txt": "a\nb\n", "README.md": None}, "First")
    git_world.push_branch("feature/f", {"calc.py": "# only a comment\n"}, "Second\n\nWith body")
    number = fake_github.create_pull("Files", "feature/f")
    files = github_client.rest.pulls.list_files(OWNER, REPO, number).parsed_data
    by_name = {f.filename: f for f in files}
    assert {n: f.status for n, f in by_name.items()} == {
        "added.txt": "added",
        "README.md": "removed",
        "calc.py": "modified",
    }
    assert (by_name["added.txt"].additions, by_name["added.txt"].deletions) == (2, 0)
    assert by_name["added.txt"].patch and "+a" in by_name["added.txt"].patch
    commits = github_client.rest.pulls.list_commits(OWNER, REPO, number).parsed_data
    assert [c.commit.message for c in commits] == ["First", "Second\n\nWith body"]
    assert commits[1].parents[0].sha == commits[0].sha


def test_renamed_file_shows_previous_filename(
    fake_github: FakeGitHub, git_world: GitWorld, github_client
):
    readme = git_world.file_at("main", "README.md")
    git_world.push_branch("feature/mv", {"README.md": None, "docs/README.md": readme + "\n"})
    number = fake_github.create_pull("Move", "feature/mv")
    (entry,) = github_client.rest.pulls.list_files(OWNER, REPO, number).parsed_data
    assert (entry.status, entry.filename, entry.previous_filename) == (
        "renamed",
        "docs/README.md",
        "README.md",
    )


def test_update_pull_title_body_state(fake_github: FakeGitHub, git_world: GitWorld, github_client):
    git_world.push_branch("feature/u", {"u.txt": "u\n"})
    number = fake_github.create_pull("Old", "feature/u")
    pr = github_client.rest.pulls.update(OWNER, REPO, number, title="New", body="Body").parsed_data
    assert (pr.title, pr.body) == ("New", "Body")
    closed = github_client.rest.pulls.update(OWNER, REPO, number, state="closed").parsed_data
    assert (closed.state, closed.merged) == ("closed", False)
    assert (
        github_client.rest.pulls.update(OWNER, REPO, number, state="open").parsed_data.state
        == "open"
    )


def test_reviews(fake_github: FakeGitHub, git_world: GitWorld, github_client):
    head = git_world.push_branch("feature/r", {"r.txt": "r\n"})
    mine = github_client.rest.pulls.create(OWNER, REPO, title="Mine", head="feature/r", base="main")
    number = mine.parsed_data.number
    made = github_client.rest.pulls.create_review(
        OWNER, REPO, number, body="Looks fine", event="COMMENT"
    )
    review = made.parsed_data
    assert (review.state, review.commit_id, review.user.login) == (
        "COMMENTED",
        head,
        "orchestrator-bot",
    )
    assert review.submitted_at is not None
    for event in ("APPROVE", "REQUEST_CHANGES"):
        with pytest.raises(RequestFailed) as caught:
            github_client.rest.pulls.create_review(OWNER, REPO, number, body="x", event=event)
        status, body = error_of(caught)
        assert status == 422 and "your own pull request" in body["errors"][0]
    fake_github.add_token("reviewer-token", "reviewer")
    other = make_client(fake_github, token="reviewer-token")
    approved = other.rest.pulls.create_review(OWNER, REPO, number, event="APPROVE").parsed_data
    assert approved.state == "APPROVED"
    other.rest.pulls.create_review(OWNER, REPO, number, body="later")  # no event: PENDING
    states = [
        r.state for r in github_client.rest.pulls.list_reviews(OWNER, REPO, number).parsed_data
    ]
    assert states == ["COMMENTED", "APPROVED"]  # the reviewer's pending review is private
    # cast: githubkit's `list[...]` annotations resolve to its methods named `list` under mypy.
    own_view = cast(Any, other.rest.pulls.list_reviews(OWNER, REPO, number).parsed_data)
    assert own_view[-1].state == "PENDING"
    got = github_client.rest.pulls.get_review(OWNER, REPO, number, approved.id).parsed_data
    assert got.user and got.user.login == "reviewer"
    with pytest.raises(RequestFailed):
        github_client.rest.pulls.create_review(OWNER, REPO, number, event="REQUEST_CHANGES")


def test_pull_endpoints_404_for_an_issue_number(fake_github: FakeGitHub, github_client):
    number = fake_github.create_issue("Not a PR")
    with pytest.raises(RequestFailed) as caught:
        github_client.rest.pulls.get(OWNER, REPO, number)
    assert caught.value.response.status_code == 404


def test_a_push_bumps_the_pulls_updated_at(
    fake_github: FakeGitHub, fake_clock: FakeClock, git_world: GitWorld, github_client
):
    git_world.push_branch("feature/p", {"p.txt": "1\n"})
    number = fake_github.create_pull("Pushed", "feature/p")
    fake_clock.advance(600)
    mark = fake_clock.now()
    listed = github_client.rest.issues.list_for_repo(OWNER, REPO, since=iso(mark)).parsed_data
    assert listed == []
    fake_clock.advance(1)
    git_world.push_branch("feature/p", {"p.txt": "2\n"})
    listed = github_client.rest.issues.list_for_repo(OWNER, REPO, since=iso(mark)).parsed_data
    assert [i.number for i in listed] == [number]
    assert listed[0].updated_at == mark + timedelta(seconds=1)
