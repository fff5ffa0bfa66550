"""Text rules shared by everything the daemon posts: its signature, GitHub's size limit, cuts."""

from __future__ import annotations

import re

PREFIX = "**Claude Orchestrator**:"  # opens every comment the daemon writes
MAX_BODY = 65_536  # GitHub's limit for comment, review and pull request bodies


def cut(text: str, limit: int, marker: str = "…") -> str:
    """`text` if it fits in `limit` characters, else its start and `marker`, `limit` in all."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(marker))] + marker


def fit_body(text: str, limit: int = MAX_BODY) -> str:
    """Cut `text` to GitHub's limit, keeping its start and its end (where errors usually are)."""
    if len(text) <= limit:
        return text
    marker = "\n\n… (truncated) …\n\n"
    keep = limit - len(marker)
    head = keep // 3
    return text[:head] + marker + text[len(text) - (keep - head) :]


def tail(text: str, limit: int) -> str:
    """The last `limit` characters of `text`: what a follow-up needs of a long earlier text."""
    return text[-limit:] if limit > 0 else ""


# What GitHub's page does not show a reader, but a model reads: markup a writer who approved
# the text never saw (as claude-code-action strips it before a prompt).
_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
_INVISIBLE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e"
    "\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\u3164\ufeff\ufff9-\ufffb"
    "\U000e0000-\U000e007f]"
)
_HIDDEN_ATTRIBUTE = re.compile(
    r"""\s(?:alt|title|aria-[\w-]+|data-[\w-]+|placeholder)\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>]*)""",
    re.I,
)
_IMAGE_ALT = re.compile(r"!\[[^\]]*\]\(")


def visible(text: str) -> str:
    """`text` as a reader sees it on GitHub: without HTML comments, invisible and direction
    characters, hidden attributes (alt, title, aria-*, data-*) and images' alt text."""
    text = _HTML_COMMENT.sub("", text)
    text = _INVISIBLE.sub("", text)
    text = _HIDDEN_ATTRIBUTE.sub("", text)
    return _IMAGE_ALT.sub("![](", text)
