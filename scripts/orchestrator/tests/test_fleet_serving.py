"""`serve` over several repositories as a user runs it: one daemon process, three repositories
on one fake GitHub sending their webhooks to it, the real CLI on the scripted model; each
delivery wakes the repository it names, the dashboard has a page per repository, the metrics
name it.

POLL_INTERVAL is 600 s: whatever starts within the test's deadline was started by a webhook.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import sys
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

import httpx
import psycopg
from prometheus_client.parser import text_string_to_metric_families

from scripts.orchestrator.core.repo_config import REPO_CONFIG_PATH
from scripts.orchestrator.core.work import Status, WorkItemType
from scripts.orchestrator.fakes.fake_github.fake import FakeGitHub
from scripts.orchestrator.fakes.fake_github.repository import Repository
from scripts.orchestrator.fakes.git_world import make_world
from scripts.orchestrator.fakes.model_script import Text, write
from scripts.orchestrator.state import State

from .fixtures_daemon import DEADLINE, DaemonProcess
from .fixtures_world import World

SECRET = "webhook-secret-for-fleet-tests"
SERVING = re.compile(r"serving on (http://127\.0\.0\.1:\d+)")
REPOS = ("acme/widgets", "acme/gadgets", "acme/gizmos")


def until(check: Callable[[], bool], what: str, within: float = DEADLINE) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not within {within}s: {what}"
        time.sleep(0.05)


def samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric(url: str, name: str, **labels: str) -> float | None:
    return samples(url).get((f"claude_orchestrator_{name}", frozenset(labels.items())))


def polled(url: str, repo: str) -> bool:
    return (metric(url, "poll_duration_seconds_count", repo=repo) or 0) >= 1


def is_one(url: str, name: str, **labels: str) -> bool:
    return metric(url, name, **labels) == 1


def state_of(world: World, repo: str) -> State:
    slug = repo.replace("/", "+")
    return State(world.state_file.with_name(f"{world.state_file.stem}.{slug}.json"), lock=False)


def signed_delivery(url: str, event: str, payload: Mapping[str, object], delivery: str) -> int:
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery,
               "X-Hub-Signature-256": signature, "Content-Type": "application/json"}  # fmt: skip
    return httpx.post(f"{url}/webhook", content=body, headers=headers, timeout=10).status_code


def test_each_delivery_wakes_its_own_repository_and_the_dashboard_and_metrics_name_it(
    world: World, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    gh = world.github
    gadgets = gh.add_repository(make_world(tmp_path / "g", {"README.md": "# g\n"}).origin,
                                "acme", "gadgets")  # fmt: skip
    gizmos = gh.add_repository(make_world(tmp_path / "z", {"README.md": "# z\n"}).origin,
                               "acme", "gizmos")  # fmt: skip
    for repo in (gadgets, gizmos):
        repo.set_permission("alice", "write")
    gadgets.commit(gadgets.default_branch, {REPO_CONFIG_PATH: 'ready_label = "go"\n'})
    # Ready in widgets before any webhook exists: nobody tells its daemon, which polls hourly.
    quiet = gh.create_issue("Add quiet", "Write quiet.py", user="alice")
    gh.add_labels(quiet, "ready", user="alice")
    world.model.script_for("Write two.py", [write({"two.py": "TWO = 2\n"}), Text("Added.")])
    world.model.script_for("Write three.py", [write({"three.py": "THREE = 3\n"}), Text("Ok.")])

    daemon = DaemonProcess(
        world, "serve", "--verbose", unset=("GITHUB_REPO", "REPO_PATH"),
        GITHUB_REPOS=",".join(REPOS), POLL_INTERVAL="600", SERVE_PORT="0",
        WEBHOOK_SECRET=SECRET, LOG_DIR=str(world.root / "fleet-logs"),
        SANDBOX_READ_PATHS=f'["{sys.prefix}", "{sys.base_prefix}"]',
    )  # fmt: skip
    daemons.append(daemon)
    daemon.wait_for("serving on http://127.0.0.1:")
    found = SERVING.search(daemon.log())
    assert found is not None, daemon.log()
    url = found.group(1)
    for name in REPOS:  # each repository's first cycle: what follows is the webhooks' doing
        until(partial(polled, url, name), f"the first cycle of {name}")
    assert state_of(world, "acme/widgets").get(WorkItemType.ISSUE, quiet) is not None
    polls = {n: metric(url, "poll_duration_seconds_count", repo=n) for n in REPOS}

    for repo in (gadgets, gizmos):
        repo.add_webhook(f"{url}/webhook", SECRET, events=("issues",))
    # gadgets' own ready label wakes gadgets; "ready" there is not its label (its file says).
    two = gadgets.create_issue("Add two", "Write two.py", user="alice")
    not_ready = gadgets.create_issue("Not ready", "ready is not gadgets' label", user="alice")
    gadgets.add_labels(not_ready, "ready", user="alice")
    gadgets.add_labels(two, "go", user="alice")
    three = gizmos.create_issue("Add three", "Write three.py", user="alice")
    gizmos.add_labels(three, "ready", user="alice")
    ping, ignored, labelled = gadgets.wait_for_deliveries(3)
    assert (ping.status, ignored.status, labelled.status) == (200, 200, 202)
    assert [d.status for d in gizmos.wait_for_deliveries(2)] == [200, 202]
    # Signed with the secret but for a repository this daemon does not watch: nothing wakes.
    stranger = {"action": "labeled", "issue": {"number": 1}, "label": {"name": "ready"},
                "repository": {"full_name": "acme/elsewhere"}}  # fmt: skip
    assert signed_delivery(url, "issues", stranger, "stranger-1") == 200

    for repo, number in ((gadgets, two), (gizmos, three)):

        def opened(r: Repository = repo, n: int = number) -> bool:
            made = r.branch_sha(f"feature/issue-{n}") is not None
            return made and len(r.mutations_named("create_pull")) == 1

        until(opened, f"the pull request of #{number}")
    # Only the woken repositories polled again; widgets' ready issue still waits.
    assert metric(url, "poll_duration_seconds_count", repo="acme/widgets") == polls["acme/widgets"]
    assert gh.mutations_named("create_pull") == [] and gh.labels_of(quiet) == ["ready"]
    with state_of(world, "acme/gadgets") as state:
        assert state.get(WorkItemType.ISSUE, not_ready) is None

    done = {"kind": "issue", "status": "done"}
    for name in ("acme/gadgets", "acme/gizmos"):
        until(partial(is_one, url, "items", repo=name, **done), f"{name}'s item done")
    assert metric(url, "items", repo="acme/widgets", **done) == 0
    job = {"repo": "acme/gadgets", "kind": "issue", "outcome": "done"}
    until(partial(is_one, url, "job_duration_seconds_count", **job), "the job's end")
    assert (metric(url, "github_requests_total", repo="acme/gizmos", status="200") or 0) > 0

    # The dashboard: an overview of the three, a page per repository, items keyed by it.
    overview = httpx.get(f"{url}/", timeout=10)
    assert overview.status_code == 200
    for name in REPOS:
        assert f'href="/repos/{name}/"' in overview.text
    assert overview.text.count(">here<") == 3
    page = httpx.get(f"{url}/repos/acme/gadgets/", timeout=10).text
    assert f'href="/repos/acme/gadgets/items/issue/{two}"' in page
    assert f"/acme/gadgets/issues/{two}" in page and "/acme/gizmos/" not in page
    assert "/acme/gadgets/" not in httpx.get(f"{url}/repos/acme/gizmos/", timeout=10).text
    item = httpx.get(f"{url}/repos/acme/gadgets/items/issue/{two}", timeout=10)
    assert item.status_code == 200 and "newest" in item.text, item.text
    transcript = re.search(rf'href="(/repos/acme/gadgets/items/issue/{two}/transcripts/[^"]+)"',
                           item.text)  # fmt: skip
    assert transcript is not None
    body = httpx.get(url + transcript.group(1), timeout=10)
    assert body.status_code == 200 and "two.py" in body.text
    # gizmos' issue, asked for under gadgets: another repository's item is not there.
    if three != two:
        assert httpx.get(f"{url}/repos/acme/gadgets/items/issue/{three}").status_code == 404
    assert httpx.get(f"{url}/repos/acme/nowhere/", timeout=10).status_code == 404
    # GitHub's names ignore case; the pages are under the name as GITHUB_REPOS writes it.
    cased = httpx.get(f"{url}/repos/ACME/Gadgets/items/issue/{two}?x=1", timeout=10)
    assert cased.status_code == 308
    assert cased.headers["location"] == f"/repos/acme/gadgets/items/issue/{two}?x=1"
    assert httpx.get(f"{url}/repos/acme/gadgets/nothing", timeout=10).status_code == 404

    daemon.signal()
    assert daemon.exit_code() == 0
    log = daemon.log()
    assert "Traceback" not in log and SECRET not in log
    assert "webhook acme/gadgets issues.labeled" in log and "acme/elsewhere" not in log
    with state_of(world, "acme/gizmos") as state:
        item_three = state.get(WorkItemType.ISSUE, three)
        assert item_three is not None and item_three.status is Status.DONE


def held_by(url: str) -> dict[str, int]:
    """Each repository leased now, and the pid of the daemon holding it."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT repo, owner FROM orchestrator_leases WHERE expires_at > now()")
        return {str(repo): int(str(owner).split(":")[1]) for repo, owner in rows.fetchall()}


