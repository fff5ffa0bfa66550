"""The webhook receiver: signatures, repeats, limits and wakes, in memory and over a socket."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp

from scripts.orchestrator import webhooks
from scripts.orchestrator.core.webhook_events import Wake
from scripts.orchestrator.fakes.fake_github import FakeGitHub
from scripts.orchestrator.webhooks import (
    MAX_BODY,
    REFUSED_UNSIGNED,
    SIGNATURE,
    Hook,
    WebhookReceiver,
    only,
)

SECRET = "it's a secret to everybody"
REPO = "acme/widgets"
PATH = "/webhooks/github"


# -- helpers ---------------------------------------------------------------------------------


@contextmanager
def serve_app(app: ASGIApp) -> Iterator[str]:
    """Run `app` on uvicorn on a thread, on a loopback port bound before it starts (so no
    wait for it to listen); yields the base URL and stops the server by its handle."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"


def receiver_app(receiver: WebhookReceiver) -> Starlette:
    return Starlette(routes=[Route(PATH, receiver.endpoint, methods=["POST", "GET"])])


def payload(
    event: str = "issues", action: str = "labeled", number: int = 7, repo: str = REPO
) -> dict[str, Any]:
    key = "pull_request" if event.startswith("pull_request") else "issue"
    return {"action": action, key: {"number": number}, "repository": {"full_name": repo}}


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def headers(
    body: bytes, *, event: str = "issues", delivery: str = "d-1", signature: str | None = None
) -> dict[bytes, bytes]:
    sent = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sign(body) if signature is None else signature,
        "Content-Type": "application/json",
    }
    # Bytes, so a test can send what no client library would (a non-ASCII signature).
    return {name.encode(): value.encode("latin-1") for name, value in sent.items()}


class Rig:
    """A receiver in memory (httpx.ASGITransport), with the wakes it gave and a clock."""

    def __init__(self, secret: str | None = SECRET, remember: int = 10_000) -> None:
        self.woken: list[Wake] = []
        self.now = 100.0
        self.receiver = WebhookReceiver(
            secret=secret,
            hooks=only(Hook(REPO, self.woken.append)),
            clock=lambda: self.now,
            remember=remember,
        )
        transport = httpx.ASGITransport(app=receiver_app(self.receiver))
        self.client = httpx.AsyncClient(transport=transport, base_url="http://receiver")

    async def post(self, body: bytes, **options: Any) -> httpx.Response:
        return await self.client.post(PATH, content=body, headers=headers(body, **options))


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    made = Rig()
    async with made.client:
        yield made


def encode(data: object) -> bytes:
    return json.dumps(data).encode()


# -- accepted --------------------------------------------------------------------------------


async def test_a_signed_delivery_wakes_once_and_is_timed(rig: Rig) -> None:
    before = rig.receiver.last_delivery
    answer = await rig.post(encode(payload()), delivery="abc-1")
    assert before is None
    assert answer.status_code == 202
    assert rig.woken == [Wake("issues", "labeled", 7, "abc-1")]
    assert rig.receiver.last_delivery == 100.0
    assert rig.receiver.counts == {"accepted": 1, "duplicate": 0, "ignored": 0, "rejected": 0}


async def test_a_redelivery_does_not_wake_again(rig: Rig) -> None:
    body = encode(payload())
    assert (await rig.post(body, delivery="same")).status_code == 202
    again = await rig.post(body, delivery="same")
    assert again.status_code == 200
    assert again.text == "duplicate\n"
    assert len(rig.woken) == 1
    assert rig.receiver.counts["duplicate"] == 1


async def test_only_the_latest_deliveries_are_remembered() -> None:
    made = Rig(remember=2)
    bodies = {d: encode(payload(number=n)) for n, d in enumerate("abc", start=1)}
    async with made.client:
        for delivery, body in bodies.items():
            assert (await made.post(body, delivery=delivery)).status_code == 202
        # "a" is forgotten (oldest), "c" is not.
        assert (await made.post(bodies["c"], delivery="c")).status_code == 200
        assert (await made.post(bodies["a"], delivery="a")).status_code == 202
    assert [w.delivery for w in made.woken] == ["a", "b", "c", "a"]


async def test_a_signed_body_replayed_under_a_new_id_wakes_nothing(rig: Rig) -> None:
    # GitHub signs the body, not X-GitHub-Delivery: a captured delivery sent again with fresh
    # ids must not make a poll each time.
    body = encode(payload())
    assert (await rig.post(body, delivery="real")).status_code == 202
    for n in range(3):
        again = await rig.post(body, delivery=f"replay-{n}")
        assert (again.status_code, again.text) == (200, "duplicate\n")
    other = await rig.post(encode(payload(number=8)), delivery="next")  # the control
    assert other.status_code == 202
    assert [w.number for w in rig.woken] == [7, 8]


