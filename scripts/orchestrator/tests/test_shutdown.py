"""The daemon stopped by a signal while Claude works: the real daemon in a process, the real CLI.

SIGTERM or SIGINT lets a Claude run finish within SHUTDOWN_GRACE (its pull request opens),
cancels it after, and a second signal stops at once; the exit is 0, no process outlives the
daemon, and the next start finishes the issue. A terminal's Ctrl-C, which kills the CLI too,
fails nothing.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import pytest

from scripts.orchestrator.daemon import INTERRUPTED
from scripts.orchestrator.fakes.model_script import write
from scripts.orchestrator.state import Status, WorkItemType

from .fixtures_daemon import DEADLINE, TAG, DaemonProcess, held
from .fixtures_model import wait_until_gone
from .fixtures_world import World

AT_ONCE = 30.0  # a cancelled run's CLI may take the SDK's 5 + 5 s to end, then is killed
GREET = {"greet.py": "def greet() -> str:\n    return 'hi'\n"}


def _marker(number: int) -> str:
    return f"Implement GitHub issue #{number}"


def _ready_issue(world: World) -> int:
    number = world.github.create_issue("Add a greeting", "Write greet.py", user="alice")
    world.github.add_labels(number, "ready", user="alice")
    return number


def _start_with_claude_working(
    world: World, daemons: list[DaemonProcess], release: threading.Event, **settings: str
) -> DaemonProcess:
    """A ready issue, and the daemon whose Claude run on it waits for the model's answer."""
    number = _ready_issue(world)
    # Then the script is exhausted: the model answers "Done." and the run ends.
    world.model.script_for(_marker(number), [held(write(GREET), release)])
    daemon = DaemonProcess(world, **settings)
    daemons.append(daemon)
    world.model.wait_for_requests(1, timeout=DEADLINE)  # Claude is working on it
    return daemon


def _pulls(world: World) -> list[dict[str, Any]]:
    numbers = range(1, world.github.next_number())
    return [world.github.pull(n) for n in numbers if "pull_request" in world.github.issue(n)]


def _assert_clean_stop(daemon: DaemonProcess) -> None:
    assert "Traceback" not in daemon.log()
    assert wait_until_gone(TAG, daemon.tag) == [], "a process of the daemon outlived it"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_claude_run_that_ends_within_the_grace_opens_its_pull_request(
    world: World, daemons: list[DaemonProcess], release: threading.Event, sig: int
) -> None:
    daemon = _start_with_claude_working(world, daemons, release, SHUTDOWN_GRACE="120")
    daemon.signal(sig)
    daemon.wait_for("waiting up to 120s for 1 Claude run(s): issue #1")
    release.set()
    assert daemon.exit_code() == 0, daemon.log()
    [pull] = _pulls(world)
    assert pull["head"]["ref"] == "feature/issue-1" and "Closes #1" in pull["body"]
    item = world.item(WorkItemType.ISSUE, 1)
    assert item is not None and item.status is Status.DONE and item.pr_number == pull["number"]
    assert len(world.model.main_requests()) == 2  # the held turn, then the end: no new run
    _assert_clean_stop(daemon)


def test_a_claude_run_past_the_grace_is_stopped_and_the_next_start_finishes_it(
    world: World, daemons: list[DaemonProcess], release: threading.Event
) -> None:
    daemon = _start_with_claude_working(world, daemons, release, SHUTDOWN_GRACE="0")
    daemon.signal()
    assert daemon.exit_code() == 0, daemon.log()
    assert "cancelled 1 job(s), after the 0s grace: issue #1" in daemon.log()
    _assert_clean_stop(daemon)
    item = world.item(WorkItemType.ISSUE, 1)
    assert item is not None and item.status is Status.PENDING and item.last_error == INTERRUPTED
    assert _pulls(world) == [] and "claude-failed" not in world.github.labels_of(1)
    release.set()  # the stopped run's answer goes nowhere
    world.model.script_for(_marker(1), [write(GREET)])  # the next run: write, then "Done."

    again = world.run_cli("--once")
    assert again.returncode == 0, again.stderr
    [pull] = _pulls(world)
    item = world.item(WorkItemType.ISSUE, 1)
    assert item is not None and item.status is Status.DONE and item.pr_number == pull["number"]
    assert "greet()" in world.git.file_at("feature/issue-1", "greet.py")


def test_a_second_signal_during_the_grace_stops_at_once(
    world: World, daemons: list[DaemonProcess], release: threading.Event
) -> None:
    daemon = _start_with_claude_working(world, daemons, release, SHUTDOWN_GRACE="600")
    daemon.signal()
    daemon.wait_for("waiting up to 600s for 1 Claude run(s): issue #1")
    daemon.signal()
    assert daemon.exit_code(timeout=AT_ONCE) == 0, daemon.log()  # far from the 600 s grace
    assert "SIGTERM again: stopping at once" in daemon.log()
    assert "cancelled 1 job(s), stopping at once: issue #1" in daemon.log()
    _assert_clean_stop(daemon)
    item = world.item(WorkItemType.ISSUE, 1)
    assert item is not None and item.status is Status.PENDING and item.last_error == INTERRUPTED


def test_ctrl_c_in_a_terminal_gives_the_claude_run_its_grace(
    world: World, daemons: list[DaemonProcess], release: threading.Event
) -> None:
    """A terminal's Ctrl-C signals the whole foreground process group. Claude's run has a
    session of its own (the sandbox's wrapper), so only the daemon gets it: the run goes on
    within SHUTDOWN_GRACE and its pull request opens. (Before, the CLI died of it at once.)"""
    daemon = _start_with_claude_working(world, daemons, release, SHUTDOWN_GRACE="120")
    os.killpg(daemon.proc.pid, signal.SIGINT)
    daemon.wait_for("waiting up to 120s for 1 Claude run(s): issue #1")
    release.set()
    assert daemon.exit_code() == 0, daemon.log()
    _assert_clean_stop(daemon)
    [pull] = _pulls(world)
    item = world.item(WorkItemType.ISSUE, 1)
    assert item is not None and item.status is Status.DONE and item.pr_number == pull["number"]
    assert "claude-failed" not in world.github.labels_of(1)
