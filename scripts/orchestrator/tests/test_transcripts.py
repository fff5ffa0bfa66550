"""Tests for the transcripts of Claude's runs: files, modes, the cap, redaction, pruning, faults."""

from __future__ import annotations

import json
import os
import stat
import time
from datetime import timedelta
from pathlib import Path

import pytest
from claude_agent_sdk import AssistantMessage, ResultMessage, TextBlock, ToolUseBlock

from scripts.orchestrator.core.redact import REDACTED, Redactor
from scripts.orchestrator.transcripts import (
    PRUNE_EVERY,
    Transcript,
    Transcripts,
    as_record,
    prune_transcripts,
)

SECRET = "ghp_" + "S" * 36
TWO_WEEKS = timedelta(days=14)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _transcripts(log_dir: Path, max_bytes: int = 100_000, **kw: object) -> Transcripts:
    return Transcripts(
        log_dir,
        max_bytes=max_bytes,
        retention=TWO_WEEKS,
        redactor=Redactor([SECRET]),
        **kw,  # type: ignore[arg-type]
    )


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _assistant(text: str) -> AssistantMessage:
    return AssistantMessage(
        content=[TextBlock(text), ToolUseBlock("t1", "Bash", {"command": f"echo {text}"})],
        model="scripted",
    )


