"""The issue as a writer labelled it: its text kept at the first look, and Claude's task."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..config import Settings
from ..core import implement_text as text
from ..core.decide_implement import changed_since_label, comments_as_labelled
from ..core.models import Comment, Issue
from ..core.triggers import may_command
from ..ports import GitHub
from .items import Items


@dataclass(frozen=True)
class Refused:
    """The label starts no work; `comment` says why and what a writer can do."""

    reason: str
    comment: str


@dataclass
class LabelledIssue:
    """Reads an issue as it stood when its ready label was applied."""

    settings: Settings
    github: GitHub
    items: Items

    async def as_labelled(self, issue: Issue) -> Issue | Refused:
        """The issue as it stood when the writer labelled it: kept in the item at the first
        look (a fresh attempt, or one that a fault or a stop cut short before it), and used
        from then on, whatever is edited later."""
        facts = self.items.get(issue.number).issue
        if facts.body is None and facts.labelled_at is not None:
            labelling = await self.github.labelling(issue.number, self.settings.ready_label)
            renamed_at = labelling.renamed_at if labelling is not None else None
            edited_at = await self.github.edited_at(issue.number)
            if changed_since_label(facts.labelled_at, edited_at, renamed_at):
                return Refused(
                    "the issue was edited after the ready label was applied",
                    text.changed_since_label(self.settings.ready_label),
                )
            # Kept only as far as the prompt reads it (one past, so the cut still shows).
            body = issue.body[: text.MAX_BODY_CHARS + 1]
            self.items.update_facts(issue.number, title=issue.title, body=body)
            return issue
        if facts.body is None:  # an attempt from an older state, before labels were timed
            return issue
        return dataclasses.replace(issue, title=facts.title or issue.title, body=facts.body)

    async def task(self, issue: Issue) -> str:
        """Claude's task: the issue (as labelled) and its comments as they stood then."""
        facts = self.items.get(issue.number).issue
        everything = [
            c
            for c in await self.github.list_issue_comments(issue.number)
            if c.id != facts.progress_comment  # "working on this issue": ours, not the task
        ]
        comments, left_out = comments_as_labelled(everything, facts.labelled_at)
        outsiders = await self._outsiders(comments)
        drop = self.settings.outsider_comments == "drop"
        if drop:
            comments = [c for c in comments if c.author not in outsiders]
            left_out = len(everything) - len(comments)
        return text.implement_prompt(
            issue,
            comments,
            outsiders=outsiders,
            own=await self.github.login(),
            left_out=left_out,
            outsiders_dropped=drop,
        )

    async def _outsiders(self, comments: list[Comment]) -> frozenset[str]:
        """The comments' authors without write access (one request per author; the prompt
        holds at most `MAX_PROMPT_COMMENTS` comments, so at most that many requests)."""
        authors = {c.author for c in comments[-text.MAX_PROMPT_COMMENTS :]}
        return frozenset(
            [a for a in sorted(authors) if not may_command(await self.github.permission(a))]
        )
