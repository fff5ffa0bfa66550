"""Tests for logging and redaction: timestamps, item context, secrets never printed."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from scripts.orchestrator import logs
from scripts.orchestrator.core.redact import REDACTED, Redactor

TOKEN = "configured-token-value-123"


@pytest.fixture
def configured() -> Iterator[None]:
    """Restore logging afterwards; tests configure it themselves, after capsys took stderr."""
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)


@pytest.mark.usefixtures("configured")
def test_lines_carry_time_level_and_item(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure(verbose=True, redactor=Redactor([TOKEN]))
    log = logging.getLogger("scripts.orchestrator.test")
    log.info("outside")
    with logs.item_context("issue#42"):
        log.debug("inside %s", "args")
    err = capsys.readouterr().err.splitlines()
    assert err[0].endswith("INFO    [-] scripts.orchestrator.test: outside")
    assert err[1].endswith("DEBUG   [issue#42] scripts.orchestrator.test: inside args")
    assert err[0][:4].isdigit()


@pytest.mark.usefixtures("configured")
def test_secrets_are_redacted_from_messages_args_and_tracebacks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure(verbose=True, redactor=Redactor([TOKEN]))
    log = logging.getLogger("scripts.orchestrator.test")
    log.info("token is %s", TOKEN)
    try:
        raise RuntimeError(f"failed with {TOKEN} and ghp_{'a' * 36}")
    except RuntimeError:
        log.exception("boom")
    err = capsys.readouterr().err
    assert TOKEN not in err
    assert "ghp_" + "a" * 36 not in err
    assert err.count(REDACTED) == 3


@pytest.mark.parametrize(
    "secret",
    [
        "ghp_" + "A1b2" * 9,
        "gho_" + "x" * 36,
        "ghs_" + "Y" * 36,
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        "sk-ant-api03-" + "k" * 40,
    ],
)
def test_secret_shapes_are_redacted(secret: str) -> None:
    assert Redactor().redact(f"before {secret} after") == f"before {REDACTED} after"


def test_short_literals_are_not_treated_as_secrets() -> None:
    assert Redactor(["abc", ""]).redact("abc abc") == "abc abc"


def test_ordinary_text_is_untouched() -> None:
    text = "ghp is a prefix; sk-ant is a prefix; github_pat alone is fine"
    assert Redactor([TOKEN]).redact(text) == text
