"""A repository's `.github/claude-orchestrator.toml`: good files, bad ones, what it overrides."""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

import pytest
from pydantic import ValidationError

from scripts.orchestrator.config import Settings
from scripts.orchestrator.core.models import ReviewEvent
from scripts.orchestrator.core.repo_config import (
    ALLOWED_KEYS,
    OPERATOR_KEYS,
    REPO_CONFIG_MAX_BYTES,
    REPO_CONFIG_PATH,
    RepoConfig,
    RepoConfigError,
    parse_repo_config,
)

from .ports_fakes import SettingsFactory

FILE = ".github/claude-orchestrator.toml"
ALLOWED = ", ".join(ALLOWED_KEYS)

GOOD: list[tuple[str, dict[str, object]]] = [
    ("", {}),
    ("# nothing set yet\n\n", {}),
    ("\ufeffready_label = 'go'\n", {"ready_label": "go"}),  # an editor's byte order mark
    ('ready_label = "  ready for claude "\n', {"ready_label": "ready for claude"}),
    ('failed_label = "claude: failed"', {"failed_label": "claude: failed"}),
    (
        'pre_merge_commands = ["pytest -q", "ruff check ."]',
        {"pre_merge_commands": ("pytest -q", "ruff check .")},
    ),
    ("pre_merge_commands = []", {"pre_merge_commands": ()}),  # this repository runs none
    (
        'pre_merge_commands = [\n  "make test",\n  "make lint",\n]',
        {"pre_merge_commands": ("make test", "make lint")},
    ),
    ("auto_merge_enabled = false", {"auto_merge_enabled": False}),
    ('merge_comment_trigger = "/ship it"', {"merge_comment_trigger": "/ship it"}),
    ('review_comment_trigger = " /look "', {"review_comment_trigger": "/look"}),
    ('review_event = "REQUEST_CHANGES"', {"review_event": ReviewEvent.REQUEST_CHANGES}),
    (
        "review_on_push = false\nreview_outsider_pushes = true",
        {"review_on_push": False, "review_outsider_pushes": True},
    ),
    ("max_reviews_per_day = 3", {"max_reviews_per_day": 3}),
    ('outsider_comments = "drop"', {"outsider_comments": "drop"}),
    (
        'followups_enabled = false\nfollowup_trigger = "/bot"',
        {"followups_enabled": False, "followup_trigger": "/bot"},
    ),
    ("auto_fix_attempts = 0", {"auto_fix_attempts": 0}),
    ("auto_fix_attempts = 20", {"auto_fix_attempts": 20}),
    ("max_turns = 1", {"max_turns": 1}),
    (
        "claude_max_budget_usd = 2.5\nitem_max_budget_usd = 10",
        {"claude_max_budget_usd": 2.5, "item_max_budget_usd": 10.0},
    ),
    # The labels swap roles: each differs from the other, which is all that counts.
    (
        'ready_label = "claude-failed"\nfailed_label = "ready"',
        {"ready_label": "claude-failed", "failed_label": "ready"},
    ),
    # Triggers that share a first word with another only matter for the follow-up trigger.
    (
        'merge_comment_trigger = "/go merge"\nreview_comment_trigger = "/go review"',
        {"merge_comment_trigger": "/go merge", "review_comment_trigger": "/go review"},
    ),
]


@pytest.mark.parametrize(("text", "given"), GOOD)
def test_a_good_file_sets_its_keys_and_no_others(text: str, given: dict[str, object]) -> None:
    config = parse_repo_config(text)
    assert config.given() == given
    for key, value in given.items():
        assert type(getattr(config, key)) is type(value), key  # 10 is a budget of 10.0


# The expectations, ending where the value found is quoted.
LABEL = "expected a label name of 1 to 50 characters, no commas; found"
SWITCH = "expected true or false, without quotes; found"
WHOLE = "expected a whole number greater than 0; found"
FIXES = "expected a whole number from 0 to 20; found"
DOLLARS = "expected a number of US dollars greater than 0, e.g. 2.5; found"
COMMANDS = 'expected a list of non-empty strings, e.g. ["pytest"]; found'
EVENTS = 'expected one of "COMMENT", "REQUEST_CHANGES", "APPROVE"; found'
ONE_WORD = "expected one word such as /claude (the instructions follow it); found"
FIRST_WORD = "expected a command whose first word differs from that of"
TABLE = "a table: write its keys at the top level, above any [table] line"

