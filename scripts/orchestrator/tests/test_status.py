"""`status` and `clear`: the table's formatting, and both commands on real state files, with
the lock free or held by another process as a running daemon holds it."""

from __future__ import annotations

import io
import selectors
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from scripts.orchestrator.claude_slots import DAILY_SPEND_META
from scripts.orchestrator.core.budget import day_of
from scripts.orchestrator.core.work import Status, WorkItem, WorkItemType, Write
from scripts.orchestrator.daemon import FIRST_WATCHED_META, LAST_CYCLE_META
from scripts.orchestrator.state import State
from scripts.orchestrator.status import (
    clear_items,
    format_duration,
    format_status,
    item_row,
    show_status,
)
from scripts.orchestrator.workflows.commands import REPLIES_META
from scripts.orchestrator.workflows.comment_feed import CURSOR_META, HANDLED_META, PENDING_META
from scripts.orchestrator.workflows.followup import FOLLOWUPS_SINCE_META
from scripts.orchestrator.workflows.pull_heads import SIGHTINGS_META
from scripts.orchestrator.workflows.review import BASELINE_META

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
REPO_ROOT = Path(__file__).resolve().parents[3]
SHA = "0123456789abcdef0123456789abcdef01234567"
ISSUE, REVIEW, MERGE = WorkItemType.ISSUE, WorkItemType.PR_REVIEW, WorkItemType.MERGE
META: dict[str, Any] = {  # every repository-wide record the daemon keeps
    CURSOR_META: "2025-03-01T11:59:00+00:00",
    HANDLED_META: [101, 102],
    PENDING_META: [103],
    BASELINE_META: "2025-02-01T00:00:00+00:00",
    SIGHTINGS_META: {"7": {"sha": SHA, "at": "2025-02-28T10:00:00+00:00"}},
    REPLIES_META: {"mallory#7": "2025-03-01T11:30:00+00:00"},
    FIRST_WATCHED_META: "2025-02-01T00:00:00+00:00",
    LAST_CYCLE_META: "2025-03-01T11:59:30+00:00",
}


def item(kind: WorkItemType, number: int, status: Status = Status.DONE, **fields: Any) -> WorkItem:
    return WorkItem(type=kind, number=number, status=status, created_at=NOW, updated_at=NOW,
                    **fields)  # fmt: skip


def run(command: Any, *args: Any, **kwargs: Any) -> tuple[int, str, str]:
    """`command`'s exit code, output and error output."""
    out, err = io.StringIO(), io.StringIO()
    code = command(*args, out=out, err=err, **kwargs)
    return code, out.getvalue(), err.getvalue()


