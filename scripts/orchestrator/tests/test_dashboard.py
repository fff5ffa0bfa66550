"""Tests for the dashboard: its pages, links, filters, escaping, transcripts and live tail."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import Message

from scripts.orchestrator.core.redact import Redactor
from scripts.orchestrator.core.work import IssueFacts, Status, WorkItem, WorkItemType
from scripts.orchestrator.dashboard import CSP, MAX_TAILS, RateView, dashboard_routes
from scripts.orchestrator.dashboard_tail import MAX_LINE, open_transcript, tail, transcript_files
from scripts.orchestrator.ports import JobView
from scripts.orchestrator.transcripts import Transcript, Transcripts

NOW = datetime(2025, 5, 1, 12, 0, tzinfo=timezone.utc)
XSS = "<script>alert('owned')</script>"
ISSUE, REVIEW, MERGE = WorkItemType.ISSUE, WorkItemType.PR_REVIEW, WorkItemType.MERGE


@dataclass
class FakeSource:
    """A `DashboardSource` over lists the test changes, and real transcripts in `log_dir`."""

    log_dir: Path
    repo: str = "octo/widgets"
    html_url: str = "https://github.com/octo/widgets"
    work: list[WorkItem] = field(default_factory=list)
    running: list[JobView] = field(default_factory=list)
    polled: datetime | None = None
    budget: RateView | None = None
    hooks: str = "off"

    def items(self) -> list[WorkItem]:
        return self.work

    def jobs(self) -> list[JobView]:
        return self.running

    def last_poll(self) -> datetime | None:
        return self.polled

    def rate(self) -> RateView | None:
        return self.budget

    def transcripts(self, kind: WorkItemType, number: int) -> list[Path]:
        return transcript_files(self.log_dir, kind, number)

    def webhooks(self) -> str:
        return self.hooks

    def start_run(self, label: str) -> Transcript:
        """A transcript written the way Claude's runner writes one."""
        writer = Transcripts(
            self.log_dir, max_bytes=1_000_000, retention=timedelta(days=14), redactor=Redactor([])
        )
        return writer.start(label)


def sample(log_dir: Path, now: datetime = NOW) -> FakeSource:
    """One item of each kind: an issue running, a review waiting, a merge failed, an issue done."""
    ago = lambda minutes: now - timedelta(minutes=minutes)  # noqa: E731
    work = [
        WorkItem(type=ISSUE, number=12, status=Status.IN_PROGRESS, attempts=1,
                 started_at=ago(5), created_at=ago(6), facts=IssueFacts(title="Add dark mode")),
        WorkItem(type=REVIEW, number=7, status=Status.PENDING, created_at=ago(2)),
        WorkItem(type=MERGE, number=9, status=Status.FAILED, attempts=3, started_at=ago(30),
                 finished_at=ago(20), last_error=f"CI failed {XSS}"),
        WorkItem(type=ISSUE, number=3, status=Status.DONE, attempts=1, cost_usd=0.4213,
                 turns=17, duration_s=312.0, pr_number=20, started_at=ago(90),
                 finished_at=ago(80), facts=IssueFacts(title=f"Fix {XSS} rendering")),
    ]  # fmt: skip
    return FakeSource(
        log_dir,
        work=work,
        running=[JobView(ISSUE, 12, ago(5), in_claude=True), JobView(REVIEW, 7, None)],
        polled=now - timedelta(seconds=12),
        budget=RateView(4210, 5000, now + timedelta(minutes=23)),
        hooks="healthy, last delivery 12 s ago",
    )


def app_of(source: FakeSource, now: datetime | None = NOW) -> Starlette:
    clock = (lambda: now) if now is not None else (lambda: datetime.now(timezone.utc))
    return Starlette(routes=dashboard_routes(source, now=clock, poll=0.02))


@pytest.fixture
def source(tmp_path: Path) -> FakeSource:
    return sample(tmp_path / "logs")


@pytest.fixture
async def client(source: FakeSource) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app_of(source))
    async with httpx.AsyncClient(transport=transport, base_url="http://dash") as c:
        yield c


def section(html: str, group: str) -> str:
    found = re.search(rf'<section class="group" id="{group}">(.*?)</section>', html, re.S)
    assert found, f"no {group} section"
    return found.group(1)


