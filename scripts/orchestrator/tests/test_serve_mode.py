"""`serve` as a user runs it: the real daemon in a process, the fake GitHub sending webhooks to
it, the real Claude Code CLI on the scripted model; its dashboard in Chromium, its metrics.

POLL_INTERVAL is 600 s in these tests: whatever starts within the test's deadline was started
by a webhook, not by a poll.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from scripts.orchestrator.core.repo_config import REPO_CONFIG_PATH
from scripts.orchestrator.fakes.model_script import write
from scripts.orchestrator.serving import MAX_CONNECTIONS
from scripts.orchestrator.state import Status, WorkItemType

from .fixtures_daemon import DEADLINE, DaemonProcess, held
from .fixtures_world import World

SECRET = "webhook-secret-for-tests"
GREET = {"greet.py": "def greet() -> str:\n    return 'hi'\n"}
SERVING = re.compile(r"serving on (http://127\.0\.0\.1:\d+)")


def until(check: Callable[[], bool], what: str, within: float = DEADLINE) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not within {within}s: {what}"
        time.sleep(0.02)


def serve(world: World, daemons: list[DaemonProcess], **settings: str) -> tuple[DaemonProcess, str]:
    """`serve` on a free port, after its first cycle; the daemon and its address."""
    env = {"POLL_INTERVAL": "600", "SERVE_PORT": "0", "LOG_DIR": str(world.root / "logs"),
           "WEBHOOK_SECRET": SECRET, **settings}  # fmt: skip
    daemon = DaemonProcess(world, "serve", **env)
    daemons.append(daemon)
    daemon.wait_for("serving on http://127.0.0.1:")
    found = SERVING.search(daemon.log())
    assert found is not None, daemon.log()
    url = found.group(1)
    until(lambda: polls(url) >= 1, "the first cycle")  # what follows is the webhooks' doing
    return daemon, url


def metrics(url: str) -> dict[str, float]:
    """Every sample of /metrics, by name and labels (`name{a="b"}`), the one repository's
    name (its `repo` label, which test_metrics checks) left out."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            shown = {k: v for k, v in sample.labels.items() if k != "repo"}
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(shown.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


def polls(url: str) -> float:
    return metrics(url)["claude_orchestrator_poll_duration_seconds_count"]


def signed(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def forged_label(world: World, number: int) -> bytes:
    """An `issues.labeled` payload for `number`, as an attacker would send it."""
    return json.dumps({
        "action": "labeled",
        "issue": {"number": number},
        "label": {"name": "ready"},
        "repository": {"full_name": world.github.full_name},
    }).encode()  # fmt: skip


def test_a_signed_label_starts_claude_at_once_and_forged_ones_start_nothing(
    world: World, daemons: list[DaemonProcess]
) -> None:
    daemon, url = serve(world, daemons)
    number = world.github.create_issue("Add a greeting", "Write greet.py", user="alice")
    world.github.add_labels(number, "ready", user="alice")  # no webhook yet: nobody is told
    world.model.script_for(f"Implement GitHub issue #{number}", [write(GREET)])
    # The attacks: no signature, a signature with another secret, a good signature over
    # another body. Each gets 401; no poll follows, so the labelled issue waits.
    body = forged_label(world, number)
    headers = {"X-GitHub-Event": "issues", "X-GitHub-Delivery": "forged-1",
               "Content-Type": "application/json"}  # fmt: skip
    for signature in (None, signed(body, "not-the-secret"), signed(b"{}")):
        sent = {**headers, **({"X-Hub-Signature-256": signature} if signature else {})}
        answer = httpx.post(f"{url}/webhook", content=body, headers=sent, timeout=10)
        assert answer.status_code == 401, answer.text
    seen = metrics(url)
    assert seen['claude_orchestrator_webhook_deliveries_total{result="rejected"}'] == 3
    assert seen['claude_orchestrator_webhook_deliveries_total{result="accepted"}'] == 0
    assert world.item(WorkItemType.ISSUE, number) is None and world.model.requests == []

    # The control: GitHub's own delivery of a label (a writer labels a second issue).
    world.github.add_webhook(f"{url}/webhook", SECRET, events=("issues",))
    other = world.github.create_issue("Add a farewell", "Write bye.py", user="alice")
    world.model.script_for(f"Implement GitHub issue #{other}", [write({"bye.py": "BYE = 1\n"})])
    world.github.add_labels(other, "ready", user="alice")
    [ping, labelled] = world.github.wait_for_deliveries(2)
    assert (ping.event, ping.status) == ("ping", 200)
    assert (labelled.event, labelled.action, labelled.status) == ("issues", "labeled", 202)
    # Both ready issues start: the wake is a poll, which sees every change.
    until(lambda: len(world.model.requests) >= 2, "Claude started by the webhook")
    until(lambda: _done(world, number) and _done(world, other), "both pull requests")

    # GitHub redelivers the same delivery: nothing happens twice.
    world.github.redeliver(labelled.id)
    again = world.github.wait_for_deliveries(3)[-1]
    assert (again.id, again.status) == (labelled.id, 200)
    seen = metrics(url)
    assert seen['claude_orchestrator_webhook_deliveries_total{result="duplicate"}'] == 1
    assert seen['claude_orchestrator_webhook_deliveries_total{result="accepted"}'] == 1
    assert len(_pulls(world)) == 2  # one per issue
    daemon.signal()
    assert daemon.exit_code() == 0
    assert "Traceback" not in daemon.log() and SECRET not in daemon.log()


def test_with_webhooks_silent_polling_still_finds_the_work(
    world: World, daemons: list[DaemonProcess]
) -> None:
    daemon, url = serve(world, daemons, POLL_INTERVAL="1")
    number = world.github.create_issue("Add a greeting", "Write greet.py", user="alice")
    world.model.script_for(f"Implement GitHub issue #{number}", [write(GREET)])
    world.github.add_labels(number, "ready", user="alice")  # no webhook is set up
    until(lambda: _done(world, number), "the pull request, found by a poll")
    job = 'claude_orchestrator_job_duration_seconds_count{kind="issue",outcome="done"}'
    until(lambda: metrics(url).get(job) == 1, "the job's end, in the metrics")
    seen = metrics(url)
    assert seen['claude_orchestrator_items{kind="issue",status="done"}'] == 1
    assert seen["claude_orchestrator_label_to_start_seconds_count"] == 1
    assert seen['claude_orchestrator_github_requests_total{status="200"}'] > 0
    assert seen["claude_orchestrator_github_rate_limit_requests"] > 0
    daemon.signal()
    assert daemon.exit_code() == 0


def test_the_repositorys_own_ready_label_is_the_one_webhooks_wake_for(
    world: World, daemons: list[DaemonProcess]
) -> None:
    world.github.commit(world.github.default_branch, {REPO_CONFIG_PATH: 'ready_label = "go"\n'})
    daemon, url = serve(world, daemons)  # its first cycle read the settings file
    world.github.add_webhook(f"{url}/webhook", SECRET, events=("issues",))
    other = world.github.create_issue("Not this one", "ready is not the label now", user="alice")
    number = world.github.create_issue("Add a greeting", "Write greet.py", user="alice")
    world.model.script_for(f"Implement GitHub issue #{number}", [write(GREET)])
    world.github.add_labels(other, "ready", user="alice")
    world.github.add_labels(number, "go", user="alice")
    [_ping, ignored, labelled] = world.github.wait_for_deliveries(3)
    assert (ignored.status, labelled.status) == (200, 202)  # the file's label, not READY_LABEL
    until(lambda: _done(world, number), "the pull request, started by the webhook")
    assert world.item(WorkItemType.ISSUE, other) is None
    daemon.signal()
    assert daemon.exit_code() == 0


def test_the_dashboard_shows_a_running_item_and_its_live_transcript_in_chromium(
    world: World, daemons: list[DaemonProcess], release: threading.Event
) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    daemon, url = serve(world, daemons)
    world.github.add_webhook(f"{url}/webhook", SECRET)
    number = world.github.create_issue("Add a greeting", "Write greet.py", user="alice")
    world.model.script_for(f"Implement GitHub issue #{number}", [held(write(GREET), release)])
    world.github.add_labels(number, "ready", user="alice")
    world.model.wait_for_requests(1, timeout=DEADLINE)  # Claude works, its turn held
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=_browser_args())
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(url)
            running = page.locator("section#running")
            assert f"issue #{number}" in running.inner_text()
            page.goto(f"{url}/items/issue/{number}")
            # The transcript so far (the run's start), then Claude's next turn within 1 s of
            # the model answering: the page's live tail.
            tail = page.locator("#tail")
            until(lambda: "system" in tail.inner_text(), "the transcript's first lines", 10)
            before = tail.inner_text().count("\n")
            release.set()
            until(lambda: tail.inner_text().count("\n") > before, "a new line, live", 10)
            page.goto(url)
            shot = world.root / "dashboard-running.png"
            page.screenshot(path=str(shot), full_page=True)
            if artifacts := os.environ.get("ORCHESTRATOR_ARTIFACTS"):
                shutil.copy(shot, Path(artifacts) / shot.name)  # kept as a test artifact
        finally:
            browser.close()
    assert errors == []
    until(lambda: _done(world, number), "the pull request")
    daemon.signal()
    assert daemon.exit_code() == 0


def _browser_args() -> list[str]:
    return ["--no-sandbox"] if os.geteuid() == 0 else []


def _done(world: World, number: int) -> bool:
    item = world.item(WorkItemType.ISSUE, number)
    return item is not None and item.status is Status.DONE


def _pulls(world: World) -> list[dict[str, Any]]:
    numbers = range(1, world.github.next_number())
    return [world.github.pull(n) for n in numbers if "pull_request" in world.github.issue(n)]


def test_held_connections_cannot_take_the_daemons_descriptors(
    world: World, daemons: list[DaemonProcess]
) -> None:
    daemon, url = serve(world, daemons)
    host, port = url.removeprefix("http://").split(":")
    held = []
    try:
        for _ in range(MAX_CONNECTIONS + 20):  # each sends half a request line, then waits
            sock = socket.create_connection((host, int(port)), timeout=10)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            held.append(sock)
        busy = httpx.get(url, timeout=10)
        assert busy.status_code == 503  # turned away at once, not queued
    finally:
        for sock in held:
            sock.close()
    until(lambda: httpx.get(url, timeout=10).status_code == 200, "the dashboard again")
    daemon.signal()
    assert daemon.exit_code() == 0
