"""Configuration: typed settings from the environment and `.env`, validated into one-line errors."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin
from urllib.parse import urlparse

from dotenv import dotenv_values
from pydantic import (
    Field,
    PositiveInt,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from .config_machine import (
    TOKEN_REQUIRED_MESSAGE as TOKEN_REQUIRED_MESSAGE,
)
from .config_machine import (
    clone_here,
    gh_cli_token,
    git_toplevel,
)
from .config_machine import (
    find_claude_cli as find_claude_cli,
)
from .config_words import EXPECTED, describe, describe_settings_error
from .config_words import ConfigError as ConfigError
from .core.models import ReviewEvent
from .core.remotes import clone_url, web_url

# GitHub refuses a repository named `.` or `..` (a path would read them as folders).
_REPO_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/(?!\.\.?$)[A-Za-z0-9._-]{1,100}$")
_LABEL_MAX = 50  # GitHub rejects longer label names.


NonEmptyStr = Annotated[str, Field(min_length=1)]
# `inf` and `nan` parse as floats: a poll interval of `inf` would poll once, then never again.
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
FixAttempts = Annotated[int, Field(ge=0, le=20)]  # a few, never thousands
Port = Annotated[int, Field(ge=0, le=65535)]  # 0: a free port, which the log names


class Settings(BaseSettings):
    """Every setting of the daemon; field names are the environment variables, lower-cased."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        # `CLAUDE_MODEL=` in .env means "not set", as .env.example writes it.
        env_ignore_empty=True,
        validate_default=True,
    )

    # Required: GITHUB_REPO, or GITHUB_REPOS / GITHUB_REPOS_FILE for several repositories
    github_repo: str = ""
    github_token: SecretStr | None = None
    # Several repositories: a JSON array or a comma-separated list, and/or a file of lines
    github_repos: Annotated[list[str], NoDecode] = Field(default_factory=list)
    github_repos_file: Path | None = None

    # The spec's optional settings
    poll_interval: PositiveFloat = 60
    worktree_base: Path = Path("./worktrees")
    ready_label: NonEmptyStr = "ready"
    max_concurrent: PositiveInt = 2
    state_file: Path = Path("./.orchestrator-state.json")
    # The state in PostgreSQL instead of STATE_FILE (postgresql://user:password@host/db)
    state_url: SecretStr | None = None
    # Several daemons on one STATE_URL: a repository stays with a daemon that stops renewing
    # its lease for this long, then another takes it over
    lease_seconds: Annotated[float, Field(ge=3, le=3600, allow_inf_nan=False)] = 60
    max_turns: PositiveInt = 50
    auto_merge_enabled: bool = True
    merge_comment_trigger: NonEmptyStr = "/merge"
    pre_merge_commands: list[str] = Field(default_factory=list)

    # Added by this project
    github_api_url: str = "https://api.github.com"
    # Unset: the current directory if it is a clone of GITHUB_REPO, else the daemon's own.
    repo_path: Path | None = None
    repo_url: str | None = None  # where the daemon's own clone comes from, without REPO_PATH
    git_remote: NonEmptyStr = "origin"
    claude_cli_path: str | None = None
    claude_model: str | None = None
    claude_timeout: PositiveFloat = 1800
    check_timeout: PositiveFloat = 600
    failed_label: NonEmptyStr = "claude-failed"
    review_comment_trigger: NonEmptyStr = "/review"
    review_event: ReviewEvent = ReviewEvent.COMMENT
    review_on_push: bool = True
    # New heads of an author without write access wait for a writer's `/review`.
    review_outsider_pushes: bool = False
    max_reviews_per_day: PositiveInt = 10  # automatic Claude reviews per pull request
    allow_sensitive_changes: bool = False  # workflows, .claude/, CLAUDE.md, hooks ...
    # Issue comments by people without write access: marked as theirs in the prompt, or left out.
    outsider_comments: Literal["mark", "drop"] = "mark"
    ci_wait_timeout: PositiveFloat = 900
    # Code the daemon did not write runs in a sandbox (bubblewrap); `off` only by choice.
    sandbox: str = "bwrap"
    sandbox_read_paths: list[Path] = Field(default_factory=list)
    sandbox_check_network: bool = False
    # Running for weeks
    shutdown_grace: NonNegativeFloat = 30  # seconds running Claude runs get after SIGTERM
    keep_worktrees: bool = False  # keep finished items' worktrees, for debugging
    log_dir: Path = Path("./.orchestrator-logs")  # one transcript per Claude run
    transcript_max_bytes: PositiveInt = 5_000_000
    log_retention_days: PositiveFloat = 14
    state_retention_days: PositiveFloat = 30  # finished items older than this leave the state
    # Claude's budgets in US dollars (unset: none): per run (the CLI stops at it), per item
    # across all its runs, per UTC day for the whole daemon
    claude_max_budget_usd: PositiveFloat | None = None
    item_max_budget_usd: PositiveFloat | None = None
    daily_max_budget_usd: PositiveFloat | None = None
    # Serve mode (`serve`): webhooks, the dashboard and the metrics on one HTTP server
    serve_host: NonEmptyStr = "127.0.0.1"
    serve_port: Port = 8765
    webhook_secret: SecretStr | None = None  # no secret: webhooks are refused
    dashboard_token: SecretStr | None = None  # needed when SERVE_HOST is not a loopback one
    webhook_poll_interval: PositiveFloat = 600  # the poll's interval while webhooks arrive
    # The closed loop: a writer's `/claude <instructions>` and review feedback on the daemon's
    # pull requests, and fixes for a `/merge` whose checks fail
    followups_enabled: bool = True
    followup_trigger: NonEmptyStr = "/claude"
    auto_fix_attempts: FixAttempts = 2  # 0: a failing `/merge` only reports

    @field_validator("github_repo")
    @classmethod
    def _owner_repo(cls, value: str) -> str:
        value = value.strip()
        if value and not _REPO_RE.match(value):  # unset: GITHUB_REPOS names them
            raise ValueError(f"expected {EXPECTED['github_repo']}")
        return value

    @field_validator("github_repos", mode="before")
    @classmethod
    def _repos(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            value = _json_list(text) if text.startswith("[") else re.split(r"[\s,]+", text)
            value = [v for v in value if v != ""]
        if not isinstance(value, list) or not all(
            isinstance(v, str) and _REPO_RE.match(v.strip()) for v in value
        ):
            raise ValueError(
                "expected owner/repo names separated by commas, or a JSON array of them, "
                'e.g. acme/api,acme/web or ["acme/api", "acme/web"]'
            )
        return [v.strip() for v in value]

    @field_validator("ready_label", "failed_label")
    @classmethod
    def _label(cls, value: str) -> str:
        value = value.strip()
        if not value or len(value) > _LABEL_MAX or "," in value:
            raise ValueError(f"expected a label name of 1 to {_LABEL_MAX} characters, no commas")
        return value

    @field_validator("merge_comment_trigger", "review_comment_trigger", "followup_trigger")
    @classmethod
    def _trigger(cls, value: str) -> str:
        value = value.strip()
        if not value or "\n" in value:
            raise ValueError("expected a one-line command such as /merge")
        return value

    @field_validator("state_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("postgresql://", "postgres://")
        ):
            raise ValueError("expected a PostgreSQL URL such as postgresql://user@host/db")
        return value

    @field_validator("followup_trigger")
    @classmethod
    def _one_word(cls, value: str) -> str:
        if len(value.split()) != 1:
            raise ValueError("expected one word such as /claude (the instructions follow it)")
        return value

    @field_validator("pre_merge_commands", mode="before")
    @classmethod
    def _commands(cls, value: Any) -> Any:
        return _json_array(
            value,
            lambda c: isinstance(c, str) and bool(c.strip()),
            'expected a JSON array of non-empty strings, e.g. ["pytest"]',
        )

    @field_validator("sandbox")
    @classmethod
    def _sandbox(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in ("bwrap", "off"):
            raise ValueError("expected bwrap (the default) or off")
        return value

    @field_validator("sandbox_read_paths", mode="before")
    @classmethod
    def _read_paths(cls, value: Any) -> Any:
        return _json_array(
            value,
            lambda p: isinstance(p, str | Path) and Path(p).is_absolute(),
            'expected a JSON array of absolute paths, e.g. ["/opt/venv"]',
        )

    @field_validator("github_api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        parsed = urlparse(value.strip())
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError("expected an http(s) URL such as https://api.github.com")
        return value.strip().rstrip("/")

    @model_validator(mode="after")
    def _distinct(self) -> Settings:
        if not (self.github_repo or self.github_repos or self.github_repos_file):
            raise ValueError(
                f"GITHUB_REPO is required (expected {EXPECTED['github_repo']}; or "
                "GITHUB_REPOS / GITHUB_REPOS_FILE for several repositories)"
            )
        # GitHub's label names ignore case; the triggers are matched exactly.
        if self.ready_label.lower() == self.failed_label.lower():
            why = ", so a failure would ask for a new attempt; expected another label"
            raise ValueError(self._clash("failed_label", "ready_label", why))
        if self.merge_comment_trigger == self.review_comment_trigger:
            why = "; expected another command"
            raise ValueError(self._clash("review_comment_trigger", "merge_comment_trigger", why))
        for other in ("merge_comment_trigger", "review_comment_trigger"):
            if _first_word(self.followup_trigger) == _first_word(getattr(self, other)):
                why = "; expected another command"
                raise ValueError(self._clash("followup_trigger", other, why))
        return self

    def _clash(self, first: str, second: str, why: str) -> str:
        """The line for two settings with one value. It names the one the user changed (from
        its default, in the environment or `.env`), not one they left as it was, such as a
        line copied from .env.example; `first` when that does not tell them apart."""

        def changed(name: str) -> bool:
            default = type(self).model_fields[name].default
            return name in self.model_fields_set and getattr(self, name) != default

        name, other = (second, first) if changed(second) and not changed(first) else (first, second)
        default = "" if changed(other) else " (its default)"
        return (
            f"{name.upper()}={getattr(self, name)!r} is not valid: it is also "
            f"{other.upper()}{default}{why}"
        )

    @property
    def repositories(self) -> list[str]:
        """Every repository watched: GITHUB_REPO, then GITHUB_REPOS and its file's (read by
        `load_settings`), each once whatever its case."""
        seen: dict[str, str] = {}
        for name in (self.github_repo, *self.github_repos):
            if name:
                seen.setdefault(name.lower(), name)
        return list(seen.values())

    @property
    def several(self) -> bool:
        return len(self.repositories) > 1

    def for_repo(self, name: str) -> Settings:
        """The settings one repository's daemon works with: with several repositories, its own
        state file (`STATE_FILE` with the repository in its name) and its own folder under
        WORKTREE_BASE (its mirror and worktrees); with one, these settings."""
        if not self.several:
            return self
        return self.model_copy(
            update={
                "github_repo": name,
                "github_repos": [name],  # so messages name GITHUB_REPOS
                "github_repos_file": None,
                "state_file": repo_state_file(self.state_file, name),
                "worktree_base": self.worktree_base / repo_slug(name),
            }
        )

    @property
    def owner(self) -> str:
        return self.github_repo.split("/", 1)[0]

    @property
    def repo(self) -> str:
        return self.github_repo.split("/", 1)[1]

    @property
    def clone_url(self) -> str:
        """Where the daemon fetches from and pushes to when it has no clone to read it from."""
        return self.repo_url or clone_url(self.github_api_url, self.github_repo)

    @property
    def html_url(self) -> str:
        """The repository's page on GitHub (links in the dashboard)."""
        return web_url(self.github_api_url, self.github_repo)

    @property
    def git_mirror(self) -> Path:
        """The daemon's own bare repository, which jobs can read but not write."""
        return self.worktree_base / ".mirrors" / f"{self.owner}+{self.repo}.git"

    @property
    def token(self) -> str:
        """The GitHub token; `load_settings` guarantees one is present."""
        if self.github_token is None:
            raise ConfigError(TOKEN_REQUIRED_MESSAGE)
        return self.github_token.get_secret_value()


def repo_slug(name: str) -> str:
    """A repository's name as one path segment: `Acme/Widgets` is `acme+widgets` (GitHub's
    names ignore case: one repository, one state file and one clone)."""
    return name.lower().replace("/", "+")


def repo_state_file(state_file: Path, name: str) -> Path:
    """One repository's state file beside STATE_FILE when several are watched:
    `.orchestrator-state.acme+api.json`."""
    return state_file.with_name(f"{state_file.stem}.{repo_slug(name)}{state_file.suffix}")


def repositories_setting(env_file: Path | None = Path(".env")) -> list[str]:
    """The repositories watched (GITHUB_REPO, GITHUB_REPOS, GITHUB_REPOS_FILE) alone, for the
    commands that need no GitHub token: `status`, `clear` and `migrate-state`. Empty when
    none is set; `ConfigError` for a wrong one."""
    names: list[str] = []
    for name, check in (("github_repo", Settings._owner_repo), ("github_repos", Settings._repos)):
        raw = raw_setting(name, env_file)
        if raw is None or not raw.strip():
            continue
        try:
            checked = check(raw)
        except ValueError as exc:
            raise ConfigError(f"{name.upper()}={raw!r} is not valid: {exc}") from None
        names += checked if isinstance(checked, list) else [checked]
    listed = raw_setting("github_repos_file", env_file)
    if listed is not None and listed.strip():
        names += read_repos_file(absolute(Path(listed), Path.cwd()))
    seen: dict[str, str] = {}
    for name in names:
        seen.setdefault(name.lower(), name)
    return list(seen.values())


def read_repos_file(path: Path) -> list[str]:
    """GITHUB_REPOS_FILE's repositories: one owner/repo per line; blank lines and `#` comments
    are skipped."""
    shown = f"GITHUB_REPOS_FILE={str(path)!r}"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{shown} is not valid UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{shown} cannot be read ({exc.strerror})") from None
    names = []
    for number, line in enumerate(text.splitlines(), start=1):
        name = line.split("#", 1)[0].strip()
        if not name:
            continue
        if not _REPO_RE.match(name):
            raise ConfigError(
                f"{shown} line {number}: {name!r} is not valid: expected {EXPECTED['github_repo']}"
            )
        names.append(name)
    if not names:
        raise ConfigError(f"{shown} names no repository: expected one owner/repo per line")
    return names


def _first_word(command: str) -> str:
    return command.split(maxsplit=1)[0] if command.strip() else command


def _json_array(value: Any, valid: Callable[[Any], bool], expected: str) -> Any:
    """`value` as a list whose every element is `valid`; text is read as JSON first."""
    if isinstance(value, str):
        # The dotenv source hands over raw text when the value is not valid JSON.
        value = _json_list(value)
    if not isinstance(value, list) or not all(valid(v) for v in value):
        raise ValueError(expected)
    return value


def _json_list(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            'expected a JSON array of strings, e.g. ["pytest", "ruff check ."]'
        ) from exc


def state_file_setting(env_file: Path = Path(".env")) -> Path:
    """STATE_FILE alone (environment, then `.env`, then the default), for the commands that
    read the state without GitHub: `status` and `clear`. Set but empty is refused, as the
    daemon refuses it."""
    raw = raw_setting("state_file", env_file)
    if raw is not None and not raw.strip():
        raise ConfigError(_empty_message("state_file"))
    default = Settings.model_fields["state_file"].default
    return absolute(Path(raw) if raw else default, Path.cwd())


def raw_setting(name: str, env_file: Path | None = Path(".env")) -> str | None:
    """One setting's text as given (the environment wins over `.env`), unchecked; None if it
    is not given. For what can be looked at when the settings as a whole are wrong."""
    return _given(env_file).get(name.lower())


def _given(env_file: Path | None) -> dict[str, str | None]:
    """Every variable given, by lower-cased name, as pydantic-settings reads them: `.env`,
    then the environment over it."""
    given: dict[str, str | None] = {}
    if env_file is not None and env_file.is_file():
        try:
            given.update((k.lower(), v) for k, v in dotenv_values(env_file).items())
        except UnicodeDecodeError:
            raise ConfigError(f"{env_file} is not valid UTF-8 text") from None
    given.update((k.lower(), v) for k, v in os.environ.items())
    return given


def load_settings(env_file: Path | None = Path(".env"), **overrides: Any) -> Settings:
    """Read, validate and complete the settings; every problem becomes one `ConfigError` line."""
    if env_file is not None and env_file.exists() and not env_file.is_file():
        raise ConfigError(f"{env_file} is not a file: expected a .env file of VARIABLE=value lines")
    try:
        # First, so that `check` still finds a key in `.env` when another setting is wrong.
        _model_keys_from(env_file)
        settings = Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    except UnicodeDecodeError:
        raise ConfigError(f"{env_file} is not valid UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {env_file}: {exc.strerror}") from None
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None
    except SettingsError as exc:
        raise ConfigError(describe_settings_error(exc)) from None
    empty = _set_but_empty(env_file)
    if empty is not None:
        raise ConfigError(_empty_message(empty))
    if settings.github_token is None or not settings.github_token.get_secret_value().strip():
        settings.github_token = SecretStr(gh_cli_token(settings.github_api_url))
    _complete_repositories(settings)
    if settings.repo_path is not None:
        settings.repo_path = git_toplevel(settings.repo_path)
    elif not settings.several:
        settings.repo_path = clone_here(settings)
    settings.worktree_base = absolute(settings.worktree_base, Path.cwd())
    if settings.worktree_base.exists() and not settings.worktree_base.is_dir():
        raise ConfigError(
            f"WORKTREE_BASE={str(settings.worktree_base)!r} is not valid: expected a directory"
        )
    settings.state_file = absolute(settings.state_file, Path.cwd())
    settings.log_dir = absolute(settings.log_dir, Path.cwd())
    if settings.log_dir.exists() and not settings.log_dir.is_dir():
        raise ConfigError(f"LOG_DIR={str(settings.log_dir)!r} is not valid: expected a directory")
    settings.claude_cli_path = find_claude_cli(settings.claude_cli_path)
    return settings


def _complete_repositories(settings: Settings) -> None:
    """GITHUB_REPOS_FILE's repositories added to GITHUB_REPOS, and GITHUB_REPO set to the first
    one when only the list names them. REPO_PATH and REPO_URL name one repository's clone:
    with several repositories the daemon keeps its own clone of each."""
    if settings.github_repos_file is not None:
        path = absolute(settings.github_repos_file, Path.cwd())
        settings.github_repos_file = path
        settings.github_repos = [*settings.github_repos, *read_repos_file(path)]
    if not settings.github_repo:
        settings.github_repo = settings.repositories[0]
    if settings.several:
        for name in ("repo_path", "repo_url"):
            if getattr(settings, name) is not None:
                raise ConfigError(
                    f"{name.upper()} names one repository's clone, but {len(settings.repositories)}"
                    f" repositories are watched: remove {name.upper()} (the daemon keeps its own "
                    "clone of each, fetched from GitHub)"
                )


# The model's credentials (model_proxy.CREDENTIAL_ENV): the CLI reads them from the environment.
MODEL_KEYS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")


def _model_keys_from(env_file: Path | None) -> None:
    """A model credential written in `.env` counts as if it were in the environment (where
    the daemon's model proxy looks for it); the environment wins."""
    if env_file is None or not env_file.is_file():
        return
    for name, value in dotenv_values(env_file).items():
        if name in MODEL_KEYS and value and not os.environ.get(name):
            os.environ[name] = value


def _empty_message(name: str) -> str:
    """The one line for a setting given as an empty value that has no "unset" meaning."""
    field = Settings.model_fields[name]
    if field.is_required() or name == "github_repo":
        return f"{name.upper()} is set but empty: expected {EXPECTED.get(name, 'a value')}"
    return (
        f"{name.upper()} is set but empty: expected a value (remove the line to use the "
        f"default, {_shown(field.default)})"
    )


def _shown(default: Any) -> str:
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, Path):  # as the README and .env.example write it
        return repr(str(default) if default.is_absolute() else f"./{default}")
    return repr(default)


def _set_but_empty(env_file: Path | None) -> str | None:
    """A setting given as an empty value that has no "unset" meaning (a label, a trigger, a
    number, a switch), which pydantic-settings would silently replace with its default.
    Optional settings (`CLAUDE_MODEL=`) and lists may be empty."""
    given = _given(env_file)
    for name, field in Settings.model_fields.items():
        value = given.get(name)
        if value is None or value.strip():
            continue
        kind = get_origin(field.annotation)
        if kind is list or type(None) in get_args(field.annotation):
            continue
        return name
    return None


def absolute(path: Path, base: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else (base / path).resolve()
