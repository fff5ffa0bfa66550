"""A repository's own settings file, `.github/claude-orchestrator.toml`: parsed and checked.

The file sits on the repository's default branch and overrides some of the daemon's settings
for that repository only. It is flat TOML: every key at the top level (no `[tables]`), named
as the daemon's setting (its environment variable, lower-cased), with a native TOML value of
the setting's type; a list is a TOML list, never JSON text, and a switch is `true` or
`false`, never quoted:

    ready_label = "ready"
    failed_label = "claude-failed"
    pre_merge_commands = ["pytest -q", "ruff check ."]
    auto_merge_enabled = true
    review_event = "COMMENT"        # or "REQUEST_CHANGES", "APPROVE"
    outsider_comments = "mark"      # or "drop"
    max_turns = 30                  # can only lower the daemon's MAX_TURNS
    claude_max_budget_usd = 2.5     # can only lower the daemon's budget

Only the keys of `ALLOWED_KEYS` are read; any other key is refused, so a typo is never
silently ignored, and so is every other setting of the daemon (the sandbox, paths, tokens,
URLs, timeouts, concurrency, the state, ALLOW_SENSITIVE_CHANGES): those are the operator's,
and a repository must not loosen them. Values follow the rules of the daemon's settings
(config.py). The budgets, MAX_TURNS and AUTO_FIX_ATTEMPTS can only lower the operator's
values (`RepoConfig.overrides`). Prompts are not set here but in `.github/claude-orchestrator/`.

Every mistake is a `RepoConfigError` of one line that names the file and the key.
"""

from __future__ import annotations

import difflib
import importlib
import json
import math
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, NamedTuple

from .models import ReviewEvent

# tomllib is new in Python 3.11; on 3.10 the same parser is the tomli package.
_toml = importlib.import_module("tomllib" if sys.version_info >= (3, 11) else "tomli")

REPO_CONFIG_PATH = ".github/claude-orchestrator.toml"
REPO_CONFIG_MAX_BYTES = 64 * 1024
_LABEL_MAX = 50  # as config.py: GitHub rejects longer label names
_FIX_ATTEMPTS_MAX = 20  # as config.py
_SHOWN_MAX = 60  # characters of a wrong value quoted back in an error
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")

# Settings a repository may only lower: they bound what Claude costs the operator.
_LOWER_ONLY = ("auto_fix_attempts", "max_turns", "claude_max_budget_usd", "item_max_budget_usd",
               "max_reviews_per_day")  # fmt: skip
# Switches a repository may only turn off: what the operator turned off (merging, follow-ups,
# reviews of every push, outsiders' pushes reviewed) stays off.
_OFF_ONLY = ("auto_merge_enabled", "followups_enabled", "review_on_push", "review_outsider_pushes")

# The daemon's other settings (config.Settings): refused with a hint rather than as typos.
OPERATOR_KEYS = frozenset(
    {
        "allow_sensitive_changes", "check_timeout", "ci_wait_timeout", "claude_cli_path",
        "claude_model", "claude_timeout", "daily_max_budget_usd", "dashboard_token",
        "git_remote", "github_api_url", "github_repo", "github_repos", "github_repos_file",
        "lease_seconds",
        "github_token", "keep_worktrees", "log_dir", "log_retention_days", "max_concurrent",
        "poll_interval", "repo_path", "repo_url", "sandbox", "sandbox_check_network",
        "sandbox_read_paths", "serve_host", "serve_port", "shutdown_grace", "state_file",
        "state_retention_days", "state_url", "transcript_max_bytes", "webhook_poll_interval",
        "webhook_secret", "worktree_base",
    }
)  # fmt: skip


class RepoConfigError(Exception):
    """A mistake in a repository's settings file, as one line that starts with the file."""

    def __init__(self, message: str) -> None:
        super().__init__(f"{REPO_CONFIG_PATH}: {message}")


