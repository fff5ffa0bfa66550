"""What the machine gives the settings: `gh`'s token, the clone in the current directory, the
Claude Code CLI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from .config_words import ConfigError
from .core.remotes import foreign_host, host_of_url, repo_of_url

if TYPE_CHECKING:
    from .config import Settings

TOKEN_REQUIRED_MESSAGE = "GITHUB_TOKEN environment variable is required"  # noqa: S105
GH_CLI_TIMEOUT = 10.0
GIT_CHECK_TIMEOUT = 10.0


def gh_cli_token(api_url: str) -> str:
    """The token of `gh auth login`, as the spec promises; the spec's error when there is none."""
    gh = shutil.which("gh")
    if gh is None:
        raise ConfigError(TOKEN_REQUIRED_MESSAGE)
    host = urlparse(api_url).hostname or "github.com"
    if host == "api.github.com":
        host = "github.com"
    try:
        proc = subprocess.run(
            [gh, "auth", "token", "--hostname", host],
            capture_output=True,
            text=True,
            timeout=GH_CLI_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        raise ConfigError(TOKEN_REQUIRED_MESSAGE) from None
    token = proc.stdout.strip()
    if proc.returncode != 0 or not token:
        raise ConfigError(TOKEN_REQUIRED_MESSAGE)
    return token


def git_toplevel(path: Path) -> Path:
    resolved = path.expanduser().resolve()
    try:
        proc = subprocess.run(
            ["git", "-C", str(resolved), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            timeout=GIT_CHECK_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise ConfigError("git is not installed: the orchestrator needs git on PATH") from None
    except subprocess.TimeoutExpired:
        raise ConfigError(f"REPO_PATH={str(path)!r}: git did not answer in time") from None
    if proc.returncode != 0 or not proc.stdout.strip():
        raise ConfigError(
            f"REPO_PATH={str(path)!r} is not valid: expected a git repository (a clone of "
            "the watched repository)"
        )
    return Path(proc.stdout.strip())


def clone_here(settings: Settings) -> Path | None:
    """The current directory's clone, when REPO_PATH is unset, if its remote's URL names
    GITHUB_REPO on the GitHub of GITHUB_API_URL; None otherwise (e.g. the orchestrator's own
    checkout, a clone made from a local path, or no repository at all): then the daemon keeps
    a clone of its own. A clone whose remote is a local path is used only when REPO_PATH
    names it."""
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True,
                             text=True, timeout=GIT_CHECK_TIMEOUT, check=False)  # fmt: skip
        if top.returncode != 0:
            return None
        url = subprocess.run(
            ["git", "-C", top.stdout.strip(), "remote", "get-url", settings.git_remote],
            capture_output=True, text=True, timeout=GIT_CHECK_TIMEOUT, check=False,
        )  # fmt: skip
    except FileNotFoundError:
        raise ConfigError("git is not installed: the orchestrator needs git on PATH") from None
    except subprocess.TimeoutExpired:
        raise ConfigError("git did not answer in time in the current directory") from None
    if url.returncode != 0:
        return None
    if not names_watched_repo(url.stdout.strip(), settings):
        return None
    return Path(top.stdout.strip())


def names_watched_repo(url: str, settings: Settings) -> bool:
    """Whether a remote URL is GITHUB_REPO on the GitHub of GITHUB_API_URL (a local path, a
    `file://` URL or another host is not)."""
    named = repo_of_url(url)
    return (
        named is not None
        and named.lower() == settings.github_repo.lower()
        and host_of_url(url) is not None
        and foreign_host(url, settings.github_api_url) is None
    )


def bundled_claude_cli() -> Path | None:
    """The Claude Code CLI shipped inside the claude-agent-sdk wheel, if present."""
    import claude_agent_sdk

    candidate = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"
    return candidate if candidate.is_file() else None


def find_claude_cli(value: str | None) -> str:
    """The Claude Code CLI to run: CLAUDE_CLI_PATH's, else `claude` on PATH, else the bundled
    one; `ConfigError` if there is none."""
    if value:
        found = shutil.which(value)
        if found is None:
            raise ConfigError(
                f"CLAUDE_CLI_PATH={value!r} is not valid: expected the path of an executable "
                "Claude Code CLI"
            )
        return found
    on_path = shutil.which("claude")
    if on_path:
        return on_path
    bundled = bundled_claude_cli()
    if bundled is None:
        raise ConfigError(
            "Claude Code CLI not found: install it (npm install -g @anthropic-ai/claude-code) "
            "or set CLAUDE_CLI_PATH"
        )
    return str(bundled)
