"""The fake GitHub's webhooks: sent for each change, signed, faithful to GitHub's schemas."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from githubkit.webhooks import verify
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scripts.orchestrator.fakes.fake_github import Delivery, FakeGitHub
from scripts.orchestrator.fakes.fake_github.shapes_hooks import problems

from .test_webhooks import serve_app

SECRET = "hook secret"


class Sink:
    """A receiver that answers 200 and keeps what it got (headers and raw body)."""

    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []

    async def endpoint(self, request: Request) -> Response:
        self.got.append((dict(request.headers), await request.body()))
        return Response("ok", status_code=200)


@pytest.fixture
def sink(fake_github: FakeGitHub) -> Iterator[Sink]:
    made = Sink()
    with serve_app(Starlette(routes=[Route("/hook", made.endpoint, methods=["POST"])])) as base:
        fake_github.add_webhook(f"{base}/hook", SECRET)
        yield made


def events(sent: list[Delivery]) -> list[tuple[str, str | None]]:
    return [(d.event, d.action) for d in sent]


def schema_problems(sent: list[Delivery]) -> list[str]:
    return [p for d in sent for p in problems(d.event, d.action, json.loads(d.body))]


def test_each_change_is_delivered_faithfully(fake_github: FakeGitHub, sink: Sink) -> None:
    gh = fake_github
    issue = gh.create_issue("Add mul", user="maintainer")
    gh.add_labels(issue, "ready", user="maintainer")
    gh.comment(issue, "hello", user="maintainer")
    gh.commit("feature", {"mul.py": "def mul(a, b):\n    return a * b\n"})
    pull = gh.create_pull("Mul", "feature", user="dev", labels=["review"])
    gh.commit("feature", {"mul.py": "def mul(a, b):\n    return b * a\n"})
    gh.comment(pull, "on the pull", user="maintainer")
    gh.review(pull, "Looks good", "APPROVE", user="maintainer")
    gh.close_issue(pull, user="dev")
    gh.reopen_issue(pull, user="dev")
    sent = gh.wait_for_deliveries(9)
    assert events(sent) == [
        ("ping", None),
        ("issues", "labeled"),
        ("issue_comment", "created"),
        ("pull_request", "opened"),
        ("pull_request", "labeled"),
        ("pull_request", "synchronize"),
        ("issue_comment", "created"),
        ("pull_request_review", "submitted"),
        ("pull_request", "reopened"),
    ]
    assert schema_problems(sent) == []
    assert gh.contract_violations == []
    assert all(d.status == 200 for d in sent)
    sync = json.loads(sent[5].body)
    assert sync["after"] == gh.pull(pull)["head"]["sha"] != sync["before"]
    assert json.loads(sent[6].body)["issue"]["pull_request"]["url"].endswith(f"/pulls/{pull}")
    for body in (json.loads(d.body) for d in sent):
        assert "installation" not in body
        assert body["repository"]["full_name"] == "acme/widgets"
        assert "login" in body["sender"]


def test_deliveries_are_signed_and_carry_githubs_headers(
    fake_github: FakeGitHub, sink: Sink
) -> None:
    fake_github.add_labels(fake_github.create_issue("x"), "ready")
    sent = fake_github.wait_for_deliveries(2)
    assert len(sink.got) == 2
    for record, (got, body) in zip(sent, sink.got, strict=True):
        assert body == record.body
        assert verify(SECRET, body, got["x-hub-signature-256"])
        assert verify(SECRET, body, got["x-hub-signature"])
        assert not verify("other", body, got["x-hub-signature-256"])
        assert got["x-github-event"] == record.event
        assert uuid.UUID(got["x-github-delivery"]) == uuid.UUID(record.id)
        assert got["x-github-hook-id"] == str(record.hook_id)
        assert got["user-agent"].startswith("GitHub-Hookshot/")
        assert got["content-type"] == "application/json"


def test_the_rest_api_sends_them_too(fake_github: FakeGitHub, sink: Sink) -> None:
    from .fixtures_github import make_client

    number = fake_github.create_issue("x")
    client = make_client(fake_github)
    client.rest.issues.add_labels("acme", "widgets", number, data={"labels": ["ready"]})
    client.rest.issues.create_comment("acme", "widgets", number, data={"body": "hi"})
    sent = fake_github.wait_for_deliveries(3)
    assert events(sent)[1:] == [("issues", "labeled"), ("issue_comment", "created")]
    assert json.loads(sent[1].body)["sender"]["login"] == fake_github.bot_login


def test_redeliver_keeps_the_id_and_body(fake_github: FakeGitHub, sink: Sink) -> None:
    fake_github.add_labels(fake_github.create_issue("x"), "ready")
    first = fake_github.wait_for_deliveries(2)[1]
    fake_github.redeliver(first.id)
    again = fake_github.wait_for_deliveries(3)[2]
    assert (again.id, again.body, again.redelivery) == (first.id, first.body, True)
    assert sink.got[2][0]["x-github-delivery"] == first.id


def test_hooks_get_only_their_events(fake_github: FakeGitHub, sink: Sink) -> None:
    with serve_app(Starlette(routes=[Route("/only", Sink().endpoint, methods=["POST"])])) as base:
        fake_github.add_webhook(f"{base}/only", SECRET, events=["issue_comment"])
        number = fake_github.create_issue("x", labels=["ready"])
        fake_github.comment(number, "hi")
        sent = fake_github.wait_for_deliveries(5)
    only = sent[1].hook_id
    assert [d.event for d in sent if d.hook_id == only] == ["ping", "issue_comment"]
    assert [d.event for d in sent if d.hook_id != only] == ["ping", "issues", "issue_comment"]


def test_an_unfaithful_payload_is_a_contract_violation() -> None:
    assert problems("issues", "labeled", {"action": "labeled"})
    assert problems("pull_request", "edited", {}) != []


def test_an_unreachable_receiver_is_recorded(fake_github: FakeGitHub) -> None:
    with serve_app(Starlette()) as base:
        gone = base
    fake_github.add_webhook(f"{gone}/hook", SECRET)
    (ping,) = fake_github.wait_for_deliveries(1)
    assert ping.status == 0 and ping.error