async def test_overview_shows_each_group_in_order_with_its_numbers(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/")
    assert r.status_code == 200
    html = r.text
    ids = re.findall(r'<section class="group" id="(\w+)">', html)
    assert ids == ["running", "waiting", "failed", "done"]
    assert "issue #12" in section(html, "running") and "5 min" in section(html, "running")
    assert "review of #7" in section(html, "waiting")
    assert "merge of #9" in section(html, "failed")
    done = section(html, "done")
    assert "issue #3" in done
    assert "$0.42" in done and ">17<" in done and "5 min 12 s" in done
    assert re.search(
        r"running <b>1</b>.*waiting <b>1</b>.*failed <b>1</b>.*done <b>1</b>", html, re.S
    )
    assert "4,210" in html and "of 5,000 left" in html and "resets in 23 min" in html
    assert "12 s ago" in html and "healthy, last delivery 12 s ago" in html


async def test_overview_links_to_github_and_to_each_items_page(client: httpx.AsyncClient) -> None:
    html = (await client.get("/")).text
    assert 'href="https://github.com/octo/widgets/issues/12"' in html
    assert 'href="https://github.com/octo/widgets/pull/7"' in html  # a review is of a PR
    assert 'href="https://github.com/octo/widgets/pull/9"' in html
    assert 'href="https://github.com/octo/widgets/pull/20"' in html  # the PR issue #3 opened
    assert 'href="/items/pr_review/7"' in html and 'href="/items/merge/9"' in html


async def test_untrusted_text_is_shown_as_text(
    client: httpx.AsyncClient, source: FakeSource
) -> None:
    run = source.start_run("merge#9")
    run.write({"type": "assistant", "text": XSS})
    run.close()
    for path in ("/", "/items/merge/9", "/items/issue/3"):
        html = (await client.get(path)).text
        assert "<script>alert" not in html, path
        assert "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt;" in html, path


async def test_pages_forbid_inline_script_and_anything_from_elsewhere(
    client: httpx.AsyncClient, source: FakeSource
) -> None:
    for path in ("/", "/items/issue/12", "/static/dashboard.css", "/static/tail.js"):
        r = await client.get(path)
        assert r.status_code == 200, path
        assert r.headers["content-security-policy"] == CSP
        assert r.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in CSP and "'unsafe-inline'" not in CSP
    html = (await client.get("/items/issue/12")).text
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/tail.js">']
    assert not re.search(r'(src|href)="(https?:)?//(?!github\.com/octo)', html)
    assert (await client.get("/static/../dashboard.py")).status_code == 404
    assert (await client.get("/static/base.html")).status_code == 404


async def test_status_filter_pages_through_one_group(tmp_path: Path) -> None:
    done = [
        WorkItem(type=ISSUE, number=n, status=Status.DONE,
                 finished_at=NOW - timedelta(minutes=n), started_at=NOW - timedelta(hours=9))
        for n in range(1, 251)
    ]  # fmt: skip
    source = FakeSource(tmp_path, work=done)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app_of(source)),
                                 base_url="http://dash") as c:  # fmt: skip
        overview = (await c.get("/")).text
        assert "showing 50 of 250" in overview and 'href="/?status=done"' in overview
        first = (await c.get("/?status=done")).text
        assert re.findall(r'<section class="group" id="(\w+)">', first) == ["done"]
        shown = re.findall(r'href="/items/issue/(\d+)"', first)
        assert shown[:3] == ["1", "2", "3"] and len(shown) == 100  # newest first
        assert "page 1 of 3" in first
        last = (await c.get("/?status=done&page=3")).text
        assert re.findall(r'href="/items/issue/(\d+)"', last)[-1] == "250"
        assert (await c.get("/?status=running")).text.count("nothing running") == 1
        assert (await c.get("/?status=bogus")).status_code == 400
        assert (await c.get("/?status=done&page=99")).status_code == 200  # the last page


async def test_a_thousand_items_render_fast_without_reading_files(tmp_path: Path) -> None:
    statuses = [Status.DONE] * 7 + [Status.FAILED, Status.PENDING, Status.IN_PROGRESS]
    work = [
        WorkItem(type=ISSUE, number=n, status=statuses[n % 10], attempts=1, cost_usd=0.1,
                 turns=3, started_at=NOW - timedelta(minutes=n),
                 finished_at=NOW - timedelta(minutes=n - 1), last_error="x" * 500,
                 facts=IssueFacts(title=f"issue {n}"))
        for n in range(1000)
    ]  # fmt: skip

    class Counting(FakeSource):
        def transcripts(self, kind: WorkItemType, number: int) -> list[Path]:
            raise AssertionError("the overview reads no transcripts")

    source = Counting(tmp_path, work=work)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app_of(source)),
                                 base_url="http://dash") as c:  # fmt: skip
        await c.get("/")  # templates compiled
        started = time.perf_counter()
        r = await c.get("/")
        took = time.perf_counter() - started
    assert r.status_code == 200 and took < 0.5, took
    assert r.text.count('class="g-') == 4 * 50  # each group capped, with a link to the rest
    assert "showing 50 of 100" in section(r.text, "running")
    assert "showing 50 of 700" in section(r.text, "done")


