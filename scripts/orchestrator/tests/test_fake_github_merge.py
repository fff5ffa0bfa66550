"""Merging in the fake GitHub: real squash commits, 405/409/422 refusals, closing keywords."""

from __future__ import annotations

import pytest
from githubkit.exception import RequestFailed

from scripts.orchestrator.fakes.fake_github import FakeGitHub
from scripts.orchestrator.fakes.git_world import GitWorld, git

from .fixtures_github import FAKE_TOKEN, make_client

OWNER, REPO = "acme", "widgets"


def refusal(caught: pytest.ExceptionInfo[RequestFailed]) -> tuple[int, str]:
    return caught.value.response.status_code, caught.value.response.json()["message"]


def test_squash_merge_makes_one_real_commit_on_base(
    fake_github: FakeGitHub, git_world: GitWorld, github_client
):
    old_main = git_world.sha("main")
    git_world.push_branch("feature/issue-1", {"calc.py": "# one\n"}, "one")
    head = git_world.push_branch("feature/issue-1", {"extra.py": "x = 1\n"}, "two")
    number = fake_github.create_pull("Add things", "feature/issue-1", user="alice")
    result = github_client.rest.pulls.merge(
        OWNER, REPO, number, merge_method="squash", sha=head, commit_title="Add things (#2)"
    ).parsed_data
    assert result.merged is True
    assert result.message == "Pull Request successfully merged"
    new_main = git_world.sha("main")
    assert result.sha == new_main
    assert git(git_world.origin, "rev-parse", f"{new_main}^@").split() == [old_main]
    assert git_world.file_at("main", "calc.py") == "# one"
    assert git_world.file_at("main", "extra.py") == "x = 1"
    message = git(git_world.origin, "log", "-1", "--format=%B", "main")
    assert message.startswith("Add things (#2)\n\n* one\n\n* two")
    author = git(git_world.origin, "log", "-1", "--format=%an <%ae> / %cn", "main")
    assert author.startswith("alice <") and author.endswith("/ GitHub")
    pr = github_client.rest.pulls.get(OWNER, REPO, number).parsed_data
    assert (pr.state, pr.merged, pr.mergeable) == ("closed", True, None)
    assert pr.merged_at is not None and pr.merged_by and pr.merged_by.login == "orchestrator-bot"
    assert pr.head.sha == head and pr.base.sha == old_main
    events = [e["event"] for e in fake_github.events_of(number)]
    assert events[-2:] == ["merged", "closed"]
    assert github_client.rest.pulls.check_if_merged(OWNER, REPO, number).status_code == 204


def test_merge_commit_method_has_two_parents(
    fake_github: FakeGitHub, git_world: GitWorld, github_client
):
    old_main = git_world.sha("main")
    head = git_world.push_branch("feature/m", {"m.txt": "m\n"})
    number = fake_github.create_pull("Merge me", "feature/m")
    github_client.rest.pulls.merge(OWNER, REPO, number, merge_method="merge")
    assert git(git_world.origin, "rev-parse", "main^@").split() == [old_main, head]
    assert git(git_world.origin, "log", "-1", "--format=%s", "main") == (
        f"Merge pull request #{number} from acme/feature/m"
    )


def test_stale_sha_is_409_and_nothing_merges(
    fake_github: FakeGitHub, git_world: GitWorld, github_client
):
    tested = git_world.push_branch("feature/s", {"s.txt": "1\n"})
    number = fake_github.create_pull("Stale", "feature/s")
    git_world.push_branch("feature/s", {"s.txt": "2\n"})
    before = git_world.sha("main")
    with pytest.raises(RequestFailed) as caught:
        github_client.rest.pulls.merge(OWNER, REPO, number, merge_method="squash", sha=tested)
    assert refusal(caught) == (409, "Head branch was modified. Review and try the merge again.")
    assert git_world.sha("main") == before
    assert fake_github.mutations_named("merge_pull") == []


def test_conflict_is_405_not_mergeable(fake_github: FakeGitHub, git_world: GitWorld, github_client):
    git_world.push_branch("feature/c", {"README.md": "theirs\n"})
    number = fake_github.create_pull("Conflict", "feature/c")
    git_world.push_branch("main", {"README.md": "ours\n"})
    with pytest.raises(RequestFailed) as caught:
        github_client.rest.pulls.merge(OWNER, REPO, number, merge_method="squash")
    assert refusal(caught) == (405, "Pull Request is not mergeable")


