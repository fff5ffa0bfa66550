"""The test-facing handle: start/stop the fake GitHub and build or inspect its world in Python."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from types import TracebackType

from ..git_http import GitRequest
from . import routes_commits, routes_issues, routes_pulls, routes_repo, routes_reviews
from .app import App
from .clock import Clock, FakeClock, SystemClock
from .contract import Contract
from .faults import Faults
from .git_service import GitService
from .gitops import GitRepo
from .hooks import Deliverer
from .model import RequestRecord, Token
from .repository import Repository
from .router import Router
from .server import HttpServer
from .site import Site
from .store import Store


def build_router() -> Router:
    router = Router()
    for module_router in (
        routes_issues.router,
        routes_pulls.router,
        routes_reviews.router,
        routes_repo.router,
        routes_commits.router,
    ):
        router.extend(module_router)
    return router


class FakeGitHub(Repository):
    """A local GitHub, backed by real git: the repository `owner/repo` in the bare repository
    `origin`, and any more that `add_repository` adds, on one server.

    Use it as a context manager: `with FakeGitHub(origin) as gh: ... gh.url ...`. Requests
    must carry `Authorization: token <token>` (or `Bearer`); the token is a classic one with
    the `repo` scope unless `scopes` says otherwise. One token sees every repository, and its
    user has one rate limit across them all, as on GitHub. Git is served beside the API, at
    `{url}/{owner}/{repo}.git`, with the token as the Basic password (`git_service.py`).

    The methods inherited from `Repository` build and read the first repository as other
    users would (`user=` defaults to the repository owner) without touching the logs of API
    calls, so tests can assert on exactly what the daemon did. Its logs (`requests`, ...) also
    hold the requests that name no repository of the fake (`/user`, `/rate_limit`).
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
        self._site = Site(bot_login=bot_login, clock=clock or SystemClock(), rate_limit=rate_limit)
        self.token = token
        self.faults = Faults(
            seed=seed, fail_rate=fail_rate, secondary_rate=secondary_rate, delay=delay
        )
        self._tokens = {token: Token(bot_login, _scopes(scopes))}
        self.contract = Contract()
        self._handles: list[Repository] = []
        first = self.add_repository(
            origin,
            owner,
            repo,
            default_branch=default_branch,
            private=private,
            close_issues_on_merge=close_issues_on_merge,
            delete_branch_on_merge=delete_branch_on_merge,
            merge_methods=merge_methods,
        )
        super().__init__(first.store, first._hooks)
        self._handles[0] = self
        self._app = App(
            self._site, build_router(), self.faults, self._tokens, threading.Event(), self.contract
        )
        self._server = HttpServer(self._app, GitService(self._site, self._tokens), host, port)
        host_name, bound = self._server.address
        self._site.base_url = f"http://{host_name}:{bound}"
        self._started = False

    def add_repository(
        self,
        origin: Path,
        owner: str,
        repo: str,
        *,
        default_branch: str | None = None,
        private: bool = False,
        close_issues_on_merge: bool = True,
        delete_branch_on_merge: bool = False,
        merge_methods: Iterable[str] = ("merge", "squash"),
    ) -> Repository:
        """Serve another repository, backed by the bare repository `origin`, on this fake (it
        may be running): its handle, with the world-building and inspecting API `FakeGitHub`
        has for its first repository. It gets its own issue numbers, labels, roles (its owner
        admin, the bot write), logs and repository ID; users, IDs, tokens and the rate limit
        are shared. Refused (ValueError) if `owner/repo` is served already, in any case."""
        branch = default_branch or _head_branch(Path(origin))
        with self._site.lock:
            store = Store(
                site=self._site,
                origin=Path(origin),
                owner=owner,
                name=repo,
                default_branch=branch,
                private=private,
            )
            self._site.add(store)
            store.close_issues_on_merge = close_issues_on_merge
            store.delete_branch_on_merge = delete_branch_on_merge
            store.merge_methods = set(merge_methods)
            store.set_role(self._site.bot_login, "write")
        handle = Repository(store, Deliverer(store, self.contract))
        self._handles.append(handle)
        return handle

    @property
    def repositories(self) -> list[Repository]:
        """Every repository's handle, the first (this object) first."""
        return list(self._handles)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeGitHub:
        if not self._started:
            self._server.start()
            self._started = True
        return self

    def stop(self) -> None:
        """Stop serving and close connections; returns within a few seconds at most."""
        self._server.stop()
        for handle in self._handles:
            handle._hooks.stop()

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

    # -- the whole server -----------------------------------------------------------------

    def all_requests(self) -> list[RequestRecord]:
        """Every REST and GraphQL request the server answered, for any repository or none,
        oldest first (git requests are not among them: see `all_git_requests`)."""
        with self._site.lock:
            return list(self._site.requests)

    @property
    def contract_violations(self) -> list[str]:
        """Requests GitHub would refuse and replies it would never send (see `contract.py`)."""
        return self.contract.violations

    @property
    def server_errors(self) -> list[str]:
        """Requests the fake itself failed on (500s); a passing test should leave this empty."""
        with self._site.lock:
            return list(self._app.server_errors)

    def add_token(
        self, token: str, login: str, *, scopes: Iterable[str] | None = ("repo",)
    ) -> None:
        """Accept another token, acting as `login` (e.g. a human reviewer): a classic token
        with `scopes`, or with `scopes=None` a fine-grained one (GitHub names no scopes)."""
        with self._site.lock:
            self._store.user_id(login)
            self._tokens[token] = Token(login, _scopes(scopes))

    def advance(self, seconds: float = 1.0) -> datetime:
        """Move a FakeClock forward; the default system clock cannot be moved."""
        if not isinstance(self._site.clock, FakeClock):
            raise TypeError("advance() needs FakeGitHub(clock=FakeClock())")
        return self._site.clock.advance(seconds)

    def clear_logs(self) -> None:
        """Forget every repository's logs (`Repository.clear_logs`), and the server's of all
        requests and of git requests."""
        with self._site.lock:
            for handle in self._handles:
                Repository.clear_logs(handle)
            self._site.requests.clear()
            self._site.git_requests.clear()

    @property
    def all_git_requests(self) -> list[GitRequest]:
        """Every git request the server answered, for any repository or none, oldest first."""
        with self._site.lock:
            return list(self._site.git_requests)


def _scopes(scopes: Iterable[str] | None) -> tuple[str, ...] | None:
    return None if scopes is None else tuple(scopes)


def _head_branch(origin: Path) -> str:
    """The bare repository's default branch, from its HEAD."""
    out = GitRepo(origin).run("symbolic-ref", "--short", "HEAD").stdout.strip()
    return out or "main"