# -- the table ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-3, "0s"),
        (0, "0s"),
        (42.4, "42s"),
        (59.6, "1.0m"),
        (252, "4.2m"),
        (597, "10m"),
        (2220, "37m"),
        (5969, "99m"),
        (5970, "1.7h"),
        (36000, "10h"),
        (170000, "47h"),
        (171000, "2d"),
    ],
)
def test_durations_are_short_and_in_the_largest_fitting_unit(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown


@pytest.mark.parametrize(
    ("work", "cells"),
    [
        (
            item(ISSUE, 42, Status.FAILED, attempts=3, head_sha=SHA, pr_number=43,
                 cost_usd=0.123456, duration_s=252.0, last_error="Claude failed:\n  exit 1"),
            ("issue #42", "failed", "3", SHA[:12], "#43", "$0.1235", "4.2m",
             "Claude failed: exit 1"),
        ),
        (
            item(REVIEW, 7),
            ("review #7", "done", "0", "-", "-", "-", "-", "-"),
        ),
        (  # running: the time so far, marked +, even if an earlier run left a duration
            item(REVIEW, 7, Status.IN_PROGRESS, attempts=1, started_at=NOW - timedelta(seconds=90),
                 duration_s=10.0),
            ("review #7", "running", "1", "-", "-", "-", "1.5m+", "-"),
        ),
        (  # a merge runs no Claude: its attempt's time; a naive time is taken as UTC
            item(MERGE, 7, Status.PENDING, started_at=datetime(2025, 3, 1, 11, 0),
                 finished_at=NOW - timedelta(minutes=20), cost_usd=0.0),
            ("merge #7", "pending", "0", "-", "-", "$0.0000", "40m", "-"),
        ),
    ],
)  # fmt: skip
def test_each_item_is_one_row(work: WorkItem, cells: tuple[str, ...]) -> None:
    assert item_row(work, NOW) == cells


def test_running_first_then_by_type_and_number() -> None:
    items = [
        item(MERGE, 3),
        item(REVIEW, 9, Status.FAILED),
        item(ISSUE, 20, Status.PENDING),
        item(MERGE, 4, Status.IN_PROGRESS, started_at=NOW),
        item(ISSUE, 5),
        item(REVIEW, 2, Status.IN_PROGRESS, started_at=NOW),
    ]
    rows = format_status(items, NOW).splitlines()[1:-1]
    assert [" ".join(r.split()[:2]) for r in rows] == [
        "review #2", "merge #4", "issue #5", "issue #20", "review #9", "merge #3",
    ]  # fmt: skip


def sample() -> list[WorkItem]:
    error = "git push failed: " + "remote rejected the update " * 10
    return [
        item(ISSUE, 42, Status.FAILED, attempts=3, head_sha=SHA, pr_number=43, cost_usd=1.5,
             duration_s=252.0, last_error=error),
        item(REVIEW, 43, Status.IN_PROGRESS, attempts=1, head_sha=SHA,
             started_at=NOW - timedelta(seconds=75), cost_usd=0.0421),
        item(MERGE, 43, Status.PENDING, attempts=1, head_sha=SHA, last_error="CI failed",
             outbox=(Write(op="comment", number=43, text="retrying"),)),
        item(ISSUE, 44, Status.DONE, attempts=1, pr_number=45, cost_usd=0.25, duration_s=30.0),
    ]  # fmt: skip


@pytest.mark.parametrize("width", [80, 100, 120, 200])
def test_the_table_fits_the_terminal(width: int) -> None:
    text = format_status(sample(), NOW, width=width)
    assert max(len(line) for line in text.splitlines()) <= width
    assert "…" in text  # the long error is cut, not wrapped
    assert text.count("git push failed") == 1


def test_a_wide_terminal_has_an_error_column_a_narrow_one_an_error_line() -> None:
    wide = format_status(sample(), NOW, width=120).splitlines()
    assert wide[0].split() == ["ITEM", "STATUS", "TRIES", "HEAD", "PR", "COST", "TIME",
                               "LAST", "ERROR"]  # fmt: skip
    assert wide[1].startswith("review #43  running") and wide[1].endswith("1.2m+  -")
    assert wide[2].startswith("issue #42") and "git push failed" in wide[2]
    narrow = format_status(sample(), NOW, width=80).splitlines()
    assert "LAST ERROR" not in narrow[0]
    assert narrow[3].startswith("    error: git push failed")
    assert narrow[narrow.index("    error: CI failed") - 1].startswith("merge #43")


def test_under_the_table_the_counts_per_status_and_the_totals() -> None:
    last_cycle = NOW - timedelta(seconds=12)
    counts = "4 items: 1 running, 1 pending, 1 failed, 1 done; cost $1.7921"
    rest = "1 unsent GitHub write; last cycle 12s ago"
    wide = format_status(sample(), NOW, width=120, last_cycle=last_cycle).splitlines()
    assert wide[-1] == f"{counts}; {rest}"
    narrow = format_status(sample(), NOW, width=80, last_cycle=last_cycle).splitlines()
    assert narrow[-2:] == [counts, rest]
    assert format_status([item(ISSUE, 1)], NOW).splitlines()[-1] == "1 item: 1 done"


# -- on real files --------------------------------------------------------------------------


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state.json"


@pytest.fixture
def stored(path: Path) -> Path:
    """A state with an issue, a pull request's review and merge, and every meta key."""
    with State(path) as state, state.batch():
        for work in sample():
            state.put(work)
        for key, value in META.items():
            state.set_meta(key, value)
    return path


@pytest.fixture
def daemon(stored: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process that holds the state's lock, as a running daemon does, until its stdin
    closes."""
    code = textwrap.dedent("""
        import sys
        from pathlib import Path
        from scripts.orchestrator.state import State
        state = State(Path(sys.argv[1]))
        print("locked", flush=True)
        sys.stdin.readline()
    """)
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(stored)],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(holder.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + 20
            while not selector.select(timeout=0.05):
                assert holder.poll() is None, "the lock holder died"
                assert time.monotonic() < deadline, "the lock holder did not start"
        assert holder.stdout.readline() == "locked\n"
        yield holder
    finally:
        holder.stdin.close()
        try:
            holder.wait(timeout=10)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait(timeout=10)


def kept(path: Path) -> tuple[set[str], dict[str, Any]]:
    """The item keys and the meta on disk, read as `status` reads them."""
    with State(path, lock=False) as state:
        return {i.key for i in state.items()}, {k: state.get_meta(k) for k in META}


def test_status_shows_the_table_while_the_daemon_holds_the_state(
    daemon: subprocess.Popen[str], stored: Path
) -> None:
    code, out, err = run(show_status, stored)
    assert (code, err) == (0, "")
    assert out.splitlines()[1].startswith("review #43  running")
    assert "4 items: 1 running, 1 pending, 1 failed, 1 done" in out


def test_clear_is_refused_in_one_line_while_the_daemon_holds_the_state(
    daemon: subprocess.Popen[str], stored: Path
) -> None:
    before = stored.read_bytes()
    for request in ({"kind": "issue", "number": 42, "everything": False},
                    {"kind": None, "number": None, "everything": True}):  # fmt: skip
        code, out, err = run(clear_items, stored, **request)
        assert (code, out) == (2, "")
        assert err == (
            f"the daemon (pid {daemon.pid}) holds {stored}: stop it (Ctrl-C, or kill -TERM "
            f"{daemon.pid}), then run clear again\n"
        )
    assert stored.read_bytes() == before


def test_the_spec_effect_cleared_issue_is_gone_and_the_rest_stays(stored: Path) -> None:
    code, out, err = run(clear_items, stored, kind="issue", number=42, everything=False)
    assert (code, err) == (0, "")
    assert out == (
        "cleared issue #42 (failed, 3 attempts); it starts afresh if it is open with the "
        "ready label\n"
    )
    with State(stored) as state:  # the lock was released
        assert state.get(ISSUE, 42) is None
    assert kept(stored) == ({"pr_review:43", "merge:43", "issue:44"}, META)


def test_clear_pr_forgets_its_review_and_its_merge(stored: Path) -> None:
    code, out, err = run(clear_items, stored, kind="pr", number=43, everything=False)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "cleared review #43 (running, 1 attempt); its current head is reviewed on the next "
        "cycle, if open and not a draft",
        "cleared merge #43 (pending, 1 attempt); a writer's new merge command (/merge) starts it "
        "again (1 unsent GitHub write dropped)",
    ]
    assert kept(stored) == ({"issue:42", "issue:44"}, META)


def test_clear_all_forgets_every_item_and_keeps_the_repository_records(stored: Path) -> None:
    code, out, err = run(clear_items, stored, kind=None, number=None, everything=True)
    assert (code, err) == (0, "")
    assert out == (
        f"cleared 4 work items (2 issue, 1 review, 1 merge) from {stored}; kept the comment "
        "cursor, the review baseline and the other repository-wide records (1 unsent GitHub "
        "write dropped)\n"
    )
    assert kept(stored) == (set(), META)
    code, out, _ = run(clear_items, stored, kind=None, number=None, everything=True)
    assert (code, out) == (0, f"no work items in {stored}; nothing to clear\n")
    assert run(show_status, stored) == (0, f"no work items in {stored}\n", "")


@pytest.mark.parametrize(
    ("kind", "number", "what"), [("issue", 43, "issue #43"), ("pr", 42, "pull request #42")]
)
def test_clearing_what_is_not_there_says_so(
    stored: Path, kind: str, number: int, what: str
) -> None:
    before = stored.read_bytes()
    code, out, _ = run(clear_items, stored, kind=kind, number=number, everything=False)
    assert (code, out) == (1, f"{what} has no work item in {stored}; nothing to clear\n")
    assert stored.read_bytes() == before


def test_a_missing_state_file_is_a_friendly_line_and_stays_missing(path: Path) -> None:
    assert run(show_status, path) == (
        0, f"no work items: {path} does not exist yet (the daemon creates it)\n", ""
    )  # fmt: skip
    nothing = (f"nothing to clear: {path} does not exist\n", "")
    assert run(clear_items, path, kind="pr", number=1, everything=False) == (1, *nothing)
    assert run(clear_items, path, kind=None, number=None, everything=True) == (0, *nothing)
    assert list(path.parent.iterdir()) == []  # no state file, no lock file


def test_a_corrupted_state_file_is_one_line_naming_it(path: Path) -> None:
    path.write_text("{not json")
    clear_all = {"kind": None, "number": None, "everything": True}
    for command, args in ((show_status, {}), (clear_items, clear_all)):
        code, out, err = run(command, path, **args)
        assert (code, out) == (2, "")
        assert len(err.splitlines()) == 1
        assert f"state file {path} is corrupted" in err and f"rm {path}" in err
    assert path.read_text() == "{not json"


@pytest.mark.parametrize(
    ("kind", "number", "everything"),
    [
        (None, None, False),
        ("issue", None, False),
        ("pr", 0, False),
        ("bogus", 3, False),
        ("issue", 3, True),
    ],
)
def test_a_wrong_request_is_one_line(
    stored: Path, kind: str | None, number: int | None, everything: bool
) -> None:
    code, out, err = run(clear_items, stored, kind=kind, number=number, everything=everything)
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1 and err.startswith("clear: ")
    assert kept(stored)[0] == {"issue:42", "pr_review:43", "merge:43", "issue:44"}


def test_status_shows_each_items_spend_and_the_days(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    now = datetime.now(timezone.utc)
    with State(path) as state:
        state.put(item(WorkItemType.ISSUE, 4, cost_usd=0.25, spent_usd=0.75, runs=3))
        state.put(item(WorkItemType.PR_REVIEW, 7, cost_usd=0.1, spent_usd=0.1, runs=1))
        state.put(item(WorkItemType.ISSUE, 9, cost_usd=0.5))  # from before the ledger
        state.set_meta(DAILY_SPEND_META, {day_of(now): 0.6, "2000-01-01": 9.0})
    code, out, _ = run(show_status, path)
    assert code == 0
    assert "$0.7500 (3 runs)" in out and "$0.1000 " in out and "$0.5000" in out
    assert "cost $1.3500" in out and "today $0.6000" in out


def test_clearing_a_follow_up_item_makes_the_reviews_before_it_old(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with State(path) as state:
        state.put(WorkItem(type=WorkItemType.FOLLOW_UP, number=7, status=Status.DONE))
    code, out, _ = run(clear_items, path, kind="pr", number=7, everything=False)
    assert code == 0 and "cleared follow-up #7" in out
    with State(path, lock=False) as state:
        since = datetime.fromisoformat(state.get_meta(FOLLOWUPS_SINCE_META))
    assert datetime.now(timezone.utc) - since < timedelta(minutes=1)