BAD: list[tuple[str, str, str]] = [
    # id, the file, its error after the file's name
    (
        "syntax",
        'ready_label = "ready"\nreview_on_push = tru\n',
        "not valid TOML: Invalid value (at line 2, column 18)",
    ),
    (
        "unclosed string",
        'ready_label = "ready\n',
        "not valid TOML: Illegal character '\\n' (at line 1, column 21)",
    ),
    (
        "duplicate key",
        "max_turns = 5\nmax_turns = 6\n",
        "not valid TOML: Cannot overwrite a value (at line 2, column 14)",
    ),
    (
        "typo",
        'ready_lable = "ready"',
        f"unknown key ready_lable (did you mean ready_label?); expected one of {ALLOWED}",
    ),
    (
        "upper case",
        "MAX_TURNS = 5",
        f"unknown key MAX_TURNS (did you mean max_turns?); expected one of {ALLOWED}",
    ),
    (
        "no such setting",
        "colour = 1",
        f"unknown key colour (not a setting a repository can set); expected one of {ALLOWED}",
    ),
    (
        "quoted key",
        '"ready label" = "x"',
        f'unknown key "ready label" (did you mean ready_label?); expected one of {ALLOWED}',
    ),
    (
        "a table",
        '[review]\nreview_event = "APPROVE"',
        f"unknown key review ({TABLE}); expected one of {ALLOWED}",
    ),
    ("string for a bool", 'review_on_push = "false"', f'review_on_push: {SWITCH} "false"'),
    ("number for a bool", "auto_merge_enabled = 0", f"auto_merge_enabled: {SWITCH} 0"),
    ("bool for a number", "max_turns = true", f"max_turns: {WHOLE} true"),
    ("string for a number", 'max_turns = "5"', f'max_turns: {WHOLE} "5"'),
    ("float for a whole number", "max_reviews_per_day = 5.0", f"max_reviews_per_day: {WHOLE} 5.0"),
    ("zero turns", "max_turns = 0", f"max_turns: {WHOLE} 0"),
    ("negative reviews", "max_reviews_per_day = -1", f"max_reviews_per_day: {WHOLE} -1"),
    ("too many fixes", "auto_fix_attempts = 21", f"auto_fix_attempts: {FIXES} 21"),
    ("negative fixes", "auto_fix_attempts = -1", f"auto_fix_attempts: {FIXES} -1"),
    ("zero budget", "claude_max_budget_usd = 0", f"claude_max_budget_usd: {DOLLARS} 0"),
    ("infinite budget", "item_max_budget_usd = inf", f"item_max_budget_usd: {DOLLARS} inf"),
    ("budget as text", 'item_max_budget_usd = "5"', f'item_max_budget_usd: {DOLLARS} "5"'),
    ("empty label", 'ready_label = "  "', f'ready_label: {LABEL} "  "'),
    ("label with a comma", 'failed_label = "a,b"', f'failed_label: {LABEL} "a,b"'),
    ("long label", f'ready_label = "{"r" * 51}"', f'ready_label: {LABEL} "{"r" * 51}"'),
    ("longer label", f'ready_label = "{"r" * 80}"', f'ready_label: {LABEL} "{"r" * 59}...'),
    ("label as a date", "ready_label = 2024-05-01", f"ready_label: {LABEL} a date or time"),
    ("label as a table", "ready_label = { name = 'x' }", f"ready_label: {LABEL} a table"),
    (
        "commands as JSON text",
        "pre_merge_commands = '[\"pytest\"]'",
        f'pre_merge_commands: {COMMANDS} "[\\"pytest\\"]"',
    ),
    (
        "one command as text",
        'pre_merge_commands = "pytest"',
        f'pre_merge_commands: {COMMANDS} "pytest"',
    ),
    (
        "an empty command",
        'pre_merge_commands = ["pytest", " "]',
        f'pre_merge_commands: {COMMANDS} ["pytest", " "]',
    ),
    ("a number as a command", "pre_merge_commands = [1]", f"pre_merge_commands: {COMMANDS} [1]"),
    (
        "empty trigger",
        'merge_comment_trigger = ""',
        'merge_comment_trigger: expected a one-line command such as /merge; found ""',
    ),
    (
        "two-line trigger",
        'review_comment_trigger = """/re\nview"""',
        'review_comment_trigger: expected a one-line command such as /review; found "/re\\nview"',
    ),
    (
        "two-word followup trigger",
        'followup_trigger = "/claude please"',
        f'followup_trigger: {ONE_WORD} "/claude please"',
    ),
    ("review event in lower case", 'review_event = "approve"', f'review_event: {EVENTS} "approve"'),
    (
        "outsider comments",
        'outsider_comments = "hide"',
        'outsider_comments: expected "mark" or "drop"; found "hide"',
    ),
    (
        "ready == failed",
        'ready_label = "claude"\nfailed_label = "Claude"',
        'failed_label: expected a label other than ready_label ("claude") in any case; '
        'found "Claude"',
    ),
    (
        "merge == review",
        'merge_comment_trigger = "/go"\nreview_comment_trigger = "/go"',
        'review_comment_trigger: expected a command other than merge_comment_trigger ("/go"); '
        'found "/go"',
    ),
    (
        "followup's word == merge's",
        'merge_comment_trigger = "/go now"\nfollowup_trigger = "/go"',
        f'followup_trigger: {FIRST_WORD} merge_comment_trigger ("/go now"); found "/go"',
    ),
    (
        "followup == review",
        'review_comment_trigger = "/bot"\nfollowup_trigger = "/bot"',
        f'followup_trigger: {FIRST_WORD} review_comment_trigger ("/bot"); found "/bot"',
    ),
]