async def test_what_the_headers_refuse_is_refused_before_the_body_is_read(rig: Rig) -> None:
    never_read: list[bool] = []

    async def body() -> AsyncIterator[bytes]:
        never_read.append(True)
        yield b"{}"

    for sent in (
        {"X-GitHub-Event": "issues", "X-GitHub-Delivery": "d-1"},  # no signature
        {SIGNATURE: "sha256=00", "X-GitHub-Delivery": "d-1"},  # no event
        {SIGNATURE: "sha256=00", "X-GitHub-Event": "issues"},  # no delivery id
        {SIGNATURE: "sha256=00", "X-GitHub-Event": "issues", "X-GitHub-Delivery": "d-1",
         "Content-Length": str(MAX_BODY + 1)},  # announced too big
    ):  # fmt: skip
        answer = await rig.client.post(PATH, content=body(), headers=sent)
        assert answer.status_code in (400, 401, 413), sent
    assert never_read == []
    assert rig.woken == []


async def test_ping_is_answered_and_wakes_nothing(rig: Rig) -> None:
    body = encode(
        {"zen": "Keep it logically awesome.", "hook_id": 1, "repository": {"full_name": REPO}}
    )
    answer = await rig.post(body, event="ping")
    assert answer.status_code == 200
    assert rig.woken == []
    assert rig.receiver.last_delivery == 100.0


async def test_another_repository_wakes_nothing(rig: Rig) -> None:
    control = await rig.post(encode(payload(repo="ACME/Widgets")), delivery="mine")
    assert control.status_code == 202
    other = await rig.post(encode(payload(repo="evil/widgets")), delivery="theirs")
    assert other.status_code == 200
    assert "another repository" in other.text
    # A name no hook knows, but that an empty one would match: nothing wakes, and no error.
    empty = await rig.post(encode(payload(repo="")), delivery="empty")
    assert (empty.status_code, empty.text) == (200, "ignored: for a repository not watched here\n")
    assert [w.delivery for w in rig.woken] == ["mine"]


async def test_a_malformed_payload_is_ignored(rig: Rig) -> None:
    answer = await rig.post(encode({"action": "labeled", "issue": {"number": "7"}}))
    assert answer.status_code == 200
    assert answer.text.startswith("ignored: malformed")
    assert rig.woken == []


# -- refused ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attack",
    ["unsigned", "garbage", "other secret", "other body", "sha1", "non-ascii"],
)
async def test_a_bad_signature_is_refused_before_anything_else(rig: Rig, attack: str) -> None:
    body = encode(payload())
    signatures = {
        "unsigned": "",
        "garbage": "sha256=nope",
        "other secret": sign(body, "guessed"),
        "other body": sign(encode(payload(number=8))),
        "sha1": "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest(),
        "non-ascii": "sha256=\u00e9",
    }
    answer = await rig.post(body, signature=signatures[attack], delivery="attack")
    assert answer.status_code == 401
    assert rig.woken == []
    assert rig.receiver.last_delivery is None
    # Nothing was remembered: the real delivery with that ID still wakes (the control).
    control = await rig.post(body, delivery="attack")
    assert control.status_code == 202
    assert len(rig.woken) == 1


async def test_the_header_must_be_the_sha256_one(rig: Rig) -> None:
    body = encode(payload())
    sha1 = "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
    only_sha1 = {
        "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": "x",
        "X-Hub-Signature": sha1,
    }
    answer = await rig.client.post(PATH, content=body, headers=only_sha1)
    assert answer.status_code == 401
    assert rig.woken == []


async def test_without_a_secret_webhooks_are_refused() -> None:
    made = Rig(secret=None)
    async with made.client:
        answer = await made.post(encode(payload()))
    assert answer.status_code == 403
    assert answer.text == REFUSED_UNSIGNED
    assert "WEBHOOK_SECRET" in answer.text and answer.text.count("\n") == 1
    assert made.woken == []