def test_a_delivery_to_one_daemon_wakes_the_daemon_that_holds_its_repository(
    world: World, tmp_path: Path, daemons: list[DaemonProcess], pg_state_url: str
) -> None:
    gadgets = world.github.add_repository(
        make_world(tmp_path / "g", {"README.md": "# g\n"}).origin, "acme", "gadgets"
    )
    gadgets.set_permission("alice", "write")
    world.model.script_for("Write two.py", [write({"two.py": "TWO = 2\n"}), Text("Added.")])
    # One daemon serves the webhook; the other only works (no `serve`), as a team may run them.
    for number, command in ((1, "serve"), (2, "--verbose")):
        own = world.root / f"daemon-{number}"
        own.mkdir()
        daemons.append(DaemonProcess(
            world, command, unset=("GITHUB_REPO", "REPO_PATH"),
            GITHUB_REPOS="acme/widgets,acme/gadgets", STATE_URL=pg_state_url,
            STATE_FILE=str(own / "state.json"), WORKTREE_BASE=str(own / "worktrees"),
            LOG_DIR=str(own / "logs"), LEASE_SECONDS="3", POLL_INTERVAL="600",
            SERVE_PORT="0", WEBHOOK_SECRET=SECRET,
            SANDBOX_READ_PATHS=f'["{sys.prefix}", "{sys.base_prefix}"]',
        ))  # fmt: skip
    served, worker = daemons
    served.wait_for("serving on http://127.0.0.1:")
    found = SERVING.search(served.log())
    assert found is not None, served.log()
    url = found.group(1)
    # The first daemon took both; the other's share comes once the first lets one go.
    until(lambda: sorted(held_by(pg_state_url).values()) == sorted(d.proc.pid for d in daemons),
          "one repository each")  # fmt: skip
    [repo_name] = [r for r, pid in held_by(pg_state_url).items() if pid == worker.proc.pid]
    repo: FakeGitHub | Repository = world.github if repo_name == "acme/widgets" else gadgets

    def listed() -> bool:  # the worker's first cycle there read the issues: it will not again
        return any(r.path.startswith(f"/repos/{repo_name}/issues")
                   and f"pid {worker.proc.pid}" in str(r.headers)
                   for r in world.github.all_requests())  # fmt: skip

    until(listed, f"the worker's first read of {repo_name}")

    two = repo.create_issue("Add two", "Write two.py", user="alice")
    repo.add_labels(two, "ready", user="alice")
    labelled = {"action": "labeled", "issue": {"number": two}, "label": {"name": "ready"},
                "repository": {"full_name": repo_name},
                "sender": {"login": "alice"}}  # fmt: skip
    # To the daemon that does not hold it: the wake is passed on through the database.
    assert signed_delivery(url, "issues", labelled, "passed-on-1") == 202

    def opened() -> bool:
        return len(repo.mutations_named("create_pull")) == 1

    until(opened, "the pull request, after a wake passed on (polls are 600 s apart)")
    for daemon in daemons:
        daemon.signal()
    for daemon in daemons:
        assert daemon.exit_code() == 0
        assert "Traceback" not in daemon.log() and SECRET not in daemon.log()
