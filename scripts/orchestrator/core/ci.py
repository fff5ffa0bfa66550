"""Check verdicts, pure: GitHub CI read for a commit, and the comments on commands and CI."""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .models import CheckRun, CommandResult, CommitStatus
from .redact import Redactor
from .text import MAX_BODY, cut


def first_failure(results: Sequence[CommandResult]) -> CommandResult | None:
    """The command that stopped the run, if one did."""
    return next((r for r in results if not r.ok), None)


def format_failure(
    result: CommandResult, redactor: Redactor | None = None, *, limit: int = MAX_BODY
) -> str:
    """A comment on a failed command: which, why, and the tail of its output, redacted.

    The whole comment stays within `limit` characters; the output's first lines are the
    ones dropped, because test runners and compilers print their verdict last.
    """
    redactor = redactor or Redactor()  # secret-shaped strings, at least
    command = redactor.redact(result.command)
    # Redact before cutting: half a secret is no longer recognised.
    output = redactor.redact(result.output).rstrip()
    head = f"**Pre-merge check failed:** {_code_span(command)} {outcome(result)}."
    if not output:
        return _fit_end(f"{head}\n\nIt printed nothing.", limit)

    def comment(start: int) -> str:
        tail = output[start:]
        fence = "`" * max(3, _longest_backtick_run(tail) + 1)
        note = "Its output:" if start == 0 else f"The last {len(tail):,} characters of its output:"
        return f"{head}\n\n{note}\n\n{fence}text\n{tail}\n{fence}"

    if len(comment(0)) <= limit:
        return comment(0)
    # A shorter tail never makes a longer comment, so bisect for the longest one that fits;
    # cutting by the excess alone overshoots when the fence shrinks along with the tail.
    low, high = 1, len(output)
    while low < high:
        middle = (low + high) // 2
        if len(comment(middle)) <= limit:
            high = middle
        else:
            low = middle + 1
    if output[low - 1] != "\n":  # start at a whole line if one begins near
        newline = output.find("\n", low, low + 1000)
        low = newline + 1 if newline != -1 else low
    fitted = comment(low)
    return fitted if len(fitted) <= limit else _fit_end(fitted, limit)  # an absurdly long command


def format_success(results: Sequence[CommandResult]) -> str:
    """A Markdown table of the commands that passed, with their durations."""
    if not results:
        return "No pre-merge commands are configured."
    rows = ["| Pre-merge command | Result | Duration |", "| --- | --- | --- |"]
    for result in results:
        cell = _code_span(" ".join(result.command.split())).replace("|", r"\|")
        verdict = "✅ passed" if result.ok else "❌ failed"
        rows.append(f"| {cell} | {verdict} | {_duration(result.duration_s)} |")
    return "\n".join(rows)


class Verdict(enum.Enum):
    GREEN = "green"
    RED = "red"
    PENDING = "pending"


@dataclass(frozen=True)
class CiResult:
    """GitHub CI for one commit: the verdict and the checks that stand in its way."""

    verdict: Verdict
    failing: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()


CHECK_RUN_GREEN = frozenset({"success", "neutral", "skipped"})


def check_run_verdict(run: CheckRun) -> Verdict:
    """Pending until completed; then green, or red for every other conclusion.

    Red covers failure, cancelled, timed_out, action_required, and also `stale`: GitHub sets
    it on a run left incomplete for 14 days, which will never finish by itself, so waiting
    for it would only run out the clock. A conclusion GitHub adds later (`startup_failure`)
    is red too: a finished run that is not known to pass must block, and be named.
    """
    if run.status != "completed" or run.conclusion is None:
        return Verdict.PENDING
    return Verdict.GREEN if run.conclusion in CHECK_RUN_GREEN else Verdict.RED


def status_verdict(status: CommitStatus) -> Verdict:
    """`success` green, `pending` pending; `failure`, `error` and anything unknown red."""
    if status.state == "success":
        return Verdict.GREEN
    return Verdict.PENDING if status.state == "pending" else Verdict.RED


