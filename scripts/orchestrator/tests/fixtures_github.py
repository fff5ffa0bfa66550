"""Pytest fixtures for the fake GitHub: a fake clock, a running fake, and a githubkit client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from githubkit import GitHub, TokenAuthStrategy
from githubkit.cache import MemCacheStrategy

from scripts.orchestrator.fakes.fake_github import FakeClock, FakeGitHub
from scripts.orchestrator.fakes.git_world import GitWorld

__all__ = ["fake_clock", "fake_github", "github_client"]

FAKE_TOKEN = "ghp_fake_token_for_tests"
OWNER = "acme"
REPO = "widgets"
BOT = "orchestrator-bot"


def make_client(
    gh: FakeGitHub, token: str = FAKE_TOKEN, **options: Any
) -> GitHub[TokenAuthStrategy]:
    """A real githubkit client for the fake.

    Each client gets its own cache: githubkit's default cache strategy is one process-wide
    object, which would let one test's cached answers leak into the next. Retries are off
    unless asked for, because githubkit sleeps between them.
    """
    options.setdefault("auto_retry", False)
    options.setdefault("timeout", 10.0)
    options.setdefault("cache_strategy", MemCacheStrategy())
    return GitHub(TokenAuthStrategy(token), base_url=gh.url, **options)


@pytest.fixture
def fake_clock() -> FakeClock:
    """A clock standing at 2024-01-01T12:00:00Z until a test advances it."""
    return FakeClock()


@pytest.fixture
def fake_github(git_world: GitWorld, fake_clock: FakeClock) -> Iterator[FakeGitHub]:
    """A running fake GitHub for `acme/widgets`, backed by `git_world.origin`.

    The token is FAKE_TOKEN, acting as `orchestrator-bot` (role: write). At teardown the
    server stops, and the test fails if a request or reply broke GitHub's description (unless
    the test declared it with `fake_github.expect_violations()`) or if the fake crashed.
    """
    with FakeGitHub(
        git_world.origin, OWNER, REPO, FAKE_TOKEN, bot_login=BOT, clock=fake_clock
    ) as gh:
        yield gh
    assert not gh.server_errors, f"the fake GitHub failed on requests: {gh.server_errors}"


@pytest.fixture
def github_client(fake_github: FakeGitHub) -> Iterator[GitHub[TokenAuthStrategy]]:
    """A githubkit client (sync and async) pointed at `fake_github`, authenticated as the bot."""
    client = make_client(fake_github)
    yield client
