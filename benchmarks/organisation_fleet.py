"""The daemons of `organisation.py`, each in a process of its own, and what is measured of
them: the leases they hold (read from PostgreSQL), and the CPU they and the rest use.

PostgreSQL is started as the tests start it (`tests/fixtures_postgres.py`: on loopback, as
`nobody` when root).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import psycopg

from scripts.orchestrator.fakes.scripted_model import bundled_cli_path
from scripts.orchestrator.tests.fixtures_postgres import _start as start_postgres

STOP_TIMEOUT = 30.0  # seconds for a daemon to stop after SIGTERM, then its group is killed
LOOK_EVERY = 0.1  # seconds between two reads of the leases, or two looks at a condition
HOLDERS = "SELECT repo, owner FROM orchestrator_leases WHERE expires_at > now()"
MADE = "SELECT to_regclass('orchestrator_leases') IS NOT NULL"


# -- CPU, from /proc ---------------------------------------------------------------------------


def cpu_of(pid: int) -> tuple[float, float]:
    """CPU seconds (user and system) of one process, its threads included, and of the children
    it has waited for; zeros for a process that is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks, (int(fields[13]) + int(fields[14])) / ticks


def machine_cpu() -> tuple[float, float]:
    """(busy, all) CPU seconds of the machine since its start, every core together."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    idle = values[3] + values[4]  # idle and iowait
    return (sum(values[:8]) - idle) / ticks, sum(values[:8]) / ticks


class CpuMeter:
    """CPU seconds from its start: the machine's; this process's (the fake GitHub, the model)
    and its children's (the fake's git); the daemons' own and their children's (Claude CLIs,
    bwrap, socat, git). A killed daemon counts until its kill (`killing`)."""

    def __init__(self, daemons: list[Daemon]) -> None:
        self._machine, self._me = machine_cpu(), os.times()
        self._start = {d.pid: cpu_of(d.pid) for d in daemons}
        self._last = dict(self._start)

    def killing(self, daemon: Daemon) -> None:
        self._last[daemon.pid] = cpu_of(daemon.pid)

    def read(self, daemons: list[Daemon]) -> dict[str, float]:
        for d in daemons:
            if d.killed_at is None:
                self._last[d.pid] = cpu_of(d.pid)
        start, last = self._start, self._last
        # A killed daemon was waited for by this process: its whole life is among our children.
        killed = sum(sum(last[d.pid]) for d in daemons if d.killed_at is not None)
        (busy, every), me = machine_cpu(), os.times()
        return {
            "busy": busy - self._machine[0],
            "all": every - self._machine[1],
            "bench": me.user + me.system - self._me.user - self._me.system,
            "git": me.children_user
            + me.children_system
            - killed
            - self._me.children_user
            - self._me.children_system,
            "daemons": sum(last[p][0] - start[p][0] for p in start),
            "children": sum(last[p][1] - start[p][1] for p in start),
        }


# -- PostgreSQL and the leases -------------------------------------------------------------------


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL on 127.0.0.1 (its superuser URL), stopped by its handle."""
    server = start_postgres()
    try:
        yield server.url
    finally:
        server.stop()


def new_database(admin_url: str, name: str) -> str:
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def pid_of(owner: str) -> int:
    """The pid in a lease's owner, `host:pid:random`."""
    return int(owner.split(":")[1])


class LeaseLog:
    """The leases' holders (repository -> daemon pid), read every LOOK_EVERY seconds in a
    thread of its own; each change kept with its time."""

    def __init__(self, url: str) -> None:
        self.changes: list[tuple[float, dict[str, int]]] = [(time.monotonic(), {})]
        self._url = url
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="leases", daemon=True)

    def __enter__(self) -> LeaseLog:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)

    @property
    def now(self) -> dict[str, int]:
        with self._lock:
            return dict(self.changes[-1][1])

    def _run(self) -> None:
        with psycopg.connect(self._url, autocommit=True, connect_timeout=10) as conn:
            while not self._stop.wait(LOOK_EVERY):
                made = conn.execute(MADE).fetchone()
                rows = conn.execute(HOLDERS).fetchall() if made and made[0] else []
                held = {str(repo): pid_of(str(owner)) for repo, owner in rows}
                with self._lock:
                    if held != self.changes[-1][1]:
                        self.changes.append((time.monotonic(), held))

    def taken(self, repo: str, after: float, victim: int) -> float | None:
        """When `repo` was first held by a daemon other than `victim` after `after`."""
        with self._lock:
            return next((at for at, held in self.changes
                         if at > after and held.get(repo, victim) != victim), None)  # fmt: skip


# -- the daemons ---------------------------------------------------------------------------------


class Daemon:
    """`python -m scripts.orchestrator.main` in a process group of its own, in a folder of its
    own (its log there); stopped by its handle: SIGTERM, then SIGKILL to its group."""

    def __init__(self, folder: Path, env: Mapping[str, str]) -> None:
        folder.mkdir(parents=True)
        self.log_file = folder / "daemon.log"
        with self.log_file.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "scripts.orchestrator.main"],
                cwd=folder,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.killed_at: float | None = None
        self.terminated = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        """`kill -9` of its process group: a daemon that dies."""
        self.killed_at = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=STOP_TIMEOUT)

    def terminate(self) -> None:
        """SIGTERM, once: a second one would stop it at once."""
        if self.proc.poll() is None and not self.terminated:
            self.terminated = True
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> int:
        """SIGTERM (if not sent yet), then SIGKILL to its group after STOP_TIMEOUT; its exit
        code (-9 when it had to be killed)."""
        self.terminate()
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(timeout=STOP_TIMEOUT)

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_file.read_text().splitlines()[-lines:])


def daemon_env(folder: Path, claude_env: Mapping[str, str], **settings: str) -> dict[str, str]:
    """One daemon's environment, as a user on a machine of its own sets it: its own folders."""
    return {
        **claude_env,
        "PATH": os.environ.get("PATH", ""),
        "STATE_FILE": str(folder / "state.json"),
        "WORKTREE_BASE": str(folder / "worktrees"),
        "LOG_DIR": str(folder / "logs"),
        "CLAUDE_CLI_PATH": str(bundled_cli_path()),
        "MAX_TURNS": "10",
        "SANDBOX_READ_PATHS": json.dumps(sorted({sys.prefix, sys.base_prefix})),
        **settings,
    }


def alive(what: str, daemons: list[Daemon]) -> None:
    """RuntimeError when a daemon not killed on purpose has ended."""
    for daemon in daemons:
        if daemon.killed_at is None and daemon.proc.poll() is not None:
            raise RuntimeError(f"a daemon ended before {what}:\n{daemon.tail()}")


def until(what: str, done: Callable[[], bool], timeout: float, daemons: list[Daemon]) -> float:
    """Look at `done()` every LOOK_EVERY seconds until it is true (its time); RuntimeError
    after `timeout`, or when a daemon not killed on purpose has ended."""
    deadline = time.monotonic() + timeout
    while not done():
        alive(what, daemons)
        if time.monotonic() > deadline:
            tails = "\n\n".join(d.tail() for d in daemons)
            raise RuntimeError(f"no {what} after {timeout:.0f} s:\n{tails}")
        time.sleep(LOOK_EVERY)
    return time.monotonic()
