"""Trigger commands in comments (`/merge`, `/review`): what counts as one, and who may give it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .text import PREFIX

WRITE_PERMISSIONS = frozenset({"admin", "maintain", "write"})
_SHA = re.compile(r"[0-9a-fA-F]{7,40}")


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


def may_command(permission: str) -> bool:
    """Only people with write access give commands; readers and authors of forks do not."""
    return permission in WRITE_PERMISSIONS


def not_allowed(author: str, trigger: str, action: str) -> str:
    """The one reply to a command from someone without write access."""
    return (
        f"{PREFIX} @{author} only people with write access to this repository can "
        f"{action} with `{trigger}`."
    )