def test_a_run_gets_a_private_file_named_by_item_and_time(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    transcript = _transcripts(log_dir).start("issue#12")
    transcript.message(_assistant("hello"))
    transcript.close()

    assert transcript.path is not None and transcript.path.parent == log_dir / "issue-12"
    assert transcript.path.name.endswith("Z.jsonl") and "T" in transcript.path.name
    assert stat.S_IMODE(transcript.path.stat().st_mode) == 0o600
    assert stat.S_IMODE((log_dir / "issue-12").stat().st_mode) == 0o700
    assert stat.S_IMODE(log_dir.stat().st_mode) == 0o700
    [line] = _lines(transcript.path)
    assert line["type"] == "AssistantMessage"
    assert line["content"] == [
        {"type": "TextBlock", "text": "hello"},
        {"type": "ToolUseBlock", "id": "t1", "name": "Bash", "input": {"command": "echo hello"}},
    ]


def test_two_runs_of_one_item_in_one_second_get_two_files(tmp_path: Path) -> None:
    transcripts = _transcripts(tmp_path)
    first, second = transcripts.start("pr_review#7"), transcripts.start("pr_review#7")
    assert first.path is not None and second.path is not None and first.path != second.path
    assert first.path.parent == second.path.parent == tmp_path / "pr_review-7"
    # No item in the log context: the runs still get a folder, never one outside LOG_DIR.
    assert (path := transcripts.start("-").path) is not None and path.parent == tmp_path / "other"
    assert (path := transcripts.start("../..").path) is not None and path.parent.parent == tmp_path


def test_secrets_never_reach_the_file(tmp_path: Path) -> None:
    transcript = _transcripts(tmp_path).start("issue#1")
    transcript.message(_assistant(f"the token is {SECRET}"))
    transcript.write({"type": "request", SECRET: [f"x{SECRET}x", {"deep": SECRET}]})
    transcript.close()
    assert transcript.path is not None
    text = transcript.path.read_text()
    assert SECRET not in text and REDACTED in text
    assert all(isinstance(line, dict) for line in _lines(transcript.path))  # still JSON


def test_past_the_cap_one_line_says_it_was_cut_and_nothing_more(tmp_path: Path) -> None:
    transcript = _transcripts(tmp_path, max_bytes=1_000).start("issue#1")
    for n in range(50):
        transcript.write({"type": "stderr", "line": f"line {n} " + "x" * 40})
    transcript.close()

    assert transcript.path is not None
    assert transcript.path.stat().st_size <= 1_000
    lines = _lines(transcript.path)
    assert lines[-1] == {"type": "cut", "note": "transcript cut at 1000 bytes"}
    assert [line["type"] for line in lines[:-1]] == ["stderr"] * (len(lines) - 1)
    assert len(lines) > 5


def test_a_message_is_recorded_with_its_fields(tmp_path: Path) -> None:
    result = ResultMessage(
        subtype="success", duration_ms=10, duration_api_ms=5, is_error=False, num_turns=2,
        session_id="s1", total_cost_usd=0.01, result="done",
    )  # fmt: skip
    record = as_record(result)
    assert record["type"] == "ResultMessage" and record["num_turns"] == 2
    assert json.loads(json.dumps(record)) == record


def test_an_unwritable_log_dir_is_logged_once_and_the_runs_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    transcripts = _transcripts(blocker / "logs")
    with caplog.at_level("WARNING", logger="scripts.orchestrator.transcripts"):
        for _ in range(3):
            transcript = transcripts.start("issue#1")
            transcript.message(_assistant("hi"))  # writes nothing, raises nothing
            transcript.close()
            assert transcript.path is None
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "cannot write Claude's transcripts" in warnings[0]


def test_a_full_disk_stops_the_transcript_not_the_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    transcripts = _transcripts(tmp_path)
    full = Transcript(transcripts, tmp_path / "full.jsonl", os.open("/dev/full", os.O_WRONLY), 999)
    with caplog.at_level("WARNING", logger="scripts.orchestrator.transcripts"):
        full.message(_assistant("hi"))
        full.message(_assistant("again"))
        full.close()
        again = transcripts.start("issue#2")  # a later run writes again, and says nothing
        again.message(_assistant("hi"))
        again.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "No space left" in warnings[0]
    assert again.path is not None and len(_lines(again.path)) == 1


def test_old_transcripts_are_pruned_and_nothing_else(tmp_path: Path) -> None:
    old = tmp_path / "issue-1" / "2026-01-01T00-00-00Z.jsonl"
    young = tmp_path / "issue-2" / "2026-01-20T00-00-00Z.jsonl"
    other = tmp_path / "issue-1" / "notes.txt"
    loose = tmp_path / "top.jsonl"
    # Found by an outside review: LOG_DIR=~/logs would lose another program's old .jsonl.
    foreign = tmp_path / "app" / "events.jsonl"
    empty = tmp_path / "empty-folder-of-someone-else"
    empty.mkdir()
    for file in (old, young, other, loose, foreign):
        file.parent.mkdir(exist_ok=True)
        file.write_text("{}\n")
    now = time.time()
    for file in (old, other, loose, foreign):
        os.utime(file, (now - 15 * 86_400, now - 15 * 86_400))
    os.utime(young, (now - 13 * 86_400, now - 13 * 86_400))
    lonely = tmp_path / "issue-3" / "2026-01-02T00-00-00Z.jsonl"
    lonely.parent.mkdir()
    lonely.write_text("{}\n")
    os.utime(lonely, (now - 20 * 86_400, now - 20 * 86_400))

    assert prune_transcripts(tmp_path, TWO_WEEKS, now=now) == 2

    assert not old.exists() and not lonely.exists() and not lonely.parent.exists()
    assert young.exists() and other.exists() and loose.exists()
    assert foreign.exists() and empty.exists()
    assert prune_transcripts(tmp_path / "missing", TWO_WEEKS) == 0


def test_runs_prune_at_most_once_a_day(tmp_path: Path) -> None:
    clock = _Clock()
    transcripts = _transcripts(tmp_path, monotonic=clock)
    transcripts.prune()  # at start
    first = transcripts.start("issue#1")
    first.close()
    assert first.path is not None
    aged = time.time() - 15 * 86_400
    os.utime(first.path, (aged, aged))

    clock.now = PRUNE_EVERY - 1
    transcripts.start("issue#2").close()
    assert first.path.exists()  # not within the day
    clock.now = PRUNE_EVERY
    transcripts.start("issue#3").close()
    assert not first.path.exists()