def test_merged_draft_and_disallowed_methods_are_refused(
    fake_github: FakeGitHub, git_world: GitWorld, github_client
):
    git_world.push_branch("feature/a", {"a.txt": "a\n"})
    git_world.push_branch("feature/d", {"d.txt": "d\n"})
    done = fake_github.create_pull("A", "feature/a")
    draft = fake_github.create_pull("D", "feature/d", draft=True)
    with pytest.raises(RequestFailed) as caught:
        github_client.rest.pulls.merge(OWNER, REPO, done, merge_method="rebase")
    assert refusal(caught) == (405, "Rebase merges are not allowed on this repository.")
    github_client.rest.pulls.merge(OWNER, REPO, done, merge_method="squash")
    with pytest.raises(RequestFailed) as caught:
        github_client.rest.pulls.merge(OWNER, REPO, done, merge_method="squash")
    assert refusal(caught) == (405, "Pull Request is not mergeable")
    with pytest.raises(RequestFailed) as caught:
        github_client.rest.pulls.merge(OWNER, REPO, draft, merge_method="squash")
    assert refusal(caught)[0] == 405


def test_closing_keywords_close_issues_on_default_branch(
    fake_github: FakeGitHub, git_world: GitWorld, github_client
):
    one = fake_github.create_issue("one")
    two = fake_github.create_issue("two")
    three = fake_github.create_issue("three")
    untouched = fake_github.create_issue("mentioned only")
    git_world.push_branch("feature/k", {"k.txt": "k\n"})
    body = f"FIXES #{one}, closes: #{two}\nResolved acme/widgets#{three}. See #{untouched}."
    number = fake_github.create_pull("Keywords", "feature/k", body=body)
    github_client.rest.pulls.merge(OWNER, REPO, number, merge_method="squash")
    states = {n: fake_github.issue(n)["state"] for n in (one, two, three, untouched)}
    assert states == {one: "closed", two: "closed", three: "closed", untouched: "open"}
    closed = fake_github.events_of(one)[-1]
    assert closed["event"] == "closed" and closed["commit_id"] == git_world.sha("main")
    assert fake_github.issue(one)["state_reason"] == "completed"


def test_closing_keywords_ignored_off_the_default_branch(
    fake_github: FakeGitHub, git_world: GitWorld, github_client
):
    issue = fake_github.create_issue("one")
    git_world.push_branch("release", {"r.txt": "r\n"})
    git_world.push_branch("feature/r", {"k.txt": "k\n"}, base="release")
    number = fake_github.create_pull(
        "To release", "feature/r", base="release", body=f"Fixes #{issue}"
    )
    github_client.rest.pulls.merge(OWNER, REPO, number, merge_method="squash")
    assert fake_github.issue(issue)["state"] == "open"
    assert git_world.file_at("release", "k.txt") == "k"


def test_closing_issues_on_merge_can_be_switched_off(git_world: GitWorld):
    with FakeGitHub(
        git_world.origin, token=FAKE_TOKEN, close_issues_on_merge=False, delete_branch_on_merge=True
    ) as gh:
        issue = gh.create_issue("leftover")
        git_world.push_branch("feature/z", {"z.txt": "z\n"})
        number = gh.create_pull("Z", "feature/z", body=f"Closes #{issue}")
        client = make_client(gh)  # keep a reference: githubkit's namespaces hold it weakly
        client.rest.pulls.merge(OWNER, REPO, number, merge_method="squash")
        assert gh.issue(issue)["state"] == "open"
        assert not git_world.branch_exists("feature/z")


def test_delete_branch_ref(fake_github: FakeGitHub, git_world: GitWorld, github_client):
    git_world.push_branch("feature/issue-9", {"n.txt": "n\n"})
    assert github_client.rest.git.get_ref(
        OWNER, REPO, "heads/feature/issue-9"
    ).parsed_data.object_.sha == (git_world.sha("feature/issue-9"))
    reply = github_client.rest.git.delete_ref(OWNER, REPO, "heads/feature/issue-9")
    assert reply.status_code == 204
    assert not git_world.branch_exists("feature/issue-9")
    with pytest.raises(RequestFailed) as caught:
        github_client.rest.git.delete_ref(OWNER, REPO, "heads/feature/issue-9")
    assert refusal(caught) == (422, "Reference does not exist")


def test_deleting_an_open_pulls_head_branch_closes_it(
    fake_github: FakeGitHub, git_world: GitWorld, github_client
):
    head = git_world.push_branch("feature/gone", {"g.txt": "g\n"})
    number = fake_github.create_pull("Gone", "feature/gone")
    github_client.rest.git.delete_ref(OWNER, REPO, "heads/feature/gone")
    pr = github_client.rest.pulls.get(OWNER, REPO, number).parsed_data
    assert (pr.state, pr.merged, pr.head.sha) == ("closed", False, head)
    assert [e["event"] for e in fake_github.events_of(number)][-2:] == [
        "head_ref_deleted",
        "closed",
    ]
