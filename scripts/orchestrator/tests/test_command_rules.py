"""Table tests of the command rules: which head a `/merge` or `/review` may act on, and the
reply when nobody can tell."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from scripts.orchestrator.core.triggers import Sighting, head_unknown, pinned_head

T = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
HEAD, OLD = "a" * 40, "b" * 40


@pytest.mark.parametrize(
    ("named", "sighting", "pinned"),
    [
        (None, Sighting(HEAD, T - timedelta(seconds=1)), HEAD),  # seen, then the comment
        (None, Sighting(HEAD, T), None),  # seen in the comment's own second: a push may follow
        (None, Sighting(HEAD, T + timedelta(seconds=5)), None),  # first seen after it
        (None, Sighting(OLD, T - timedelta(seconds=60)), None),  # the head changed since
        (None, None, None),  # never seen (e.g. the daemon started after the comment)
        ("aaaaaaa", Sighting(HEAD, T - timedelta(seconds=1)), HEAD),  # named, and seen before
        ("AAAAAAAA", Sighting(HEAD, T - timedelta(seconds=60)), HEAD),
        ("a" * 40, None, HEAD),  # a full SHA names one commit: no sighting needed
        ("A" * 40, Sighting(OLD, T - timedelta(seconds=60)), HEAD),
        # A prefix of a head the daemon never saw: an author's look-alike of the named commit.
        ("aaaaaaa", None, None),
        ("a" * 12, Sighting(OLD, T - timedelta(seconds=60)), None),
        ("a" * 39, Sighting(HEAD, T), None),  # seen only in the comment's own second
        ("bbbbbbb", Sighting(OLD, T - timedelta(seconds=60)), None),  # named, but not the head
    ],
)
def test_pinned_head(named: str | None, sighting: Sighting | None, pinned: str | None) -> None:
    assert pinned_head(named, HEAD, sighting, T) == pinned


@pytest.mark.parametrize(("verb", "done"), [("merge", "merged"), ("review", "reviewed")])
def test_the_reply_names_the_head_and_the_command_that_acts_on_it(verb: str, done: str) -> None:
    unnamed = head_unknown("carol", HEAD, None, f"/{verb}", verb)
    assert f"@carol nothing was {done}" in unnamed and "changed around your" in unnamed
    assert unnamed.endswith(f"comment `/{verb} {HEAD}`.")  # the full SHA: no look-alike
    named = head_unknown("carol", HEAD, "bbbbbbb", f"/{verb}", verb)
    assert f"the head is `{HEAD[:12]}`, not `bbbbbbb`" in named
    # A prefix of the head that the daemon had not seen: the head changed around it.
    prefix = head_unknown("carol", HEAD, HEAD[:12], f"/{verb}", verb)
    assert "changed around your" in prefix and "not `" not in prefix
