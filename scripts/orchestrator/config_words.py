"""Configuration problems worded as one line each: what was given, and what was expected."""

from __future__ import annotations

import json
import re

from pydantic import ValidationError
from pydantic_settings import SettingsError

from .core.models import ReviewEvent


class ConfigError(Exception):
    """A configuration mistake, reported to the user as one line (exit code 2)."""


def describe(exc: ValidationError) -> str:
    err = exc.errors()[0]
    if not err["loc"]:  # a rule across settings: its message names them
        return str(err["msg"]).removeprefix("Value error, ")
    field = str(err["loc"][0])
    var = field.upper()
    if err["type"] == "missing":
        return f"{var} is required (expected {EXPECTED.get(field, 'a value')})"
    message = (
        _RANGES.get(field) if err["type"] in ("greater_than_equal", "less_than_equal") else None
    ) or (_FRIENDLY.get(err["type"]) or str(err["msg"]).removeprefix("Value error, "))
    if field in ("github_token", "state_url", "webhook_secret", "dashboard_token"):  # secrets
        return f"{var} is not valid: {message}"
    value = err.get("input")
    shown = value if isinstance(value, str) else json.dumps(value, default=str)
    return f"{var}={shown!r} is not valid: {message}"


def describe_settings_error(exc: SettingsError) -> str:
    match = re.search(r'field "(\w+)"', str(exc))
    var = match.group(1).upper() if match else "a setting"
    expected = EXPECTED.get(var.lower(), "valid JSON")
    return f"{var} is not valid: expected {expected}"


_FRIENDLY = {
    "greater_than": "expected a number greater than 0",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_parsing": "expected a number",
    "finite_number": "expected a finite number",
    "bool_parsing": "expected true or false",
    "enum": "expected one of " + ", ".join(e.value for e in ReviewEvent),
    "string_too_short": "expected a non-empty value",
}

_RANGES = {
    "auto_fix_attempts": "expected a whole number from 0 to 20",
    "lease_seconds": "expected a number of seconds from 3 to 3600",
}

EXPECTED = {
    "github_repo": "owner/repo, e.g. your-org/your-repo",
    "pre_merge_commands": 'a JSON array of strings, e.g. ["pytest", "ruff check ."]',
}