@dataclass(frozen=True)
class RepoConfig:
    """What a repository's file sets; None for a key it does not set (the operator's holds)."""

    ready_label: str | None = None
    failed_label: str | None = None
    pre_merge_commands: tuple[str, ...] | None = None
    auto_merge_enabled: bool | None = None
    merge_comment_trigger: str | None = None
    review_comment_trigger: str | None = None
    review_event: ReviewEvent | None = None
    review_on_push: bool | None = None
    review_outsider_pushes: bool | None = None
    max_reviews_per_day: int | None = None
    outsider_comments: Literal["mark", "drop"] | None = None
    followups_enabled: bool | None = None
    followup_trigger: str | None = None
    auto_fix_attempts: int | None = None
    max_turns: int | None = None
    claude_max_budget_usd: float | None = None
    item_max_budget_usd: float | None = None

    def given(self) -> dict[str, object]:
        """The keys the file set, with their checked values."""
        values = ((f.name, getattr(self, f.name)) for f in fields(self))
        return {name: value for name, value in values if value is not None}

    def overrides(self, operator: Mapping[str, object]) -> dict[str, object]:
        """The updates to the operator's settings for this repository (`operator`: the daemon's
        settings by name, e.g. `settings.model_dump()`; KeyError if one needed is missing).
        The file's values replace the operator's, except that the budgets, `max_turns`,
        `auto_fix_attempts` and `max_reviews_per_day` never exceed them (an operator's None
        is no limit), what the operator switched off stays off, and outsiders' comments the
        operator drops stay dropped: a repository must not loosen the operator's limits.
        `RepoConfigError` when the result would give two settings one value
        (`Settings._distinct`)."""
        updates: dict[str, object] = {}
        for key, value in self.given().items():
            if key in _LOWER_ONLY:
                updates[key] = _at_most(key, getattr(self, key), operator[key])
            elif key in _OFF_ONLY:
                updates[key] = bool(value) and operator[key] is True
            elif key == "outsider_comments" and operator[key] == "drop":
                updates[key] = "drop"  # outsiders' comments left out by the operator stay out
            elif isinstance(value, tuple):
                updates[key] = list(value)  # as Settings holds it
            else:
                updates[key] = value
        _check_distinct(updates, operator)
        return updates


def parse_repo_config(text: str) -> RepoConfig:
    """The file's text (decoded by the caller) as a `RepoConfig`; `RepoConfigError` if it is
    too large, not TOML, or has a key that is not allowed or a value that is not valid."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > REPO_CONFIG_MAX_BYTES:
        raise RepoConfigError(
            f"the file has {size} bytes; expected at most {REPO_CONFIG_MAX_BYTES} (64 KiB)"
        )
    try:
        # An editor's byte order mark is not TOML, but is no mistake of the author's.
        data: dict[str, Any] = _toml.loads(text.removeprefix("\ufeff"))
    except ValueError as exc:  # tomllib.TOMLDecodeError; its text ends with the position
        raise RepoConfigError(f"not valid TOML: {' '.join(str(exc).split())}") from None
    values: dict[str, Any] = {}
    for key, value in data.items():
        rule = _RULES.get(key)
        if rule is None:
            raise RepoConfigError(_unknown(key, value))
        checked = rule.check(value)
        if checked is None:
            raise RepoConfigError(f"{key}: expected {rule.expected}; found {_shown(value)}")
        values[key] = checked
    # A file at odds with itself is wrong whatever the operator's settings are.
    _check_distinct(values, None)
    return RepoConfig(**values)


class _Rule(NamedTuple):
    check: Callable[[object], object | None]  # the value to use, or None if not valid
    expected: str


def _label(value: object) -> str | None:
    text = value.strip() if isinstance(value, str) else ""
    return text if 0 < len(text) <= _LABEL_MAX and "," not in text else None


def _trigger(value: object) -> str | None:
    text = value.strip() if isinstance(value, str) else ""
    return text if text and "\n" not in text else None


def _one_word(value: object) -> str | None:
    text = _trigger(value)
    return text if text is not None and len(text.split()) == 1 else None


def _switch(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _whole(low: int, high: int | None = None) -> Callable[[object], int | None]:
    def check(value: object) -> int | None:
        # TOML's true is a Python int: refused, as a number is not a switch.
        if isinstance(value, bool) or not isinstance(value, int):
            return None
        return value if value >= low and (high is None or value <= high) else None

    return check


def _dollars(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    # TOML has inf and nan; neither is a budget.
    return float(value) if math.isfinite(value) and value > 0 else None


def _commands(value: object) -> tuple[str, ...] | None:
    if not isinstance(value, list) or not all(isinstance(c, str) and c.strip() for c in value):
        return None
    return tuple(value)


def _review_event(value: object) -> ReviewEvent | None:
    valid = isinstance(value, str) and value in [e.value for e in ReviewEvent]
    return ReviewEvent(value) if valid else None


def _outsiders(value: object) -> str | None:
    return value if isinstance(value, str) and value in ("mark", "drop") else None


_EVENTS = ", ".join(f'"{e.value}"' for e in ReviewEvent)
_SWITCH = _Rule(_switch, "true or false, without quotes")
_POSITIVE = _Rule(_whole(1), "a whole number greater than 0")
_BUDGET = _Rule(_dollars, "a number of US dollars greater than 0, e.g. 2.5")
_LABEL = _Rule(_label, f"a label name of 1 to {_LABEL_MAX} characters, no commas")

_RULES: dict[str, _Rule] = {
    "ready_label": _LABEL,
    "failed_label": _LABEL,
    "pre_merge_commands": _Rule(_commands, 'a list of non-empty strings, e.g. ["pytest"]'),
    "auto_merge_enabled": _SWITCH,
    "merge_comment_trigger": _Rule(_trigger, "a one-line command such as /merge"),
    "review_comment_trigger": _Rule(_trigger, "a one-line command such as /review"),
    "review_event": _Rule(_review_event, f"one of {_EVENTS}"),
    "review_on_push": _SWITCH,
    "review_outsider_pushes": _SWITCH,
    "max_reviews_per_day": _POSITIVE,
    "outsider_comments": _Rule(_outsiders, '"mark" or "drop"'),
    "followups_enabled": _SWITCH,
    "followup_trigger": _Rule(_one_word, "one word such as /claude (the instructions follow it)"),
    "auto_fix_attempts": _Rule(
        _whole(0, _FIX_ATTEMPTS_MAX), f"a whole number from 0 to {_FIX_ATTEMPTS_MAX}"
    ),
    "max_turns": _POSITIVE,
    "claude_max_budget_usd": _BUDGET,
    "item_max_budget_usd": _BUDGET,
}
ALLOWED_KEYS = tuple(sorted(_RULES))


def _unknown(key: str, value: object) -> str:
    shown = key if _BARE_KEY.fullmatch(key) else json.dumps(key)
    if key.lower() in OPERATOR_KEYS:
        why = f"{key.upper()} is the operator's to set, in the daemon's environment or .env"
        why += ", not a repository's"
    elif isinstance(value, dict):
        why = "a table: write its keys at the top level, above any [table] line"
    else:
        close = difflib.get_close_matches(key.lower(), ALLOWED_KEYS, n=1)
        why = f"did you mean {close[0]}?" if close else "not a setting a repository can set"
    return f"unknown key {shown} ({why}); expected one of {', '.join(ALLOWED_KEYS)}"


def _shown(value: object) -> str:
    """A wrong value as the error quotes it: short, on one line."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)  # TOML's inf and nan, which JSON would spell otherwise
    if not isinstance(value, int | str | list):
        return "a date or time"
    text = json.dumps(value, default=str)
    return text if len(text) <= _SHOWN_MAX else f"{text[:_SHOWN_MAX]}..."


