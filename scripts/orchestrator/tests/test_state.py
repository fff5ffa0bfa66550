"""Tests for state: the spec's API, persistence, atomicity under kill -9, the lock, corruption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from scripts.orchestrator.core.errors import GitHubError
from scripts.orchestrator.core.work import IssueFacts, ReviewFacts, Write
from scripts.orchestrator.state import (
    State,
    StateError,
    StateLockedError,
    Status,
    WorkItem,
    WorkItemType,
    daily_pruning,
)

from .ports_fakes_github import RecordingGitHub


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / ".orchestrator-state.json"


def test_spec_snippet_clears_an_item(path: Path) -> None:
    with State(path) as state:
        state.put(WorkItem(type=WorkItemType.ISSUE, number=42, status=Status.DONE, pr_number=7))
    # The spec's snippet, verbatim apart from the path:
    state = State(Path(path))
    assert state.clear_item(WorkItemType.ISSUE, 42) is True
    state.close()
    with State(path) as again:
        assert again.get(WorkItemType.ISSUE, 42) is None
        assert again.clear_item(WorkItemType.ISSUE, 42) is False


def test_items_and_meta_survive_a_restart(path: Path) -> None:
    item = WorkItem(
        type=WorkItemType.PR_REVIEW,
        number=7,
        status=Status.FAILED,
        attempts=3,
        head_sha="a" * 40,
        pr_number=7,
        cost_usd=0.12,
        turns=9,
        duration_s=41.5,
        last_error="Claude timed out after 1800 s",
        facts=ReviewFacts(reviewed=("b" * 40,)),
    )
    with State(path) as state:
        state.put(item)
        state.put(WorkItem(type=WorkItemType.ISSUE, number=7))  # same number, other kind
        state.set_meta("first_watched_at", "2026-11-25T00:00:00+00:00")
    with State(path) as state:
        assert state.get(WorkItemType.PR_REVIEW, 7) == item
        assert state.get(WorkItemType.ISSUE, 7) is not None
        assert len(state.items()) == 2
        assert [i.number for i in state.items(WorkItemType.PR_REVIEW)] == [7]
        assert state.get_meta("first_watched_at") == "2026-11-25T00:00:00+00:00"
        assert state.get_meta("missing", "dflt") == "dflt"


def test_put_replaces_and_evolve_refreshes_updated_at(path: Path) -> None:
    with State(path) as state:
        first = WorkItem(type=WorkItemType.ISSUE, number=1)
        state.put(first)
        second = first.evolve(status=Status.IN_PROGRESS, attempts=1)
        state.put(second)
        assert state.items() == [second]
        assert second.updated_at >= first.updated_at
        assert second.created_at == first.created_at


def test_every_change_is_on_disk_at_once(path: Path) -> None:
    with State(path) as state:
        state.put(WorkItem(type=WorkItemType.MERGE, number=3))
        on_disk = json.loads(path.read_text())
        assert [i["number"] for i in on_disk["items"]] == [3]
        with state.batch():
            state.put(WorkItem(type=WorkItemType.MERGE, number=4))
            state.put(WorkItem(type=WorkItemType.MERGE, number=5))
            assert len(json.loads(path.read_text())["items"]) == 1  # not yet: one write
        assert len(json.loads(path.read_text())["items"]) == 3


def test_unserialisable_meta_is_refused_before_it_can_break_saving(path: Path) -> None:
    with State(path) as state, pytest.raises(TypeError):
        state.set_meta("bad", object())


def test_second_owner_is_refused_with_a_clear_message(path: Path) -> None:
    with State(path):
        with pytest.raises(StateLockedError) as info:
            State(path)
        assert str(path) in str(info.value)
        assert f"pid {os.getpid()}" in str(info.value)
        assert "stop it first" in str(info.value)
    with State(path):  # released on close
        pass


def test_lock_is_held_across_processes_and_dropped_when_the_holder_dies(path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _code(f"""
            from pathlib import Path
            from scripts.orchestrator.state import State
            s = State(Path({str(path)!r}))
            print("locked", flush=True)
            import time; time.sleep(60)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StateLockedError, match=f"pid {holder.pid}"):
            State(path)
    finally:
        holder.kill()
        holder.wait(timeout=10)
    with State(path):  # kill -9 released it: no stale lock to clean by hand
        pass


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (b"{not json", "corrupted"),
        (b"", "corrupted"),
        (b"[]", "corrupted"),
        (b'{"version": 1, "items": [{"type": "issue"}]}', "items.0.number"),
        (b'{"version": 1, "items": [{"type": "bogus", "number": 1}]}', "items.0.type"),
        (b'{"version": 99, "items": []}', "version 99"),
    ],
)
def test_corrupted_file_names_the_file_and_the_way_out(
    path: Path, content: bytes, detail: str
) -> None:
    path.write_bytes(content)
    with pytest.raises(StateError) as info:
        State(path)
    message = str(info.value)
    assert str(path) in message
    assert detail in message
    assert f"rm {path}" in message
    assert path.read_bytes() == content  # never silently replaced by an empty state