async def test_item_page_lists_transcripts_and_shows_the_newest(
    client: httpx.AsyncClient, source: FakeSource
) -> None:
    older = source.start_run("issue#3")
    older.write({"type": "request", "prompt": "first run"})
    older.close()
    assert older.path is not None
    newer = older.path.with_name(older.path.name.replace("Z.", "Z-1."))
    newer.write_text(json.dumps({"type": "end", "ok": True, "note": "second run"}) + "\n")
    html = (await client.get("/items/issue/3")).text
    assert older.path.name in html and newer.name in html
    assert "second run" in html and "first run" not in html  # only the newest is shown
    assert "$0.42" in html and "PR #20" in html
    raw = await client.get(f"/items/issue/3/transcripts/{older.path.name}")
    assert raw.status_code == 200 and raw.headers["content-type"] == "text/plain; charset=utf-8"
    assert json.loads(raw.text)["prompt"] == "first run"


async def test_a_running_items_page_tails_its_transcript(client: httpx.AsyncClient) -> None:
    html = (await client.get("/items/issue/12")).text
    assert 'data-src="/items/issue/12/tail"' in html and "no transcript yet" in html


@pytest.mark.parametrize(
    "path",
    [
        "/items/issue/3/transcripts/..%2F..%2Fsecret.jsonl",
        "/items/issue/3/transcripts/../../../etc/passwd",
        "/items/issue/3/transcripts/%2e%2e",
        "/items/issue/3/transcripts/2025-05-01T12-00-00Z.jsonl",  # a valid name, not its file
        "/items/issue/3/transcripts/notes.txt",
        "/items/issue/4/transcripts/{name}",  # another item's file
        "/items/bogus/3",
        "/items/issue/x",
        "/items/issue/404",
        "/items/issue/3/nothing",
        "/nothing",
    ],
)
async def test_what_is_not_there_is_404(
    client: httpx.AsyncClient, source: FakeSource, path: str
) -> None:
    run = source.start_run("issue#3")
    run.write({"type": "request"})
    run.close()
    assert run.path is not None
    (source.log_dir / "secret.jsonl").write_text("{}\n")
    (source.log_dir / "issue-3" / "notes.txt").write_text("private\n")
    r = await client.get(path.format(name=run.path.name))
    assert r.status_code == 404
    assert "private" not in r.text and "{}" not in r.text


async def test_only_get(client: httpx.AsyncClient) -> None:
    for path in ("/", "/items/issue/12", "/items/issue/12/tail"):
        assert (await client.post(path)).status_code == 405
        assert (await client.delete(path)).status_code == 405


def test_transcript_files_are_where_the_runner_writes_them_in_run_order(tmp_path: Path) -> None:
    source = FakeSource(tmp_path)
    first = source.start_run("pr_review#7")  # the label the daemon gives Claude's runner
    second = source.start_run("pr_review#7")  # same second: `…Z-1.jsonl`
    assert first.path is not None and second.path is not None
    (first.path.parent / "other.txt").write_text("")
    assert transcript_files(tmp_path, REVIEW, 7) == [first.path, second.path]
    assert transcript_files(tmp_path, REVIEW, 8) == []
    assert transcript_files(tmp_path / "nowhere", ISSUE, 1) == []


async def sse_of(app: Starlette, path: str, headers: dict[str, str] | None = None) -> SseClient:
    return SseClient(app, path, headers or {})