def _at_most(key: str, value: float, limit: object) -> float:
    if limit is None:
        return value
    if isinstance(limit, bool) or not isinstance(limit, int | float):
        raise TypeError(f"the operator's {key} is {limit!r}, not a number")
    return min(value, limit)


def _first_word(command: str) -> str:
    return command.split(maxsplit=1)[0] if command.strip() else command


class _Distinct(NamedTuple):
    """Two settings that must differ, as `Settings._distinct` has them (`first` it names)."""

    first: str
    second: str
    same: Callable[[str, str], bool]
    what: str  # "expected {what} {second} ({its value}){after}"
    after: str = ""


def _same_first_word(a: str, b: str) -> bool:
    return _first_word(a) == _first_word(b)


_DISTINCT = (
    # GitHub's label names ignore case: a failure would ask for a new attempt.
    _Distinct("failed_label", "ready_label", lambda a, b: a.lower() == b.lower(),
              "a label other than", " in any case"),
    _Distinct("review_comment_trigger", "merge_comment_trigger", str.__eq__,
              "a command other than"),
    _Distinct("followup_trigger", "merge_comment_trigger", _same_first_word,
              "a command whose first word differs from that of"),
    _Distinct("followup_trigger", "review_comment_trigger", _same_first_word,
              "a command whose first word differs from that of"),
)  # fmt: skip


def _check_distinct(updates: Mapping[str, object], operator: Mapping[str, object] | None) -> None:
    """`RepoConfigError` for two settings with one value, one of them the repository's (the
    other the operator's, or with `operator` None, the file's too)."""

    def value(key: str) -> object:
        if key in updates:
            return updates[key]
        return None if operator is None else operator[key]

    for first, second, same, what, after in _DISTINCT:
        if first not in updates and second not in updates:
            continue  # the operator's settings were checked when the daemon started
        a, b = value(first), value(second)
        if not isinstance(a, str) or not isinstance(b, str) or not same(a, b):
            continue
        name, other = (first, second) if first in updates else (second, first)
        whose = "" if other in updates else "the operator's "
        shown = {first: json.dumps(a), second: json.dumps(b)}
        raise RepoConfigError(
            f"{name}: expected {what} {whose}{other} ({shown[other]}){after}; found {shown[name]}"
        )
