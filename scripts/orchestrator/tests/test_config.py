"""Tests for config: every variable, defaults, `.env` precedence, `gh` fallback, bad input."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

from scripts.orchestrator import config, config_machine
from scripts.orchestrator.config import (
    TOKEN_REQUIRED_MESSAGE,
    ConfigError,
    Settings,
    load_settings,
)
from scripts.orchestrator.core.models import ReviewEvent
from scripts.orchestrator.fakes.git_world import git

pytestmark = pytest.mark.usefixtures("clean_env")

TOKEN = "ghp_" + "t0ken" * 8


@pytest.fixture
def required(monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> None:
    monkeypatch.setenv("GITHUB_REPO", "harry-m/dashai")
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)


def _fake_gh(clean_env: Path, script: str) -> None:
    gh = clean_env.parent / "bin" / "gh"
    gh.write_text("#!/bin/sh\n" + script + "\n")
    gh.chmod(0o755)


@pytest.mark.usefixtures("required")
def test_defaults(clean_env: Path) -> None:
    s = load_settings()
    assert s.github_repo == "harry-m/dashai"
    assert (s.owner, s.repo) == ("harry-m", "dashai")
    assert s.token == TOKEN
    assert s.poll_interval == 60
    assert s.worktree_base == clean_env / "worktrees"
    assert s.ready_label == "ready"
    assert s.max_concurrent == 2
    assert s.state_file == clean_env / ".orchestrator-state.json"
    assert s.max_turns == 50
    assert s.auto_merge_enabled is True
    assert s.merge_comment_trigger == "/merge"
    assert s.pre_merge_commands == []
    assert s.github_api_url == "https://api.github.com"
    assert s.repo_path is None  # a repository without the remote: the daemon's own clone
    assert s.clone_url == "https://github.com/harry-m/dashai.git"
    assert s.git_remote == "origin"
    assert s.claude_cli_path and Path(s.claude_cli_path).name == "claude"
    assert s.claude_model is None
    assert s.claude_timeout == 1800
    assert s.check_timeout == 600
    assert s.failed_label == "claude-failed"
    assert s.review_comment_trigger == "/review"
    assert s.review_event is ReviewEvent.COMMENT
    assert s.review_on_push is True
    assert s.allow_sensitive_changes is False
    assert s.outsider_comments == "mark"
    assert s.review_outsider_pushes is False
    assert s.max_reviews_per_day == 10
    assert s.ci_wait_timeout == 900


EVERY_VARIABLE: list[tuple[str, str, str, Any]] = [
    ("POLL_INTERVAL", "5", "poll_interval", 5.0),
    ("POLL_INTERVAL", "0.5", "poll_interval", 0.5),
    ("READY_LABEL", "go", "ready_label", "go"),
    ("MAX_CONCURRENT", "4", "max_concurrent", 4),
    ("MAX_TURNS", "7", "max_turns", 7),
    ("AUTO_MERGE_ENABLED", "false", "auto_merge_enabled", False),
    ("AUTO_MERGE_ENABLED", "0", "auto_merge_enabled", False),
    ("MERGE_COMMENT_TRIGGER", "/ship", "merge_comment_trigger", "/ship"),
    (
        "PRE_MERGE_COMMANDS",
        '["pytest", "ruff check .", "bandit -r src/"]',
        "pre_merge_commands",
        ["pytest", "ruff check .", "bandit -r src/"],
    ),
    ("GITHUB_API_URL", "http://127.0.0.1:9/api/v3/", "github_api_url", "http://127.0.0.1:9/api/v3"),
    ("GIT_REMOTE", "upstream", "git_remote", "upstream"),
    ("REPO_URL", "git@github.com:a/b.git", "repo_url", "git@github.com:a/b.git"),
    ("CLAUDE_MODEL", "claude-sonnet-4-5", "claude_model", "claude-sonnet-4-5"),
    ("CLAUDE_TIMEOUT", "90", "claude_timeout", 90.0),
    ("CHECK_TIMEOUT", "30", "check_timeout", 30.0),
    ("FAILED_LABEL", "bot-failed", "failed_label", "bot-failed"),
    ("REVIEW_COMMENT_TRIGGER", "/look", "review_comment_trigger", "/look"),
    ("FOLLOWUP_TRIGGER", "/bot", "followup_trigger", "/bot"),
    ("FOLLOWUPS_ENABLED", "false", "followups_enabled", False),
    ("AUTO_FIX_ATTEMPTS", "0", "auto_fix_attempts", 0),
    ("REVIEW_EVENT", "APPROVE", "review_event", ReviewEvent.APPROVE),
    ("REVIEW_ON_PUSH", "false", "review_on_push", False),
    ("ALLOW_SENSITIVE_CHANGES", "true", "allow_sensitive_changes", True),
    ("OUTSIDER_COMMENTS", "drop", "outsider_comments", "drop"),
    ("REVIEW_OUTSIDER_PUSHES", "true", "review_outsider_pushes", True),
    ("MAX_REVIEWS_PER_DAY", "3", "max_reviews_per_day", 3),
    ("CI_WAIT_TIMEOUT", "60", "ci_wait_timeout", 60.0),
    ("SANDBOX", "off", "sandbox", "off"),
    (
        "SANDBOX_READ_PATHS",
        '["/opt/venv", "/srv/data"]',
        "sandbox_read_paths",
        [Path("/opt/venv"), Path("/srv/data")],
    ),
    ("SANDBOX_CHECK_NETWORK", "true", "sandbox_check_network", True),
    ("SHUTDOWN_GRACE", "0", "shutdown_grace", 0.0),
    ("SHUTDOWN_GRACE", "2.5", "shutdown_grace", 2.5),
    ("KEEP_WORKTREES", "true", "keep_worktrees", True),
    ("TRANSCRIPT_MAX_BYTES", "1000", "transcript_max_bytes", 1000),
    ("LOG_RETENTION_DAYS", "0.5", "log_retention_days", 0.5),
    ("STATE_RETENTION_DAYS", "7", "state_retention_days", 7.0),
    ("SERVE_HOST", "0.0.0.0", "serve_host", "0.0.0.0"),  # noqa: S104
    ("SERVE_PORT", "9000", "serve_port", 9000),
    ("WEBHOOK_POLL_INTERVAL", "300", "webhook_poll_interval", 300.0),
    ("CLAUDE_MAX_BUDGET_USD", "0.5", "claude_max_budget_usd", 0.5),
    ("ITEM_MAX_BUDGET_USD", "5", "item_max_budget_usd", 5.0),
    ("DAILY_MAX_BUDGET_USD", "50", "daily_max_budget_usd", 50.0),
    ("LEASE_SECONDS", "5", "lease_seconds", 5.0),
]


@pytest.mark.usefixtures("required")
@pytest.mark.parametrize("var", ["WEBHOOK_SECRET", "DASHBOARD_TOKEN", "STATE_URL"])
def test_serve_secrets_are_read_and_kept_secret(monkeypatch: pytest.MonkeyPatch, var: str) -> None:
    monkeypatch.setenv(var, "postgresql://u:s3cret-value@h/db" if var == "STATE_URL" else
                       "s3cret-value")  # fmt: skip
    value = getattr(load_settings(), var.lower())
    assert value.get_secret_value().endswith(("s3cret-value", "s3cret-value@h/db"))
    assert "s3cret" not in repr(value)


@pytest.mark.usefixtures("required")
@pytest.mark.parametrize("raw", ["-1", "65536", "http"])
def test_a_port_out_of_range_is_refused(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("SERVE_PORT", raw)
    with pytest.raises(ConfigError, match="SERVE_PORT"):
        load_settings()


@pytest.mark.usefixtures("required")
@pytest.mark.parametrize(("var", "raw", "field", "expected"), EVERY_VARIABLE)
def test_every_variable_is_read(
    monkeypatch: pytest.MonkeyPatch, var: str, raw: str, field: str, expected: Any
) -> None:
    monkeypatch.setenv(var, raw)
    assert getattr(load_settings(), field) == expected


def test_every_setting_is_covered_by_a_test() -> None:
    tested = {field for _, _, field, _ in EVERY_VARIABLE} | {
        "github_repo", "github_token", "worktree_base", "state_file", "repo_path",
        "claude_cli_path", "log_dir", "webhook_secret", "dashboard_token", "state_url",
        "github_repos", "github_repos_file",  # test_config_repos.py
    }  # fmt: skip
    assert tested == set(Settings.model_fields)


@pytest.mark.usefixtures("required")
def test_paths_are_made_absolute(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path, git_world: Any
) -> None:
    monkeypatch.setenv("WORKTREE_BASE", "trees")
    monkeypatch.setenv("STATE_FILE", "var/state.json")
    monkeypatch.setenv("LOG_DIR", "var/logs")
    monkeypatch.setenv("REPO_PATH", str(git_world.clone / "."))
    s = load_settings()
    assert s.log_dir == clean_env / "var" / "logs"
    assert s.worktree_base == clean_env / "trees"
    assert s.state_file == clean_env / "var" / "state.json"
    assert s.repo_path == git_world.clone.resolve()


@pytest.mark.usefixtures("required")
def test_repo_path_subdirectory_means_its_repository(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    (clean_env / "sub").mkdir()
    monkeypatch.setenv("REPO_PATH", str(clean_env / "sub"))
    assert load_settings().repo_path == clean_env


def test_dotenv_is_read(clean_env: Path) -> None:
    (clean_env / ".env").write_text(
        "# settings\nGITHUB_REPO=acme/widgets\nGITHUB_TOKEN=from-dotenv-token\n"
        'PRE_MERGE_COMMANDS=["pytest", "ruff check ."]\nMAX_CONCURRENT=3\n'
        "ANTHROPIC_API_KEY=ignored-unknown-variable\n"
    )
    s = load_settings()
    assert s.github_repo == "acme/widgets"
    assert s.token == "from-dotenv-token"
    assert s.pre_merge_commands == ["pytest", "ruff check ."]
    assert s.max_concurrent == 3


def test_environment_wins_over_dotenv(monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> None:
    (clean_env / ".env").write_text("GITHUB_REPO=acme/widgets\nGITHUB_TOKEN=x\nPOLL_INTERVAL=5\n")
    monkeypatch.setenv("GITHUB_REPO", "other/repo")
    monkeypatch.setenv("POLL_INTERVAL", "7")
    s = load_settings()
    assert (s.github_repo, s.poll_interval, s.token) == ("other/repo", 7, "x")


@pytest.mark.parametrize(
    ("var", "raw", "expected"),
    [
        ("GITHUB_REPO", "dashai", "owner/repo"),
        ("GITHUB_REPO", "a/b/c", "owner/repo"),
        ("GITHUB_REPO", "", "owner/repo"),
        ("POLL_INTERVAL", "0", "greater than 0"),
        ("POLL_INTERVAL", "-5", "greater than 0"),
        ("POLL_INTERVAL", "soon", "a number"),
        ("MAX_CONCURRENT", "0", "greater than 0"),
        ("MAX_CONCURRENT", "1.5", "whole number"),
        ("MAX_TURNS", "many", "whole number"),
        ("CLAUDE_TIMEOUT", "-1", "greater than 0"),
        ("CHECK_TIMEOUT", "0", "greater than 0"),
        ("CI_WAIT_TIMEOUT", "x", "a number"),
        ("AUTO_MERGE_ENABLED", "maybe", "true or false"),
        ("REVIEW_ON_PUSH", "perhaps", "true or false"),
        ("PRE_MERGE_COMMANDS", "pytest", "JSON array"),
        ("PRE_MERGE_COMMANDS", '"pytest"', "JSON array"),
        ("PRE_MERGE_COMMANDS", '["pytest", 3]', "JSON array"),
        ("PRE_MERGE_COMMANDS", '{"a": "b"}', "JSON array"),
        ("PRE_MERGE_COMMANDS", '[""]', "JSON array"),
        ("READY_LABEL", "   ", "label name"),
        ("READY_LABEL", "a,b", "label name"),
        ("MERGE_COMMENT_TRIGGER", "  ", "one-line command"),
        ("REVIEW_EVENT", "LGTM", "COMMENT, REQUEST_CHANGES, APPROVE"),
        ("OUTSIDER_COMMENTS", "hide", "'mark' or 'drop'"),
        ("POLL_INTERVAL", "inf", "a finite number"),
        ("CLAUDE_TIMEOUT", "nan", "a finite number"),
        ("SHUTDOWN_GRACE", "-1", "greater than or equal to 0"),
        ("SHUTDOWN_GRACE", "inf", "a finite number"),
        ("STATE_RETENTION_DAYS", "0", "greater than 0"),
        ("LOG_DIR", "", "set but empty"),
        (
            "READY_LABEL",
            "",
            "set but empty: expected a value (remove the line to use the default, 'ready')",
        ),
        ("MERGE_COMMENT_TRIGGER", "", "set but empty"),
        ("AUTO_MERGE_ENABLED", "", "default, true"),
        ("FAILED_LABEL", "READY", "also READY_LABEL (its default)"),
        ("READY_LABEL", "claude-failed", "also FAILED_LABEL (its default)"),
        ("REVIEW_COMMENT_TRIGGER", "/merge", "also MERGE_COMMENT_TRIGGER (its default)"),
        # Found by a newcomer: this blamed REVIEW_COMMENT_TRIGGER, which was never set.
        ("MERGE_COMMENT_TRIGGER", "/review", "also REVIEW_COMMENT_TRIGGER (its default)"),
        ("MAX_REVIEWS_PER_DAY", "0", "greater than 0"),
        ("FOLLOWUP_TRIGGER", "/merge", "also MERGE_COMMENT_TRIGGER (its default)"),
        ("FOLLOWUP_TRIGGER", "/review", "also REVIEW_COMMENT_TRIGGER (its default)"),
        ("FOLLOWUP_TRIGGER", "/claude do", "expected one word"),
        ("AUTO_FIX_ATTEMPTS", "-1", "expected a whole number from 0 to 20"),
        ("AUTO_FIX_ATTEMPTS", "1000", "expected a whole number from 0 to 20"),
        ("GITHUB_API_URL", "api.github.com", "http(s) URL"),
        ("REPO_PATH", "/", "git repository"),
        ("CLAUDE_CLI_PATH", "/nonexistent/claude", "executable Claude Code CLI"),
    ],
)
@pytest.mark.usefixtures("required")
def test_bad_input_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, raw: str, expected: str
) -> None:
    monkeypatch.setenv(var, raw)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(var), message
    assert expected in message
    assert "\n" not in message
    assert TOKEN not in message


def test_bad_value_in_dotenv_is_reported(clean_env: Path) -> None:
    (clean_env / ".env").write_text("GITHUB_REPO=a/b\nGITHUB_TOKEN=x\nPRE_MERGE_COMMANDS=pytest\n")
    with pytest.raises(ConfigError, match=r"^PRE_MERGE_COMMANDS .*JSON array"):
        load_settings()


def test_missing_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    with pytest.raises(ConfigError, match=r"^GITHUB_REPO is required \(expected owner/repo"):
        load_settings()


def test_missing_token_without_gh_gives_the_spec_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_REPO", "a/b")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value) == TOKEN_REQUIRED_MESSAGE


def test_empty_token_falls_back_to_gh(monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> None:
    monkeypatch.setenv("GITHUB_REPO", "a/b")
    monkeypatch.setenv("GITHUB_TOKEN", "")
    _fake_gh(clean_env, 'echo "$@" > args.txt; echo gho_fromghcli')
    assert load_settings().token == "gho_fromghcli"
    assert (clean_env / "args.txt").read_text().split() == [
        "auth",
        "token",
        "--hostname",
        "github.com",
    ]


def test_gh_fallback_uses_the_enterprise_host(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    monkeypatch.setenv("GITHUB_REPO", "a/b")
    monkeypatch.setenv("GITHUB_API_URL", "https://ghe.example.com/api/v3")
    _fake_gh(clean_env, 'echo "$@" > args.txt; echo tok')
    load_settings()
    assert "ghe.example.com" in (clean_env / "args.txt").read_text()


@pytest.mark.parametrize("script", ["echo 'not logged in' >&2; exit 1", "exit 0", "exec sleep 30"])
def test_gh_failure_gives_the_spec_message(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path, script: str
) -> None:
    monkeypatch.setenv("GITHUB_REPO", "a/b")
    monkeypatch.setattr(config_machine, "GH_CLI_TIMEOUT", 0.5)
    _fake_gh(clean_env, script)
    with pytest.raises(ConfigError, match=f"^{TOKEN_REQUIRED_MESSAGE}$"):
        load_settings()


@pytest.mark.usefixtures("required")
def test_claude_cli_path_is_resolved(monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> None:
    _fake_gh(clean_env, "true")  # any executable on PATH will do
    monkeypatch.setenv("CLAUDE_CLI_PATH", "gh")
    assert load_settings().claude_cli_path == str(clean_env.parent / "bin" / "gh")


@pytest.mark.usefixtures("required")
def test_claude_on_path_is_preferred_to_the_bundled_cli(clean_env: Path) -> None:
    claude = clean_env.parent / "bin" / "claude"
    claude.write_text("#!/bin/sh\n")
    claude.chmod(0o755)
    assert load_settings().claude_cli_path == str(claude)


@pytest.mark.usefixtures("required")
def test_token_is_hidden_in_repr() -> None:
    s = load_settings()
    assert TOKEN not in repr(s)
    assert TOKEN not in str(s.model_dump())


def test_an_empty_label_in_dotenv_is_refused_not_defaulted(clean_env: Path) -> None:
    (clean_env / ".env").write_text(
        "GITHUB_REPO=a/b\nGITHUB_TOKEN=x\nREADY_LABEL=\nCLAUDE_MODEL=\n"
    )
    with pytest.raises(ConfigError, match=r"^READY_LABEL is set but empty"):
        load_settings()
    # Optional settings may be empty: that is how .env.example leaves them unset.
    (clean_env / ".env").write_text("GITHUB_REPO=a/b\nGITHUB_TOKEN=x\nCLAUDE_MODEL=\n")
    assert load_settings().claude_model is None


def test_env_example_lists_every_variable_with_its_default(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    example = Path(__file__).parents[3] / ".env.example"
    text = example.read_text()
    names = {line.split("=", 1)[0] for line in text.splitlines() if "=" in line and line[0] != "#"}
    assert names == {field.upper() for field in Settings.model_fields}
    (clean_env / ".env").write_text(text)
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    from_example = load_settings()
    monkeypatch.setenv("GITHUB_REPO", "your-org/your-repo")
    (clean_env / ".env").unlink()
    assert from_example == load_settings()


def test_tests_cannot_reach_beyond_loopback() -> None:
    import socket

    with pytest.raises(OSError, match="loopback"):
        socket.create_connection(("api.github.com", 443), timeout=1)
    with socket.socket() as sock, pytest.raises(OSError, match="loopback"):
        sock.connect(("192.0.2.1", 443))


def test_a_dotenv_that_is_not_utf8_is_one_line(clean_env: Path) -> None:
    (clean_env / ".env").write_bytes(b"GITHUB_REPO=a/b\nGITHUB_TOKEN=\xff\xfe\n")
    with pytest.raises(ConfigError, match=r"\.env is not valid UTF-8 text"):
        load_settings()


def test_a_dotenv_directory_is_refused(clean_env: Path) -> None:
    (clean_env / ".env").mkdir()
    with pytest.raises(ConfigError, match="is not a file"):
        load_settings()


@pytest.mark.usefixtures("required")
def test_a_worktree_base_that_is_a_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    (clean_env / "trees").write_text("not a directory")
    monkeypatch.setenv("WORKTREE_BASE", "trees")
    with pytest.raises(ConfigError, match=r"^WORKTREE_BASE=.* expected a directory"):
        load_settings()


# Defaults the README writes in words, where the value depends on the machine or on the CLI.
README_WORDED = {"CLAUDE_CLI_PATH", "CLAUDE_MODEL", "REPO_PATH", "REPO_URL", "WEBHOOK_SECRET",
                 "DASHBOARD_TOKEN", "CLAUDE_MAX_BUDGET_USD", "ITEM_MAX_BUDGET_USD",
                 "DAILY_MAX_BUDGET_USD", "STATE_URL", "GITHUB_REPOS",
                 "GITHUB_REPOS_FILE"}  # fmt: skip


def _readme_settings() -> dict[str, str]:
    """`VARIABLE -> default` from the README's settings tables (a required one maps to "")."""
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    section = readme.split("### Required Settings", 1)[1].split("### Example Configuration", 1)[0]
    found: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`") and cells[0] != "`Variable`":
            name = cells[0].strip("`")
            required = "Required" in section.split(cells[0], 1)[0].rsplit("###", 1)[-1]
            found[name] = "" if required else cells[1]
    return found