@pytest.mark.parametrize(("text", "error"), [(t, e) for _, t, e in BAD], ids=[i for i, *_ in BAD])
def test_a_bad_file_is_refused_in_one_line(text: str, error: str) -> None:
    with pytest.raises(RepoConfigError) as caught:
        parse_repo_config(text)
    assert str(caught.value) == f"{FILE}: {error}"
    assert len(str(caught.value).splitlines()) == 1


@pytest.mark.parametrize(
    "key",
    ["sandbox", "github_token", "allow_sensitive_changes", "state_url", "claude_timeout"],
)
def test_the_operators_settings_are_refused_with_a_hint(key: str) -> None:
    with pytest.raises(RepoConfigError) as caught:
        parse_repo_config(f'{key} = "off"')
    assert str(caught.value) == (
        f"{FILE}: unknown key {key} ({key.upper()} is the operator's to set, in the daemon's "
        f"environment or .env, not a repository's); expected one of {ALLOWED}"
    )


def test_the_file_may_be_64_kib_and_no_more() -> None:
    assert REPO_CONFIG_PATH == FILE
    padding = "# " + "x" * (REPO_CONFIG_MAX_BYTES - len("# \nmax_turns = 5\n")) + "\n"
    assert parse_repo_config(padding + "max_turns = 5\n").given() == {"max_turns": 5}
    with pytest.raises(RepoConfigError) as caught:
        parse_repo_config(padding + "max_turns = 50\n")
    assert str(caught.value) == f"{FILE}: the file has 65537 bytes; expected at most 65536 (64 KiB)"


def test_the_size_counts_bytes_not_characters() -> None:
    text = "# " + "é" * 32768  # fewer characters than the limit, more bytes
    with pytest.raises(RepoConfigError, match="the file has 65538 bytes"):
        parse_repo_config(text)


def test_an_odd_key_is_quoted_on_the_errors_one_line() -> None:
    with pytest.raises(RepoConfigError) as caught:
        parse_repo_config('"ready_label\\n" = "x"')
    assert str(caught.value).startswith(f'{FILE}: unknown key "ready_label\\n" (did you mean')
    assert len(str(caught.value).splitlines()) == 1


# -- what the file changes in the operator's settings ------------------------------------------


@pytest.fixture
def operator(make_settings: SettingsFactory) -> dict[str, Any]:
    """The daemon's settings as `overrides` takes them (max_turns 10, no budgets)."""
    return make_settings().model_dump()


def test_an_empty_file_overrides_nothing(operator: dict[str, Any]) -> None:
    assert parse_repo_config("").overrides(operator) == {}


