"""Tests for pre-merge checks: commands in order, killed groups, no tokens, reports, CI verdicts."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import pytest

from scripts.orchestrator import checks
from scripts.orchestrator.core import ci
from scripts.orchestrator.core.ci import CiResult, Verdict, evaluate_ci
from scripts.orchestrator.core.models import CheckRun, CommandResult, CommitStatus
from scripts.orchestrator.core.redact import REDACTED, Redactor
from scripts.orchestrator.core.text import MAX_BODY

from .fixtures_model import wait_until_gone

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


async def test_a_passing_sequence_runs_every_command_in_order(tmp_path: Path) -> None:
    results = await checks.run_commands(
        ["echo one >> log", "echo two >> log; cat log"], cwd=tmp_path, timeout=10
    )
    assert [(r.command, r.returncode, r.ok) for r in results] == [
        ("echo one >> log", 0, True),
        ("echo two >> log; cat log", 0, True),
    ]
    assert results[1].output == "one\ntwo"
    assert all(r.duration_s >= 0 and not r.timed_out for r in results)
    assert ci.first_failure(results) is None
    assert [p.name for p in tmp_path.iterdir()] == ["log"]  # no output file left here


async def test_the_first_failure_stops_the_run(tmp_path: Path) -> None:
    commands = ["true", "echo boom; exit 3", "touch ran-after-failure"]
    results = await checks.run_commands(commands, cwd=tmp_path, timeout=10)
    assert [(r.command, r.returncode, r.ok) for r in results] == [
        ("true", 0, True),
        ("echo boom; exit 3", 3, False),
    ]
    assert ci.first_failure(results) == results[1]
    assert results[1].output == "boom"
    assert not (tmp_path / "ran-after-failure").exists()


async def test_stdout_and_stderr_are_one_stream_in_order(tmp_path: Path) -> None:
    result = await checks.run_command(
        "echo a; echo b >&2; echo c; exit 1", cwd=tmp_path, timeout=10
    )
    assert (result.returncode, result.output) == (1, "a\nb\nc")


async def test_only_the_tail_of_a_huge_output_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checks, "MAX_OUTPUT_BYTES", 100)
    result = await checks.run_command("seq 1 100000; exit 1", cwd=tmp_path, timeout=10)
    assert len(result.output) <= 100
    numbers = [int(line) for line in result.output.splitlines()]
    assert numbers == list(range(numbers[0], 100_001))  # whole lines, the last ones


async def test_a_timeout_kills_the_whole_process_group_and_stops_the_run(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex
    results = await checks.run_commands(
        ["sleep 300 & echo started; sleep 300", "touch ran-after-timeout"],
        cwd=tmp_path,
        timeout=0.5,
        extra_env={"CHECKS_TEST_TAG": tag},
    )
    (result,) = results
    assert result.timed_out and result.returncode is None and not result.ok
    assert result.timeout_s == 0.5
    assert result.output == "started"  # the background child had been started
    assert wait_until_gone("CHECKS_TEST_TAG", tag) == []
    assert not (tmp_path / "ran-after-timeout").exists()


async def test_the_commands_get_no_credentials_but_a_ci_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("GITHUB_TOKEN", "GH_TOKEN", "ANTHROPIC_API_KEY"):
        monkeypatch.setenv(name, TOKEN)
    result = await checks.run_command(
        "env", cwd=tmp_path, timeout=10, extra_env={"GH_TOKEN": TOKEN}
    )
    env = dict(line.split("=", 1) for line in result.output.splitlines() if "=" in line)
    assert TOKEN not in result.output
    assert {"GITHUB_TOKEN", "GH_TOKEN", "ANTHROPIC_API_KEY"}.isdisjoint(env)
    assert (env["CI"], env["GIT_TERMINAL_PROMPT"]) == ("true", "0")
    assert (env["PATH"], env["HOME"]) == (os.environ["PATH"], os.environ["HOME"])


def test_check_env_strips_credentials_from_any_base() -> None:
    env = checks.check_env({"MARK": "1"}, base={"PATH": "/bin", "GITHUB_PAT": TOKEN})
    assert env == {**checks.CHECK_ENV, "PATH": "/bin", "MARK": "1"}


# -- the failure report -----------------------------------------------------------------------


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
