"""Durable GitHub writes: comments and label changes that land exactly once, however long it takes.

A workflow that ends an item (a failure comment, `ready` swapped for `claude-failed`) must not
lose those writes to a 502: the issue would carry neither label and nobody would know. So the
writes are stored in the item, in the same state write as its new status, and sent from there;
each one leaves the store only once GitHub took it. A comment whose answer was lost may have
been posted: it carries an invisible marker, and before it is sent again the daemon looks for
the marker among the thread's comments. Label changes are idempotent and are simply repeated.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from ..core.errors import GitHubError, NotFound, is_transient
from ..core.redact import Redactor
from ..core.work import WorkItem, WorkItemType, Write
from ..ports import GitHub, StateStore

log = logging.getLogger(__name__)


def comment(number: int, body: str) -> Write:
    return Write(op="comment", number=number, text=body, id=secrets.token_hex(8))


def edit_comment(number: int, comment_id: int, body: str) -> Write:
    return Write(op="edit_comment", number=number, text=body, id=secrets.token_hex(8),
                 comment_id=comment_id)  # fmt: skip


def add_label(number: int, label: str) -> Write:
    return Write(op="add_label", number=number, text=label, id=secrets.token_hex(8))


def remove_label(number: int, label: str) -> Write:
    return Write(op="remove_label", number=number, text=label, id=secrets.token_hex(8))


def reply(number: int, thread: int, body: str) -> Write:
    """A reply in review thread `thread` (its first comment's id) of pull request `number`."""
    return Write(op="reply", number=number, text=body, id=secrets.token_hex(8), comment_id=thread)


def request_review(number: int, login: str) -> Write:
    return Write(op="request_review", number=number, text=login, id=secrets.token_hex(8))


# Each state's senders, by kind and item (forgotten with the state).
_SENDERS: weakref.WeakKeyDictionary[StateStore, dict[WorkItemType, dict[int, asyncio.Lock]]] = (
    weakref.WeakKeyDictionary()
)

MARKER_PREFIX = "<!-- claude-orchestrator:"


def marker(write: Write) -> str:
    """An HTML comment GitHub keeps but does not show: how a lost comment is recognised."""
    return f"{MARKER_PREFIX}{write.id} -->"


class Outbox:
    """Queues writes in one kind of work item and sends them, one sender per item at a time."""

    def __init__(
        self,
        state: StateStore,
        kind: WorkItemType,
        github: GitHub,
        redactor: Redactor,
        landed: Callable[[Write], None] | None = None,
    ) -> None:
        """`landed` hears each write GitHub took (or had already: a label already gone)."""
        self._state = state
        self._landed = landed
        self._kind = kind
        self._github = github
        self._redactor = redactor
        # One sender per item for the state's whole life, not this outbox's: the workflows are
        # built again when a repository's settings change, and a job of the old ones may still
        # be sending.
        self._locks = _SENDERS.setdefault(state, {}).setdefault(kind, {})

    def queue(self, item: WorkItem, writes: Sequence[Write], **changes: Any) -> None:
        """Store `item` with `changes` applied and `writes` queued after any still waiting: one
        state write, so a crash cannot record an outcome without the writes that announce it.
        Texts are redacted here, as every stored text is."""
        clean = tuple(w.but(text=self._redactor.redact(w.text)) for w in writes)
        self._state.put(item.evolve(outbox=(*item.outbox, *clean), **changes))

    def waiting(self) -> list[int]:
        """Items with writes GitHub has not taken yet."""
        return [i.number for i in self._state.items(self._kind) if i.outbox]

    async def send_all(self) -> None:
        """Send every waiting item's writes; a transient fault leaves them for the next cycle."""
        for number in self.waiting():
            await self.try_send(number)

    async def try_send(self, number: int) -> None:
        """`send`, except that a transient fault leaves the rest for the next cycle."""
        try:
            await self.send(number)
        except GitHubError as exc:
            if not is_transient(exc):
                raise
            log.warning("#%d: GitHub writes wait for the next cycle: %s", number, exc)

    async def send(self, number: int) -> None:
        """Send `number`'s queued writes in order; each leaves the queue once GitHub took it,
        or refused it for good (a 4xx: e.g. the issue was deleted), so one write that can never
        land does not hold back the others, nor the next items."""
        # A job and the next poll may both send one item: they take turns, or both would post.
        async with self._locks.setdefault(number, asyncio.Lock()):
            while True:
                item = self._state.get(self._kind, number)
                writes = item.outbox if item is not None else ()
                if not writes:
                    return
                write = writes[0]
                if write.op in ("comment", "reply") and not write.tried:
                    # Recorded before the POST: after a lost answer, look before posting again.
                    self._settle(number, write.id, write.but(tried=True))
                try:
                    await self._send(write)
                except GitHubError as exc:
                    if is_transient(exc):
                        raise
                    log.warning(
                        "#%d: GitHub refused %s for good, dropped: %s", number, write.op, exc
                    )
                else:
                    if self._landed is not None:
                        self._landed(write)
                self._settle(number, write.id, None)

    def _settle(self, number: int, write_id: str, replacement: Write | None) -> None:
        item = self._state.get(self._kind, number)
        if item is None:
            return
        outbox = tuple(
            replacement if w.id == write_id and replacement else w
            for w in item.outbox
            if w.id != write_id or replacement
        )
        self._state.put(item.evolve(outbox=outbox))

    async def _send(self, write: Write) -> None:
        github = self._github
        if write.op == "comment":
            tag = marker(write)
            if write.tried and any(
                tag in c.body for c in await github.list_issue_comments(write.number)
            ):
                log.info("#%d: a comment whose answer was lost had landed", write.number)
                return
            await github.create_comment(write.number, f"{write.text}\n\n{tag}")
        elif write.op == "reply":
            tag = marker(write)
            if write.tried and any(
                tag in c.body for c in await github.list_review_comments(write.number)
            ):
                log.info("#%d: a reply whose answer was lost had landed", write.number)
                return
            await github.reply_to_review_comment(
                write.number, write.comment_id, f"{write.text}\n\n{tag}"
            )
        elif write.op == "request_review":  # idempotent: asking again changes nothing
            await github.request_reviewers(write.number, [write.text])
        elif write.op == "edit_comment":  # idempotent: simply repeated after a fault
            try:
                await github.edit_comment(write.comment_id, write.text)
            except NotFound:  # someone deleted it: the outcome is still said, in a new one
                await github.create_comment(write.number, write.text)
        elif write.op == "add_label":
            await github.add_labels(write.number, write.text)
        elif write.op == "remove_label":
            await github.remove_label(write.number, write.text)  # False if already gone: fine
        else:  # the type allows no other; a new op must be sent here
            raise ValueError(f"unknown outbox write {write.op!r}")
