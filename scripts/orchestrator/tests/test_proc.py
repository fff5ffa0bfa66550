"""Tests for child processes: output, timeouts that kill the whole group, no inherited tokens."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from scripts.orchestrator import proc

from .fixtures_model import wait_until_gone


async def test_output_and_exit_code(tmp_path: Path) -> None:
    done = await proc.run(["sh", "-c", "echo out; echo err >&2; exit 3"], cwd=tmp_path, timeout=10)
    assert (done.returncode, done.stdout, done.stderr, done.ok) == (3, "out\n", "err\n", False)
    assert done.output == "out\nerr"


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex
    env = proc.child_env(extra={"TEST_TAG": tag})
    # The shell starts a child that would outlive a kill of the shell alone.
    command = "sleep 300 & sleep 300; wait"
    done = await proc.run(["sh", "-c", command], cwd=tmp_path, timeout=0.5, env=env)
    assert done.timed_out and done.returncode is None and not done.ok
    assert wait_until_gone("TEST_TAG", tag) == []


async def test_cancellation_kills_the_group(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex
    env = proc.child_env(extra={"TEST_TAG": tag})
    task = asyncio.create_task(
        proc.run(["sh", "-c", "sleep 300 & wait"], cwd=tmp_path, timeout=60, env=env)
    )
    deadline = asyncio.get_running_loop().time() + 10
    while len(proc.processes_with_env("TEST_TAG", tag)) < 2:
        assert asyncio.get_running_loop().time() < deadline, "the command never started"
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert wait_until_gone("TEST_TAG", tag) == []


async def test_background_leftovers_are_killed_after_a_normal_exit(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex
    env = proc.child_env(extra={"TEST_TAG": tag})
    done = await proc.run(
        ["sh", "-c", "(sleep 300 >/dev/null 2>&1 &) ; echo started"],
        cwd=tmp_path,
        timeout=10,
        env=env,
    )
    assert done.ok
    assert wait_until_gone("TEST_TAG", tag) == []


async def test_children_never_see_github_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret_value_of_the_daemon")
    monkeypatch.setenv("GH_TOKEN", "gho_another_secret_value")
    monkeypatch.setenv("HARMLESS", "kept")
    done = await proc.run(["env"], cwd=tmp_path, timeout=10)
    assert "secret_value" not in done.stdout and "another_secret" not in done.stdout
    assert "HARMLESS=kept" in done.stdout


async def test_shell_mode_runs_a_command_line(tmp_path: Path) -> None:
    done = await proc.run(["echo a && echo b"], cwd=tmp_path, timeout=10, shell=True)
    assert done.stdout.split() == ["a", "b"]


async def test_a_limit_stops_an_endless_output_at_the_limit(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex
    env = proc.child_env(extra={"TEST_TAG": tag})
    # `yes` never ends on its own: only the limit stops it, long before the timeout.
    done = await proc.run(["sh", "-c", "echo warned >&2; yes"], cwd=tmp_path, timeout=60,
                          env=env, limit=100_000)  # fmt: skip
    assert done.cut and done.ok and not done.timed_out
    assert len(done.stdout) == 100_000 and done.stdout.startswith("y\ny\n")
    assert done.stderr == "warned\n"
    assert wait_until_gone("TEST_TAG", tag) == []


async def test_an_output_within_the_limit_is_whole(tmp_path: Path) -> None:
    done = await proc.run(["sh", "-c", "seq 1000; echo e >&2; exit 4"], cwd=tmp_path,
                          timeout=10, limit=100_000)  # fmt: skip
    assert not done.cut and done.returncode == 4 and not done.ok
    assert done.stdout.splitlines()[-1] == "1000" and done.stderr == "e\n"


async def test_a_limited_read_still_times_out(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex
    env = proc.child_env(extra={"TEST_TAG": tag})
    done = await proc.run(["sh", "-c", "echo partial; yes >&2 & sleep 300"], cwd=tmp_path,
                          timeout=0.5, env=env, limit=1000)  # fmt: skip
    assert done.timed_out and not done.ok
    assert wait_until_gone("TEST_TAG", tag) == []