async def test_an_oversized_body_is_refused_unread(rig: Rig) -> None:
    async def endless() -> AsyncIterator[bytes]:
        chunk = b" " * (1024 * 1024)
        for _ in range(MAX_BODY // len(chunk) + 2):
            yield chunk

    announced = await rig.client.post(
        PATH,
        content=b"{}",
        headers={**headers(b"{}"), b"Content-Length": str(MAX_BODY + 1).encode()},
    )
    assert announced.status_code == 413
    streamed = await rig.client.post(PATH, content=endless(), headers=headers(b"{}"))
    assert streamed.status_code == 413
    assert rig.woken == []


@pytest.mark.parametrize("missing", ["X-GitHub-Event", "X-GitHub-Delivery"])
async def test_missing_headers_are_a_bad_request(rig: Rig, missing: str) -> None:
    body = encode(payload())
    sent = headers(body)
    del sent[missing.encode()]
    answer = await rig.client.post(PATH, content=body, headers=sent)
    assert answer.status_code == 400
    assert rig.woken == []


async def test_a_body_that_is_not_json_is_a_bad_request(rig: Rig) -> None:
    answer = await rig.post(b"action=labeled")
    assert answer.status_code == 400
    assert rig.woken == []


async def test_only_post(rig: Rig) -> None:
    answer = await rig.client.get(PATH)
    assert answer.status_code == 405
    assert rig.receiver.counts["rejected"] == 1


async def test_payloads_are_not_logged(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="scripts.orchestrator.webhooks")
    data = payload()
    data["issue"]["title"] = "SECRET-TITLE"
    await rig.post(encode(data), delivery="logged-1")
    await rig.post(encode(payload(repo="SECRET/REPO")), delivery="logged-2")
    text = caplog.text
    assert "SECRET" not in text
    infos = [r.getMessage() for r in caplog.records if r.levelname == "INFO"]
    assert infos == [f"webhook {REPO} issues.labeled #7 (delivery logged-1)"]


# -- over a real socket, sent by the fake GitHub ----------------------------------------------


def test_deliveries_from_the_fake_github_wake_the_receiver(fake_github: FakeGitHub) -> None:
    woken: list[Wake] = []
    hook = Hook(fake_github.full_name, woken.append)
    receiver = WebhookReceiver(secret=SECRET, hooks=only(hook))
    with serve_app(receiver_app(receiver)) as base:
        fake_github.add_webhook(base + PATH, SECRET)
        number = fake_github.create_issue("Add mul", user="maintainer")
        fake_github.add_labels(number, "ready", user="maintainer")
        fake_github.comment(number, "/go", user="maintainer")
        sent = fake_github.wait_for_deliveries(3)
        assert [(d.event, d.status) for d in sent] == [
            ("ping", 200),
            ("issues", 202),
            ("issue_comment", 202),
        ]
        fake_github.redeliver(sent[1].id)
        again = fake_github.wait_for_deliveries(4)[-1]
        assert (again.id, again.status) == (sent[1].id, 200)
        # Signed with another secret: refused, and no wake.
        fake_github.add_webhook(base + PATH, "not the secret")
        assert fake_github.wait_for_deliveries(5)[-1].status == 401
    assert woken == [
        Wake("issues", "labeled", number, sent[1].id),
        Wake("issue_comment", "created", number, sent[2].id),
    ]
    assert receiver.last_delivery is not None
    assert receiver.counts == {"accepted": 2, "duplicate": 1, "ignored": 1, "rejected": 1}


async def test_a_body_that_never_ends_is_cut_and_few_are_read_at_once(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhooks, "READ_TIMEOUT", 0.2)
    stalled = asyncio.Event()  # never set: a slowloris body

    async def slow() -> AsyncIterator[bytes]:
        yield b'{"action": '
        await stalled.wait()

    sent = {SIGNATURE: "sha256=00", "X-GitHub-Event": "issues", "X-GitHub-Delivery": "d-1"}
    answer = await rig.client.post(PATH, content=slow(), headers=sent)
    assert answer.status_code == 408
    # MAX_READING bodies on their way: the next delivery is turned away, not buffered.
    monkeypatch.setattr(webhooks, "READ_TIMEOUT", 30.0)
    posts = [
        asyncio.create_task(rig.client.post(PATH, content=slow(), headers=sent))
        for _ in range(webhooks.MAX_READING)
    ]
    try:
        await until(lambda: rig.receiver.reading == webhooks.MAX_READING)
        turned = await rig.post(encode(payload()), delivery="d-2")
        assert (turned.status_code, turned.headers["retry-after"]) == (503, "10")
    finally:
        for post in posts:
            post.cancel()
        await asyncio.gather(*posts, return_exceptions=True)
    await until(lambda: rig.receiver.reading == 0)
    assert (await rig.post(encode(payload()), delivery="d-3")).status_code == 202  # control


async def until(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.01)
