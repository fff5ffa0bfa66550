"""One repository of the fake GitHub, as tests build and inspect it: the handle's API."""

from __future__ import annotations

from collections.abc import Collection

from ..git_http import GitRequest
from . import pulls as ops
from . import shapes_commits as commit_shapes
from . import shapes_issues as issue_shapes
from . import shapes_pulls as pull_shapes
from .clock import Clock
from .hooks import Deliverer, Delivery
from .model import Mutation, RequestRecord
from .shapes_base import Json
from .store import Store
from .world import WorldBuilder


class Repository(WorldBuilder):
    """A repository the fake serves: build its world as other users would (`WorldBuilder`)
    and read it back as the API shows it. Logs are this repository's alone: the requests that
    named it, its mutations, its git requests. `FakeGitHub` is one for its first repository;
    `FakeGitHub.add_repository` gives one for each further repository."""

    def __init__(self, store: Store, hooks: Deliverer) -> None:
        self._store = store
        self._hooks = hooks

    # -- properties -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The API base URL, `http://127.0.0.1:PORT` (githubkit adds the trailing slash)."""
        return self._store.base_url

    @property
    def git_url(self) -> str:
        """Where git clones and pushes this repository with the token, as GitHub Enterprise
        Server serves it: `http://127.0.0.1:PORT/owner/repo.git`."""
        return f"{self._store.base_url}/{self.full_name}.git"

    @property
    def owner(self) -> str:
        return self._store.owner

    @property
    def repo(self) -> str:
        return self._store.name

    @property
    def full_name(self) -> str:
        return f"{self._store.owner}/{self._store.name}"

    @property
    def repo_id(self) -> int:
        return self._store.repo_id

    @property
    def bot_login(self) -> str:
        return self._store.bot_login

    @property
    def clock(self) -> Clock:
        return self._store.clock

    @property
    def store(self) -> Store:
        """The raw records; prefer the methods here, which take the lock for you."""
        return self._store

    @property
    def requests(self) -> list[RequestRecord]:
        with self._store.lock:
            return list(self._store.requests)

    @property
    def mutations(self) -> list[Mutation]:
        with self._store.lock:
            return list(self._store.mutations)

    @property
    def unknown_routes(self) -> list[tuple[str, str]]:
        with self._store.lock:
            return list(self._store.unknown_routes)

    @property
    def git_requests(self) -> list[GitRequest]:
        """The git requests (clone, fetch, push) for this repository, authorized or not."""
        prefix = f"/{self.full_name}.git/".lower()
        with self._store.lock:
            return [r for r in self._store.site.git_requests if r.path.lower().startswith(prefix)]

    # -- webhooks -------------------------------------------------------------------------

    def add_webhook(self, url: str, secret: str, events: Collection[str] = ("*",)) -> int:
        """Add a repository webhook (JSON, signed with `secret`) and send it `ping`; returns its
        ID. It then gets `issues` labeled, `pull_request` opened, synchronize, reopened and
        labeled, `issue_comment` created and `pull_request_review` submitted, from the REST API
        and from this class's helpers alike. A push through the fake's git is seen
        (synchronize) as it lands; one straight into origin at the fake's next request to this
        repository or helper call. Each payload is checked against GitHub's webhook schemas; a
        breach is a contract violation."""
        return self._hooks.add(url, secret, events)

    @property
    def deliveries(self) -> list[Delivery]:
        """Every webhook delivery so far, oldest first, with the receiver's answer."""
        return self._hooks.deliveries

    def redeliver(self, delivery_id: str) -> None:
        """Send a delivery again with the same `X-GitHub-Delivery` and body (a new record)."""
        self._hooks.redeliver(delivery_id)

    def wait_for_deliveries(
        self, count: int | None = None, timeout: float = 10.0
    ) -> list[Delivery]:
        """Block until `count` deliveries (default: all made so far) have been answered;
        AssertionError after `timeout` seconds. Returns them all."""
        return self._hooks.wait(count, timeout)

    # -- inspecting -----------------------------------------------------------------------

    def issue(self, number: int) -> Json:
        """The issue (or pull request) as `GET /issues/{n}` returns it."""
        with self._store.lock:
            return issue_shapes.issue(self._store, self._store.issue(number))

    def pull(self, number: int) -> Json:
        """The pull request as `GET /pulls/{n}` returns it (head SHA read from git now)."""
        with self._store.lock:
            issue, _ = ops.get_pull(self._store, number)
            now = ops.tips(self._store, issue, ops.sync_heads(self._store))
            return pull_shapes.pull_full(self._store, issue, now)

    def comments_on(self, number: int) -> list[Json]:
        with self._store.lock:
            return [issue_shapes.comment(self._store, c) for c in self._store.comments_on(number)]

    def commit_comments(self, sha: str | None = None) -> list[Json]:
        """The repository's commit comments (on `sha` only, if given), oldest first, as
        `GET /commits/{sha}/comments` shows them."""
        with self._store.lock:
            found = [
                c
                for c in sorted(self._store.commit_comments.values(), key=lambda c: c.id)
                if sha is None or c.commit_id == sha
            ]
            return [commit_shapes.commit_comment(self._store, c) for c in found]

    def labels_of(self, number: int) -> list[str]:
        with self._store.lock:
            return list(self._store.issue(number).labels)

    def events_of(self, number: int) -> list[Json]:
        with self._store.lock:
            return [issue_shapes.event(self._store, e) for e in self._store.events_of(number)]

    def reviews_on(self, number: int) -> list[Json]:
        with self._store.lock:
            return [
                issue_shapes.review(self._store, r)
                for r in self._store.reviews
                if r.pull_number == number
            ]

    def reactions_on_comment(self, comment_id: int) -> list[str]:
        """`login:content` for each reaction, e.g. `orchestrator-bot:eyes`."""
        with self._store.lock:
            return [f"{r.user}:{r.content}" for r in self._store.comment(comment_id).reactions]

    def branch_sha(self, branch: str) -> str | None:
        return self._store.git.resolve(f"refs/heads/{branch}")

    def next_number(self) -> int:
        with self._store.lock:
            return self._store.next_number()

    def requests_to(
        self, method: str | None = None, path: str | None = None
    ) -> list[RequestRecord]:
        """Logged requests with this method and/or containing `path`."""
        return [
            r
            for r in self.requests
            if (method is None or r.method == method) and (path is None or path in r.path)
        ]

    def mutations_named(self, name: str) -> list[Mutation]:
        return [m for m in self.mutations if m.name == name]

    def clear_logs(self) -> None:
        """Forget this repository's requests, mutations, unknown routes and git requests."""
        prefix = f"/{self.full_name}.git/".lower()
        with self._store.lock:
            self._store.requests.clear()
            self._store.mutations.clear()
            self._store.unknown_routes.clear()
            kept = self._store.site.git_requests
            kept[:] = [r for r in kept if not r.path.lower().startswith(prefix)]
