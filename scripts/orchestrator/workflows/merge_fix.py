"""Fixes for a `/merge` whose checks fail on the daemon's own pull request: Claude gets the
failure, its fix is pushed onto the branch, and the merge tests that head next."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..config import Settings
from ..core import followup_text as text
from ..core.decide_followup import daemons
from ..core.models import PullRequest
from ..ports import Clock, GitHub
from .branch_work import BranchWork, NotMade
from .items import Items

log = logging.getLogger(__name__)

HEAD_WAIT = 60.0  # seconds GitHub gets to show a pushed fix as the pull request's head
HEAD_POLL = 2.0


@dataclass
class MergeFixes:
    """Up to AUTO_FIX_ATTEMPTS fixes per `/merge`. The head stays pinned: the only heads that
    replace the one the writer asked to merge are those the daemon itself pushed, each on the
    head it tested (a push with a lease), so a person's push still stops the merge."""

    settings: Settings
    github: GitHub
    work: BranchWork
    items: Items
    clock: Clock

    def adopt(self, pull: PullRequest) -> None:
        """After a restart between a fix's push and its record: a fix that landed is the
        head to merge; one that did not is forgotten (its try still counts)."""
        facts = self.items.get(pull.number).merge
        if facts.fix_sha is None or facts.fix_sha == facts.requested_head:
            return
        if pull.head_sha == facts.fix_sha:
            log.info("#%d: the fix %s was pushed before a restart", pull.number, pull.head_sha[:12])
            self.items.update_facts(pull.number, requested_head=facts.fix_sha)
        else:
            self.items.update_facts(pull.number, fix_sha=None)

    async def fix(self, pull: PullRequest, comment: str, failure: str) -> PullRequest | str:
        """The pull request with Claude's fix as its head, or the stop's comment: `comment`
        as it was when no fix is due, else one that says what was tried."""
        number = pull.number
        facts = self.items.get(number).merge
        attempts = self.settings.auto_fix_attempts
        own = await self.github.login()
        if attempts == 0 or not daemons(pull, own):
            return comment  # only the daemon's own branch is Claude's to fix
        trigger = self.settings.merge_comment_trigger
        if facts.fixes >= attempts:
            return text.fixes_failed(failure, facts.fixed_heads, trigger, None)
        head = pull.head_sha  # the head just tested: the pinned one
        base = await self.work.git.fetch_branch(pull.base_ref)
        log.info("#%d: checks failed; Claude's fix %d of %d", number, facts.fixes + 1, attempts)
        made = await self.work.make(
            self.items,
            number,
            branch=f"fix/merge-{number}",
            start=head,
            base=base,
            prompt=text.fix_prompt(pull, failure, facts.fixes + 1, attempts),
            message=f"Fix the checks of #{number} (try {facts.fixes + 1} of {attempts})",
        )
        if isinstance(made, NotMade):
            return text.fixes_failed(failure, facts.fixed_heads, trigger, made.said)
        # Recorded before the push: a restart after it adopts the fix (see `adopt`).
        fixed = (*facts.fixed_heads, made.sha)
        self.items.update_facts(number, fixes=facts.fixes + 1, fixed_heads=fixed,
                                fix_sha=made.sha)  # fmt: skip
        refused = await self.work.push(made.sha, pull.head_ref, head)
        if refused is not None:
            why = f"pushing the fix to `{pull.head_ref}` was refused (did someone push?)"
            return text.fixes_failed(failure, facts.fixed_heads, trigger, why)
        self.items.update_facts(number, requested_head=made.sha)
        return await self._shown(pull, made.sha)

    async def _shown(self, pull: PullRequest, sha: str) -> PullRequest:
        """The pull request once GitHub shows the pushed fix as its head (it takes a moment);
        past the wait, as it is: the merge then stops on a head it did not ask for."""
        started = self.clock.monotonic()
        while True:
            now = await self.github.get_pull(pull.number)
            if now.head_sha == sha or self.clock.monotonic() - started >= HEAD_WAIT:
                return now
            await self.clock.sleep(HEAD_POLL)
