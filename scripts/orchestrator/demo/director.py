"""The demo's director: plays the people of the scene, each step once the story reaches it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ..config import Settings
from ..core.work import Status, WorkItem, WorkItemType
from ..daemon import LAST_CYCLE_META
from ..fakes import demo_scene as scene
from ..fakes.fake_github import FakeGitHub
from ..fakes.scripted_model import ScriptedModel
from ..ports import StateStore
from .narrator import Narrator
from .story import describe

_T = TypeVar("_T")
LOOK_EVERY = 0.05  # seconds between looks at what happened


class DemoFailed(Exception):
    """The story did not reach its end; one line says why."""


class Interrupted(Exception):
    """Someone stopped the demo (Ctrl-C, or a signal the daemon obeyed)."""


@dataclass
class Director:
    """Acts in the fake GitHub as the scene's people, and waits (with a deadline, telling
    what happens meanwhile) for the orchestrator, which runs as `daemon` on this event loop."""

    github: FakeGitHub
    model: ScriptedModel | None  # None: the real model, which needs no script
    settings: Settings
    state: StateStore  # the daemon's own, read between its steps
    narrator: Narrator
    daemon: asyncio.Task[int]
    deadline: float  # for the whole story, in seconds since it began

    async def direct(self) -> int:
        """The scene; returns the number of the pull request that was merged."""
        github, say = self.github, self.narrator.say
        await self.until(lambda: self.state.get_meta(LAST_CYCLE_META) is not None,
                         "the orchestrator's first look at GitHub")  # fmt: skip
        say(f"the orchestrator is watching {github.full_name} on a fake GitHub at {github.url}, "
            f"polling every {self.settings.poll_interval:g}s")  # fmt: skip
        if self.settings.sandbox == "off":
            say("SANDBOX=off: Claude and the checks run without the sandbox")
        if self.model is None:
            say("Claude works on the real model, on your account; its turns are not told here "
                "(-v shows the orchestrator's log of them)")  # fmt: skip
        issue, contribution = await self._open_scene()
        ours = github.next_number()  # the orchestrator's pull request: nothing else numbers
        if self.model is not None:
            command = self.settings.pre_merge_commands[0]
            scripts = scene.model_scripts(issue, contribution, ours, command)
            for marker, (what, steps) in scripts.items():
                self.model.script_for(marker, steps)
                self.narrator.name_conversation(marker, what)
        done = await self.until(lambda: self._done(WorkItemType.ISSUE, issue),
                                f"the orchestrator's pull request for issue #{issue}")  # fmt: skip
        if done.pr_number != ours:
            raise DemoFailed(f"the orchestrator's pull request is #{done.pr_number}, not #{ours}")
        await self.until(lambda: github.reviews_on(contribution) and github.reviews_on(ours),
                         f"the reviews of #{contribution} and #{ours}")  # fmt: skip
        await self._ask_for_changes(ours)
        await self._merge(ours)
        await self.until(lambda: github.issue(issue)["state"] == "closed",
                         f"issue #{issue} to be closed")  # fmt: skip
        return ours

    async def _open_scene(self) -> tuple[int, int]:
        """A person files an issue, a writer labels it ready, another person opens a pull
        request; returns their numbers. Nothing awaits between these and the scripting that
        follows, so the daemon, on this event loop, cannot act on them before they are scripted.
        """
        github, say, change = self.github, self.narrator.say, scene.CONTRIBUTION
        label = self.settings.ready_label
        await asyncio.to_thread(github.commit, change.branch, dict(change.files), change.title,
                                user=scene.CONTRIBUTOR)  # fmt: skip
        issue = github.create_issue(scene.ISSUE.title, scene.ISSUE.body, user=scene.REPORTER)
        say(f"issue #{issue} “{scene.ISSUE.title}” is filed by {scene.REPORTER}")
        github.add_labels(issue, label, user=scene.MAINTAINER)
        say(f"issue #{issue} is labelled {label} by {scene.MAINTAINER}, who may write")
        self.narrator.watch_issue(issue)
        pull = github.create_pull(change.title, change.branch, body=change.body,
                                  user=scene.CONTRIBUTOR)  # fmt: skip
        say(f"{scene.CONTRIBUTOR} opens pull request #{pull} “{change.title}” "
            f"({change.branch} → {github.default_branch})")  # fmt: skip
        return issue, pull

    async def _ask_for_changes(self, number: int) -> None:
        """A writer reviews the pull request asking for a change, with a comment on a line;
        the orchestrator pushes Claude's answer, replies, and reviews the new head."""
        github, change = self.github, scene.CHANGES
        github.review(number, change.body, "REQUEST_CHANGES", user=scene.MAINTAINER,
                      comments=[{"path": change.path, "line": change.line,
                                 "body": change.comment}])  # fmt: skip
        self.narrator.say(f"{scene.MAINTAINER} requests changes on #{number}, commenting on "
                          f"{change.path} line {change.line}: “{change.comment}”")  # fmt: skip
        # The item exists, done, before: it records which reviews were looked at.
        done = await self.until(lambda: self._followed_up(number),
                                f"the answer to the review of #{number}")  # fmt: skip
        head, branch = done.follow_up.pushed_sha, done.follow_up.branch
        if branch != (wanted := github.pull(number)["head"]["ref"]):
            raise DemoFailed(f"the answer to the review went to {branch}, not {wanted}")
        await self.until(lambda: self._reviewed(number, head),
                         f"the review of #{number}'s new head")  # fmt: skip

    def _followed_up(self, number: int) -> WorkItem | None:
        item = self._done(WorkItemType.FOLLOW_UP, number)
        return item if item is not None and item.follow_up.pushed_sha else None

    def _reviewed(self, number: int, head: str | None) -> bool:
        """Whether the orchestrator posted a review of `head`: one with a text (its replies
        in review threads come with reviews of their own, without one)."""
        return any(r["user"]["login"] == self.github.bot_login and r["body"]
                   and r["commit_id"] == head for r in self.github.reviews_on(number))  # fmt: skip

    async def _merge(self, number: int) -> None:
        """CI passes on the pull request's head, and a writer asks to merge that head."""
        github, say = self.github, self.narrator.say
        head = github.pull(number)["head"]["sha"]
        github.set_check_run(head, "tests")
        say(f"CI reports check run “tests” passed on #{number} at {head[:12]} (as GitHub "
            "Actions would)")  # fmt: skip
        # Naming the head lands what the writer saw, even a head the daemon has not seen yet.
        trigger = self.settings.merge_comment_trigger
        shown = f"{trigger} {head[:12]}"
        comment = github.comment(number, f"{trigger} {head}", user=scene.MAINTAINER)
        self.narrator.name_comment(comment, shown)
        say(f"{scene.MAINTAINER} comments “{shown}” on #{number}")
        await self.until(lambda: self._done(WorkItemType.MERGE, number), f"the merge of #{number}")

    def _done(self, kind: WorkItemType, number: int) -> WorkItem | None:
        """The work item, once it is done and GitHub has taken all it had to say."""
        item = self.state.get(kind, number)
        return item if item is not None and item.status is Status.DONE and not item.outbox else None

    async def until(self, ready: Callable[[], _T | None], what: str) -> _T:
        """Wait until `ready()` is truthy, telling what happens meanwhile; fail at once when
        the daemon stops or a work item fails, and at the deadline."""
        while True:
            self.narrator.tick()
            if self.daemon.done():
                self.daemon.result()  # its error, if it has one
                raise Interrupted  # it obeyed a stop that was not ours
            for item in self.state.items():
                if item.status is Status.FAILED:
                    raise DemoFailed(f"{describe(item)} failed: {item.last_error}")
            if self.model is not None and (errors := self.model.errors):
                raise DemoFailed(f"the scripted model could not answer: {errors[0]}")
            found = ready()
            if found:
                return found
            if self.narrator.elapsed() > self.deadline:
                raise DemoFailed(f"gave up after {self.deadline:g}s waiting for {what}")
            await asyncio.sleep(LOOK_EVERY)
