"""Merge texts: closing keywords, and the comments that say what a merge attempt did."""

from __future__ import annotations

import re
from collections.abc import Sequence

from .ci import format_success
from .decide_merge import Stop
from .models import CommandResult
from .text import PREFIX

# GitHub's closing keywords, e.g. "Closes #12", "fixes: #3" (same repository only).
_CLOSING = re.compile(r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s*:?\s+#(\d+)\b", re.IGNORECASE)


def linked_issues(body: str) -> list[int]:
    """Issue numbers named with closing keywords, in order, without repeats."""
    seen: list[int] = []
    for match in _CLOSING.finditer(body or ""):
        number = int(match.group(1))
        if number not in seen:
            seen.append(number)
    return seen


def retry_hint(trigger: str) -> str:
    return f"Comment `{trigger}` again to retry."


def conflict(base_ref: str, base_sha: str, files: Sequence[str], trigger: str) -> str:
    listed = "\n".join(f"- `{f}`" for f in files)
    return (
        f"{PREFIX} not merged: this pull request conflicts with `{base_ref}` "
        f"(at {base_sha[:12]}) in:\n\n{listed}\n\nMerge or rebase `{base_ref}` into the "
        f"branch, resolve the conflicts, push, then {retry_hint(trigger).lower()}"
    )


def head_moved(tested: str, trigger: str) -> str:
    return (
        f"{PREFIX} not merged: new commits arrived after {tested[:12]} was tested. The new "
        f"head must be tested before it can land. {retry_hint(trigger)}"
    )


def pushed_since_request(head: str, trigger: str) -> str:
    return (
        f"{PREFIX} not merged: new commits were pushed after the request (the head is now "
        f"{head[:12]}), and only what a writer saw may land. Look at them, then "
        f"{retry_hint(trigger).lower()}"
    )


def refused(message: str, trigger: str) -> str:
    return f"{PREFIX} not merged: GitHub refused the merge: “{message}”. {retry_hint(trigger)}"


def base_kept_moving(base_ref: str, trigger: str) -> str:
    return (
        f"{PREFIX} not merged: `{base_ref}` kept moving while the checks ran, so the result "
        f"that would land was never tested. {retry_hint(trigger)}"
    )


def summary(
    *,
    head_sha: str,
    base_ref: str,
    base_sha: str,
    merge_sha: str | None,
    results: Sequence[CommandResult],
    ci: str,
    closed: Sequence[int],
) -> str:
    """The one comment after a merge: what was tested, how, and what landed."""
    lines = [
        f"{PREFIX} merged as {merge_sha[:12] if merge_sha else '(unknown)'} (squash).",
        "",
        f"Tested: head {head_sha[:12]} merged onto `{base_ref}` at {base_sha[:12]}.",
        "",
        format_success(results),
        "",
        f"GitHub CI: {ci}.",
    ]
    if closed:
        lines += ["", "Closed: " + ", ".join(f"#{n}" for n in closed) + "."]
    return "\n".join(lines)


def stop_text(stop: Stop, *, base_ref: str, head: str, message: str, trigger: str) -> str:
    """The comment for a merge request that ends without a merge, one per reason."""
    match stop:
        case Stop.CLOSED:
            return f"{PREFIX} not merged: the pull request is closed."
        case Stop.DRAFT:
            return f"{PREFIX} not merged: the pull request is a draft."
        case Stop.RETARGETED:
            return (
                f"{PREFIX} not merged: the base branch changed to `{base_ref}` "
                f"after the request. {retry_hint(trigger)}"
            )
        case Stop.BASE_KEPT_MOVING:
            return base_kept_moving(base_ref, trigger)
        case Stop.HEAD_MOVED:
            return head_moved(head, trigger)
        case Stop.REFUSED:
            return refused(message, trigger)
        case Stop.PUSHED_SINCE_REQUEST:
            return pushed_since_request(head, trigger)


def not_a_pull(trigger: str) -> str:
    return f"{PREFIX} `{trigger}` works on open pull requests only; nothing was done."


ALREADY_MERGED = f"{PREFIX} nothing to do: this pull request is already merged."


def check_failed(report: str) -> str:
    return f"{PREFIX} not merged.\n\n{report}"


def ci_stopped(report: str) -> str:
    return f"{PREFIX} {report}"


def gave_up(error: str, times: int, trigger: str) -> str:
    return (
        f"{PREFIX} not merged: the daemon hit an error {times} times:\n\n```\n{error}\n```\n\n"
        f"{retry_hint(trigger)}"
    )
