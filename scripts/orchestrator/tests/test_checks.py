"""Tests for pre-merge checks: commands in order, killed groups, no tokens, output tails."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from scripts.orchestrator import checks
from scripts.orchestrator.core import ci

from .fixtures_model import wait_until_gone

TOKEN = "s3cret-daemon-token-value"
GHP = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4"


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