class SseClient:
    """A client of one event stream, driven at the ASGI level: it sees each event as sent."""

    def __init__(self, app: Starlette, path: str, headers: dict[str, str]) -> None:
        self.messages: asyncio.Queue[Message] = asyncio.Queue()
        self.gone = asyncio.Event()
        scope: dict[str, Any] = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1", "method": "GET", "scheme": "http", "path": path,
            "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "server": ("dash", 80), "client": ("127.0.0.1", 1234),
        }  # fmt: skip
        self.task = asyncio.create_task(app(scope, self._receive, self.messages.put))
        self.buffer = ""

    async def _receive(self) -> Message:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def start(self) -> Message:
        return await asyncio.wait_for(self.messages.get(), 2)

    async def event(self) -> dict[str, str]:
        """The next event (comments and `retry` skipped), within 2 s."""
        while "\n\n" not in self.buffer:
            message = await asyncio.wait_for(self.messages.get(), 2)
            assert message["type"] == "http.response.body"
            self.buffer += message.get("body", b"").decode()
        block, self.buffer = self.buffer.split("\n\n", 1)
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            key, _, value = line.partition(": ")
            if key in ("event", "id", "data"):
                fields[key] = f"{fields[key]}\n{value}" if key in fields else value
        return fields if "data" in fields else await self.event()

    async def close(self) -> None:
        self.gone.set()
        await asyncio.wait_for(self.task, 2)


async def test_tail_sends_the_lines_so_far_then_each_new_one(source: FakeSource) -> None:
    run = source.start_run("issue#12")
    run.write({"type": "request", "prompt": "go"})
    stream = await sse_of(app_of(source), "/items/issue/12/tail")
    try:
        start = await stream.start()
        assert start["status"] == 200
        assert (b"content-type", b"text/event-stream; charset=utf-8") in start["headers"]
        assert await stream.event() == {"event": "file", "data": run.path.name}  # type: ignore[union-attr]
        assert json.loads((await stream.event())["data"])["prompt"] == "go"
        started = time.monotonic()
        run.write({"type": "assistant", "text": "a new line"})
        assert json.loads((await stream.event())["data"])["text"] == "a new line"
        assert time.monotonic() - started < 1
    finally:
        await stream.close()


async def test_tail_ends_once_the_job_is_over_and_the_file_read(source: FakeSource) -> None:
    run = source.start_run("issue#12")
    run.write({"type": "request"})
    stream = await sse_of(app_of(source), "/items/issue/12/tail")
    try:
        await stream.start()
        assert (await stream.event())["event"] == "file"
        await stream.event()
        source.running = []  # the job ended ...
        run.write({"type": "end", "ok": True})  # ... after its last line
        run.close()
        assert json.loads((await stream.event())["data"])["type"] == "end"
        assert (await stream.event())["event"] == "end"
        await asyncio.wait_for(stream.task, 2)
    finally:
        await stream.close()


async def test_tail_resumes_after_the_last_event_a_browser_got(source: FakeSource) -> None:
    run = source.start_run("issue#12")
    run.write({"type": "request", "n": 1})
    first = await sse_of(app_of(source), "/items/issue/12/tail")
    await first.start()
    await first.event()
    seen = await first.event()
    await first.close()
    run.write({"type": "assistant", "n": 2})
    again = await sse_of(app_of(source), "/items/issue/12/tail", {"Last-Event-ID": seen["id"]})
    try:
        await again.start()
        assert (await again.event())["event"] == "file"
        assert json.loads((await again.event())["data"])["n"] == 2
    finally:
        await again.close()


async def collect(events: AsyncIterator[str], until: str) -> list[str]:
    seen: list[str] = []
    async for event in events:
        seen.append(event)
        if until in event:
            return seen
    return seen


