"""After a merge: the head branch deleted (when it is ours to delete), linked issues closed."""

from __future__ import annotations

import logging

from ..core import merge_text as text
from ..core.errors import GitHubError, NotFound
from ..core.models import PullRequest
from ..ports import GitHub

log = logging.getLogger(__name__)


async def clean_up(github: GitHub, pull: PullRequest) -> list[int]:
    """Delete the merged branch (not a fork's, not the default, not one other pull requests
    target) and close the issues the body links; the numbers of the issues closed."""
    default = await github.default_branch()
    if not pull.is_fork and pull.head_ref != default:
        others = await github.list_open_pulls()
        if any(p.base_ref == pull.head_ref for p in others):
            log.info("keeping %s: other pull requests target it", pull.head_ref)
        else:
            try:
                await github.delete_branch(pull.head_ref)
            except GitHubError as exc:
                if exc.status not in (404, 422):  # already gone
                    raise
    closed = []
    # Like GitHub: closing keywords act only on merges into the default branch.
    linked = text.linked_issues(pull.body) if pull.base_ref == default else []
    for number in linked:
        try:
            issue = await github.get_issue(number)
        except NotFound:
            continue
        if issue.state == "open" and not issue.is_pull_request:
            await github.close_issue(number)
            closed.append(number)
    return closed
