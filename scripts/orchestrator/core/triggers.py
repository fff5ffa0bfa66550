"""Trigger commands in comments (`/merge`, `/review`): what counts as one, and who may give it."""

from __future__ import annotations

from .text import PREFIX

WRITE_PERMISSIONS = frozenset({"admin", "maintain", "write"})


def is_command(body: str, trigger: str) -> bool:
    """True if the comment's first line is exactly `trigger` (trailing whitespace allowed).

    A trigger quoted in prose ("please don't /merge yet") or on a later line is not a command.
    """
    first_line = body.lstrip("\ufeff").split("\n", 1)[0]
    return first_line.rstrip() == trigger


def may_command(permission: str) -> bool:
    """Only people with write access give commands; readers and authors of forks do not."""
    return permission in WRITE_PERMISSIONS


def not_allowed(author: str, trigger: str, action: str) -> str:
    """The one reply to a command from someone without write access."""
    return (
        f"{PREFIX} @{author} only people with write access to this repository can "
        f"{action} with `{trigger}`."
    )
