"""Unit tests of the merge workflow through the port fakes: every decision, as the workflow acts."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from scripts.orchestrator.core.errors import GitHubError
from scripts.orchestrator.core.redact import REDACTED
from scripts.orchestrator.core.work import PassedCommand, Status
from scripts.orchestrator.workflows.merge import CI_POLL

from .merge_rig import COMMANDS, Rig, build, moves_main, rig
from .ports_fakes import UNIT_TOKEN, sha
from .ports_fakes_github import RecordingGitHub

__all__ = ["build", "rig"]  # fixtures


# -- a merge from start to end ------------------------------------------------------------------


async def test_a_request_is_tested_on_the_base_then_merged_and_cleaned_up(rig: Rig) -> None:
    issue = rig.gh.add_issue("Bug")
    number = rig.gh.add_pull(body=f"Fixes #{issue}")
    head, main = rig.request(number), rig.gh.remote.branches["main"]
    facts_at_merge_call: list[str | None] = []
    rig.gh.before("merge_pull", lambda *_: facts_at_merge_call.append(
        rig.item(number).merge.merging_head))  # fmt: skip

    await rig.wf.run(number)

    assert rig.git.called("merge_worktree") == [(f"merge-{number}", main, head)]
    [(commands, cwd, timeout)] = rig.checks.called("run")
    assert (commands, timeout) == (COMMANDS, 60.0) and cwd not in rig.git.worktrees
    assert rig.gh.called("merge_pull") == [
        (number, head, f"A change (#{number})", f"Fixes #{issue}")
    ]
    assert facts_at_merge_call == [head]  # recorded before the call: a lost answer is ours
    merged = rig.gh.remote.branches["main"]
    assert rig.gh.pulls[number].merged and "topic" not in rig.gh.remote.branches
    assert rig.gh.issues[issue].state == "closed"
    summary = rig.one_comment(number)
    assert f"merged as {merged[:12]}" in summary and f"at {main[:12]}" in summary
    assert "| `pytest -q` | ✅ passed | 1.5 s |" in summary and "GitHub CI: passed." in summary
    assert f"Closed: #{issue}." in summary
    item = rig.item(number)
    assert item.status is Status.DONE and not item.outbox and item.finished_at == rig.clock.now()
    assert item.merge.merge_sha == merged and item.merge.tested_base == main
    assert [r.command for r in item.merge.results] == COMMANDS and item.merge.ci == "passed"


# -- on start -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda gh, n: gh.edit_pull(n, state="closed"), "not merged: the pull request is closed"),
        (lambda gh, n: gh.edit_pull(n, draft=True), "not merged: the pull request is a draft"),
        (lambda gh, n: gh.edit_pull(n, base_ref="develop"), "base branch changed to `develop`"),
        (lambda gh, n: gh.push(n, sha("late")), f"the head is now {sha('late')[:12]}"),
    ],
    ids=["closed", "draft", "retargeted", "pushed since request"],
)
async def test_a_changed_pull_request_stops_before_any_test(
    rig: Rig, change: Callable[[RecordingGitHub, int], None], words: str
) -> None:
    number, _ = rig.requested()
    change(rig.gh, number)
    await rig.wf.run(number)
    assert words in rig.one_comment(number)
    item = rig.item(number)
    assert item.status is Status.FAILED and item.last_error and words in item.last_error
    assert rig.git.calls == [] and rig.checks.calls == [] and "merge_pull" not in rig.gh.names()


async def test_a_push_seen_only_by_git_stops_before_the_checks(rig: Rig) -> None:
    number, _ = rig.requested()
    rig.gh.remote.pulls[number] = sha("raced")  # pushed after GitHub answered get_pull
    await rig.wf.run(number)
    assert f"the head is now {sha('raced')[:12]}" in rig.one_comment(number)
    assert rig.checks.calls == [] and rig.item(number).status is Status.FAILED


@pytest.mark.parametrize("answer_lost", [False, True])
async def test_our_merge_found_merged_at_start_is_finished(rig: Rig, answer_lost: bool) -> None:
    number = rig.gh.add_pull()
    main = rig.gh.remote.branches["main"]
    landed = None if answer_lost else sha("landed")
    head = rig.request(number, merging_head=rig.gh.pulls[number].head_sha, tested_base=main,
                       results=(PassedCommand(command="make test", duration_s=4.0),),
                       ci="passed", merge_sha=landed)  # fmt: skip
    rig.state.put(rig.item(number).evolve(head_sha=head))  # written with `merging_head`
    rig.gh.edit_pull(number, state="closed", merged=True)
    await rig.wf.run(number)
    summary = rig.one_comment(number)
    assert f"merged as {landed[:12] if landed else '(unknown)'}" in summary
    assert f"head {head[:12]}" in summary and "`make test`" in summary
    assert rig.gh.called("delete_branch") == [("topic",)]
    assert rig.checks.calls == [] and rig.git.calls == [] and "merge_pull" not in rig.gh.names()
    assert rig.item(number).status is Status.DONE


async def test_a_pull_merged_by_someone_else_is_said_so(rig: Rig) -> None:
    number, _ = rig.requested()
    rig.gh.edit_pull(number, state="closed", merged=True)
    await rig.wf.run(number)
    assert "nothing to do: this pull request is already merged" in rig.one_comment(number)
    assert rig.item(number).status is Status.DONE
    assert rig.gh.names() == ["get_pull", "create_comment"]  # no clean-up: not our merge


# -- GitHub CI ----------------------------------------------------------------------------------


async def test_red_ci_stops_before_the_checks_run(rig: Rig) -> None:
    number, head = rig.requested()
    rig.gh.set_check_run(head, "build")
    rig.gh.set_check_run(head, "lint", conclusion="failure")
    await rig.wf.run(number)
    comment = rig.one_comment(number)
    assert f"**GitHub CI failed** on {head[:12]}" in comment and "- ❌ `lint`" in comment
    assert "`build`" not in comment
    assert rig.checks.calls == [] and rig.git.called("merge_worktree") == []
    assert rig.item(number).status is Status.FAILED and rig.clock.sleeps == []


async def test_pending_ci_before_the_checks_does_not_wait(rig: Rig) -> None:
    number, head = rig.requested()
    rig.gh.set_check_run(head, "build", conclusion="skipped")  # green, as "neutral" would be
    rig.gh.set_status(head, "ci/slow", "pending")
    rig.checks.before("run", lambda *_: rig.gh.set_status(head, "ci/slow", "success"))
    await rig.wf.run(number)
    assert rig.clock.sleeps == [] and len(rig.gh.called("statuses")) == 2
    assert rig.gh.pulls[number].merged


async def test_pending_ci_after_the_checks_is_polled_until_green(rig: Rig) -> None:
    number, head = rig.requested()
    rig.gh.set_check_run(head, "build", status="in_progress", conclusion=None)

    def turns_green_at_the_fourth_look(*_: object) -> None:
        if len(rig.gh.called("check_runs")) == 4:
            rig.gh.set_check_run(head, "build")

    rig.gh.before("check_runs", turns_green_at_the_fourth_look)
    await rig.wf.run(number)
    assert rig.clock.sleeps == [CI_POLL, CI_POLL]
    assert rig.gh.pulls[number].merged and "GitHub CI: passed." in rig.one_comment(number)


async def test_ci_red_after_the_checks_stops(rig: Rig) -> None:
    number, head = rig.requested()
    rig.gh.set_status(head, "ci/slow", "pending")
    rig.checks.before("run", lambda *_: rig.gh.set_status(head, "ci/slow", "failure"))
    await rig.wf.run(number)
    assert "- ❌ `ci/slow`" in rig.one_comment(number) and len(rig.checks.calls) == 1
    assert "merge_pull" not in rig.gh.names()


async def test_ci_still_pending_at_the_bound_stops(build: Callable[..., Rig]) -> None:
    rig = build(ci_wait_timeout=40)
    number, head = rig.requested()
    rig.gh.set_check_run(head, "build", status="queued", conclusion=None)
    await rig.wf.run(number)
    assert rig.clock.sleeps == [15.0, 15.0, 10.0]  # never past the bound
    comment = rig.one_comment(number)
    assert f"**GitHub CI is still running** on {head[:12]} after 40.0 s" in comment
    assert "- ⏳ `build`" in comment and len(rig.checks.calls) == 1
    assert rig.item(number).status is Status.FAILED and "merge_pull" not in rig.gh.names()


# -- the checks ---------------------------------------------------------------------------------


async def test_a_conflict_names_the_files_and_runs_nothing(rig: Rig) -> None:
    number, _ = rig.requested()
    rig.git.conflicts = ("calc.py", "docs/a.md")
    await rig.wf.run(number)
    comment = rig.one_comment(number)
    assert "conflicts with `main`" in comment and "- `calc.py`\n- `docs/a.md`" in comment
    assert rig.checks.calls == [] and rig.git.worktrees == set()
    assert rig.item(number).status is Status.FAILED


@pytest.mark.parametrize(
    ("returncode", "timed_out", "outcome"),
    [(1, False, "exited with code 1"), (None, True, "timed out after 1 min")],
)
async def test_a_failing_command_is_reported_redacted(
    rig: Rig, returncode: int | None, timed_out: bool, outcome: str
) -> None:
    number, _ = rig.requested()
    output = f"E   assert 1 == 2\nusing GITHUB_TOKEN={UNIT_TOKEN} sk-ant-abcdefghijklmnop"
    rig.checks.set("pytest -q", returncode, output, timed_out=timed_out)
    await rig.wf.run(number)
    comment = rig.one_comment(number)
    assert f"**Pre-merge check failed:** `pytest -q` {outcome}." in comment
    assert "assert 1 == 2" in comment and REDACTED in comment
    assert UNIT_TOKEN not in comment and "sk-ant-" not in comment
    item = rig.item(number)
    assert item.status is Status.FAILED and item.last_error and UNIT_TOKEN not in item.last_error
    assert "topic" in rig.gh.remote.branches and rig.git.worktrees == set()


# -- after a round: the base moved? -------------------------------------------------------------


async def test_a_base_that_moved_during_the_checks_is_tested_again(rig: Rig) -> None:
    number, head = rig.requested()
    rig.checks.before("run", moves_main(rig, rounds=1))
    await rig.wf.run(number)
    moved = sha("main-1")
    assert [call[1] for call in rig.git.called("merge_worktree")] == [sha("main"), moved]
    assert rig.item(number).merge.tested_base == moved
    assert f"head {head[:12]} merged onto `main` at {moved[:12]}" in rig.one_comment(number)


async def test_a_base_that_keeps_moving_stops_after_three_rounds(rig: Rig) -> None:
    number, _ = rig.requested()
    rig.checks.before("run", moves_main(rig))
    await rig.wf.run(number)
    assert len(rig.checks.calls) == 3 and "merge_pull" not in rig.gh.names()
    assert "`main` kept moving while the checks ran" in rig.one_comment(number)
    assert rig.item(number).status is Status.FAILED


# -- the merge call -----------------------------------------------------------------------------


@pytest.mark.parametrize("answer", [409, 405])
async def test_a_merge_github_refuses_is_reported(rig: Rig, answer: int) -> None:
    number, head = rig.requested()
    if answer == 409:  # a push after the tests: GitHub refuses the sha that was tested
        rig.checks.before("run", lambda *_: rig.gh.push(number, sha("late")))
    else:
        rig.gh.unmergeable.add(number)
    await rig.wf.run(number)
    assert (
        f"new commits arrived after {head[:12]} was tested"
        if answer == 409
        else 'GitHub refused the merge: “Required status check "build" is expected.”'
    ) in rig.one_comment(number)
    assert rig.item(number).status is Status.FAILED and not rig.gh.pulls[number].merged
    assert len(rig.gh.called("merge_pull")) == 1 and "delete_branch" not in rig.gh.names()


async def test_a_lost_answer_to_a_merge_that_landed_counts_as_merged(rig: Rig) -> None:
    number, _ = rig.requested()
    rig.gh.fail("merge_pull", GitHubError(502, "Bad Gateway"), after=True)
    await rig.wf.run(number)
    merged = rig.gh.remote.branches["main"]
    assert rig.item(number).merge.merge_sha == merged  # the base's tip, fetched after
    assert f"merged as {merged[:12]}" in rig.one_comment(number)
    assert len(rig.gh.called("merge_pull")) == 1 and rig.item(number).status is Status.DONE


async def test_an_unanswered_merge_is_retried_without_running_the_checks_again(rig: Rig) -> None:
    number, head = rig.requested()
    rig.gh.fail("merge_pull", GitHubError(502, "Bad Gateway"), times=3)
    for _ in range(3):  # an outage: transient faults never use up the attempt
        await rig.wf.run(number)
        item = rig.item(number)
        assert item.status is Status.PENDING and item.errors == 0
        assert item.last_error and "502" in item.last_error
    assert rig.gh.bot_comments(number) == []
    assert item.merge.merging_head == head and item.merge.tested_base == sha("main")
    await rig.wf.run(number)
    assert rig.gh.pulls[number].merged and len(rig.gh.called("merge_pull")) == 4
    assert len(rig.checks.calls) == 1 and len(rig.git.called("merge_worktree")) == 1
    assert len(rig.gh.called("check_runs")) == 2 + 3  # CI is read again before each merge call
    assert "| `pytest -q` | ✅ passed |" in rig.one_comment(number)


async def test_definite_errors_are_counted_then_reported(rig: Rig) -> None:
    number, _ = rig.requested()
    rig.gh.fail("merge_pull", GitHubError(403, "Resource not accessible"), times=None)
    for errors in (1, 2):
        await rig.wf.run(number)
        assert (rig.item(number).status, rig.item(number).errors) == (Status.PENDING, errors)
    await rig.wf.run(number)
    assert "the daemon hit an error 3 times" in rig.one_comment(number)
    assert rig.item(number).status is Status.FAILED and len(rig.checks.calls) == 1


async def test_tested_before_but_base_moved_runs_the_checks_again(rig: Rig) -> None:
    number, _ = rig.requested()
    rig.gh.fail("merge_pull", GitHubError(502, "Bad Gateway"))
    await rig.wf.run(number)
    moves_main(rig)()
    await rig.wf.run(number)
    assert len(rig.checks.calls) == 2 and rig.item(number).merge.tested_base == sha("main-1")
    assert rig.gh.pulls[number].merged


async def test_tested_before_but_ci_turned_red_stops(rig: Rig) -> None:
    number, head = rig.requested()
    rig.gh.fail("merge_pull", GitHubError(502, "Bad Gateway"))
    await rig.wf.run(number)
    rig.gh.set_check_run(head, "build", conclusion="failure")
    await rig.wf.run(number)
    assert "- ❌ `build`" in rig.one_comment(number) and len(rig.checks.calls) == 1
    assert rig.item(number).status is Status.FAILED


# -- clean-up -----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["fork", "stacked", "default branch"])
async def test_a_branch_is_kept_when_it_is_not_ours_to_delete(rig: Rig, case: str) -> None:
    if case == "default branch":  # main into develop: main is not deleted
        rig.gh.remote.branches["develop"] = sha("develop")
        number = rig.gh.add_pull("main", head=sha("main"), base="develop")
    else:
        number = rig.gh.add_pull(fork=case == "fork")
        if case == "stacked":
            rig.gh.add_pull("on-topic", base="topic")
    rig.request(number)
    await rig.wf.run(number)
    assert rig.gh.pulls[number].merged and "delete_branch" not in rig.gh.names()
    assert rig.item(number).status is Status.DONE


@pytest.mark.parametrize("status", [404, 422])
async def test_a_branch_already_gone_is_fine(rig: Rig, status: int) -> None:
    number, _ = rig.requested()
    rig.gh.fail("delete_branch", GitHubError(status, "Reference does not exist"))
    await rig.wf.run(number)
    assert rig.item(number).status is Status.DONE and "merged as" in rig.one_comment(number)


async def test_an_outage_in_the_clean_up_finishes_on_the_next_run(rig: Rig) -> None:
    number, _ = rig.requested()
    rig.gh.fail("delete_branch", GitHubError(503, "Service Unavailable"))
    await rig.wf.run(number)
    assert rig.item(number).status is Status.PENDING and rig.gh.bot_comments(number) == []
    await rig.wf.run(number)
    assert len(rig.gh.called("merge_pull")) == 1 and "topic" not in rig.gh.remote.branches
    assert "merged as" in rig.one_comment(number) and rig.item(number).status is Status.DONE


@pytest.mark.parametrize("base", ["main", "develop"])
async def test_linked_issues_are_closed_only_on_the_default_branch(rig: Rig, base: str) -> None:
    rig.gh.remote.branches["develop"] = sha("develop")
    issue, done = rig.gh.add_issue(), rig.gh.add_issue()
    rig.gh.edit_issue(done, state="closed")
    other = rig.gh.add_pull("other")
    body = f"Fixes #{issue}, closes #{other}, resolves #{done}, fixes #999"
    number = rig.gh.add_pull(base=base, body=body)
    rig.request(number)
    await rig.wf.run(number)
    closed = [args[0] for args in rig.gh.called("close_issue")]
    assert closed == ([issue] if base == "main" else [])
    assert (f"Closed: #{issue}." in rig.one_comment(number)) is (base == "main")
    assert rig.gh.pulls[other].state == "open"


async def test_a_summary_held_back_by_a_fault_is_posted_once_by_the_next_poll(rig: Rig) -> None:
    number, _ = rig.requested()
    rig.gh.fail("create_comment", GitHubError(502, "Bad Gateway"))
    await rig.wf.run(number)
    item = rig.item(number)
    assert item.status is Status.DONE and len(item.outbox) == 1 and item.outbox[0].tried
    await rig.wf.poll()
    await rig.wf.poll()
    assert "merged as" in rig.one_comment(number) and not rig.item(number).outbox
    assert len(rig.gh.called("list_issue_comments")) == 1  # looked for the lost one first
