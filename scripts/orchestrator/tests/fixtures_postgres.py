"""Pytest fixtures for a real throwaway PostgreSQL on loopback, and a fresh database per test."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

__all__ = ["pg_state_url", "postgres_url"]

# CI sets ORCHESTRATOR_POSTGRES_TESTS=required: there, a missing PostgreSQL fails the tests.
POSTGRES_REQUIRED = os.environ.get("ORCHESTRATOR_POSTGRES_TESTS") == "required"
START_TIMEOUT = 30.0  # seconds for the server to take connections; it takes under one
STOP_TIMEOUT = 15.0
INITDB_TIMEOUT = 60.0
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    # A throwaway cluster: losing it in a crash loses nothing, and durability costs time.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "32MB",
    "max_connections": "200",
}


def _unavailable(reason: str) -> None:
    """Skip, or fail where PostgreSQL is required (CI)."""
    if POSTGRES_REQUIRED:
        pytest.fail(f"ORCHESTRATOR_POSTGRES_TESTS=required but {reason}", pytrace=False)
    pytest.skip(f"{reason}; set ORCHESTRATOR_POSTGRES_TESTS=required to make this a failure")


def _binaries() -> tuple[Path, Path] | None:
    """`initdb` and `postgres` of one installation: on PATH, else Debian's newest."""
    on_path = shutil.which("initdb")
    candidates = [Path(on_path).resolve().parent] if on_path else []
    # Debian keeps them out of PATH, one folder per major version; the newest first.
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted((Path(v) for v in versions), key=_major, reverse=True)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder / "initdb", folder / "postgres"
    return None


def _major(folder: Path) -> int:
    name = folder.parent.name
    return int(name) if name.isdigit() else 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class PostgresServer:
    """A started cluster: its superuser URL, and the handle of its postmaster."""

    url: str
    process: subprocess.Popen[bytes]
    base: Path
    log: Path

    def stop(self) -> None:
        """A fast shutdown (SIGINT: sessions are ended), then SIGKILL if it does not end."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT)
        shutil.rmtree(self.base, ignore_errors=True)


@dataclass(frozen=True)
class _Owner:
    """Who runs the server: `nobody` when we are root (initdb refuses root), else ourselves."""

    uid: int | None = None
    gid: int | None = None
    groups: tuple[int, ...] | None = None

    def run(self, args: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            args, cwd=cwd, capture_output=True, timeout=INITDB_TIMEOUT, check=False,
            user=self.uid, group=self.gid, extra_groups=self.groups,
        )  # fmt: skip

    def start(self, args: list[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:  # the child keeps its own copy of the descriptor
            return subprocess.Popen(
                args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                # Its own session: a Ctrl-C of the tests does not stop it under a running test.
                start_new_session=True,
                user=self.uid, group=self.gid, extra_groups=self.groups,
            )  # fmt: skip


def _owner() -> _Owner:
    if os.geteuid() != 0:
        return _Owner()
    nobody = pwd.getpwnam("nobody")
    return _Owner(nobody.pw_uid, nobody.pw_gid, ())


def _reachable_by_others(path: Path) -> bool:
    """Whether every folder above `path` lets another user through (`nobody` must reach it)."""
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in path.parents)


def _start() -> PostgresServer:
    found = _binaries()
    if found is None:
        _unavailable("PostgreSQL is not installed (apt-get install postgresql)")
        raise AssertionError("unreachable")
    initdb, postgres = found
    owner = _owner()
    base = Path(tempfile.mkdtemp(prefix="orchestrator-pg-"))
    server: PostgresServer | None = None
    try:
        if owner.uid is not None:
            if not _reachable_by_others(base):
                pytest.fail(f"{base.parent} is closed to other users: nobody cannot reach it")
            os.chown(base, owner.uid, owner.gid if owner.gid is not None else -1)
        data, log = base / "data", base / "server.log"
        # Trust, on the cluster's own loopback address and socket only: it listens nowhere else.
        init = [str(initdb), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                "--locale=C", "--no-sync"]  # fmt: skip
        done = owner.run(init, base)
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")
            pytest.fail(f"initdb failed ({done.returncode}):\n{output}", pytrace=False)
        settings = {**SETTINGS, "unix_socket_directories": str(base)}
        options = [f"-c{name}={value}" for name, value in settings.items()]
        for _ in range(3):  # a port taken between choosing and binding it: another one
            port = _free_port()
            args = [str(postgres), "-D", str(data), "-p", str(port), *options]
            url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
            server = PostgresServer(url, owner.start(args, base, log), base, log)
            if _ready(server):
                return server
            if server.process.poll() is None or "could not bind" not in _tail(log):
                break
        pytest.fail(f"PostgreSQL did not start within {START_TIMEOUT:g} s:\n{_tail(log)}",
                    pytrace=False)  # fmt: skip
        raise AssertionError("unreachable")
    except BaseException:
        if server is not None:
            server.stop()
        shutil.rmtree(base, ignore_errors=True)
        raise


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-2000:]
    except OSError:
        return ""


def _ready(server: PostgresServer) -> bool:
    """Wait until the server takes a connection (True) or exits (False), within the deadline."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            psycopg.connect(server.url, connect_timeout=2).close()
            return True
        except psycopg.OperationalError:
            pass
        # The pause between two tries is a wait on the server itself: it ends if it exits.
        try:
            server.process.wait(timeout=0.02)
            return False
        except subprocess.TimeoutExpired:
            continue
    return False


# The server is shared by every module that uses it: a test module may import these fixtures
# (one definition per module for pytest), and they must still start a single server.
_shared: list[PostgresServer] = []
_users = 0
_guard = threading.Lock()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The superuser URL of a throwaway PostgreSQL on 127.0.0.1, for the whole session."""
    global _users
    with _guard:
        if not _shared:
            _shared.append(_start())
        _users += 1
    try:
        yield _shared[0].url
    finally:
        with _guard:
            _users -= 1
            if _users == 0:
                _shared.pop().stop()


@pytest.fixture
def pg_state_url(postgres_url: str) -> Iterator[str]:
    """The URL of a database of its own for one test, dropped afterwards."""
    name = f"state_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(postgres_url, autocommit=True, connect_timeout=10) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(postgres_url, autocommit=True, connect_timeout=10) as admin:
            # FORCE: a store the test left open must not keep its database alive.
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
