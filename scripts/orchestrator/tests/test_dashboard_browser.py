"""The dashboard in a real headless Chromium: the pages, the live tail, no console errors."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from scripts.orchestrator.dashboard import dashboard_routes

from .test_dashboard import FakeSource, sample

pytest.importorskip("playwright")
from playwright.sync_api import ConsoleMessage, Page, Request, Response, sync_playwright

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
CHROMIUM = shutil.which("chromium")

if CHROMIUM is None:
    if os.environ.get("ORCHESTRATOR_BROWSER_TESTS") == "required":
        raise RuntimeError("ORCHESTRATOR_BROWSER_TESTS=required but chromium is not installed")
    pytest.skip(
        "chromium is not installed (apt-get install chromium); set "
        "ORCHESTRATOR_BROWSER_TESTS=required to make this a failure",
        allow_module_level=True,
    )


class Served:
    """The dashboard served by uvicorn on a loopback port of its own, on a thread."""

    def __init__(self, app: Starlette) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        self.url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, timeout_graceful_shutdown=1
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, args=([listener],), name="dashboard", daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the dashboard did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(STOP_TIMEOUT)
        assert not self.thread.is_alive(), f"the dashboard did not stop within {STOP_TIMEOUT} s"


def until(check: Callable[[], bool], within: float, what: str) -> float:
    """Wait for `check` to hold, polling; how long it took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > within:
            raise AssertionError(f"{what}: not within {within} s")
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.fixture
def source(tmp_path: Path) -> FakeSource:
    return sample(tmp_path / "logs", datetime.now(timezone.utc))


@pytest.fixture
def served(source: FakeSource) -> Iterator[Served]:
    server = Served(Starlette(routes=dashboard_routes(source, poll=0.1)))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def page() -> Iterator[Page]:
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"] if root else [],
            timeout=START_TIMEOUT * 1000,
        )  # fmt: skip
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            tab = context.new_page()
            tab.set_default_timeout(5000)
            yield tab
            context.close()
        finally:
            browser.close()


def test_the_dashboard_in_a_browser(
    served: Served, source: FakeSource, page: Page, tmp_path: Path
) -> None:
    problems: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            problems.append(f"{message.type}: {message.text}")

    def refused(response: Response) -> None:
        if response.status >= 400:
            problems.append(f"{response.status}: {response.url}")

    page.on("console", console)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

    def failed(request: Request) -> None:
        # The page closes its event stream at the run's end; whether the server's own close
        # came first is a race, and a stream the page itself closed is no failure.
        if request.url.endswith("/tail") and request.failure == "net::ERR_ABORTED":
            return
        problems.append(f"failed: {request.url} ({request.failure})")

    page.on("requestfailed", failed)
    page.on("response", refused)
    run = source.start_run("issue#12")
    run.write({"type": "request", "prompt": "Add dark mode"})

    page.goto(served.url + "/")
    running = page.locator("#running tr.g-running")
    assert "issue #12" in running.first.inner_text()
    assert "issue #3" in page.locator("#done tr.g-done").first.inner_text()
    assert page.locator("#failed .error").first.inner_text().startswith("CI failed <script>")
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    if artifacts := os.environ.get("ORCHESTRATOR_ARTIFACTS"):
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / "dashboard.png")

    page.get_by_role("link", name="issue #12", exact=True).click()
    lines = page.locator("#tail .line")
    until(lambda: lines.count() == 1, 5, "the transcript so far")
    assert page.locator("#tail-state").inner_text() == "live"
    run.write({"type": "assistant", "text": "a line written now"})
    took = until(lambda: lines.count() == 2, 1.0, "the new line")
    assert "a line written now" in lines.nth(1).inner_text(), took
    if artifacts:
        page.screenshot(path=str(Path(artifacts) / "dashboard-item.png"), full_page=True)

    source.running = [job for job in source.running if job.number != 12]
    run.write({"type": "end", "ok": True})
    run.close()
    until(lambda: page.locator("#tail-state").inner_text() == "run ended", 5, "the end")
    assert lines.count() == 3
    assert problems == []


def test_a_repositorys_pages_mounted_among_others_in_a_browser(
    source: FakeSource, page: Page
) -> None:
    """As serve mode mounts each repository's pages under `/repos/owner/name/`: the assets, the
    links and the live tail all under the mount, the brand back to the overview."""

    async def overview(request: StarletteRequest) -> PlainTextResponse:
        return PlainTextResponse("the overview")

    mounts = [
        Mount(f"/repos/acme/{name}", name=f"repo{i}",
              routes=dashboard_routes(source, poll=0.1, prefix=f"repo{i}:", home="fleet",
                                      tails=[0]))
        for i, name in enumerate(("gadgets", "widgets"))
    ]  # fmt: skip
    served = Served(Starlette(routes=[Route("/", overview, name="fleet"), *mounts]))
    problems: list[str] = []
    page.on(
        "console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None
    )
    page.on(
        "response", lambda r: problems.append(f"{r.status}: {r.url}") if r.status >= 400 else None
    )
    try:
        run = source.start_run("issue#12")
        run.write({"type": "request", "prompt": "Add dark mode"})
        page.goto(served.url + "/repos/acme/widgets/")
        assert page.locator("a.brand").get_attribute("href") == "/"
        page.get_by_role("link", name="issue #12", exact=True).click()
        assert page.url == served.url + "/repos/acme/widgets/items/issue/12"
        lines = page.locator("#tail .line")
        until(lambda: lines.count() == 1, 5, "the transcript so far, under the mount")
        run.write({"type": "assistant", "text": "a line written now"})
        until(lambda: lines.count() == 2, 5, "the new line")
        source.running = [job for job in source.running if job.number != 12]
        run.write({"type": "end", "ok": True})
        run.close()
        until(lambda: page.locator("#tail-state").inner_text() == "run ended", 5, "the end")
        assert problems == []
    finally:
        served.stop()