async def test_tail_waits_for_a_transcript_then_follows_rotations_and_new_runs(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "issue-5"
    live = True
    files = lambda: transcript_files(tmp_path, ISSUE, 5)  # noqa: E731

    async def never() -> bool:
        return False

    events = tail(files, lambda: live, never, poll=0.01)
    assert await anext(events) == "retry: 2000\n\n"
    folder.mkdir()
    first = folder / "2025-05-01T12-00-00Z.jsonl"
    first.write_text('{"type": "a"}\n{"type": "b"}\n')
    seen = await asyncio.wait_for(collect(events, '"b"'), 2)
    assert seen[0] == "event: file\ndata: 2025-05-01T12-00-00Z.jsonl\n\n"
    assert 'id: 2025-05-01T12-00-00Z.jsonl:14\ndata: {"type": "a"}' in seen[1]
    first.unlink()  # rotated: a new file by the same name
    first.write_text('{"type": "c"}\n')
    seen = await asyncio.wait_for(collect(events, '"c"'), 2)
    assert seen[0].startswith("event: reset")
    second = folder / "2025-05-01T12-00-00Z-1.jsonl"
    second.write_text('{"type": "d"}\n{"type": "unended"')
    seen = await asyncio.wait_for(collect(events, '"d"'), 2)
    assert seen[0] == "event: file\ndata: 2025-05-01T12-00-00Z-1.jsonl\n\n"
    live = False
    seen = await asyncio.wait_for(collect(events, "event: end"), 2)
    assert '{"type": "unended"' in seen[0] and seen[-1] == "event: end\ndata: \n\n"


async def test_a_link_planted_in_log_dir_is_never_served(
    tmp_path: Path, source: FakeSource, client: httpx.AsyncClient
) -> None:
    secret = tmp_path / "not-a-transcript.txt"
    secret.write_text("the daemon's private file\n")
    # A link among an item's transcripts, and an item folder that is a link.
    run = source.start_run("issue#12")  # the control: the runner's own file
    assert run.path is not None
    run.write({"type": "request", "prompt": "Add dark mode"})
    run.close()
    (run.path.parent / "2000-01-01T00-00-00Z.jsonl").symlink_to(secret)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "2000-01-01T00-00-00Z.jsonl").symlink_to(secret)
    (source.log_dir / "issue-77").symlink_to(elsewhere)
    assert transcript_files(source.log_dir, ISSUE, 12) == [run.path]
    assert transcript_files(source.log_dir, ISSUE, 77) == []
    for path in ("/items/issue/12/transcripts/2000-01-01T00-00-00Z.jsonl",
                 "/items/issue/77/transcripts/2000-01-01T00-00-00Z.jsonl"):  # fmt: skip
        answer = await client.get(path)
        assert answer.status_code == 404 and "private" not in answer.text
    shown = await client.get(f"/items/issue/12/transcripts/{run.path.name}")
    assert shown.status_code == 200 and "Add dark mode" in shown.text
    assert "private" not in (await client.get("/items/issue/77")).text


def test_a_link_swapped_in_after_the_listing_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("private\n")
    planted = tmp_path / "2000-01-01T00-00-00Z.jsonl"
    planted.symlink_to(secret)
    with pytest.raises(OSError):
        open_transcript(planted)
    real = tmp_path / "2000-01-01T00-00-01Z.jsonl"
    real.write_text("{}\n")
    with open_transcript(real) as f:
        assert f.read() == b"{}\n"


async def test_a_line_that_never_ends_is_sent_in_pieces(tmp_path: Path) -> None:
    folder = tmp_path / "issue-5"
    folder.mkdir()
    (folder / "2025-05-01T12-00-00Z.jsonl").write_bytes(b"x" * (MAX_LINE + 10))

    async def never() -> bool:
        return False

    events = tail(lambda: transcript_files(tmp_path, ISSUE, 5), lambda: True, never, poll=0.01)
    seen = await asyncio.wait_for(collect(events, "xxxx"), 5)
    assert len(seen[-1]) > MAX_LINE  # sent, not kept growing in memory
    await events.aclose()


async def test_live_tails_are_bounded(source: FakeSource) -> None:
    app = app_of(source)
    streams = [await sse_of(app, "/items/issue/12/tail") for _ in range(MAX_TAILS)]
    try:
        for stream in streams:  # each has begun: its first bytes are sent
            assert (await stream.start())["type"] == "http.response.start"
            first = await asyncio.wait_for(stream.messages.get(), 2)
            assert first["body"].startswith(b"retry:")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dash") as c:
            refused = await c.get("/items/issue/12/tail")
            assert refused.status_code == 503 and refused.headers["retry-after"] == "10"
            assert (await c.get("/")).status_code == 200  # the rest of the dashboard answers
    finally:
        for stream in streams:
            await stream.close()


async def test_mounted_dashboards_share_one_bound_of_live_tails(source: FakeSource) -> None:
    tails = [0]  # as serve mode's several repositories share it
    mounts = [
        Mount(f"/repos/acme/{name}", name=name,
              routes=dashboard_routes(source, now=lambda: NOW, poll=0.02, prefix=f"{name}:",
                                      tails=tails))
        for name in ("one", "two")
    ]  # fmt: skip
    app = Starlette(routes=mounts)
    streams = [await sse_of(app, "/repos/acme/one/items/issue/12/tail") for _ in range(MAX_TAILS)]
    try:
        for stream in streams:
            assert (await stream.start())["type"] == "http.response.start"
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dash") as c:
            refused = await c.get("/repos/acme/two/items/issue/12/tail")
            assert refused.status_code == 503  # the other repository's pages count them too
            page = await c.get("/repos/acme/two/")
            assert page.status_code == 200 and 'href="/repos/acme/two/items/issue/12"' in page.text
    finally:
        for stream in streams:
            await stream.close()
