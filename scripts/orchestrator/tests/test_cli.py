"""The command line itself: each command's help, -v anywhere, clear's usage, and the one-line
errors of `status` and `clear`, which read STATE_FILE alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.orchestrator.main import PROG, build_parser

DEADLINE = 30.0
README = Path(__file__).resolve().parents[3] / "README.md"


def run(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scripts.orchestrator.main", *args],
        cwd=cwd,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(cwd), "LANG": "C.UTF-8", **env},
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


@pytest.mark.parametrize("command", ["check", "demo", "status", "clear"])
def test_every_command_says_what_it_does_and_its_exit_codes(command: str, tmp_path: Path) -> None:
    result = run(command, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    usage, description, *_ = result.stdout.split("\n\n")
    assert usage.startswith(f"usage: {PROG} {command}")
    assert len(description.split()) > 20, description  # a description, not a restated name
    assert "exit codes: 0 " in result.stdout and "; 2 " in result.stdout


def test_the_daemon_s_help_gives_its_exit_codes(tmp_path: Path) -> None:
    result = run("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "exit codes (the daemon): 0 " in result.stdout
    assert f"{PROG} COMMAND --help" in result.stdout


@pytest.mark.parametrize(
    ("argv", "verbose"),
    [
        ([], False),
        (["-v"], True),
        (["status"], False),
        (["-v", "status"], True),
        (["status", "-v"], True),  # found by a newcomer: -v after the command was refused
        (["check", "--verbose"], True),
        (["check", "--fix", "-v"], True),
        (["demo", "-v", "--keep"], True),
        (["clear", "issue", "3", "-v"], True),
    ],
)
def test_verbose_goes_before_or_after_the_command(argv: list[str], verbose: bool) -> None:
    assert build_parser().parse_args(argv).verbose is verbose


def test_status_verbose_after_the_command_runs(tmp_path: Path) -> None:
    result = run("status", "-v", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no work items" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["clear"],  # found by a newcomer: this showed the top-level usage
        ["clear", "issue"],
        ["clear", "--all", "pr", "7"],
        ["clear", "7"],
    ],
)
def test_a_wrong_clear_shows_clear_s_usage_and_exits_2(args: list[str], tmp_path: Path) -> None:
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2
    usage, error = result.stderr.strip().splitlines()
    assert usage.startswith(f"usage: {PROG} clear ")
    assert error.startswith(f"{PROG} clear: error: ")
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not list(tmp_path.iterdir())  # nothing made


@pytest.mark.parametrize("command", [["status"], ["clear", "--all"]])
@pytest.mark.parametrize("where", ["environment", "dotenv"])
def test_an_empty_state_file_setting_is_one_line(
    command: list[str], where: str, tmp_path: Path
) -> None:
    """Found by a newcomer: `STATE_FILE=` made `status` read the default file in silence,
    where the daemon refuses to start."""
    env = {"STATE_FILE": ""} if where == "environment" else {}
    if where == "dotenv":
        (tmp_path / ".env").write_text("STATE_FILE=\n")
    result = run(*command, cwd=tmp_path, **env)
    assert result.returncode == 2
    assert result.stderr == (
        f"{PROG}: error: STATE_FILE is set but empty: expected a value (remove the line to use "
        "the default, './.orchestrator-state.json')\n"
    )
    assert result.stdout == ""


def test_the_readme_gives_clear_s_exit_codes() -> None:
    text = " ".join(README.read_text().split())
    assert (
        "`clear` exits 0 when it cleared something (or `--all` found nothing to clear), 1 when "
        "the issue or pull request has no work item, and 2 for a wrong request"
    ) in text
