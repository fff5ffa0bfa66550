"""What every repository of one fake GitHub shares: the lock, users, IDs, rate limits, logs."""

from __future__ import annotations

import itertools
import threading
from datetime import datetime
from typing import TYPE_CHECKING

from ..git_http import GitRequest
from .clock import Clock
from .model import RequestRecord, User
from .ratelimit import RateLimiter

if TYPE_CHECKING:
    from .store import Store

# Separate ID sequences per kind, started apart so an ID never looks like a number. They
# are the site's, not a repository's: GitHub's IDs are unique across repositories.
ID_STARTS = {
    "user": 1,
    "label": 208045946,
    "issue": 1000001,
    "pull": 2000001,
    "comment": 3000001,
    "event": 4000001,
    "reaction": 5000001,
    "review": 6000001,
    "check": 7000001,
    "suite": 8000001,
    "status": 9000001,
    "review_comment": 10000001,
    "commit_comment": 11000001,
    "hook": 400000001,
}
# GitHub's example repository ID, for the first repository; later ones count up from it.
FIRST_REPO_ID = 1296269


class Site:
    """One GitHub: its repositories (matched case-insensitively, as GitHub matches them), and
    what they share. One lock serves every repository, so a request (or a test's call) is
    atomic across the users and IDs they share."""

    def __init__(self, *, bot_login: str, clock: Clock, rate_limit: int = 5000) -> None:
        self.lock = threading.RLock()
        self.bot_login = bot_login
        self.clock = clock
        self.base_url = "http://127.0.0.1"
        self.users: dict[str, User] = {}
        # GitHub's primary rate limit is per user (token), whichever repository is asked.
        self.rate = RateLimiter(rate_limit)
        # Every REST and GraphQL request the server answered, whichever repository it named.
        self.requests: list[RequestRecord] = []
        # Every git request (clone, fetch, push), kept apart: git is not the REST API.
        self.git_requests: list[GitRequest] = []
        self.stores: list[Store] = []
        self._ids = {kind: itertools.count(start) for kind, start in ID_STARTS.items()}

    def next_id(self, kind: str) -> int:
        return next(self._ids[kind])

    def now(self) -> datetime:
        return self.clock.now()

    def next_repo_id(self) -> int:
        return FIRST_REPO_ID + len(self.stores)

    @property
    def primary(self) -> Store:
        """The first repository: it also logs the requests that name no repository of the
        site (`/user`, `/rate_limit`, an unknown repository)."""
        return self.stores[0]

    def add(self, store: Store) -> None:
        if self.find(store.owner, store.name) is not None:
            raise ValueError(f"{store.owner}/{store.name} is served already")
        self.stores.append(store)

    def find(self, owner: str, name: str) -> Store | None:
        wanted = (owner.lower(), name.lower())
        return next((s for s in self.stores if (s.owner.lower(), s.name.lower()) == wanted), None)

    def by_id(self, repo_id: int) -> Store | None:
        return next((s for s in self.stores if s.repo_id == repo_id), None)
