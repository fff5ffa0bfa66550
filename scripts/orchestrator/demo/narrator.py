"""The demo's narrator: what the orchestrator does, told as it happens from what it leaves."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from ..core.work import WorkItemType
from ..fakes.fake_github import FakeGitHub
from ..fakes.model_script import RequestKind
from ..fakes.scripted_model import ScriptedModel
from ..ports import StateStore
from .story import checks_passed, claude_starts, github_write, pushed, stamp, tool_use


def record_github(github: FakeGitHub, path: Path) -> None:
    """Keep what the fake GitHub showed at the end, as its API shows it: it lives in memory."""
    record = []
    for number in range(1, github.next_number()):
        entry = {"issue": github.issue(number), "comments": github.comments_on(number)}
        if "pull_request" in entry["issue"]:
            entry |= {"pull": github.pull(number), "reviews": github.reviews_on(number),
                      "review_comments": github.review_comments(number)}  # fmt: skip
        record.append(entry)
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


class Narrator:
    """Tells, as it happens, what the orchestrator did: its GitHub writes (the fake's record),
    its worktrees (on disk), Claude's turns (the scripted model's record), the checks it ran,
    what it pushed and what landed (its state), and which issues closed (GitHub's view)."""

    def __init__(
        self,
        github: FakeGitHub,
        model: ScriptedModel | None,
        state: StateStore,
        worktrees: Path,
        python: str,
        out: TextIO,
        started: float,
    ) -> None:
        """`started` is when the demo began, on `time.monotonic()`'s clock."""
        self._github, self._model, self._state = github, model, state
        self._worktrees, self._python, self._out = worktrees, python, out
        self._started = started
        self._writes = self._requests = 0
        self._sessions: set[str] = set()
        self._seen_worktrees: set[str] = set()
        self._checked: set[int] = set()
        self._pushed: set[str] = set()  # follow-ups' commits told
        self._open: set[int] = set()  # issues to tell the closing of
        self._conversations: dict[str, str] = {}  # a script's marker -> what the run is for
        self._comments: dict[int, str] = {}  # comment id -> text, for the scene's comments

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def name_conversation(self, marker: str, what: str) -> None:
        self._conversations[marker] = what

    def name_comment(self, comment_id: int, text: str) -> None:
        self._comments[comment_id] = text

    def watch_issue(self, number: int) -> None:
        self._open.add(number)

    def say(self, text: str) -> None:
        """A line of the scene itself (what the people in it do), after what came before."""
        self.tick()
        self._print(text)

    def tick(self) -> None:
        """Tell what happened since the last tick. The records carry no common clock, so
        what one tick finds is told in the order the orchestrator does things: it passes the
        checks before it merges, pushes a follow-up before it replies to the review,
        acknowledges work before it makes a worktree for it, makes the worktree before Claude
        runs in it, and merges before GitHub closes the issue."""
        for line in (*self._checks(), *self._pushes(), *self._writes_made(),
                     *self._new_worktrees(), *self._claude(), *self._closed()):  # fmt: skip
            self._print(line)

    def _print(self, text: str) -> None:
        print(stamp(self.elapsed(), text), file=self._out, flush=True)

    def _checks(self) -> Iterator[str]:
        for item in self._state.items(WorkItemType.MERGE):
            results = item.merge.results
            if results and item.number not in self._checked:
                self._checked.add(item.number)
                done = [(r.command, r.duration_s) for r in results]
                yield checks_passed(item.number, item.merge.base_ref, done, self._python)

    def _pushes(self) -> Iterator[str]:
        # A push goes through git, not the API the fake records: the follow-up item records
        # it, right after it is made.
        for item in self._state.items(WorkItemType.FOLLOW_UP):
            sha, branch = item.follow_up.pushed_sha, item.follow_up.branch
            if sha and branch and sha not in self._pushed:
                self._pushed.add(sha)
                yield pushed(item.number, branch, sha)

    def _new_worktrees(self) -> Iterator[str]:
        if not self._worktrees.is_dir():
            return
        for path in sorted(self._worktrees.iterdir()):
            if not path.name.startswith(".") and path.name not in self._seen_worktrees:
                self._seen_worktrees.add(path.name)
                yield f"the orchestrator makes worktree {path.name}"

    def _claude(self) -> Iterator[str]:
        if self._model is None:
            return
        requests = self._model.requests
        for request in requests[self._requests :]:
            if request.kind is not RequestKind.MAIN:
                continue
            what = self._conversations.get(request.conversation or "", "a task")
            session = request.session_id or request.first_user_text
            if session not in self._sessions:
                self._sessions.add(session)
                worktree = request.cwd.name if request.cwd else None
                yield claude_starts(what, worktree, request.direct_tool_names)
            for used in request.tool_results:
                name = used.tool_name or "?"
                yield tool_use(what, name, used.tool_input, cwd=request.cwd, failed=used.is_error,
                               output=used.text, python=self._python)  # fmt: skip
        self._requests = len(requests)

    def _writes_made(self) -> Iterator[str]:
        mutations = self._github.mutations
        for write in mutations[self._writes :]:
            number = int(write.params.get("number") or 0)
            is_pull = bool(number) and "pull_request" in self._github.issue(number)
            base = self._github.pull(number)["base"]["ref"] if write.name == "merge_pull" else None
            comment = self._comments.get(int(write.params.get("id") or 0))
            line = github_write(write.name, write.params, write.body, write.result,
                                is_pull=is_pull, comment=comment, base=base)  # fmt: skip
            if line is not None:
                yield line
        self._writes = len(mutations)

    def _closed(self) -> Iterator[str]:
        for number in sorted(self._open):
            issue = self._github.issue(number)
            if issue["state"] == "closed":
                self._open.discard(number)
                by = (issue.get("closed_by") or {}).get("login", "someone")
                yield f"issue #{number} closed by {by}"
