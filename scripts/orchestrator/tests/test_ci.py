"""Table tests of CI verdicts and of the comments on failed commands and CI."""

from __future__ import annotations

import re

import pytest

from scripts.orchestrator.core import ci
from scripts.orchestrator.core.ci import CiResult, Verdict, evaluate_ci, failing_outputs
from scripts.orchestrator.core.models import CheckRun, CommandResult, CommitStatus
from scripts.orchestrator.core.redact import REDACTED, Redactor
from scripts.orchestrator.core.text import MAX_BODY

TOKEN = "s3cret-daemon-token-value"
GHP = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4"


def failed(output: str, *, command: str = "pytest", code: int = 1) -> CommandResult:
    return CommandResult(command, code, False, 2.5, 600.0, output)


def code_block(comment: str) -> tuple[str, str]:
    """The fence and the content of the comment's one fenced block (it ends the comment)."""
    match = re.search(r"^(`{3,})text\n(.*)\n\1\Z", comment, re.S | re.M)
    assert match, comment[-300:]
    return match.group(1), match.group(2)


# -- running the commands ---------------------------------------------------------------------


def test_a_failure_names_the_command_and_its_exit_code_and_shows_the_output() -> None:
    comment = ci.format_failure(failed("collected 3 items\nFAILED test_x.py::test_y"))
    assert comment.splitlines()[0] == "**Pre-merge check failed:** `pytest` exited with code 1."
    assert code_block(comment) == ("```", "collected 3 items\nFAILED test_x.py::test_y")


def test_a_timeout_is_reported_with_its_limit() -> None:
    result = CommandResult("npm test", None, True, 600.2, 600.0, "still going")
    assert "`npm test` timed out after 10 min." in ci.format_failure(result)
    quick = CommandResult("npm test", None, True, 0.6, 0.5, "")
    assert "timed out after 0.5 s" in ci.format_failure(quick)


def test_a_failure_without_output_says_so() -> None:
    comment = ci.format_failure(failed("", code=2))
    assert comment.endswith("exited with code 2.\n\nIt printed nothing.")


def test_secrets_are_redacted_from_the_command_and_the_output() -> None:
    result = failed(f"token={TOKEN}\nleaked {GHP} here", command=f"deploy --token {TOKEN}")
    comment = ci.format_failure(result, Redactor([TOKEN]))
    assert TOKEN not in comment and GHP not in comment
    assert f"deploy --token {REDACTED}" in comment
    assert code_block(comment)[1] == f"token={REDACTED}\nleaked {REDACTED} here"


def test_a_huge_output_keeps_its_tail_within_githubs_limit() -> None:
    lines = [f"line {i:06d} " + "x" * 80 for i in range(2300)]
    output = "\n".join([*lines, "=== 1 failed, 2299 passed ==="])
    assert len(output) > 200_000
    comment = ci.format_failure(failed(output))
    assert len(comment) <= MAX_BODY
    _, shown = code_block(comment)
    assert output.endswith(shown)  # a tail of whole lines
    assert shown.startswith("line ") and shown.endswith("=== 1 failed, 2299 passed ===")
    assert len(shown) > MAX_BODY - 500
    assert f"The last {len(shown):,} characters of its output:" in comment


def test_a_smaller_limit_is_respected_too() -> None:
    comment = ci.format_failure(failed("y\n" * 10_000), limit=1_000)
    assert len(comment) <= 1_000
    assert code_block(comment)[1].endswith("y\ny")


def test_a_secret_cut_in_half_by_the_limit_is_still_redacted() -> None:
    output = "a" * 5_000 + TOKEN + "b" * 480
    comment = ci.format_failure(failed(output), Redactor([TOKEN]), limit=600)
    assert len(comment) <= 600
    assert TOKEN[len(TOKEN) // 2 :] not in comment


@pytest.mark.parametrize(
    "output",
    [
        "before\n```\nnot the end\n```\nafter",
        "````python\ncode\n````",
        "inline `code` and ``more`` and a long run: ``````",
        "`" * 10_000,
    ],
)
def test_backtick_fences_in_the_output_do_not_end_the_block(output: str) -> None:
    comment = ci.format_failure(failed(output), limit=8_000)
    assert len(comment) <= 8_000
    fence, shown = code_block(comment)
    assert shown and output.endswith(shown)
    assert len(fence) > max((len(r) for r in re.findall(r"`+", shown)), default=0)


def test_a_command_with_backticks_stays_one_code_span() -> None:
    comment = ci.format_failure(failed("", command="echo `date`"))
    assert comment.startswith("**Pre-merge check failed:** `` echo `date` `` exited")


def test_the_success_summary_is_a_table_with_durations() -> None:
    results = [
        CommandResult("pytest -q", 0, False, 12.34, 600.0, ""),
        CommandResult("ruff check . | tee ruff.log", 0, False, 95.0, 600.0, ""),
    ]
    assert ci.format_success(results).splitlines() == [
        "| Pre-merge command | Result | Duration |",
        "| --- | --- | --- |",
        "| `pytest -q` | ✅ passed | 12.3 s |",
        r"| `ruff check . \| tee ruff.log` | ✅ passed | 1 min 35 s |",
    ]
    assert ci.format_success([]) == "No pre-merge commands are configured."


# -- GitHub CI ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "conclusion", "verdict"),
    [
        ("completed", "success", Verdict.GREEN),
        ("completed", "neutral", Verdict.GREEN),
        ("completed", "skipped", Verdict.GREEN),
        ("completed", "failure", Verdict.RED),
        ("completed", "cancelled", Verdict.RED),
        ("completed", "timed_out", Verdict.RED),
        ("completed", "action_required", Verdict.RED),
        ("completed", "stale", Verdict.RED),
        ("completed", "startup_failure", Verdict.RED),
        ("completed", None, Verdict.PENDING),
        ("queued", None, Verdict.PENDING),
        ("in_progress", None, Verdict.PENDING),
        ("waiting", None, Verdict.PENDING),
        ("requested", None, Verdict.PENDING),
        ("pending", None, Verdict.PENDING),
        ("in_progress", "success", Verdict.PENDING),
    ],
)
def test_check_run_verdicts(status: str, conclusion: str | None, verdict: Verdict) -> None:
    run = CheckRun("build", status, conclusion)
    assert ci.check_run_verdict(run) is verdict
    names = {
        Verdict.GREEN: ((), ()),
        Verdict.RED: (("build",), ()),
        Verdict.PENDING: ((), ("build",)),
    }
    assert evaluate_ci([run], []) == CiResult(verdict, *names[verdict])


