"""Shared pytest fixtures: the test world (fake GitHub, scripted model, git), a clean env, and
one recording fake per port for fast workflow unit tests (`tests/ports_fakes*.py`)."""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import SecretStr

from scripts.orchestrator.config import Settings
from scripts.orchestrator.fakes.git_world import GitWorld, git, make_world

from .ports_fakes import (
    UNIT_TOKEN,
    FakeClock,
    FakeSecretScan,
    MemoryState,
    RecordingChecks,
    RecordingGit,
    Remote,
    ScriptedClaude,
    SettingsFactory,
)
from .ports_fakes_github import RecordingGitHub

if TYPE_CHECKING:
    from scripts.orchestrator.ports import Checks, Claude, Clock, Git, GitHub, StateStore

SETTINGS_VARS = tuple(name.upper() for name in Settings.model_fields)
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def _is_loopback(host: object) -> bool:
    if not isinstance(host, str):
        return False
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True, scope="session")
def loopback_only() -> Iterator[None]:
    """Fail any test that tries to reach an address other than loopback (issue 3)."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            raise ConnectionRefusedError(f"tests may only reach loopback, not {address!r}")

    def connect(sock: socket.socket, address: Any) -> None:
        check(sock, address)
        real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        check(sock, address)
        return real_connect_ex(sock, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and not _is_loopback(name):
            raise socket.gaierror(f"tests may only resolve loopback names, not {name!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign,assignment]
    socket.getaddrinfo = getaddrinfo
    try:
        yield
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = real_connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = real_getaddrinfo


@pytest.fixture
def git_world(tmp_path: Path) -> GitWorld:
    """A bare origin with the sample project on `main`, and the daemon's clone of it."""
    return make_world(tmp_path / "world")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No orchestrator variables, no `gh` on PATH, and a git repository as the current dir."""
    for var in (*SETTINGS_VARS, "GH_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("git", "sh", "env"):
        found = shutil.which(tool)
        assert found, f"{tool} is needed by the tests"
        os.symlink(found, bin_dir / tool)
    monkeypatch.setenv("PATH", str(bin_dir))
    project = tmp_path / "project"
    project.mkdir()
    git(project, "init", "--quiet")
    monkeypatch.chdir(project)
    return project


# -- one recording fake per port (unit tests of the workflows) --------------------------------


@pytest.fixture
def remote() -> Remote:
    """The repository as both fakes see it: `main` only, until a test adds to it."""
    return Remote()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(name="gh")
def recording_github(remote: Remote, clock: FakeClock) -> RecordingGitHub:
    return RecordingGitHub(remote, clock.now)


@pytest.fixture(name="git")
def recording_git(remote: Remote, tmp_path: Path) -> RecordingGit:
    return RecordingGit(tmp_path / "worktrees", remote)


@pytest.fixture
def claude() -> Iterator[ScriptedClaude]:
    fake = ScriptedClaude()
    yield fake
    assert not fake.unused, "Claude results were queued but never asked for"


@pytest.fixture
def checks() -> RecordingChecks:
    return RecordingChecks()


@pytest.fixture
def scanner() -> FakeSecretScan:
    return FakeSecretScan()


@pytest.fixture
def memory_state() -> MemoryState:
    return MemoryState()


@pytest.fixture
def make_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> SettingsFactory:
    """Settings for unit tests, from the arguments only (the environment is ignored):
    `make_settings(pre_merge_commands=["pytest"])`."""
    for var in SETTINGS_VARS:
        monkeypatch.delenv(var, raising=False)

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "github_repo": "acme/widgets",
            "github_token": SecretStr(UNIT_TOKEN),
            "repo_path": tmp_path,
            "worktree_base": tmp_path / "worktrees",
            "state_file": tmp_path / "state.json",
            "claude_cli_path": "claude",
            "max_turns": 10,
            "claude_timeout": 60,
            "check_timeout": 60,
            **overrides,
        }
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


if TYPE_CHECKING:  # mypy holds each fake to its port

    def _fakes_fit_their_ports(
        gh: RecordingGitHub,
        git: RecordingGit,
        claude: ScriptedClaude,
        checks: RecordingChecks,
        clock: FakeClock,
        state: MemoryState,
    ) -> tuple[GitHub, Git, Claude, Checks, Clock, StateStore]:
        return gh, git, claude, checks, clock, state


from .fixtures_daemon import *  # noqa: E402, F403
from .fixtures_github import *  # noqa: E402, F403
from .fixtures_model import *  # noqa: E402, F403
from .fixtures_postgres import *  # noqa: E402, F403
from .fixtures_world import *  # noqa: E402, F403