def test_the_readme_tables_and_the_settings_agree(clean_env: Path) -> None:
    """Every setting is in the README's tables with the default the code has, and the tables
    hold nothing the code does not read."""
    documented = _readme_settings()
    assert set(documented) == {field.upper() for field in Settings.model_fields}
    for field, info in Settings.model_fields.items():
        name = field.upper()
        if info.is_required() or name in ("GITHUB_TOKEN", "GITHUB_REPO") or name in README_WORDED:
            continue
        default = info.get_default(call_default_factory=True)
        if isinstance(default, bool):
            expected = str(default).lower()
        elif isinstance(default, float) and default.is_integer():
            expected = str(int(default))
        elif isinstance(default, Path):
            expected = str(default) if str(default) == "." else f"./{default}"
        elif isinstance(default, list):
            expected = json.dumps(default)
        elif isinstance(default, Enum):
            expected = str(default.value)
        else:
            expected = str(default)
        assert documented[name] == f"`{expected}`", name


@pytest.mark.usefixtures("required")
@pytest.mark.parametrize(
    ("remote", "used"),
    [
        ("https://github.com/harry-m/dashai.git", True),  # run from the watched repo's clone
        ("git@github.com:Harry-M/dashai.git", True),
        ("ssh://git@ssh.github.com:443/harry-m/dashai.git", True),
        ("https://github.com/your-org/claude-orchestrator.git", False),  # the tool's checkout
        (None, False),  # a repository without the remote
        # Found by a newcomer: an orchestrator checkout cloned from a local path was taken for
        # the watched repository. A local path names no repository, so it is not.
        ("/home/me/src/claude-orchestrator", False),
        ("/srv/mirrors/dashai.git", False),
        ("file:///srv/mirrors/harry-m/dashai.git", False),
        ("../harry-m/dashai", False),
        ("https://evil.example/harry-m/dashai.git", False),  # the name, on another host
    ],
)
def test_without_repo_path_the_current_clone_is_used_only_if_it_is_the_watched_one(
    clean_env: Path, remote: str | None, used: bool
) -> None:
    if remote is not None:
        git(clean_env, "remote", "add", "origin", remote)
    assert load_settings().repo_path == (clean_env if used else None)


