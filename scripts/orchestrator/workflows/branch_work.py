"""More work on a pull request's branch: Claude's run from its head, the commit, the checks on it,
and the push with a lease, shared by follow-ups, review feedback and fixes for failing checks."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..config import Settings
from ..core import followup_text
from ..core.decide_implement import sensitive_paths
from ..core.errors import GitError, is_transient
from ..core.models import IMPLEMENT_TOOLS, ClaudeRequest
from ..core.redact import Redactor
from ..guidelines import guidelines, repo_guidelines_path
from ..ports import Claude, Git, SecretScan
from .items import Items

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Made:
    """Claude's work, committed on the clone's own `branch` (not pushed yet)."""

    sha: str
    summary: str  # Claude's account, redacted


@dataclass(frozen=True)
class NotMade:
    """Nothing to push: `reason` for the log and the state, `said` for the people."""

    reason: str
    said: str
    day_spent: bool = False  # the day's budget left nothing: the run never started


@dataclass
class BranchWork:
    """Runs Claude on a branch's head in a worktree of its own and commits what it made."""

    settings: Settings
    git: Git
    claude: Claude
    scanner: SecretScan
    redactor: Redactor

    async def make(
        self,
        items: Items,
        number: int,
        *,
        branch: str,
        start: str,
        base: str,
        prompt: str,
        message: str,
    ) -> Made | NotMade:
        """Claude's run on `start` (a head someone else may have written), committed on the
        local `branch` with `message`. What steers Claude comes from `base`, never from the
        head: the checkout's own settings and hooks are not loaded. A run stopped at a limit
        leaves nothing to push: an open pull request never gets half-done work."""
        spend = items.allowance(number, self.settings)
        if spend.refused is not None:
            return NotMade(spend.refused, f"nothing was done: {spend.refused}")
        own = await self.git.read_file(base, repo_guidelines_path("implement"))
        name = branch.replace("/", "-")
        worktree = await self.git.branch_worktree(name, branch, start)
        try:
            request = ClaudeRequest(
                prompt=prompt,
                cwd=worktree,
                guidelines=guidelines("implement", own),
                tools=IMPLEMENT_TOOLS,
                max_turns=self.settings.max_turns,
                timeout=self.settings.claude_timeout,
                setting_sources=(),  # the head's `.claude/` and hooks are not the base's
                max_budget_usd=spend.cap,
            )
            result = await self.claude.run(request)
            items.spend(number, result)
            if result.limit in ("day", "day_rest"):  # never ran, or the day ran out mid-run
                why = result.error or "the day's budget is spent"
                return NotMade(why, f"nothing was done: {why}", day_spent=True)
            if not result.ok:
                why = result.error or "Claude failed"
                stopped = f" (it stopped at its {result.limit} limit)" if result.limit else ""
                return NotMade(why, f"Claude did not finish{stopped}: {why}. Nothing was pushed.")
            summary = self.redactor.redact(result.text)
            await self.git.commit_all(worktree, message)
            head = await self.git.head(worktree)
        finally:
            await self.git.remove(worktree)
        if head == start:
            return NotMade("Claude made no changes", f"Claude made no changes.\n\n{summary}")
        refused = await self._refused(start, head)
        if refused is not None:
            return refused
        return Made(head, summary)

    async def _refused(self, start: str, head: str) -> NotMade | None:
        """What the work adds that may not be pushed: a secret, or (unless allowed) a change
        to what steers CI, Claude or git."""
        hits = self.scanner.scan(await self.git.diff(start, head))
        if hits:
            where = ", ".join(f"{hit.path}:{hit.line}" for hit in hits[:5])
            return NotMade(
                f"the change adds what looks like a secret ({where})",
                followup_text.secrets_said(hits),
            )
        if not self.settings.allow_sensitive_changes:
            touched = sensitive_paths(await self.git.changed_files(start, head))
            if touched:
                shown = ", ".join(f"`{p}`" for p in touched[:5])
                return NotMade(
                    f"the change touches {', '.join(touched[:5])}",
                    f"the change touches {shown}, which steer CI, Claude or git; nothing was "
                    "pushed (`ALLOW_SENSITIVE_CHANGES=true` allows it).",
                )
        return None

    async def push(self, sha: str, branch: str, lease: str | None) -> str | None:
        """Push `sha` to `branch` if the remote branch is still at `lease` (None: absent);
        None when it went through, else why not. A transient fault is raised (retried)."""
        try:
            await self.git.push_commit(sha, branch, lease)
        except GitError as exc:
            if is_transient(exc):
                raise
            log.warning("push of %s to %s refused: %s", sha[:12], branch, exc)
            return str(exc)
        return None
