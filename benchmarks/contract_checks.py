"""What checking the fake GitHub against GitHub's description costs: one request, one reply."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from scripts.orchestrator.fakes.fake_github import FakeGitHub
from scripts.orchestrator.fakes.fake_github.contract import Contract
from scripts.orchestrator.fakes.fake_github.openapi import Description
from scripts.orchestrator.fakes.git_world import make_world

VERSION = "2022-11-28"
REPEATS = 15


def median_ms(fn: Callable[[], object], repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        world = make_world(Path(tmp) / "world")
        with FakeGitHub(world.origin) as gh:
            for n in range(100):
                gh.create_issue(f"Issue {n}", "body", user="alice")
            headers = {"Authorization": f"token {gh.token}", "X-GitHub-Api-Version": VERSION}
            path = f"/repos/{gh.full_name}/issues"
            contract = Contract()
            query = [("state", "open"), ("per_page", "100"), ("labels", "ready")]
            request_ms = median_ms(
                lambda: contract.check_request(VERSION, "GET", path, query, None), 200
            )
            print(f"request check (GET issues, 3 query parameters): {request_ms:.3f} ms")
            found = Description.load(VERSION).find("GET", path)
            assert found is not None
            op = found[0]
            for per_page in (1, 30, 100):
                body = httpx.get(
                    f"{gh.url}{path}", params={"per_page": per_page}, headers=headers
                ).content
                reply_ms = median_ms(lambda body=body: contract.check_response(op, 200, body))
                print(f"reply check (GET issues, {per_page:>3} issues): {reply_ms:.2f} ms")
            assert contract.violations == [], contract.violations


if __name__ == "__main__":
    main()