def test_unreadable_file_is_an_error_not_an_empty_state(path: Path) -> None:
    path.mkdir()  # reading a directory fails even for root, unlike chmod 000
    with pytest.raises(StateError, match="cannot read state file"):
        State(path)


def test_failed_load_releases_the_lock(path: Path) -> None:
    path.write_text("garbage")
    with pytest.raises(StateError):
        State(path)
    path.unlink()
    with State(path):
        pass


def test_missing_directory_is_created(tmp_path: Path) -> None:
    with State(tmp_path / "a" / "b" / "state.json") as state:
        state.set_meta("x", 1)
    assert (tmp_path / "a" / "b" / "state.json").is_file()


def test_debris_of_a_killed_writer_is_removed(path: Path) -> None:
    debris = path.parent / f".{path.name}.12345.tmp"
    debris.write_text("half a state")
    with State(path):
        assert not debris.exists()


WRITER = """
    import os, sys, time
    from pathlib import Path
    from scripts.orchestrator.state import State, WorkItem, WorkItemType
    path, point, generations = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    state = State(path)
    with state.batch():
        for n in range(2000):
            state.put(WorkItem(type=WorkItemType.ISSUE, number=n, last_error="x" * 100))
    for generation in range(1, generations + 1):
        state.set_meta("generation", generation)

    def stop_here(*args, **kwargs):
        print("at", point, flush=True)
        time.sleep(60)  # the parent kills us here, inside the save

    setattr(os, point, stop_here)
    state.set_meta("generation", generations + 1)
"""


@pytest.mark.parametrize("point", ["write", "fsync", "replace"])
def test_kill_9_inside_a_save_leaves_the_previous_state(path: Path, point: str) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", _code(WRITER), str(path), point, "3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == f"at {point}"
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait(timeout=10)
    with State(path) as state:
        assert state.get_meta("generation") == 3
        assert len(state.items()) == 2000


def _code(source: str) -> str:
    return textwrap.dedent(source)


def test_an_unusable_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StateError, match=r"cannot use state file .*STATE_FILE"):
        State(blocker / "state.json")


# -- pruning --------------------------------------------------------------------------------

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)
MONTH = timedelta(days=30)


def _finished(kind: WorkItemType, number: int, days_ago: float, **fields: object) -> WorkItem:
    ended = NOW - timedelta(days=days_ago)
    values: dict[str, object] = {"status": Status.DONE, "finished_at": ended, "updated_at": ended}
    values.update(fields)
    return WorkItem(type=kind, number=number, created_at=ended, **values)  # type: ignore[arg-type]


