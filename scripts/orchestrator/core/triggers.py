"""Trigger commands in comments (`/merge`, `/review`): what counts as one, and who may give it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from .text import PREFIX

WRITE_PERMISSIONS = frozenset({"admin", "maintain", "write"})
_SHA = re.compile(r"[0-9a-fA-F]{7,40}")
FULL_SHA = 40


@dataclass(frozen=True)
class Command:
    """A trigger given in a comment; `sha` is the head it names (`/merge 1a2b3c4`), if any."""

    sha: str | None = None


def parse_command(body: str, trigger: str) -> Command | None:
    """The command in a comment whose first line is `trigger`, or `trigger` and a commit's
    SHA (7 to 40 hex digits); None for anything else.

    A trigger quoted in prose ("please don't /merge yet"), on a later line, or followed by any
    other text ("/merge after lunch") is not a command.
    """
    first_line = body.lstrip("\ufeff").split("\n", 1)[0].rstrip()
    if first_line == trigger:
        return Command()
    head, _, rest = first_line.partition(" ")
    rest = rest.strip()
    if head == trigger and _SHA.fullmatch(rest):
        return Command(rest.lower())
    return None


def is_command(body: str, trigger: str) -> bool:
    return parse_command(body, trigger) is not None


def parse_instructions(body: str, trigger: str) -> str | None:
    """The instructions of a comment that starts with `trigger` as a word of its own
    (`/claude rename the flag`, or `/claude` and the instructions on the lines below): the
    text after it, stripped ("" for a bare trigger); None when the comment is no such command.
    Quoted or in prose ("please /claude this") it is not one."""
    text = body.lstrip("\ufeff")
    if not text.startswith(trigger):
        return None
    rest = text[len(trigger) :]
    if rest and not rest[0].isspace():
        return None  # `/claudette` is another word
    return rest.strip()


def is_request(body: str, trigger: str) -> bool:
    return parse_instructions(body, trigger) is not None


@dataclass(frozen=True)
class Sighting:
    """A pull request's head as the daemon first saw it, on GitHub's clock."""

    sha: str
    at: datetime


def pinned_head(
    named: str | None, head_now: str, sighting: Sighting | None, written_at: datetime
) -> str | None:
    """The head a command (`/merge`, `/review`) written at `written_at` (GitHub's clock) may
    act on, or None when nobody can tell which head its writer saw.

    The head must have been the head, as the daemon saw it, strictly before the comment was
    written: GitHub's times have whole seconds, and a push within the comment's second may have
    followed it. Commit dates prove nothing (their author sets them). A named head (`/merge
    1a2b3c4`) must also be the head now; a prefix is not proof of which commit the writer saw
    (an author can make a look-alike commit sharing 12 hex digits in seconds), so only a full
    40-digit SHA is pinned without the daemon having seen it first.
    """
    seen_before = sighting is not None and sighting.sha == head_now and sighting.at < written_at
    if named is None:
        return head_now if seen_before else None
    if not head_now.lower().startswith(named.lower()):
        return None
    return head_now if seen_before or len(named) == FULL_SHA else None


def may_command(permission: str) -> bool:
    """Only people with write access give commands; readers and authors of forks do not."""
    return permission in WRITE_PERMISSIONS


def not_allowed(author: str, trigger: str, action: str) -> str:
    """The one reply to a command from someone without write access."""
    return (
        f"{PREFIX} @{author} only people with write access to this repository can "
        f"{action} with `{trigger}`."
    )


def head_unknown(author: str, head: str, named: str | None, trigger: str, verb: str) -> str:
    """The one reply to a command (`verb`: merge, review) whose writer may not have seen the
    head there is now."""
    if named is not None and not head.lower().startswith(named.lower()):
        why = f"the head is `{head[:12]}`, not `{named}`"
    else:
        why = (
            f"its head changed around your `{trigger}` (it is now `{head[:12]}`), so I cannot "
            "tell which commits you saw"
        )
    done = f"{verb}d" if verb.endswith("e") else f"{verb}ed"
    # The full SHA: a prefix can be matched by a look-alike commit pushed meanwhile.
    return (
        f"{PREFIX} @{author} nothing was {done}: {why}. To {verb} the head as it is now, check "
        f"it and comment `{trigger} {head}`."
    )