@pytest.mark.usefixtures("required")
def test_two_settings_that_clash_name_the_one_set_in_dotenv(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    (clean_env / ".env").write_text("MERGE_COMMENT_TRIGGER=/review\n")
    with pytest.raises(ConfigError, match=r"^MERGE_COMMENT_TRIGGER='/review' is not valid"):
        load_settings()
    # Found by a newcomer: .env.example's own line REVIEW_COMMENT_TRIGGER=/review is set too,
    # but left as it was: the one changed is named.
    example = (Path(__file__).parents[3] / ".env.example").read_text()
    (clean_env / ".env").write_text(example + "MERGE_COMMENT_TRIGGER=/review\n")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value) == (
        "MERGE_COMMENT_TRIGGER='/review' is not valid: it is also REVIEW_COMMENT_TRIGGER (its "
        "default); expected another command"
    )
    # Both changed: either may be named, and the other is not called a default.
    monkeypatch.setenv("REVIEW_COMMENT_TRIGGER", "/again")
    monkeypatch.setenv("MERGE_COMMENT_TRIGGER", "/again")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "='/again' is not valid: it is also" in str(info.value)
    assert "(its default)" not in str(info.value)


@pytest.mark.parametrize("where", ["environment", "dotenv"])
def test_state_file_set_but_empty_is_refused_as_the_daemon_refuses_it(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path, where: str
) -> None:
    if where == "environment":
        monkeypatch.setenv("STATE_FILE", "")
        (clean_env / ".env").write_text("STATE_FILE=from-dotenv.json\n")  # the environment wins
    else:
        (clean_env / ".env").write_text("STATE_FILE=\n")
    expected = (
        "STATE_FILE is set but empty: expected a value (remove the line to use the default, "
        "'./.orchestrator-state.json')"
    )
    with pytest.raises(ConfigError) as info:
        config.state_file_setting()
    assert str(info.value) == expected
    # The daemon's own rule says the same.
    monkeypatch.setenv("GITHUB_REPO", "a/b")
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value) == expected


def test_state_file_alone_is_read_from_the_environment_then_dotenv(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    assert config.state_file_setting() == clean_env / ".orchestrator-state.json"
    (clean_env / ".env").write_text("STATE_FILE=from-dotenv.json\n")
    assert config.state_file_setting() == clean_env / "from-dotenv.json"
    monkeypatch.setenv("STATE_FILE", "/elsewhere/state.json")
    assert config.state_file_setting() == Path("/elsewhere/state.json")


@pytest.mark.usefixtures("required")
def test_outside_any_repository_the_daemon_keeps_its_own_clone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    s = load_settings()
    assert s.repo_path is None and s.clone_url == "https://github.com/harry-m/dashai.git"
    monkeypatch.setenv("GITHUB_API_URL", "https://ghe.example.com/api/v3")
    assert load_settings().clone_url == "https://ghe.example.com/harry-m/dashai.git"
    monkeypatch.setenv("REPO_URL", "git@ghe.example.com:harry-m/dashai.git")
    assert load_settings().clone_url == "git@ghe.example.com:harry-m/dashai.git"
