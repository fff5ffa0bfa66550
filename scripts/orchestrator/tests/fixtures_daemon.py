"""The daemon as a user starts it, in a process of its own, for tests that signal or serve it."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Collection, Iterator

import pytest

from scripts.orchestrator.fakes.model_script import Dynamic, RecordedRequest, Step
from scripts.orchestrator.fakes.scripted_model import bundled_cli_path

from .fixtures_world import World

__all__ = ["DEADLINE", "TAG", "DaemonProcess", "daemons", "held", "release"]

DEADLINE = 60.0  # for the CLI to start, and for the daemon to stop when it should
TAG = "SHUTDOWN_TEST_TAG"  # in the daemon's environment, so in every process it starts


class DaemonProcess:
    """`python -m scripts.orchestrator.main` in a process group of its own; its stderr is
    read line by line without blocking the test."""

    def __init__(
        self, world: World, *args: str, unset: Collection[str] = (), **settings: str
    ) -> None:
        """`settings` added to the world's environment, without the variables in `unset`."""
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
        env = {k: v for k, v in env.items() if k not in unset}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scripts.orchestrator.main", *args],
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
        """What it has written so far."""
        while True:
            try:
                self.seen.append(self._lines.get_nowait())
            except queue.Empty:
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
