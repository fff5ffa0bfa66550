"""Tests for review texts: verdict parsing, the event posted, the body's limit."""

from __future__ import annotations

import pytest

from scripts.orchestrator.core.models import ClaudeResult, ReviewEvent
from scripts.orchestrator.core.review_text import choose_event, parse_verdict, review_body
from scripts.orchestrator.core.text import MAX_BODY


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("## Verdict\nVERDICT: APPROVE", ReviewEvent.APPROVE),
        ("**VERDICT:** REQUEST_CHANGES", ReviewEvent.REQUEST_CHANGES),
        ("verdict: request changes", ReviewEvent.REQUEST_CHANGES),
        (
            "VERDICT: APPROVE | REQUEST_CHANGES | COMMENT\n...\nVERDICT: COMMENT",
            ReviewEvent.COMMENT,
        ),
        ("I would approve this.", None),
        ("The word VERDICT: APPROVE inside a sentence", None),
    ],
)
def test_parse_verdict(text: str, expected: ReviewEvent | None) -> None:
    assert parse_verdict(text) == expected


def test_own_pull_requests_only_get_comments() -> None:
    text = "VERDICT: REQUEST_CHANGES"
    assert choose_event(text, ReviewEvent.APPROVE, own=False, author_writes=True) == (
        "REQUEST_CHANGES"
    )
    assert choose_event(text, ReviewEvent.APPROVE, own=True, author_writes=True) == "COMMENT"


def test_a_missing_verdict_is_a_comment() -> None:
    assert choose_event("no verdict here", ReviewEvent.APPROVE, own=False, author_writes=True) == (
        "COMMENT"
    )


def test_an_outsiders_pull_request_is_never_approved() -> None:
    text = "VERDICT: APPROVE"
    assert choose_event(text, ReviewEvent.APPROVE, own=False, author_writes=True) == "APPROVE"
    assert choose_event(text, ReviewEvent.APPROVE, own=False, author_writes=False) == "COMMENT"
    # Asking for changes needs no trust in the author.
    changes = "VERDICT: REQUEST_CHANGES"
    assert choose_event(changes, ReviewEvent.APPROVE, own=False, author_writes=False) == (
        "REQUEST_CHANGES"
    )


def test_a_huge_review_fits_with_its_footer() -> None:
    result = ClaudeResult(ok=True, text="x" * 200_000, cost_usd=0.5, turns=3, duration_s=9)
    body = review_body(result, "a" * 40, None)
    assert len(body) <= MAX_BODY
    assert body.endswith("9 s</sub>") and "truncated" in body
