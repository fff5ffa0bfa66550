"""Text rules shared by everything the daemon posts: its signature, GitHub's size limit, cuts."""

from __future__ import annotations

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
