"""The daemon stopped by a signal while Claude works: the real daemon in a process, the real CLI.

SIGTERM or SIGINT lets a Claude run finish within SHUTDOWN_GRACE (its pull request opens),
cancels it after, and a second signal stops at once; the exit is 0, no process outlives the
daemon, and the next start finishes the issue. A terminal's Ctrl-C, which kills the CLI too,
fails nothing.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from scripts.orchestrator.daemon import INTERRUPTED
from scripts.orchestrator.fakes.model_script import Dynamic, RecordedRequest, Step, write
from scripts.orchestrator.fakes.scripted_model import bundled_cli_path
from scripts.orchestrator.state import Status, WorkItemType

from .fixtures_model import wait_until_gone
from .fixtures_world import World

DEADLINE = 60.0  # for the CLI to start, and for the daemon to stop when it should
AT_ONCE = 30.0  # a cancelled run's CLI may take the SDK's 5 + 5 s to end, then is killed
TAG = "SHUTDOWN_TEST_TAG"  # in the daemon's environment, so in every process it starts
GREET = {"greet.py": "def greet() -> str:\n    return 'hi'\n"}


class DaemonProcess:
    """`python -m scripts.orchestrator.main` in a process group of its own; its stderr is
    read line by line without blocking the test."""

    def __init__(self, world: World, **settings: str) -> None:
        self.tag = uuid.uuid4().hex
        env = {
            **world.claude_env,
            "PATH": os.environ.get("PATH", ""),
            "GITHUB_REPO": world.settings.github_repo,
            "GITHUB_TOKEN": world.github.token,
            "GITHUB_API_URL": world.github.url,
            "REPO_PATH": str(world.settings.repo_path),
            "WORKTREE_BASE": str(world.settings.worktree_base),
            "STATE_FILE": str(world.state_file),
            "CLAUDE_CLI_PATH": str(bundled_cli_path()),
            "MAX_TURNS": str(world.settings.max_turns),
            "POLL_INTERVAL": "3600",
            TAG: self.tag,
            **settings,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scripts.orchestrator.main"],
            cwd=world.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # stopped by its handle, with everything it started
        )
        self.seen: list[str] = []
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._lines.put(line)

    def wait_for(self, text: str) -> None:
        deadline = time.monotonic() + DEADLINE
        while not any(text in line for line in self.seen):
            try:
                self.seen.append(self._lines.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"no {text!r} in {''.join(self.seen)}") from None

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def exit_code(self, timeout: float = DEADLINE) -> int:
        code = self.proc.wait(timeout=timeout)
        self.wait_for("stopped; state saved")  # and the rest of its log is read
        return code

    def log(self) -> str:
        return "".join(self.seen)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=DEADLINE)


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    """The daemons a test starts; any still running at its end is killed with its group."""
    started: list[DaemonProcess] = []
    yield started
    for daemon in started:
        daemon.kill()


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Releases the model's held turn; set at the end whatever happened."""
    event = threading.Event()
    yield event
    event.set()


def held(step: Step, release: threading.Event) -> Dynamic:
    """A turn the scripted model answers with `step` only once `release` is set."""

    def answer(_request: RecordedRequest) -> Step:
        release.wait(DEADLINE)
        return step

    return answer


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
