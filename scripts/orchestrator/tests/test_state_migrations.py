"""State files written by earlier versions load, typed, and are kept until the first save."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from scripts.orchestrator.core.work import KeptReview, PassedCommand, Write
from scripts.orchestrator.state import STATE_VERSION, State, StateError, Status, WorkItemType
from scripts.orchestrator.state_migrations import migrate

from .fixtures_world import World

# Written by the orchestrator at fddab25 (state version 1): every `data` key its workflows
# kept, for all three kinds, with an outbox and an error count.
V1 = Path(__file__).parent / "data" / "state-v1.json"


@pytest.fixture
def v1(tmp_path: Path) -> Path:
    path = tmp_path / ".orchestrator-state.json"
    shutil.copy(V1, path)
    return path


def test_a_version_1_file_loads_with_every_fact_typed(v1: Path) -> None:
    with State(v1) as state:
        failed = state.get(WorkItemType.ISSUE, 12)
        assert failed is not None and failed.status is Status.FAILED
        assert failed.issue.label_events == 2 and failed.issue.summary == "Added the parser."
        assert failed.errors == 1
        assert [w.op for w in failed.outbox] == ["comment", "remove_label", "add_label"]
        assert failed.outbox[0] == Write(
            op="comment", number=12, text="**Claude Orchestrator**: failed",
            id="0123456789abcdef", tried=True,
        )  # fmt: skip
        resuming = state.get(WorkItemType.ISSUE, 13)
        assert resuming is not None
        assert resuming.issue.remote_sha == "c" * 40 and resuming.issue.updating_pull == 40
        done = state.get(WorkItemType.ISSUE, 14)
        assert done is not None and done.issue.pushed_sha == "d" * 40 and done.pr_number == 41

        review = state.get(WorkItemType.PR_REVIEW, 41)
        assert review is not None
        assert review.review.reviewed == ("f" * 40,)
        assert review.review.retry_at is not None and review.review.retry_at.hour == 6
        assert review.review.forced and review.review.last_review == "Looks fine."
        assert review.review.unposted == KeptReview(
            body="Review body", event="COMMENT", commit_id="e" * 40, text="Review"
        )
        baseline = state.get(WorkItemType.PR_REVIEW, 42)
        assert baseline is not None and baseline.review.baseline
        requested = state.get(WorkItemType.PR_REVIEW, 43)
        assert requested is not None and requested.review.requested

        merged = state.get(WorkItemType.MERGE, 41)
        assert merged is not None
        facts = merged.merge
        assert (facts.trigger_comment_id, facts.requested_by) == (3000002, "carol")
        assert facts.base_ref == "main" and facts.requested_head == "e" * 40
        assert facts.merging_head == "e" * 40 and facts.tested_base == "6" * 40
        assert facts.results == (
            PassedCommand(command="pytest -q", duration_s=12.5),
            PassedCommand(command="ruff check .", duration_s=0.8),
        )
        assert facts.ci == "passed" and facts.merge_sha == "5" * 40
        waiting = state.get(WorkItemType.MERGE, 44)
        assert waiting is not None and waiting.status is Status.PENDING
        assert waiting.merge.merging_head is None
        assert state.get_meta("comments_handled") == [3000001, 3000002]


def test_the_first_save_writes_the_new_version_and_the_old_file_is_kept(v1: Path) -> None:
    original = v1.read_bytes()
    with State(v1) as state:
        state.set_meta("touched", True)
    saved = json.loads(v1.read_text())
    assert saved["version"] == STATE_VERSION
    assert all("data" not in item and "facts" in item for item in saved["items"])
    backup = v1.with_name(v1.name + ".v1.bak")
    assert backup.read_bytes() == original
    assert backup.stat().st_mode & 0o777 == 0o600
    with State(v1) as again:  # the new file loads as it is, and the copy is not overwritten
        assert again.get_meta("touched") is True
    assert backup.read_bytes() == original


def test_a_reader_of_a_version_1_file_writes_nothing(v1: Path) -> None:
    """`status` reads while the daemon runs: it must not write the copy (or anything)."""
    before = sorted(p.name for p in v1.parent.iterdir())
    with State(v1, lock=False) as state:
        assert state.items()
    assert sorted(p.name for p in v1.parent.iterdir()) == before


def test_migration_keeps_what_it_knows_and_drops_only_unknown_keys() -> None:
    document = {
        "version": 1,
        "items": [
            {"type": "merge", "number": 1, "data": {"base_ref": "main", "stray": 1}},
            {"type": "issue", "number": 2},
        ],
    }
    migrated = migrate(document, 2)
    assert migrated["version"] == 2
    assert migrated["items"][0]["facts"] == {"kind": "merge", "base_ref": "main"}
    assert migrated["items"][1] == {
        "type": "issue", "number": 2, "facts": {"kind": "issue"}, "outbox": [], "errors": 0
    }  # fmt: skip


@pytest.mark.parametrize(
    "content",
    [
        b'{"version": 1, "items": [{"type": "merge", "number": 1, "data": {"results": 5}}]}',
        b'{"version": 0, "items": []}',
    ],
)
def test_an_unmigratable_file_is_a_clear_error_and_stays(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with pytest.raises(StateError, match="cannot be migrated") as info:
        State(path)
    assert f"rm {path}" in str(info.value)
    assert path.read_bytes() == content
    assert not list(tmp_path.glob("*.bak"))


def test_a_file_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": STATE_VERSION + 1, "items": []}))
    with pytest.raises(StateError, match="newer orchestrator"):
        State(path)


async def test_the_daemon_resumes_a_merge_from_a_version_1_file(world: World) -> None:
    """Upgrading in place: the daemon stopped with a merge waiting, in the old format; the new
    daemon lands it, does not review the pull request again, and keeps the old file."""
    assert await world.once() == 0
    world.git.push_branch("topic", {"feature.py": "VALUE = 1\n"}, "work on topic")
    number = world.github.create_pull("Change topic", "topic", body="", user="dave")
    head = world.github.pull(number)["head"]["sha"]
    meta = json.loads(world.state_file.read_text())["meta"]
    old = {
        "version": 1,
        "meta": meta,
        "items": [
            {"type": "pr_review", "number": number, "status": "done", "head_sha": head,
             "data": {"reviewed": [head], "last_review": "Fine."}},
            {"type": "merge", "number": number, "status": "pending", "attempts": 1,
             "data": {"trigger_comment_id": 1, "base_ref": "main", "requested_head": head,
                      "requested_by": "carol"}},
        ],
    }  # fmt: skip
    world.state_file.write_text(json.dumps(old))

    assert await world.once() == 0
    assert world.github.pull(number)["merged"] is True
    assert not world.github.mutations_named("create_review"), "reviewed again after upgrade"
    assert json.loads(world.state_file.read_text())["version"] == STATE_VERSION
    assert json.loads(world.state_file.with_name("state.json.v1.bak").read_text()) == old


@pytest.mark.parametrize(
    "content",
    [
        b'{"items": [{"type": "issue", "number": 1, "data": "not a dict"}]}',
        b'{"version": "1", "items": []}',
    ],
)
def test_a_hand_edited_file_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with pytest.raises(StateError, match="corrupted"):
        State(path)
    assert not list(tmp_path.glob("*.bak"))


def test_a_file_without_a_version_is_version_1(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(
        json.dumps({"items": [{"type": "issue", "number": 3, "data": {"label_events": 2}}]})
    )
    with State(path) as state:
        item = state.get(WorkItemType.ISSUE, 3)
        assert item is not None and item.issue.label_events == 2
