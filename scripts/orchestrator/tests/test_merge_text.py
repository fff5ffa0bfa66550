"""Tests for merge texts: closing keywords."""

from __future__ import annotations

import pytest

from scripts.orchestrator.core.merge_text import linked_issues


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Closes #12", [12]),
        ("fixes: #3 and resolves #4, closed #3", [3, 4]),
        ("Fix #1\nRESOLVED #2\nclose #9", [1, 2, 9]),
        ("Implements #5", []),  # not a closing keyword (the original daemon's mistake)
        ("See #7; prefix#8", []),
        ("closes#6", []),
        ("", []),
    ],
)
def test_linked_issues(body: str, expected: list[int]) -> None:
    assert linked_issues(body) == expected