def test_pruning_forgets_old_finished_items_and_keeps_what_exactly_once_needs(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    issue, review, merge = WorkItemType.ISSUE, WorkItemType.PR_REVIEW, WorkItemType.MERGE
    dropped = [
        _finished(issue, 1, 31),
        _finished(issue, 2, 40, status=Status.FAILED, last_error="Claude failed"),
        _finished(review, 3, 31, facts=ReviewFacts(reviewed=("a" * 40,))),  # closed since
        _finished(merge, 4, 90),
        _finished(issue, 5, 45, pr_number=4),  # its pull request is closed
        # An older state's item without an end time: its last update counts.
        _finished(issue, 6, 60, finished_at=None),
    ]
    kept = [
        _finished(issue, 10, 29),  # not old enough
        _finished(issue, 11, 90, status=Status.PENDING),
        _finished(issue, 12, 90, status=Status.IN_PROGRESS),
        _finished(review, 13, 90),  # its pull request is still open: its heads stay known
        _finished(merge, 14, 90, status=Status.FAILED),  # likewise
        _finished(issue, 15, 90, pr_number=13),  # a new ready label updates its open PR
        _finished(issue, 16, 90, outbox=(Write(op="remove_label", number=16, text="ready"),)),
    ]
    with State(path) as state:
        with state.batch():
            for item in [*dropped, *kept]:
                state.put(item)
        with caplog.at_level("INFO", logger="scripts.orchestrator.state"):
            assert state.prune(MONTH, open_pulls={13, 14}, now=NOW) == len(dropped)
        assert "forgot 6 item(s) finished more than 30 days ago" in caplog.text
        assert state.prune(MONTH, open_pulls={13, 14}, now=NOW) == 0
    with State(path) as again:  # saved
        assert sorted(i.number for i in again.items()) == [i.number for i in kept]


def test_the_state_file_stays_bounded_while_items_keep_arriving(path: Path) -> None:
    """Ninety days of five items a day, pruned daily: the file stops growing after a month."""
    sizes = []
    with State(path) as state:
        for day in range(90):
            today = NOW + timedelta(days=day)
            with state.batch():
                for n in range(5):
                    number = day * 5 + n + 1
                    item = WorkItem(
                        type=WorkItemType.ISSUE, number=number, status=Status.DONE,
                        created_at=today, updated_at=today, finished_at=today,
                        pr_number=100_000 + number, last_error=None,
                        facts=IssueFacts(summary="s" * 500, pushed_sha="f" * 40),
                    )  # fmt: skip
                    state.put(item)
                state.set_meta("comments_handled", list(range(day * 50, day * 50 + 50)))
            state.prune(MONTH, open_pulls=(), now=today)
            sizes.append(path.stat().st_size)
        assert len(state.items()) <= 31 * 5
    settled = sizes[31]
    assert max(sizes[31:]) <= settled * 1.02, (settled, max(sizes[31:]))
    assert sizes[31] > sizes[10]  # it did grow while the items were young


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_running_daemon_prunes_the_state_once_a_day(path: Path) -> None:
    github = RecordingGitHub()
    open_pull = github.add_pull("topic")
    clock = _Clock()
    old = utc_days_ago(60)
    with State(path) as state:
        state.put(WorkItem(type=WorkItemType.PR_REVIEW, number=open_pull, status=Status.DONE,
                           finished_at=old))  # fmt: skip
        state.put(WorkItem(type=WorkItemType.ISSUE, number=90, status=Status.DONE, finished_at=old))
        hook = daily_pruning(state, github, MONTH, monotonic=clock)

        await hook()  # the first cycle prunes
        assert [i.number for i in state.items()] == [open_pull]
        state.put(WorkItem(type=WorkItemType.ISSUE, number=91, status=Status.DONE, finished_at=old))
        clock.now = 86_399.0
        await hook()  # not again within the day
        assert len(state.items()) == 2 and len(github.called("list_open_pulls")) == 1
        github.fail("list_open_pulls", GitHubError(502, "bad gateway"))
        clock.now = 86_400.0
        await hook()  # GitHub failed: nothing pruned, and tried again after the next cycle
        assert len(state.items()) == 2
        await hook()
        assert [i.number for i in state.items()] == [open_pull]


def utc_days_ago(days: float) -> datetime:
    return datetime.now(timezone.utc) - timedelta(days=days)
