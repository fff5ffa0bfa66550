"""Where a review comment sits in a file's diff: its line and side, its position, its hunk."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SIDES = ("LEFT", "RIGHT")
_HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@")


class Unresolved(ValueError):
    """The comment names no line of the diff; the message is GitHub's words for why."""


@dataclass(frozen=True)
class Anchor:
    """A resolved place in the diff, with what GitHub reports of it."""

    path: str
    line: int
    side: str
    position: int
    diff_hunk: str
    start_line: int | None = None
    start_side: str | None = None


@dataclass(frozen=True)
class _Row:
    """One line of a file's patch: `position` counts from its first `@@` header (0)."""

    position: int
    text: str
    old: int | None  # its number in the base, for context and removed lines
    new: int | None  # its number in the head, for context and added lines
    hunk: int  # the position of its hunk's header

    def on(self, side: str) -> int | None:
        # LEFT is for removed lines only; GitHub puts context lines on the RIGHT.
        if side == "LEFT":
            return self.old if self.text.startswith("-") else None
        return self.new


def rows(patch: str) -> list[_Row]:
    """The patch's lines, numbered as GitHub numbers them."""
    found: list[_Row] = []
    old = new = hunk = 0
    for position, text in enumerate(patch.split("\n")):
        header = _HUNK.match(text)
        if header is not None:
            old, new, hunk = int(header.group(1)), int(header.group(2)), position
            found.append(_Row(position, text, None, None, hunk))
        elif text.startswith("\\"):  # "\ No newline at end of file"
            found.append(_Row(position, text, None, None, hunk))
        elif text.startswith("+"):
            found.append(_Row(position, text, None, new, hunk))
            new += 1
        elif text.startswith("-"):
            found.append(_Row(position, text, old, None, hunk))
            old += 1
        else:
            found.append(_Row(position, text, old, new, hunk))
            old, new = old + 1, new + 1
    return found


def resolve(patches: Mapping[str, str | None], comment: Mapping[str, Any]) -> Anchor:
    """The place a review's `comments[]` entry names (`path` with `line` and `side`, or the
    closing-down `position`), in the diff `patches` (path -> patch text, None if binary).

    As strict as GitHub: a path outside the diff, a line outside every hunk, a context line
    on the LEFT, or a range across hunks is `Unresolved`.
    """
    path = comment.get("path")
    if not isinstance(path, str) or path not in patches:
        raise Unresolved("Path could not be resolved")
    patch = patches[path]
    if patch is None:
        raise Unresolved("Line could not be resolved")
    table = rows(patch)
    line, position = comment.get("line"), comment.get("position")
    if (line is None) == (position is None):
        # The two ways of naming a place exclude each other; one is needed.
        raise Unresolved("Line could not be resolved")
    if position is not None:
        end = _at_position(table, position)
        side = "LEFT" if end.text.startswith("-") else "RIGHT"
    else:
        side = _side(comment.get("side"))
        end = _at_line(table, line, side)
    start_line, start_side = comment.get("start_line"), None
    if start_line is not None:
        start_side = _side(comment.get("start_side", side))
        start = _at_line(table, start_line, start_side)
        if start.hunk != end.hunk:
            raise Unresolved(
                "Pull request review thread start line must be part of the same hunk as the line."
            )
        if start.position >= end.position:
            raise Unresolved("Pull request review thread start line must precede the end line.")
    number = end.on(side)
    assert number is not None, "a resolved row has a line on its side"
    hunk = "\n".join(r.text for r in table[end.hunk : end.position + 1])
    return Anchor(path, number, side, end.position, hunk, start_line, start_side)


def _side(value: object) -> str:
    if value is None:
        return "RIGHT"
    if value not in SIDES:
        raise Unresolved("Side must be LEFT or RIGHT")
    return str(value)


def _at_line(table: list[_Row], line: object, side: str) -> _Row:
    if isinstance(line, int) and not isinstance(line, bool):
        for row in table:
            if row.on(side) == line:
                return row
    raise Unresolved("Line could not be resolved")


def _at_position(table: list[_Row], position: object) -> _Row:
    if isinstance(position, int) and not isinstance(position, bool) and 0 < position < len(table):
        row = table[position]
        if row.old is not None or row.new is not None:
            return row
    raise Unresolved("Line could not be resolved")