@pytest.mark.parametrize(
    ("state", "verdict"),
    [
        ("success", Verdict.GREEN),
        ("failure", Verdict.RED),
        ("error", Verdict.RED),
        ("pending", Verdict.PENDING),
        ("bogus", Verdict.RED),
    ],
)
def test_status_verdicts(state: str, verdict: Verdict) -> None:
    status = CommitStatus("ci/jenkins", state)
    assert ci.status_verdict(status) is verdict
    assert evaluate_ci([], [status]).verdict is verdict


def test_no_checks_and_no_statuses_is_green() -> None:
    assert evaluate_ci([], []) == CiResult(Verdict.GREEN)


def test_all_green_across_both_systems_is_green() -> None:
    runs = [CheckRun("test", "completed", "success"), CheckRun("lint", "completed", "skipped")]
    assert evaluate_ci(runs, [CommitStatus("ci/legacy", "success")]) == CiResult(Verdict.GREEN)


def test_pending_statuses_keep_it_pending() -> None:
    runs = [CheckRun("test", "completed", "success")]
    statuses = [CommitStatus("deploy", "pending"), CommitStatus("ci", "success")]
    assert evaluate_ci(runs, statuses) == CiResult(Verdict.PENDING, (), ("deploy",))


def test_red_and_pending_together_is_red_naming_both() -> None:
    runs = [CheckRun("test", "completed", "failure"), CheckRun("e2e", "in_progress", None)]
    statuses = [CommitStatus("ci/legacy", "error"), CommitStatus("deploy", "pending")]
    assert evaluate_ci(runs, statuses) == CiResult(
        Verdict.RED, ("test", "ci/legacy"), ("e2e", "deploy")
    )


@pytest.mark.parametrize(
    ("conclusions", "verdict"),
    [
        (["failure", "success"], Verdict.RED),
        (["success", "failure"], Verdict.RED),
        (["success", None], Verdict.PENDING),
        (["success", "neutral"], Verdict.GREEN),
        ([None, "cancelled"], Verdict.RED),
    ],
)
def test_check_runs_with_one_name_all_count_and_the_worst_wins(
    conclusions: list[str | None], verdict: Verdict
) -> None:
    runs = [CheckRun("test", "completed" if c else "in_progress", c) for c in conclusions]
    result = evaluate_ci(runs, [])
    assert result.verdict is verdict
    assert len(result.failing + result.pending) == (verdict is not Verdict.GREEN)  # named once


def test_the_first_status_of_a_context_is_the_newest_and_counts() -> None:
    statuses = [CommitStatus("ci", "success"), CommitStatus("ci", "failure")]
    assert evaluate_ci([], statuses) == CiResult(Verdict.GREEN)
    statuses = [CommitStatus("ci", "pending"), CommitStatus("ci", "success")]
    assert evaluate_ci([], statuses) == CiResult(Verdict.PENDING, (), ("ci",))


def test_a_status_and_a_check_run_with_one_name_are_both_judged() -> None:
    result = evaluate_ci([CheckRun("ci", "completed", "success")], [CommitStatus("ci", "failure")])
    assert result == CiResult(Verdict.RED, ("ci (status)",))


def test_the_ci_comments_name_the_checks() -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    red = ci.format_ci_failure(CiResult(Verdict.RED, ("test", "lint"), ("e2e",)), sha)
    assert red.startswith("**GitHub CI failed** on 0123456789ab")
    assert "- ❌ `test`\n- ❌ `lint`" in red and "Still running: `e2e`." in red
    pending = ci.format_ci_pending(CiResult(Verdict.PENDING, (), ("e2e",)), sha, waited_s=900)
    assert "after 15 min" in pending and "- ⏳ `e2e`" in pending


def test_a_fix_is_told_what_the_failing_checks_said_and_nothing_of_the_others() -> None:
    runs = [
        CheckRun("tests", "completed", "failure", "1 failed", "test_x: 1 != 2"),
        CheckRun("lint", "completed", "success", "ok", "all clean"),
        CheckRun("build", "completed", "failure"),  # said nothing
    ]
    result = evaluate_ci(runs, [])
    assert failing_outputs(result, runs) == "tests (failure):\n1 failed\ntest_x: 1 != 2"
    assert failing_outputs(evaluate_ci(runs[1:2], []), runs[1:2]) == ""
