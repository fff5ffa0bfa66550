"""The test-facing handle: start/stop the fake GitHub and build or inspect its world in Python."""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from . import pulls as ops
from . import routes_issues, routes_pulls, routes_repo, routes_reviews
from . import shapes_issues as issue_shapes
from . import shapes_pulls as pull_shapes
from .app import App
from .clock import Clock, FakeClock, SystemClock
from .contract import Contract
from .faults import Faults
from .gitops import GitRepo
from .hooks import Deliverer, Delivery
from .model import Mutation, RequestRecord, Token
from .router import Router
from .server import HttpServer
from .store import Store
from .world import WorldBuilder

Json = dict[str, Any]


def build_router() -> Router:
    router = Router()
    for module_router in (
        routes_issues.router,
        routes_pulls.router,
        routes_reviews.router,
        routes_repo.router,
    ):
        router.extend(module_router)
    return router


class FakeGitHub(WorldBuilder):
    """A local GitHub for one repository, backed by the bare git repository `origin`.

    Use it as a context manager: `with FakeGitHub(origin) as gh: ... gh.url ...`. Requests
    must carry `Authorization: token <token>` (or `Bearer`); the token is a classic one with
    the `repo` scope unless `scopes` says otherwise. Methods below build the world as
    other users would (`user=` defaults to the repository owner) without touching the logs of
    API calls, so tests can assert on exactly what the daemon did.
    """

    def __init__(
        self,
        origin: Path,
        owner: str = "acme",
        repo: str = "widgets",
        # A made-up token: the fake only compares it with what clients send.
        token: str = "ghp_fake_orchestrator_token",  # noqa: S107
        *,
        # The token's classic scopes (`X-OAuth-Scopes`); None makes it a fine-grained token.
        scopes: Iterable[str] | None = ("repo",),
        bot_login: str = "orchestrator-bot",
        clock: Clock | None = None,
        default_branch: str | None = None,
        private: bool = False,
        seed: int = 0,
        fail_rate: float = 0.0,
        secondary_rate: float = 0.0,
        delay: float = 0.0,
        rate_limit: int = 5000,
        close_issues_on_merge: bool = True,
        delete_branch_on_merge: bool = False,
        merge_methods: Iterable[str] = ("merge", "squash"),
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        branch = default_branch or _head_branch(Path(origin))
        self._store = Store(
            origin=Path(origin),
            owner=owner,
            name=repo,
            bot_login=bot_login,
            clock=clock or SystemClock(),
            default_branch=branch,
            private=private,
        )
        self._store.close_issues_on_merge = close_issues_on_merge
        self._store.delete_branch_on_merge = delete_branch_on_merge
        self._store.merge_methods = set(merge_methods)
        self._store.rate.limit = rate_limit
        self._store.set_role(bot_login, "write")
        self.token = token
        self.faults = Faults(
            seed=seed, fail_rate=fail_rate, secondary_rate=secondary_rate, delay=delay
        )
        self._tokens = {token: Token(bot_login, _scopes(scopes))}
        self.contract = Contract()
        self._hooks = Deliverer(self._store, self.contract)
        self._app = App(
            self._store, build_router(), self.faults, self._tokens, threading.Event(), self.contract
        )
        self._server = HttpServer(self._app, host, port)
        host_name, bound = self._server.address
        self._store.base_url = f"http://{host_name}:{bound}"
        self._started = False

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeGitHub:
        if not self._started:
            self._server.start()
            self._started = True
        return self

    def stop(self) -> None:
        """Stop serving and close connections; returns within a few seconds at most."""
        self._server.stop()
        self._hooks.stop()

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if exc_type is None:
            self.check_contract()

    def check_contract(self) -> None:
        """Fail (AssertionError) if a request or response broke GitHub's description."""
        found = self.contract.violations
        if found:
            lines = "\n".join(f"  {v}" for v in found)
            raise AssertionError(f"requests or replies against GitHub's description:\n{lines}")

    def expect_violations(self) -> AbstractContextManager[list[str]]:
        """For a test that breaks the contract on purpose (to see the fake refuse like GitHub):
        `with gh.expect_violations() as seen: ...`; fails if nothing broke it."""
        return self.contract.expect_violations()

    # -- webhooks -------------------------------------------------------------------------

    def add_webhook(self, url: str, secret: str, events: Collection[str] = ("*",)) -> int:
        """Add a repository webhook (JSON, signed with `secret`) and send it `ping`; returns its
        ID. It then gets `issues` labeled, `pull_request` opened, synchronize, reopened and
        labeled, `issue_comment` created and `pull_request_review` submitted, from the REST API
        and from this class's helpers alike. A push is seen (synchronize) at the fake's next
        request or helper call, as the fake sees pushes. Each payload is checked against
        GitHub's webhook schemas; a breach is a contract violation."""
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

    # -- properties -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The API base URL, `http://127.0.0.1:PORT` (githubkit adds the trailing slash)."""
        return self._store.base_url

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
    def contract_violations(self) -> list[str]:
        """Requests GitHub would refuse and replies it would never send (see `contract.py`)."""
        return self.contract.violations

    @property
    def server_errors(self) -> list[str]:
        """Requests the fake itself failed on (500s); a passing test should leave this empty."""
        with self._store.lock:
            return list(self._app.server_errors)

    def add_token(
        self, token: str, login: str, *, scopes: Iterable[str] | None = ("repo",)
    ) -> None:
        """Accept another token, acting as `login` (e.g. a human reviewer): a classic token
        with `scopes`, or with `scopes=None` a fine-grained one (GitHub names no scopes)."""
        with self._store.lock:
            self._store.user_id(login)
            self._tokens[token] = Token(login, _scopes(scopes))

    def advance(self, seconds: float = 1.0) -> datetime:
        """Move a FakeClock forward; the default system clock cannot be moved."""
        if not isinstance(self._store.clock, FakeClock):
            raise TypeError("advance() needs FakeGitHub(clock=FakeClock())")
        return self._store.clock.advance(seconds)

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
        with self._store.lock:
            self._store.requests.clear()
            self._store.mutations.clear()
            self._store.unknown_routes.clear()


def _scopes(scopes: Iterable[str] | None) -> tuple[str, ...] | None:
    return None if scopes is None else tuple(scopes)


def _head_branch(origin: Path) -> str:
    """The bare repository's default branch, from its HEAD."""
    out = GitRepo(origin).run("symbolic-ref", "--short", "HEAD").stdout.strip()
    return out or "main"
