"""A recording fake of the GitHub port: issues, pull requests, comments and CI, in memory.

Port calls are recorded and can be made to fail (see `ports_fakes.Recorder`); the helpers
that set the scene (`add_issue`, `add_pull`, `comment`, `push`, ...) are not recorded. Writes
change the fake's state, and it answers as GitHub does where a workflow's decision depends on
it: `merge_pull` answers 409 when `sha` is not the head and 405 when the pull request cannot be
merged, a missing issue or pull request is a 404, deleting a missing branch a 422.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime

from scripts.orchestrator.core.errors import Conflict, NotFound, NotMergeable, Unprocessable
from scripts.orchestrator.core.models import (
    CheckRun,
    Comment,
    CommitStatus,
    Issue,
    Labelling,
    MergeOutcome,
    PullRequest,
    Review,
)

from .ports_fakes import START, Remote, recorded, sha
from .ports_fakes_reviews import ReviewThreads

BOT = "orchestrator-bot"
_REVIEW_STATES = {"COMMENT": "COMMENTED", "APPROVE": "APPROVED",
                  "REQUEST_CHANGES": "CHANGES_REQUESTED"}  # fmt: skip


class RecordingGitHub(ReviewThreads):
    """The `GitHub` port in memory, for one repository; `now` dates what is created. Review
    comments, replies and review requests are `ReviewThreads`' (ports_fakes_reviews.py)."""

    def __init__(
        self,
        remote: Remote | None = None,
        now: Callable[[], datetime] = lambda: START,
        *,
        repo: str = "acme/widgets",
        login: str | None = BOT,
        default_branch: str = "main",
    ) -> None:
        super().__init__()
        self.remote = remote or Remote()
        self.now = now
        self.repo = repo
        self.me = login
        self.default = default_branch
        self.issues: dict[int, Issue] = {}  # pull requests too, as GitHub lists them
        self.pulls: dict[int, PullRequest] = {}
        self.comments: list[Comment] = []
        self.reactions: list[tuple[str, int, str]] = []  # ("issue" | "comment", id, content)
        self.reviews: dict[int, list[Review]] = {}
        # "maintainer" applies labels unless a test names someone else.
        self.permissions: dict[str, str] = {"maintainer": "admin"}
        self.runs: dict[str, list[CheckRun]] = {}
        self.commit_statuses: dict[str, list[CommitStatus]] = {}
        self.label_events: dict[tuple[int, str], int] = {}  # times a label was added
        self.labellings: dict[tuple[int, str], Labelling] = {}  # who added it last, when
        self.edits: dict[int, datetime] = {}  # when an issue's body was last edited
        self.unmergeable: set[int] = set()  # pull requests GitHub refuses to merge (405)
        self._number = 0
        self._id = 1000

    # -- the scene (not recorded) -------------------------------------------------------------

    def add_issue(self, title: str = "An issue", body: str = "", *, author: str = "alice",
                  labels: tuple[str, ...] = ()) -> int:  # fmt: skip
        number = self._next_number()
        self.issues[number] = Issue(number, title, body, author, (), "open", False, self.now())
        for label in labels:
            self.label(number, label)
        return number

    def add_pull(
        self,
        branch: str = "topic",
        *,
        head: str | None = None,
        base: str = "main",
        title: str = "A change",
        body: str = "",
        author: str = "dave",
        draft: bool = False,
        fork: bool = False,
    ) -> int:
        """An open pull request from `branch` (of a fork with `fork`) into `base`."""
        number = self._next_number()
        head = head or sha(f"{branch}-{number}")
        if not fork:
            self.remote.branches[branch] = head
            # Pushing a branch to the repository takes write access, as on GitHub.
            self.permissions.setdefault(author, "write")
        self.remote.pulls[number] = head
        self.pulls[number] = PullRequest(
            number, title, body, author, "open", draft, False, branch, head,
            f"{author}/widgets" if fork else self.repo, base, self.remote.branches[base],
            self.repo, self.now(),
        )  # fmt: skip
        self.issues[number] = Issue(number, title, body, author, (), "open", True, self.now())
        return number

    def push(self, number: int, head: str) -> None:
        """A new head for pull request `number`, on its branch as on `refs/pull/N/head`."""
        pull = self.pulls[number]
        if not pull.is_fork:
            self.remote.branches[pull.head_ref] = head
        self.remote.pulls[number] = head
        self.pulls[number] = dataclasses.replace(pull, head_sha=head)

    def edit_pull(self, number: int, **changes: object) -> None:
        """Change a pull request (`draft=True`, `state="closed"`, `base_ref="develop"`, ...)."""
        self.pulls[number] = dataclasses.replace(self.pulls[number], **changes)  # type: ignore[arg-type]

    def edit_issue(self, number: int, **changes: object) -> None:
        """Change an issue behind the daemon's back (`labels=()`, `state="closed"`, ...); its
        `updated_at` moves, as on GitHub."""
        changes.setdefault("updated_at", self.now())
        if "body" in changes:
            self.edits[number] = self.now()
        if "title" in changes:  # a `renamed` event
            self.labellings = {
                key: dataclasses.replace(found, renamed_at=self.now())
                if key[0] == number
                else found
                for key, found in self.labellings.items()
            }
        self.issues[number] = dataclasses.replace(self.issues[number], **changes)  # type: ignore[arg-type]

    def label(self, number: int, label: str, *, user: str = "maintainer") -> None:
        """`user` adds `label` to issue `number`."""
        self.labellings[number, label] = Labelling(user, self.now())
        issue = self.issues[number]
        if label not in issue.labels:
            issue = dataclasses.replace(issue, labels=(*issue.labels, label))
        self.issues[number] = dataclasses.replace(issue, updated_at=self.now())
        self.label_events[number, label] = self.label_events.get((number, label), 0) + 1

    def comment(self, number: int, body: str, *, user: str = "carol") -> int:
        """Someone comments on issue or pull request `number`; the comment's id."""
        return self._add_comment(number, body, user).id

    def set_check_run(self, sha: str, name: str, status: str = "completed",
                      conclusion: str | None = "success") -> None:  # fmt: skip
        runs = [r for r in self.runs.get(sha, []) if r.name != name]
        self.runs[sha] = [*runs, CheckRun(name, status, conclusion)]

    def set_status(self, sha: str, context: str, state: str) -> None:
        kept = [s for s in self.commit_statuses.get(sha, []) if s.context != context]
        self.commit_statuses[sha] = [CommitStatus(context, state), *kept]  # newest first

    def bot_comments(self, number: int) -> list[str]:
        """The bodies of the daemon's own comments on `number`, oldest first."""
        return [c.body for c in self.comments if c.issue_number == number and c.author == self.me]

    def labels_of(self, number: int) -> tuple[str, ...]:
        return self.issues[number].labels

    # -- repository and identity ------------------------------------------------------------

    @recorded
    async def default_branch(self) -> str:
        return self.default

    @recorded
    async def login(self) -> str | None:
        return self.me

    @recorded
    async def permission(self, login: str) -> str:
        return self.permissions.get(login, "none")

    # -- issues and comments ----------------------------------------------------------------

    @recorded
    async def list_open_issues(self, label: str | None = None) -> list[Issue]:
        return [
            i for i in self.issues.values()
            if i.state == "open" and (label is None or label in i.labels)
        ]  # fmt: skip

    @recorded
    async def get_issue(self, number: int) -> Issue:
        return self._issue(number)

    @recorded
    async def count_labelled(self, number: int, label: str) -> int:
        self._issue(number)
        return self.label_events.get((number, label), 0)

    @recorded
    async def labelling(self, number: int, label: str) -> Labelling | None:
        self._issue(number)
        return self.labellings.get((number, label))

    @recorded
    async def edited_at(self, number: int) -> datetime | None:
        self._issue(number)
        return self.edits.get(number)

    @recorded
    async def close_issue(self, number: int) -> None:
        self.issues[number] = dataclasses.replace(self._issue(number), state="closed")

    @recorded
    async def add_labels(self, number: int, *labels: str) -> None:
        self._issue(number)
        for label in labels:
            self.label(number, label)

    @recorded
    async def remove_label(self, number: int, label: str) -> bool:
        issue = self._issue(number)
        if label not in issue.labels:
            return False
        kept = tuple(x for x in issue.labels if x != label)
        self.issues[number] = dataclasses.replace(issue, labels=kept)
        return True

    @recorded
    async def list_issue_comments(self, number: int) -> list[Comment]:
        self._issue(number)
        return [c for c in self.comments if c.issue_number == number]

    @recorded
    async def list_repo_comments(self, since: datetime | None) -> list[Comment]:
        found = [c for c in self.comments if since is None or c.updated_at >= since]
        return sorted(found, key=lambda c: (c.updated_at, c.id))

    @recorded
    async def latest_comments(self) -> list[Comment]:
        return sorted(self.comments, key=lambda c: (c.updated_at, c.id), reverse=True)[:10]

    @recorded
    async def create_comment(self, number: int, body: str) -> Comment:
        self._issue(number)
        return self._add_comment(number, body, self.me or "")

    @recorded
    async def edit_comment(self, comment_id: int, body: str) -> None:
        for index, comment in enumerate(self.comments):
            if comment.id == comment_id:
                self.comments[index] = dataclasses.replace(comment, body=body)
                return
        raise NotFound(404, "Not Found")

    @recorded
    async def react_to_issue(self, number: int, content: str) -> None:
        self._issue(number)
        self.reactions.append(("issue", number, content))

    @recorded
    async def react_to_comment(self, comment_id: int, content: str) -> None:
        if not any(c.id == comment_id for c in self.comments):
            raise NotFound(404, "Not Found")
        self.reactions.append(("comment", comment_id, content))

    # -- pull requests ----------------------------------------------------------------------

    @recorded
    async def list_open_pulls(self) -> list[PullRequest]:
        return [self._seen(p) for p in self.pulls.values() if p.state == "open"]

    @recorded
    async def get_pull(self, number: int) -> PullRequest:
        return self._seen(self._pull(number))

    def _seen(self, pull: PullRequest) -> PullRequest:
        return dataclasses.replace(pull, seen_at=self.now())  # GitHub's Date header

    @recorded
    async def find_pull(self, head_branch: str, base: str) -> PullRequest | None:
        ours = [
            p for p in self.pulls.values()
            if p.head_ref == head_branch and p.base_ref == base and not p.is_fork
        ]  # fmt: skip
        return max(ours, key=lambda p: p.number) if ours else None

    @recorded
    async def create_pull(self, *, title: str, head: str, base: str, body: str) -> PullRequest:
        if head not in self.remote.branches or base not in self.remote.branches:
            raise Unprocessable(422, "Validation Failed: head or base does not exist")
        if any(p.head_ref == head and p.base_ref == base and p.state == "open"
               for p in self.pulls.values()):  # fmt: skip
            raise Unprocessable(422, f"A pull request already exists for {head}.")
        number = self.add_pull(head, head=self.remote.branches[head], base=base, title=title,
                               body=body, author=self.me or "")  # fmt: skip
        return self.pulls[number]

    @recorded
    async def list_reviews(self, number: int) -> list[Review]:
        self._pull(number)
        return list(self.reviews.get(number, []))

    @recorded
    async def create_review(self, number: int, *, body: str, event: str, commit_id: str) -> None:
        self._pull(number)
        self._new_review(number, self.me or "", _REVIEW_STATES[event], body, commit_id)

    @recorded
    async def merge_pull(self, number: int, *, sha: str, title: str, message: str) -> MergeOutcome:
        pull = self._pull(number)
        if pull.state != "open":
            raise NotMergeable(405, "Pull Request is not mergeable")
        if sha != pull.head_sha:
            raise Conflict(409, "Head branch was modified. Review and try the merge again.")
        if number in self.unmergeable:
            raise NotMergeable(405, 'Required status check "build" is expected.')
        base_tip = self.remote.branches[pull.base_ref]
        merged = _sha_of(f"squash {base_tip} {sha} {title}")
        self.remote.branches[pull.base_ref] = merged
        self.pulls[number] = dataclasses.replace(pull, state="closed", merged=True)
        self.issues[number] = dataclasses.replace(self.issues[number], state="closed")
        return MergeOutcome(True, merged, "Pull Request successfully merged")

    @recorded
    async def delete_branch(self, branch: str) -> None:
        if self.remote.branches.pop(branch, None) is None:
            raise Unprocessable(422, "Reference does not exist")

    # -- CI ---------------------------------------------------------------------------------

    @recorded
    async def check_runs(self, sha: str) -> list[CheckRun]:
        return list(self.runs.get(sha, []))

    @recorded
    async def statuses(self, sha: str) -> list[CommitStatus]:
        return list(self.commit_statuses.get(sha, []))

    # -- internals --------------------------------------------------------------------------

    def _next_number(self) -> int:
        self._number += 1
        return self._number

    def _issue(self, number: int) -> Issue:
        if number not in self.issues:
            raise NotFound(404, "Not Found")
        return self.issues[number]

    def _pull(self, number: int) -> PullRequest:
        if number not in self.pulls:
            raise NotFound(404, "Not Found")
        return self.pulls[number]

    def _add_comment(self, number: int, body: str, author: str) -> Comment:
        self._id += 1
        now = self.now()
        comment = Comment(self._id, number, author, body, now, now)
        self.comments.append(comment)
        if number in self.issues:  # a comment moves its issue's `updated_at`, as on GitHub
            self.issues[number] = dataclasses.replace(self.issues[number], updated_at=now)
        return comment


_sha_of = sha  # `merge_pull` has a parameter named `sha`
