"""The recording GitHub fake's review threads: reviews with comments, replies, review requests.

A mixin of `RecordingGitHub` (ports_fakes_github.py), which it shares IDs, time and pull
requests with. It answers as GitHub does where a workflow's decision depends on it: a reply
to a reply is a 422, as is a review requested from the pull request's author or from someone
who is not a collaborator; a reply comes with a review of its own (COMMENTED, no body), and a
submitted review answers its author's review request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from scripts.orchestrator.core.errors import NotFound, Unprocessable
from scripts.orchestrator.core.models import PullRequest, Review, ReviewComment

from .ports_fakes import Recorder, recorded

NOT_A_COLLABORATOR = (
    "Reviews may only be requested from collaborators. One or more of the users or teams "
    "you specified is not a collaborator of the repository."
)


class ReviewThreads(Recorder):
    """Review comments by pull request, and who is asked for a review."""

    # Kept by RecordingGitHub.
    now: Callable[[], datetime]
    me: str | None
    reviews: dict[int, list[Review]]
    permissions: dict[str, str]
    _id: int

    def __init__(self) -> None:
        super().__init__()
        self.review_comments: dict[int, list[ReviewComment]] = {}
        self.requested: dict[int, list[str]] = {}

    def _pull(self, number: int) -> PullRequest:
        raise NotImplementedError  # RecordingGitHub's

    # -- the scene (not recorded) -------------------------------------------------------------

    def add_review(
        self,
        number: int,
        *,
        user: str,
        state: str = "CHANGES_REQUESTED",
        body: str = "",
        commit_id: str | None = None,
        comments: Sequence[Mapping[str, Any]] = (),
    ) -> int:
        """`user` submits a review of pull request `number` (on its head unless `commit_id`
        says otherwise), with `comments` (`{"path", "line", "body"}`), each a thread's first
        comment; the review's id."""
        pull = self._pull(number)
        review = self._new_review(number, user, state, body, commit_id or pull.head_sha)
        for comment in comments:
            self._add_review_comment(
                number, review, user, str(comment["body"]), str(comment["path"]),
                comment.get("line"), None,
            )  # fmt: skip
        return review.id

    def reply(self, number: int, comment_id: int, body: str, *, user: str = "carol") -> int:
        """Someone replies in the thread that `comment_id` starts; the reply's id."""
        return self._reply(number, comment_id, body, user)

    def replies_sent(self, number: int) -> list[ReviewComment]:
        """The daemon's own replies on pull request `number`, oldest first."""
        return [
            c for c in self.review_comments.get(number, [])
            if c.author == self.me and c.in_reply_to is not None
        ]  # fmt: skip

    def requested_reviewers(self, number: int) -> list[str]:
        """Who is asked for a review of `number` and has not yet submitted one."""
        return list(self.requested.get(number, []))

    # -- the port -----------------------------------------------------------------------------

    @recorded
    async def list_review_comments(self, number: int) -> list[ReviewComment]:
        self._pull(number)
        return sorted(self.review_comments.get(number, []), key=lambda c: c.id)

    @recorded
    async def reply_to_review_comment(self, number: int, comment_id: int, body: str) -> int:
        return self._reply(number, comment_id, body, self.me or "")

    @recorded
    async def request_reviewers(self, number: int, logins: Sequence[str]) -> None:
        pull = self._pull(number)
        if pull.author in logins:
            raise Unprocessable(422, "Review cannot be requested from pull request author.")
        if any(self.permissions.get(login, "none") == "none" for login in logins):
            raise Unprocessable(422, NOT_A_COLLABORATOR)
        asked = self.requested.setdefault(number, [])
        asked += [login for login in dict.fromkeys(logins) if login not in asked]

    # -- internals ----------------------------------------------------------------------------

    def _reply(self, number: int, comment_id: int, body: str, user: str) -> int:
        pull = self._pull(number)
        target = next((c for c in self.review_comments.get(number, []) if c.id == comment_id), None)
        if target is None:
            raise NotFound(404, "Not Found")
        if target.in_reply_to is not None:
            raise Unprocessable(422, "Replies to replies are not supported")
        review = self._new_review(number, user, "COMMENTED", "", pull.head_sha)
        return self._add_review_comment(
            number, review, user, body, target.path, target.line, target.id
        ).id

    def _new_review(self, number: int, user: str, state: str, body: str, commit_id: str) -> Review:
        self._id += 1
        review = Review(self._id, user, commit_id, state, body, self.now())
        self.reviews.setdefault(number, []).append(review)
        self.answered(number, user)
        return review

    def answered(self, number: int, user: str) -> None:
        """`user` submitted a review: GitHub no longer lists them as requested."""
        self.requested[number] = [r for r in self.requested.get(number, []) if r != user]

    def _add_review_comment(
        self,
        number: int,
        review: Review,
        user: str,
        body: str,
        path: str,
        line: int | None,
        in_reply_to: int | None,
    ) -> ReviewComment:
        self._id += 1
        comment = ReviewComment(
            self._id, number, review.id, user, body, path, line, in_reply_to, self.now()
        )
        self.review_comments.setdefault(number, []).append(comment)
        return comment