@pytest.mark.parametrize(("text", "given"), GOOD)
def test_the_overrides_are_settings_the_daemon_accepts(
    text: str, given: dict[str, object], make_settings: SettingsFactory
) -> None:
    operator = make_settings(claude_max_budget_usd=100, item_max_budget_usd=100, max_turns=50)
    overrides = parse_repo_config(text).overrides(operator.model_dump())
    assert overrides.keys() == given.keys()
    applied = make_settings(**{**operator.model_dump(), **overrides})  # validated afresh
    assert {key: getattr(applied, key) for key in overrides} == overrides
    assert operator.model_copy(update=overrides).model_dump() == applied.model_dump()


def test_replacing_values_come_as_settings_holds_them(operator: dict[str, Any]) -> None:
    text = 'pre_merge_commands = ["make"]\nreview_event = "APPROVE"\nready_label = "go"'
    assert parse_repo_config(text).overrides(operator) == {
        "pre_merge_commands": ["make"],
        "review_event": ReviewEvent.APPROVE,
        "ready_label": "go",
    }


LIMITS = [
    # key, the operator's value, the file's value, the result
    ("max_turns", 10, 50, 10),
    ("max_turns", 10, 5, 5),
    ("max_turns", 10, 10, 10),
    ("auto_fix_attempts", 2, 20, 2),
    ("auto_fix_attempts", 2, 0, 0),
    ("claude_max_budget_usd", 1.5, 100, 1.5),
    ("claude_max_budget_usd", 5.0, 0.5, 0.5),
    ("claude_max_budget_usd", None, 3, 3.0),  # the operator set no limit
    ("item_max_budget_usd", 20.0, 1000.0, 20.0),
    ("item_max_budget_usd", None, 7.5, 7.5),
]


@pytest.mark.parametrize(("key", "limit", "value", "result"), LIMITS)
def test_budgets_turns_and_fixes_can_only_be_lowered(
    key: str, limit: float | None, value: float, result: float, make_settings: SettingsFactory
) -> None:
    operator = make_settings(**{key: limit}).model_dump()
    overrides = parse_repo_config(f"{key} = {value}").overrides(operator)
    assert overrides == {key: result}
    assert type(overrides[key]) is type(result)


@pytest.mark.parametrize("key", ["max_turns", "auto_fix_attempts", "claude_max_budget_usd"])
def test_no_file_raises_a_limit(key: str) -> None:
    for limit in (1, 2, 7, 20):
        for value in (1, 3, 7, 20):
            overrides = parse_repo_config(f"{key} = {value}").overrides({key: limit})
            assert overrides == {key: min(value, limit)}


def test_an_operator_limit_that_is_no_number_is_a_mistake_not_no_limit() -> None:
    with pytest.raises(TypeError, match="the operator's max_turns is '10', not a number"):
        parse_repo_config("max_turns = 5").overrides({"max_turns": "10"})


def test_a_limit_missing_from_the_operators_settings_is_a_mistake_not_no_limit() -> None:
    with pytest.raises(KeyError, match="max_turns"):
        parse_repo_config("max_turns = 5").overrides({})
    with pytest.raises(KeyError, match="ready_label"):
        parse_repo_config('failed_label = "x"').overrides({})


OPERATORS = "the operator's"
CLASHES = [
    # The file sets one setting; the operator's other one is what it clashes with.
    (
        'failed_label = "READY"',
        f'failed_label: expected a label other than {OPERATORS} ready_label ("ready") in any '
        'case; found "READY"',
    ),
    (
        'ready_label = "claude-failed"',
        f"ready_label: expected a label other than {OPERATORS} failed_label "
        '("claude-failed") in any case; found "claude-failed"',
    ),
    (
        'review_comment_trigger = "/merge"',
        f"review_comment_trigger: expected a command other than {OPERATORS} "
        'merge_comment_trigger ("/merge"); found "/merge"',
    ),
    (
        'merge_comment_trigger = "/review"',
        f"merge_comment_trigger: expected a command other than {OPERATORS} "
        'review_comment_trigger ("/review"); found "/review"',
    ),
    (
        'followup_trigger = "/merge"',
        f'followup_trigger: {FIRST_WORD} {OPERATORS} merge_comment_trigger ("/merge"); '
        'found "/merge"',
    ),
    (
        'merge_comment_trigger = "/claude now"',
        f'merge_comment_trigger: {FIRST_WORD} {OPERATORS} followup_trigger ("/claude"); '
        'found "/claude now"',
    ),
    (
        'review_comment_trigger = "/claude"',
        f'review_comment_trigger: {FIRST_WORD} {OPERATORS} followup_trigger ("/claude"); '
        'found "/claude"',
    ),
]


