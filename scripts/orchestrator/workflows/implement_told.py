"""What the implement workflow tells an issue: work started, and how an attempt ended."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..config import Settings
from ..core import implement_text as text
from ..core.errors import GitHubError
from ..core.models import Issue
from ..core.redact import Redactor
from ..core.work import Status, WorkItem, Write
from ..ports import Clock, GitHub, StateStore
from . import outbox as outbox_writes
from .implement_task import Refused
from .items import Items

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Failed:
    """An attempt that ended; `comment` tells the issue's readers what happened and what to do."""

    reason: str
    comment: str


@dataclass
class IssueTold:
    """The issue's comments and labels for one attempt, each through the outbox but the
    acknowledgement (a courtesy)."""

    settings: Settings
    state: StateStore
    github: GitHub
    items: Items
    outbox: outbox_writes.Outbox
    redactor: Redactor
    clock: Clock

    async def acknowledge(self, issue: Issue) -> None:
        # Writes are spaced a second apart (secondary rate limits): skip the needless one.
        if self.settings.failed_label in issue.labels:
            # Through the outbox: a resumed attempt does not acknowledge again, and the old
            # failure label must not survive a fault next to a new pull request.
            unlabel = outbox_writes.remove_label(issue.number, self.settings.failed_label)
            self.outbox.queue(self.items.get(issue.number), [unlabel])
            await self.outbox.try_send(issue.number)
        # A courtesy: without it the outcome comes as a comment of its own.
        try:
            await self.github.react_to_issue(issue.number, "eyes")
            said = await self.github.create_comment(issue.number, text.started())
        except GitHubError as exc:
            log.warning("issue #%d: could not say that work started: %s", issue.number, exc)
            return
        if said.id:  # 0: GitHub took it but its answer was unreadable
            self.items.update_facts(issue.number, progress_comment=said.id)

    def tell(self, number: int, body: str) -> Write:
        """The outcome: in the comment that said work started, or in a new one."""
        progress = self.items.get(number).issue.progress_comment
        if progress is None:
            return outbox_writes.comment(number, body)
        return outbox_writes.edit_comment(number, progress, body)

    def ended(self, number: int) -> WorkItem:
        """The item as its attempt ends: the kept issue text is not needed any more (a new
        label takes a new copy), so the state does not grow with every issue's body."""
        return self.items.get(number).with_facts(title=None, body=None)

    async def refuse_label(self, item: WorkItem, refused: Refused) -> None:
        """The label does not start work (applied by someone without write access, or the
        issue changed since): one reply, the label removed, the attempt recorded as refused
        (a writer's label later counts as a new request)."""
        log.warning("issue #%d not started: %s", item.number, refused.reason)
        self.state.put(item.evolve(status=Status.IN_PROGRESS, started_at=self.clock.now()))
        writes = [
            outbox_writes.comment(item.number, refused.comment),
            outbox_writes.remove_label(item.number, self.settings.ready_label),
        ]
        self.outbox.queue(
            self.items.get(item.number),
            writes,
            status=Status.FAILED,
            last_error=refused.reason,
            finished_at=self.clock.now(),
        )
        await self.outbox.try_send(item.number)

    async def fail(self, number: int, failure: Failed) -> None:
        """Record the failure with the comment and label swap that announce it, then send
        those: a fault delays them to a later cycle, it never loses them."""
        log.warning("issue #%d failed: %s", number, failure.reason)
        writes = [
            self.tell(number, text.failure_comment(failure.comment)),
            outbox_writes.remove_label(number, self.settings.ready_label),
            outbox_writes.add_label(number, self.settings.failed_label),
        ]
        self.outbox.queue(
            self.ended(number),
            writes,
            status=Status.FAILED,
            last_error=self.redactor.redact(failure.reason),
            finished_at=self.clock.now(),
        )
        await self.outbox.try_send(number)
