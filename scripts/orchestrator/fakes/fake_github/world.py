"""Building the fake's world from tests: issues, labels, comments, pulls, forks, CI, permissions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from . import ci, reviews
from . import pulls as ops
from .gitops import Identity
from .shapes_base import Json
from .shapes_pulls import review_comment
from .store import Store


class WorldBuilder:
    """Methods that act as people other than the daemon; API call logs stay untouched.

    `user=` defaults to the repository owner, who has admin rights.
    """

    _store: Store

    @property
    def default_branch(self) -> str:
        return self._store.default_branch

    def _who(self, user: str | None) -> str:
        return user or self._store.owner

    def create_issue(
        self,
        title: str,
        body: str = "",
        *,
        user: str | None = None,
        labels: Iterable[str] = (),
        author_association: str | None = None,
    ) -> int:
        with self._store.lock:
            issue = self._store.new_issue(
                title, body, self._who(user), labels, association=author_association
            )
            return issue.number

    def add_labels(self, number: int, *labels: str, user: str | None = None) -> None:
        """Label as `user`; the `labeled` events name them as the actor."""
        with self._store.lock:
            self._store.add_labels(self._store.issue(number), labels, self._who(user))

    def edit_issue(self, number: int, body: str, *, user: str | None = None) -> None:
        """`user` rewrites the issue's body, as `PATCH /issues/{n}` does (`updated_at` moves)."""
        with self._store.lock:
            issue = self._store.issue(number)
            issue.body = body
            issue.last_edited_at = self._store.now()
            self._store.touch(issue)

    def remove_label(self, number: int, label: str, *, user: str | None = None) -> None:
        with self._store.lock:
            self._store.remove_label(self._store.issue(number), label, self._who(user))

    def create_label(
        self, name: str, color: str | None = None, description: str | None = None
    ) -> None:
        with self._store.lock:
            self._store.ensure_label(name, color, description)

    def close_issue(
        self, number: int, *, user: str | None = None, reason: str = "completed"
    ) -> None:
        with self._store.lock:
            self._store.set_state(self._store.issue(number), "closed", self._who(user), reason)

    def reopen_issue(self, number: int, *, user: str | None = None) -> None:
        with self._store.lock:
            self._store.set_state(self._store.issue(number), "open", self._who(user))

    def comment(
        self,
        number: int,
        body: str,
        *,
        user: str | None = None,
        author_association: str | None = None,
    ) -> int:
        """Comment on an issue or pull request as `user`; returns the comment ID."""
        with self._store.lock:
            return self._store.add_comment(number, body, self._who(user), author_association).id

    def edit_comment(self, comment_id: int, body: str) -> None:
        with self._store.lock:
            self._store.edit_comment(self._store.comment(comment_id), body)

    def react(self, comment_id: int, content: str, *, user: str | None = None) -> int:
        with self._store.lock:
            target = self._store.comment(comment_id).reactions
            return self._store.react(target, self._who(user), content)[0].id

    def react_to_issue(self, number: int, content: str, *, user: str | None = None) -> int:
        with self._store.lock:
            target = self._store.issue(number).reactions
            return self._store.react(target, self._who(user), content)[0].id

    def commit(
        self,
        branch: str,
        files: Mapping[str, str | None],
        message: str = "change",
        *,
        base: str | None = None,
        user: str | None = None,
    ) -> str:
        """Commit `files` onto `branch` in origin (created from `base` or the default branch)."""
        with self._store.lock:
            git = self._store.git
            old = git.resolve(f"refs/heads/{branch}")
            parent = old or git.resolve(f"refs/heads/{base or self.default_branch}")
            if parent is None:
                raise ValueError(f"no branch to start {branch!r} from")
            sha = git.commit_files(parent, files, message, self._identity(user))
            git.update_ref(f"refs/heads/{branch}", sha, old)
            ops.sync_heads(self._store)
            return sha

    def create_pull(
        self,
        title: str,
        head: str,
        *,
        base: str | None = None,
        body: str = "",
        user: str | None = None,
        draft: bool = False,
        labels: Iterable[str] = (),
    ) -> int:
        """Open a pull request from `head`, a branch that already exists in origin.

        Its author gets write access unless a test gave them a role: pushing a branch to the
        repository takes it (an outsider's pull request comes from a fork: `create_fork_pull`).
        """
        with self._store.lock:
            author = self._who(user)
            if author.lower() not in self._store.roles:
                self._store.set_role(author, "write")
            issue = ops.create_pull(
                self._store,
                title=title,
                head=head,
                base=base or self.default_branch,
                body=body,
                author=author,
                draft=draft,
            )
            self._store.add_labels(issue, labels, author)
            return issue.number

    def create_fork_pull(
        self,
        title: str,
        *,
        fork_owner: str,
        head_ref: str,
        files: Mapping[str, str | None] | None = None,
        head_sha: str | None = None,
        base: str | None = None,
        body: str = "",
        user: str | None = None,
        draft: bool = False,
    ) -> int:
        """Open a pull request from `fork_owner`'s fork: its head exists only as refs/pull/N/head.

        Give `files` (committed onto the base tip as the fork owner) or a `head_sha` already in
        origin's object store.
        """
        author = user or fork_owner
        base_ref = base or self.default_branch
        with self._store.lock:
            if head_sha is None:
                parent = self._store.git.resolve(f"refs/heads/{base_ref}")
                if parent is None or files is None:
                    raise ValueError(
                        "create_fork_pull needs files (and an existing base) or head_sha"
                    )
                head_sha = self._store.git.commit_files(
                    parent, files, f"Change from {fork_owner}", self._identity(author)
                )
            issue = ops.create_pull(
                self._store,
                title=title,
                head=head_ref,
                base=base_ref,
                body=body,
                author=author,
                draft=draft,
                fork_owner=fork_owner,
                head_sha=head_sha,
            )
            return issue.number

    def push_to_fork_pull(
        self, number: int, files: Mapping[str, str | None], message: str = "update"
    ) -> str:
        """The fork's owner pushes a commit: refs/pull/N/head moves to it."""
        with self._store.lock:
            issue, info = ops.get_pull(self._store, number)
            ref = ops.pull_ref(number)
            parent = self._store.git.resolve(ref)
            if info.fork_owner is None or parent is None:
                raise ValueError(f"#{number} is not a fork's pull request")
            sha = self._store.git.commit_files(parent, files, message, self._identity(issue.user))
            self._store.git.update_ref(ref, sha, parent)
            # Notice the push now, as GitHub does: `updated_at` moves and `synchronize` is sent.
            ops.sync_heads(self._store)
            return sha

    def review(
        self,
        number: int,
        body: str,
        event: str | None = "COMMENT",
        *,
        user: str | None = None,
        commit_id: str | None = None,
        comments: Sequence[Mapping[str, Any]] = (),
    ) -> int:
        """Review as `user`, with `comments` on the diff as the REST API takes them
        (`{"path", "line", "body"}`, optionally `side`, `start_line`, or `position`); refused
        as GitHub refuses it (a path or line outside the diff, ...). Returns the review ID."""
        with self._store.lock:
            issue, _ = ops.get_pull(self._store, number)
            return reviews.add_review(
                self._store,
                issue,
                self._who(user),
                body=body,
                event=event,
                commit_id=commit_id,
                comments=comments,
            ).id

    def review_comment_reply(
        self, number: int, comment_id: int, body: str, *, user: str | None = None
    ) -> int:
        """`user` replies in the thread `comment_id` starts; returns the reply's ID."""
        with self._store.lock:
            issue, _ = ops.get_pull(self._store, number)
            return reviews.reply(self._store, issue, comment_id, body, self._who(user)).id

    def requested_reviewers(self, number: int) -> list[str]:
        """Who is asked for a review and has not yet submitted one, in the order asked."""
        with self._store.lock:
            return list(ops.get_pull(self._store, number)[1].requested_reviewers)

    def review_comments(self, number: int) -> list[Json]:
        """Every review comment of the pull request (pending reviews' too), as the REST API
        shows them, by ID."""
        with self._store.lock:
            found = sorted(
                (c for c in self._store.review_comments.values() if c.pull_number == number),
                key=lambda c: c.id,
            )
            return [review_comment(self._store, c) for c in found]

    def set_permission(self, login: str, role: str) -> None:
        """Give `login` a role: admin, maintain, write, triage, read or none."""
        with self._store.lock:
            self._store.set_role(login, role)

    def set_check_run(
        self,
        ref: str,
        name: str,
        *,
        status: str = "completed",
        conclusion: str | None = "success",
        title: str | None = None,
        summary: str | None = None,
    ) -> int:
        """Report a check run on `ref` (SHA or branch); a newer run of the same name wins."""
        with self._store.lock:
            sha = self._sha(ref)
            if status != "completed":
                conclusion = None
            return ci.add_check_run(
                self._store, sha, name, status, conclusion, title=title, summary=summary
            ).id

    def set_status(
        self,
        ref: str,
        context: str,
        state: str,
        *,
        description: str | None = None,
        target_url: str | None = None,
    ) -> int:
        with self._store.lock:
            return ci.add_status(
                self._store,
                self._sha(ref),
                context,
                state,
                self._store.owner,
                description,
                target_url,
            ).id

    def set_mergeable_unknown(self, number: int, times: int = 1) -> None:
        """The next `times` reads of the pull request say `mergeable: null`."""
        with self._store.lock:
            ops.get_pull(self._store, number)[1].mergeable_unknown = times

    def set_issue_times(
        self, number: int, *, created_at: datetime | None = None, updated_at: datetime | None = None
    ) -> None:
        with self._store.lock:
            issue = self._store.issue(number)
            issue.created_at = created_at or issue.created_at
            issue.updated_at = updated_at or issue.updated_at

    def set_comment_times(
        self,
        comment_id: int,
        *,
        created_at: datetime | None = None,
        updated_at: datetime | None = None,
    ) -> None:
        with self._store.lock:
            item = self._store.comment(comment_id)
            item.created_at = created_at or item.created_at
            item.updated_at = updated_at or item.updated_at

    def set_rate_limit(
        self,
        *,
        remaining: int | None = None,
        limit: int | None = None,
        reset_in: int | None = None,
        login: str | None = None,
    ) -> None:
        self._store.rate.set(
            login or self._store.bot_login, remaining=remaining, limit=limit, reset_in=reset_in
        )

    def _sha(self, ref: str) -> str:
        sha = self._store.git.resolve_branch_or_sha(ref)
        if sha is None:
            raise ValueError(f"no commit {ref!r} in origin")
        return sha

    def _identity(self, user: str | None) -> Identity:
        login = self._who(user)
        ident = self._store.user_id(login)
        return Identity(login, f"{ident}+{login}@users.noreply.github.com", self._store.now())