def evaluate_ci(check_runs: Sequence[CheckRun], statuses: Sequence[CommitStatus]) -> CiResult:
    """Judge a commit by its check runs and commit statuses; none at all is green.

    The combined status's own `state` is never read: it is `pending` when there are no
    statuses, which would hold an Actions-only repository forever (DESIGN §4).

    Statuses: the first per context counts. The combined status lists one per context, and
    the full list (`/commits/{sha}/statuses`) is documented newest first.

    Check runs: every run with a name counts, the worst wins. A run carries no timestamp here
    and GitHub does not document the list's order, so "the newest" cannot be told apart;
    `filter=latest` (the API's default) already drops attempts superseded within a check suite,
    and a re-run updates its run in place. What is left under one name comes from separate
    suites (a workflow on both `push` and `pull_request`, another app), and merging while one
    of them fails would merge what a check rejected. An old red run blocks until re-run.
    """
    verdicts: dict[str, Verdict] = {}
    for run in check_runs:
        verdicts[run.name] = _worse(verdicts.get(run.name), check_run_verdict(run))
    seen: set[str] = set()
    for status in statuses:
        if status.context in seen:
            continue
        seen.add(status.context)
        key = status.context if status.context not in verdicts else f"{status.context} (status)"
        verdicts[key] = status_verdict(status)
    failing = tuple(name for name, v in verdicts.items() if v is Verdict.RED)
    pending = tuple(name for name, v in verdicts.items() if v is Verdict.PENDING)
    # Red as soon as anything failed: waiting for the rest cannot turn it green.
    if failing:
        return CiResult(Verdict.RED, failing, pending)
    if pending:
        return CiResult(Verdict.PENDING, (), pending)
    return CiResult(Verdict.GREEN)


def format_ci_failure(result: CiResult, sha: str) -> str:
    """A comment naming the GitHub checks that failed on `sha`."""
    lines = [f"**GitHub CI failed** on {sha[:12]}, so this pull request was not merged:", ""]
    lines += [f"- ❌ {_code_span(name)}" for name in result.failing]
    if result.pending:
        lines += ["", "Still running: " + ", ".join(_code_span(n) for n in result.pending) + "."]
    lines += ["", "Fix them or re-run them, then ask for the merge again."]
    return "\n".join(lines)


MAX_CHECK_OUTPUT = 2_000  # characters of one failing check's output given to a fix


def failing_outputs(result: CiResult, runs: Sequence[CheckRun]) -> str:
    """What the failing check runs said (title and summary), for Claude's fix; "" if none
    said anything. Written by CI, which ran the pull request's code: the fix prompt quotes it."""
    said = []
    for run in runs:
        if run.name in result.failing and (run.title or run.summary):
            text = "\n".join(part for part in (run.title, run.summary) if part)
            said.append(f"{run.name} ({run.conclusion}):\n{cut(text, MAX_CHECK_OUTPUT)}")
    return "\n\n".join(said)


def format_ci_pending(result: CiResult, sha: str, *, waited_s: float) -> str:
    """A comment naming the GitHub checks still unfinished on `sha` after the wait."""
    lines = [
        f"**GitHub CI is still running** on {sha[:12]} after {_duration(waited_s)}, "
        "so this pull request was not merged. Waiting on:",
        "",
    ]
    lines += [f"- ⏳ {_code_span(name)}" for name in result.pending]
    lines += ["", "Ask for the merge again once they have finished."]
    return "\n".join(lines)


def outcome(result: CommandResult) -> str:
    if result.timed_out:
        return f"timed out after {_duration(result.timeout_s)}"
    if result.ok:
        return "passed"
    return f"exited with code {result.returncode}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


def _worse(old: Verdict | None, new: Verdict) -> Verdict:
    rank = {Verdict.GREEN: 0, Verdict.PENDING: 1, Verdict.RED: 2}
    return new if old is None or rank[new] > rank[old] else old


def _longest_backtick_run(text: str) -> int:
    return max((len(m) for m in re.findall(r"`+", text)), default=0)


def _code_span(text: str) -> str:
    # A run of backticks inside needs a longer delimiter; spaces keep edge backticks apart.
    ticks = "`" * (_longest_backtick_run(text) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _fit_end(text: str, limit: int) -> str:
    return cut(text, limit, "…")
