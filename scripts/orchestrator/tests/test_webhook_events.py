"""What a verified webhook delivery means: which wake the daemon, and why the rest do not."""

from __future__ import annotations

from typing import Any

import pytest

from scripts.orchestrator.core.webhook_events import Wake, decide

REPO = "acme/widgets"


def delivered(event: str, action: str, number: int = 7, repo: str = REPO) -> dict[str, Any]:
    key = "pull_request" if event.startswith("pull_request") else "issue"
    return {"action": action, key: {"number": number}, "repository": {"full_name": repo}}


@pytest.mark.parametrize(
    ("event", "action"),
    [
        ("issues", "labeled"),
        ("pull_request", "opened"),
        ("pull_request", "synchronize"),
        ("pull_request", "reopened"),
        ("pull_request", "ready_for_review"),
        ("issue_comment", "created"),
        ("pull_request_review", "submitted"),
    ],
)
def test_these_wake(event: str, action: str) -> None:
    assert decide(event, "d1", delivered(event, action), REPO) == Wake(event, action, 7, "d1")


@pytest.mark.parametrize(
    ("event", "action"),
    [
        ("issues", "opened"),
        ("issues", "unlabeled"),
        ("pull_request", "labeled"),
        ("pull_request", "closed"),
        ("issue_comment", "edited"),
        ("pull_request_review", "dismissed"),
        ("push", "whatever"),
    ],
)
def test_these_do_not(event: str, action: str) -> None:
    assert isinstance(decide(event, "d1", delivered(event, action), REPO), str)


def test_a_comment_on_a_pull_request_names_it_by_its_issue() -> None:
    data = delivered("issue_comment", "created", 12)
    data["issue"]["pull_request"] = {"url": "https://api.github.com/repos/acme/widgets/pulls/12"}
    assert decide("issue_comment", "d", data, REPO) == Wake("issue_comment", "created", 12, "d")


def test_the_repository_is_compared_without_case() -> None:
    assert isinstance(
        decide("issues", "d", delivered("issues", "labeled", repo="Acme/WIDGETS"), REPO), Wake
    )
    reason = decide("issues", "d", delivered("issues", "labeled", repo="acme/gadgets"), REPO)
    assert reason == "for another repository (acme/gadgets)"


def test_ping_wakes_nothing() -> None:
    assert decide("ping", "d", {"zen": "Design for failure.", "hook_id": 1}, REPO) == "ping"
    other = {"zen": "z", "repository": {"full_name": "evil/x"}}
    assert decide("ping", "d", other, REPO) == "ping for another repository (evil/x)"


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        "text",
        {},
        {"action": "labeled", "repository": {"full_name": REPO}},
        {"action": "labeled", "issue": {"number": 7}},
        {"action": "labeled", "issue": {"number": "7"}, "repository": {"full_name": REPO}},
        {"action": "labeled", "issue": {"number": True}, "repository": {"full_name": REPO}},
        {"action": "labeled", "issue": {"number": 7.0}, "repository": {"full_name": REPO}},
        {"action": 1, "issue": {"number": 7}, "repository": {"full_name": REPO}},
        {"action": "labeled", "issue": [], "repository": {"full_name": REPO}},
        {"action": "labeled", "issue": {"number": 7}, "repository": {"full_name": None}},
    ],
)
def test_malformed_payloads_are_ignored_with_a_reason(payload: object) -> None:
    reason = decide("issues", "d", payload, REPO)
    assert isinstance(reason, str)
    assert reason.startswith("malformed issues payload")


def test_the_reason_never_quotes_the_payload() -> None:
    payload = {
        "action": "labeled",
        "issue": {"number": "SECRET"},
        "repository": {"full_name": REPO},
    }
    reason = decide("issues", "d", payload, REPO)
    assert isinstance(reason, str)
    assert "SECRET" not in reason


def test_a_delivery_needs_an_id() -> None:
    assert decide("issues", "", delivered("issues", "labeled"), REPO) == "no delivery id"


@pytest.mark.parametrize(
    ("event", "action", "wakes"),
    [
        ("issue_comment", "created", False),  # its own "working on it"
        ("issues", "labeled", False),  # its own claude-failed label
        ("pull_request_review", "submitted", False),  # its own review
        ("pull_request", "opened", True),  # its own pull request gets a review, as any other
    ],
)
def test_what_the_daemon_did_itself_wakes_nothing_but_its_pull_requests(
    event: str, action: str, wakes: bool
) -> None:
    data = delivered(event, action) | {"sender": {"login": "Orchestrator-Bot"}}
    decided = decide(event, "d", data, REPO, own="orchestrator-bot")
    assert isinstance(decided, Wake) is wakes, decided
    other = delivered(event, action) | {"sender": {"login": "alice"}}  # the control
    assert isinstance(decide(event, "d", other, REPO, own="orchestrator-bot"), Wake)


def test_only_the_ready_label_wakes() -> None:
    def labelled(name: str) -> dict[str, Any]:
        return delivered("issues", "labeled") | {"label": {"name": name}}

    assert isinstance(decide("issues", "d", labelled("bug"), REPO, ready_label="ready"), str)
    assert isinstance(decide("issues", "d", labelled("ready"), REPO, ready_label="ready"), Wake)
