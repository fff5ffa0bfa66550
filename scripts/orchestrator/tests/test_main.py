"""Tests for the command line: help, version, exit codes, signals, the state lock, no tracebacks."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.orchestrator.fakes.fake_github import FakeGitHub
from scripts.orchestrator.fakes.git_world import GitWorld, git

TOKEN = "ghp_" + "cli0" * 10
DEADLINE = 30.0


@pytest.fixture
def project(git_world: GitWorld) -> Path:
    """The daemon's clone of the watched repository (its `origin` is a local bare repo)."""
    return git_world.clone


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("git", "bwrap", "socat"):  # the tools the daemon needs on its PATH
        if not (bin_dir / tool).exists():
            os.symlink(shutil.which(tool) or tool, bin_dir / tool)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    env["ANTHROPIC_API_KEY"] = "sk-ant-" + "test" * 8  # the model's credential (never used)
    env.update(extra)
    return env


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scripts.orchestrator.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


def test_help(project: Path, tmp_path: Path) -> None:
    result = _run(["--help"], project, _env(tmp_path))
    assert result.returncode == 0
    for flag in ("--once", "--verbose", "--version", "--help"):
        assert flag in result.stdout


def test_version(project: Path, tmp_path: Path) -> None:
    from scripts.orchestrator import __version__

    result = _run(["--version"], project, _env(tmp_path))
    assert result.returncode == 0
    assert result.stdout.strip() == f"claude-orchestrator {__version__}"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"GITHUB_TOKEN": TOKEN}, "GITHUB_REPO is required"),
        ({"GITHUB_REPO": "a/b"}, "GITHUB_TOKEN environment variable is required"),
        ({"GITHUB_REPO": "nope", "GITHUB_TOKEN": TOKEN}, "GITHUB_REPO='nope' is not valid"),
        (
            {"GITHUB_REPO": "a/b", "GITHUB_TOKEN": TOKEN, "PRE_MERGE_COMMANDS": "pytest"},
            "PRE_MERGE_COMMANDS is not valid",
        ),
        (
            {"GITHUB_REPO": "a/b", "GITHUB_TOKEN": TOKEN, "MAX_CONCURRENT": "-2"},
            "MAX_CONCURRENT='-2' is not valid",
        ),
        (
            {"GITHUB_REPO": "a/b", "GITHUB_TOKEN": TOKEN, "REPO_PATH": "/"},
            "REPO_PATH='/' is not valid",
        ),
    ],
)
def test_configuration_errors_exit_2_with_one_line(
    project: Path, tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    result = _run(["--once"], project, _env(tmp_path, **env))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert TOKEN not in result.stderr


def test_corrupted_state_exits_2_and_keeps_the_file(project: Path, tmp_path: Path) -> None:
    state = project / ".orchestrator-state.json"
    state.write_text("{half")
    result = _run(["--once"], project, _env(tmp_path, GITHUB_REPO="a/b", GITHUB_TOKEN=TOKEN))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"state file {state} is corrupted" in result.stderr
    assert state.read_text() == "{half"


def test_once_runs_a_cycle_and_saves_the_state(
    project: Path, tmp_path: Path, fake_github: FakeGitHub
) -> None:
    env = _env(
        tmp_path,
        GITHUB_REPO="acme/widgets",
        GITHUB_TOKEN=fake_github.token,
        GITHUB_API_URL=fake_github.url,
        STATE_FILE="s.json",
        REPO_PATH=str(project),
    )
    result = _run(["--once", "--verbose"], project, env)
    assert result.returncode == 0, result.stderr
    assert "watching acme/widgets" in result.stderr
    assert "sandbox: bubblewrap" in result.stderr  # which sandbox guards the untrusted work
    meta = json.loads((project / "s.json").read_text())["meta"]
    assert meta["first_watched_at"] and meta["last_cycle_at"]
    assert fake_github.token not in result.stderr
    assert fake_github.requests_to("GET", "/repos/acme/widgets/issues")  # it really polled
    # Timestamps on every line: "2026-11-25 10:00:00,123 INFO ..."
    for line in result.stderr.strip().splitlines():
        assert line[:4].isdigit() and line[10] == " ", line


def test_an_idle_once_after_the_first_exits_0(
    project: Path, tmp_path: Path, fake_github: FakeGitHub
) -> None:
    """The second `--once` reads comments `since` the cursor: once answered 422 on GitHub, so
    every `--once` exited 1 and no `/merge` was ever seen."""
    fake_github.comment(fake_github.create_issue("An issue"), "An old comment")
    env = _env(
        tmp_path,
        GITHUB_REPO="acme/widgets",
        GITHUB_TOKEN=fake_github.token,
        GITHUB_API_URL=fake_github.url,
        STATE_FILE="s.json",
        REPO_PATH=str(project),
    )
    for _ in range(2):
        result = _run(["--once"], project, env)
        assert result.returncode == 0, result.stderr
    comments = fake_github.requests_to("GET", "/repos/acme/widgets/issues/comments")
    assert [r.status for r in comments if "since" in r.query] == [200]


def test_missing_labels_are_a_warning_at_start_in_the_words_of_check(
    project: Path, tmp_path: Path, fake_github: FakeGitHub
) -> None:
    """Found by a newcomer: start-up warned of READY_LABEL alone, in other words than
    `check`, which called both labels a problem. One rule now, one function, one wording."""
    env = _env(
        tmp_path,
        GITHUB_REPO="acme/widgets",
        GITHUB_TOKEN=fake_github.token,
        GITHUB_API_URL=fake_github.url,
        STATE_FILE="s.json",
        REPO_PATH=str(project),
    )
    both = (
        "acme/widgets lacks the labels ready (READY_LABEL) and claude-failed (FAILED_LABEL): "
        "nobody can pick them in GitHub's label menu until they exist; run `check --fix` to "
        "create them"
    )
    result = _run(["--once"], project, env)
    assert result.returncode == 0, result.stderr
    [line] = [line for line in result.stderr.splitlines() if "lacks the label" in line]
    assert "WARNING" in line and both in line
    check = _run(["check"], project, env)
    assert f"problem  labels         {both.split('; ')[0]}" in check.stdout, check.stdout
    assert f"fix: {both.split('; ')[1]}" in check.stdout
    fake_github.create_label("ready")
    one = "acme/widgets lacks the label claude-failed (FAILED_LABEL): nobody can pick it"
    assert one in _run(["--once"], project, env).stderr
    assert one in _run(["check"], project, env).stdout
    # The control: once both exist, start-up is quiet about them, and check says they exist.
    fake_github.create_label("claude-failed")
    result = _run(["--once"], project, env)
    assert result.returncode == 0 and "lacks the label" not in result.stderr
    assert (
        "ok       labels         ready and claude-failed exist"
        in _run(["check"], project, env).stdout
    )


def test_the_console_script_works_from_another_directory(project: Path, tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "claude-orchestrator"
    if not script.exists():
        pytest.skip("the package is not installed with its console script")
    result = subprocess.run(
        [str(script), "--help"],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--once" in result.stdout


class _Daemon:
    """A daemon subprocess whose stderr is read line by line without blocking the test."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scripts.orchestrator.main"],
            cwd=cwd,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def wait_for(self, text: str) -> None:
        while not any(text in line for line in self.seen):
            try:
                self.seen.append(self.lines.get(timeout=DEADLINE))
            except queue.Empty:
                raise AssertionError(f"no {text!r} in {self.seen}") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=DEADLINE)


@pytest.fixture
def daemon_env(tmp_path: Path, fake_github: FakeGitHub, project: Path) -> dict[str, str]:
    return _env(
        tmp_path,
        GITHUB_REPO="acme/widgets",
        GITHUB_TOKEN=fake_github.token,
        GITHUB_API_URL=fake_github.url,
        POLL_INTERVAL="3600",
        REPO_PATH=str(project),
    )


@pytest.fixture
def daemon(project: Path, daemon_env: dict[str, str]) -> Iterator[_Daemon]:
    running = _Daemon(project, daemon_env)
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_the_loop_cleanly(daemon: _Daemon, project: Path, sig: int) -> None:
    daemon.wait_for("watching acme/widgets")
    daemon.proc.send_signal(sig)
    assert daemon.proc.wait(timeout=DEADLINE) == 0
    daemon.wait_for("stopped; state saved")
    assert not any("Traceback" in line for line in daemon.seen)
    meta = json.loads((project / ".orchestrator-state.json").read_text())["meta"]
    assert "first_watched_at" in meta


def test_a_second_daemon_on_the_same_state_refuses_to_start(
    daemon: _Daemon, project: Path, daemon_env: dict[str, str]
) -> None:
    daemon.wait_for("watching acme/widgets")
    second = _run(["--once"], project, daemon_env)
    assert second.returncode == 2
    assert "in use by another orchestrator" in second.stderr
    assert f"pid {daemon.proc.pid}" in second.stderr
    assert "Traceback" not in second.stderr
    assert daemon.proc.poll() is None  # the first one is unaffected


@pytest.mark.parametrize(
    ("url", "api", "refused"),
    [
        ("https://github.com/acme/widgets.git", "https://api.github.com", False),
        ("git@github.com:acme/widgets.git", "https://api.github.com", False),
        ("ssh://git@ssh.github.com:443/acme/widgets.git", "https://api.github.com", False),
        ("https://ghe.example.com/acme/widgets.git", "https://ghe.example.com/api/v3", False),
        ("/srv/git/widgets.git", "https://api.github.com", False),  # a local mirror
        ("https://evil.example/acme/widgets.git", "https://api.github.com", True),
        ("git@evil.example:acme/widgets.git", "https://api.github.com", True),
        ("https://github.com.evil.example/acme/widgets", "https://api.github.com", True),
        ("https://github.com/acme/widgets.git", "https://ghe.example.com/api/v3", True),
        # git's scp-like syntax needs no user (found by an outside review)
        ("evil.example:acme/widgets.git", "https://api.github.com", True),
        ("[evil.example]:acme/widgets.git", "https://api.github.com", True),
        ("github.com:acme/widgets.git", "https://api.github.com", False),
    ],
)
def test_pushes_go_only_to_the_configured_host(url: str, api: str, refused: bool) -> None:
    from scripts.orchestrator.core.remotes import foreign_host

    assert (foreign_host(url, api) is not None) is refused


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://github.com/acme/widgets.git", "acme/widgets"),
        ("https://github.com/acme/widgets", "acme/widgets"),
        ("git@github.com:acme/widgets.git", "acme/widgets"),
        ("github.com:acme/widgets.git", "acme/widgets"),  # scp-like without a user
        ("ssh://git@ghe.example.com/acme/widgets.git", "acme/widgets"),
        ("/srv/git/widgets.git", None),
        ("../origin.git", None),
    ],
)
def test_repo_of_url(url: str, expected: str | None) -> None:
    from scripts.orchestrator.core.remotes import repo_of_url

    assert repo_of_url(url) == expected


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"GITHUB_TOKEN": "ghp_wrong_token_value_1234"}, "GitHub refused GITHUB_TOKEN (401"),
        ({"GITHUB_REPO": "acme/missing"}, "GITHUB_REPO=acme/missing is not visible"),
    ],
)
def test_github_refusals_are_one_line_at_start(
    tmp_path: Path,
    fake_github: FakeGitHub,
    git_world: GitWorld,
    changes: dict[str, str],
    expected: str,
) -> None:
    settings = {
        "GITHUB_REPO": "acme/widgets",
        "GITHUB_TOKEN": fake_github.token,
        "GITHUB_API_URL": fake_github.url,
    }
    env = _env(tmp_path, **{**settings, **changes})
    result = _run(["--once"], git_world.clone, env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0]
    assert "Traceback" not in result.stderr
    assert "ghp_wrong_token_value_1234" not in result.stderr


def test_without_bubblewrap_the_daemon_refuses_unless_told_otherwise(
    project: Path, tmp_path: Path, fake_github: FakeGitHub
) -> None:
    env = _env(
        tmp_path,
        GITHUB_REPO="acme/widgets",
        GITHUB_TOKEN=fake_github.token,
        GITHUB_API_URL=fake_github.url,
        STATE_FILE="s.json",
        REPO_PATH=str(project),
    )
    (tmp_path / "bin" / "bwrap").unlink()  # a machine without bubblewrap
    refused = _run(["--once"], project, env)
    assert refused.returncode == 2
    assert "SANDBOX=bwrap: bwrap is not installed" in refused.stderr
    assert "set SANDBOX=off" in refused.stderr and "Traceback" not in refused.stderr
    allowed = _run(["--once"], project, {**env, "SANDBOX": "off"})
    assert allowed.returncode == 0, allowed.stderr
    assert "SANDBOX=off: pull requests' code runs with the daemon's own rights" in allowed.stderr


def test_the_running_daemon_has_no_token_in_its_environment(
    daemon: _Daemon, fake_github: FakeGitHub
) -> None:
    """Started with GITHUB_TOKEN in its environment (the control: Popen was given it), the
    daemon restarts itself without it: /proc/<pid>/environ no longer shows it."""
    daemon.wait_for("watching acme/widgets")
    environ = Path(f"/proc/{daemon.proc.pid}/environ").read_bytes()
    assert fake_github.token.encode() not in environ
    assert b"GITHUB_REPO=acme/widgets" in environ  # the control: the rest is still there
    assert fake_github.requests_to("GET", "/repos/acme/widgets")  # and the token still works


def test_a_cli_in_the_home_directory_is_refused(tmp_path: Path) -> None:
    from scripts.orchestrator.startup import exposed_by_cli

    home = Path.home()
    assert exposed_by_cli(str(home / "claude")) == home.resolve()
    assert exposed_by_cli("/claude") == Path("/")
    assert exposed_by_cli(str(home / ".local" / "bin" / "claude")) is None
    assert exposed_by_cli("/usr/local/bin/claude") is None


SECRET_IN_URL = "ghp_" + "R" * 36


@pytest.mark.parametrize(
    ("remote", "words"),
    [
        ("https://github.com/someone/else.git",
         "is a clone of someone/else, not of GITHUB_REPO=acme/widgets"),
        ("https://evil.example/acme/widgets.git", "pushes to evil.example, not to 127.0.0.1"),
        (f"https://x-access-token:{SECRET_IN_URL}@github.com/acme/widgets.git",
         "carries a credential"),
    ],
)  # fmt: skip
def test_a_clone_the_daemon_must_not_push_from_is_refused_at_start(
    tmp_path: Path, fake_github: FakeGitHub, git_world: GitWorld, remote: str, words: str
) -> None:
    git(git_world.clone, "remote", "set-url", "origin", remote)
    env = _env(
        tmp_path,
        GITHUB_REPO="acme/widgets",
        GITHUB_TOKEN=fake_github.token,
        GITHUB_API_URL=fake_github.url,
        # Named: without REPO_PATH, a clone of another repository is not used at all.
        REPO_PATH=str(git_world.clone),
    )
    result = _run(["--once"], git_world.clone, env)
    assert result.returncode == 2
    assert words in result.stderr and SECRET_IN_URL not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert fake_github.requests == []  # refused before any GitHub call


def test_the_one_redactor_knows_the_token_and_the_model_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import base64

    from pydantic import SecretStr

    from scripts.orchestrator.config import Settings
    from scripts.orchestrator.wiring import known_secrets

    key = "model-key-" + "k" * 30  # not an `sk-ant-` shape: only the literal can catch it
    monkeypatch.setenv("ANTHROPIC_API_KEY", key)
    token = "t0ken-" + "x" * 30
    settings = Settings(_env_file=None, github_repo="o/r", github_token=SecretStr(token))  # type: ignore[call-arg]
    redactor = known_secrets(settings)
    shown = f"{key} {token} {base64.b64encode(key.encode()).decode()}"
    # (base64's last group, which holds at most the key's last two bytes, may remain)
    assert redactor.redact(shown).startswith("[REDACTED] [REDACTED] [REDACTED]")


def test_without_a_model_credential_the_daemon_refuses_to_start(
    project: Path, tmp_path: Path, fake_github: FakeGitHub
) -> None:
    """Found by a newcomer: it started, and the first ready issue got the CLI's "Please run
    /login" as a public comment. The control: the key in .env is read."""
    env = _env(
        tmp_path,
        GITHUB_REPO="acme/widgets",
        GITHUB_TOKEN=fake_github.token,
        GITHUB_API_URL=fake_github.url,
        STATE_FILE="s.json",
        ANTHROPIC_API_KEY="",
        REPO_PATH=str(project),
    )
    result = _run(["--once"], project, env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "no credential for Claude Code: set ANTHROPIC_API_KEY" in line
    assert fake_github.requests == []  # refused before any GitHub call
    (project / ".env").write_text("ANTHROPIC_API_KEY=sk-ant-from-dotenv\n")
    result = _run(["--once"], project, env)
    assert result.returncode == 0, result.stderr