@pytest.mark.parametrize(("text", "error"), CLASHES)
def test_a_file_that_clashes_with_the_operators_settings_is_refused(
    text: str, error: str, operator: dict[str, Any]
) -> None:
    config = parse_repo_config(text)  # fine on its own
    with pytest.raises(RepoConfigError) as caught:
        config.overrides(operator)
    assert str(caught.value) == f"{FILE}: {error}"


def test_a_clash_the_file_resolves_itself_is_none(operator: dict[str, Any]) -> None:
    # The operator's followup trigger is /claude; the file moves it before taking /claude.
    text = 'merge_comment_trigger = "/claude"\nfollowup_trigger = "/bot"'
    assert parse_repo_config(text).overrides(operator) == {
        "merge_comment_trigger": "/claude",
        "followup_trigger": "/bot",
    }


# -- the keys against the daemon's settings ----------------------------------------------------


def test_every_allowed_key_is_a_setting_of_the_daemon_and_a_field() -> None:
    assert set(ALLOWED_KEYS) <= set(Settings.model_fields)
    assert set(ALLOWED_KEYS) == {f.name for f in fields(RepoConfig)}


def test_every_other_setting_is_the_operators() -> None:
    """A new setting of the daemon is refused until someone decides it is a repository's."""
    assert not set(ALLOWED_KEYS) & OPERATOR_KEYS
    assert set(ALLOWED_KEYS) | OPERATOR_KEYS == set(Settings.model_fields)


# A value the file refuses (of the right TOML type) is one the daemon's settings refuse too.
REFUSED_BY_BOTH = [
    ("ready_label", " "),
    ("failed_label", "a,b"),
    ("failed_label", "x" * 51),
    ("merge_comment_trigger", ""),
    ("review_comment_trigger", "/a\n/b"),
    ("followup_trigger", "/claude please"),
    ("review_event", "approve"),
    ("outsider_comments", "hide"),
    ("max_reviews_per_day", 0),
    ("max_turns", -3),
    ("auto_fix_attempts", 21),
    ("auto_fix_attempts", -1),
    ("claude_max_budget_usd", 0),
    ("item_max_budget_usd", float("nan")),
    ("pre_merge_commands", ["pytest", ""]),
]


@pytest.mark.parametrize(("key", "value"), REFUSED_BY_BOTH)
def test_the_file_refuses_what_the_daemon_refuses(
    key: str, value: object, make_settings: SettingsFactory
) -> None:
    with pytest.raises(ValidationError):
        make_settings(**{key: value})
    with pytest.raises(RepoConfigError, match=f"^{FILE}: {key}: expected "):
        parse_repo_config(f"{key} = {as_toml(value)}")


def as_toml(value: object) -> str:
    """A number, a string or a list of strings written as TOML (a string: as JSON writes it)."""
    if isinstance(value, list):
        return "[" + ", ".join(as_toml(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)  # TOML writes nan as Python does


@pytest.mark.parametrize(
    ("text", "mine", "expected"),
    [
        ("max_reviews_per_day = 100000", {"max_reviews_per_day": 3}, 3),
        ("max_reviews_per_day = 2", {"max_reviews_per_day": 3}, 2),
        ("auto_merge_enabled = true", {"auto_merge_enabled": False}, False),
        ("followups_enabled = true", {"followups_enabled": False}, False),
        ("review_on_push = true", {"review_on_push": False}, False),
        ("review_outsider_pushes = true", {"review_outsider_pushes": False}, False),
        ("review_outsider_pushes = false", {"review_outsider_pushes": True}, False),
        ('outsider_comments = "mark"', {"outsider_comments": "drop"}, "drop"),
        ('outsider_comments = "drop"', {"outsider_comments": "mark"}, "drop"),
    ],
)
def test_a_repository_cannot_loosen_the_operators_limits(
    operator: dict[str, Any], text: str, mine: dict[str, object], expected: object
) -> None:
    """Found by an outside review: the reviews' daily cap and the switches the operator turned
    off were the file's to raise and turn on again."""
    key = next(iter(mine))
    assert parse_repo_config(text).overrides({**operator, **mine})[key] == expected
