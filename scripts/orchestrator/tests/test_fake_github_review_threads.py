"""The fake GitHub's review threads: comments on the diff, replies, and review requests.

Every request and reply here is also checked against GitHub's description by the fixture
(a breach fails the test at teardown), so each success below is a faithful shape as well.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from scripts.orchestrator.fakes.fake_github import FakeGitHub
from scripts.orchestrator.fakes.fake_github.anchors import Unresolved, resolve, rows
from scripts.orchestrator.fakes.fake_github.shapes_hooks import problems

from .fixtures_github import FAKE_TOKEN
from .test_fake_github_webhooks import SECRET, Sink
from .test_webhooks import serve_app

PULLS = "/repos/acme/widgets/pulls"
AUTH = {"Authorization": f"token {FAKE_TOKEN}"}
REVIEWER = "reviewer-token"
# long.txt on main: l1..l20; the pull request changes lines 2 and 18 (two hunks).
BASE = "".join(f"l{i}\n" for i in range(1, 21))
HEAD = BASE.replace("l2\n", "L2\n").replace("l18\n", "L18\n")


def send(gh: FakeGitHub, method: str, path: str, *, token: str = FAKE_TOKEN, **kw: Any):
    headers = {"Authorization": f"token {token}", **kw.pop("headers", {})}
    return httpx.request(method, f"{gh.url}{path}", headers=headers, timeout=5, **kw)


@pytest.fixture
def pull(fake_github: FakeGitHub) -> int:
    """An open pull request by `dave` changing long.txt (lines 2 and 18) and adding new.py;
    `reviewer` (a collaborator with write access) has a token."""
    gh = fake_github
    gh.commit("main", {"long.txt": BASE}, "Add long.txt")
    gh.commit("feature", {"long.txt": HEAD, "new.py": "x = 1\ny = 2\n"}, base="main")
    gh.set_permission("reviewer", "write")
    gh.add_token(REVIEWER, "reviewer")
    return gh.create_pull("Change", "feature", user="dave")


def review(gh: FakeGitHub, number: int, comments: list[dict[str, Any]], **fields: Any):
    body = {"event": "COMMENT", "body": "Some notes", "comments": comments, **fields}
    body = {k: v for k, v in body.items() if v is not None}  # None: leave the field out
    return send(gh, "POST", f"{PULLS}/{number}/reviews", token=REVIEWER, json=body)


def listed(gh: FakeGitHub, number: int, **params: str) -> list[dict[str, Any]]:
    answer = send(gh, "GET", f"{PULLS}/{number}/comments", params=params)
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()
    return found


# -- comments in a review ---------------------------------------------------------------------


def test_a_reviews_comments_start_threads_on_the_diff(fake_github: FakeGitHub, pull: int):
    head = fake_github.pull(pull)["head"]["sha"]
    made = review(
        fake_github,
        pull,
        [
            {"path": "long.txt", "line": 2, "body": "Why capital?"},
            {"path": "long.txt", "line": 2, "side": "LEFT", "body": "The old one"},
            {"path": "long.txt", "position": 12, "body": "By position"},
            {"path": "new.py", "line": 2, "start_line": 1, "body": "A range"},
        ],
    )
    assert made.status_code == 200, made.text
    found = listed(fake_github, pull)
    assert [(c["path"], c["line"], c["side"], c["position"]) for c in found] == [
        ("long.txt", 2, "RIGHT", 3),
        ("long.txt", 2, "LEFT", 2),
        ("long.txt", 18, "RIGHT", 12),
        ("new.py", 2, "RIGHT", 2),
    ]
    first = found[0]
    assert first["diff_hunk"] == "@@ -1,5 +1,5 @@\n l1\n-l2\n+L2"
    assert first["pull_request_review_id"] == made.json()["id"]
    assert first["commit_id"] == first["original_commit_id"] == head
    assert first["user"]["login"] == "reviewer" and first["body"] == "Why capital?"
    assert "in_reply_to_id" not in first  # absent on a thread's first comment, not null
    assert (found[3]["start_line"], found[3]["start_side"]) == (1, "RIGHT")
    assert [c["id"] for c in found] == sorted(c["id"] for c in found)
    assert fake_github.pull(pull)["review_comments"] == 4
    assert fake_github.contract_violations == []


@pytest.mark.parametrize(
    ("comment", "error"),
    [
        ({"path": "calc.py", "line": 1}, "Path could not be resolved"),  # not in the diff
        ({"path": "nope.txt", "line": 1}, "Path could not be resolved"),
        ({"path": "long.txt", "line": 10}, "Line could not be resolved"),  # between hunks
        ({"path": "long.txt", "line": 1, "side": "LEFT"}, "Line could not be resolved"),
        ({"path": "long.txt", "position": 7}, "Line could not be resolved"),  # a hunk header
        ({"path": "long.txt"}, "Line could not be resolved"),  # neither line nor position
        ({"path": "long.txt", "line": 2, "position": 3}, "Line could not be resolved"),
        ({"path": "long.txt", "line": 2, "side": "MIDDLE"}, "Side must be LEFT or RIGHT"),
        (
            {"path": "long.txt", "line": 18, "start_line": 2},
            "Pull request review thread start line must be part of the same hunk as the line.",
        ),
    ],
)
def test_one_comment_outside_the_diff_refuses_the_whole_review(
    fake_github: FakeGitHub, pull: int, comment: dict[str, Any], error: str
):
    good = {"path": "long.txt", "line": 2, "body": "fine"}
    answer = review(fake_github, pull, [good, {"body": "there", **comment}])
    assert answer.status_code == 422
    assert answer.json()["message"] == "Unprocessable Entity"
    assert answer.json()["errors"] == [error]
    assert fake_github.reviews_on(pull) == [] and fake_github.review_comments(pull) == []


def test_a_comment_body_and_the_review_body_are_required(fake_github: FakeGitHub, pull: int):
    blank = review(fake_github, pull, [{"path": "long.txt", "line": 2, "body": ""}])
    assert (blank.status_code, blank.json()["errors"]) == (422, ["Body can't be blank"])
    # GitHub's documented rule holds with comments too: COMMENT needs a body.
    bodiless = review(fake_github, pull, [{"path": "long.txt", "line": 2, "body": "x"}], body="")
    assert bodiless.status_code == 422
    assert bodiless.json()["errors"] == ["Review body is required for the COMMENT event"]
    with fake_github.expect_violations() as seen:
        missing = review(fake_github, pull, [{"path": "long.txt", "line": 2}])
    assert missing.status_code == 422 and "'body' is a required property" in seen[0]


def test_a_pending_reviews_comments_are_its_authors_alone(fake_github: FakeGitHub, pull: int):
    review(fake_github, pull, [{"path": "new.py", "line": 1, "body": "draft"}], event=None)
    assert listed(fake_github, pull) == []
    mine = send(fake_github, "GET", f"{PULLS}/{pull}/comments", token=REVIEWER).json()
    assert [c["body"] for c in mine] == ["draft"]
    assert fake_github.pull(pull)["review_comments"] == 0


# -- replies ----------------------------------------------------------------------------------


def test_a_reply_joins_the_thread_with_a_review_of_its_own(fake_github: FakeGitHub, pull: int):
    review(fake_github, pull, [{"path": "long.txt", "line": 18, "body": "Why?"}])
    first = listed(fake_github, pull)[0]
    answer = send(
        fake_github, "POST", f"{PULLS}/{pull}/comments/{first['id']}/replies", json={"body": "ok"}
    )
    assert answer.status_code == 201, answer.text
    made = answer.json()
    assert answer.headers["Location"] == made["url"]
    assert made["in_reply_to_id"] == first["id"]
    assert (made["path"], made["line"], made["diff_hunk"]) == (
        first["path"],
        first["line"],
        first["diff_hunk"],
    )
    assert made["user"]["login"] == fake_github.bot_login
    assert [c["id"] for c in listed(fake_github, pull)] == [first["id"], made["id"]]
    [own] = [r for r in fake_github.reviews_on(pull) if r["id"] == made["pull_request_review_id"]]
    assert (own["state"], own["body"]) == ("COMMENTED", "")
    assert own["user"]["login"] == fake_github.bot_login


def test_a_reply_to_a_reply_is_422(fake_github: FakeGitHub, pull: int):
    fake_github.review(
        pull, "notes", user="reviewer", comments=[{"path": "new.py", "line": 1, "body": "?"}]
    )
    first = fake_github.review_comments(pull)[0]["id"]
    second = fake_github.review_comment_reply(pull, first, "!", user="dave")
    answer = send(
        fake_github, "POST", f"{PULLS}/{pull}/comments/{second}/replies", json={"body": "again"}
    )
    assert answer.status_code == 422
    assert "Replies to replies are not supported" in answer.json()["errors"][0]["message"]
    assert len(fake_github.review_comments(pull)) == 2


def test_a_reply_to_a_comment_of_another_pull_request_is_404(fake_github: FakeGitHub, pull: int):
    fake_github.commit("other", {"other.txt": "o\n"}, base="main")
    other = fake_github.create_pull("Other", "other", user="dave")
    fake_github.review(
        other, "n", user="reviewer", comments=[{"path": "other.txt", "line": 1, "body": "?"}]
    )
    theirs = fake_github.review_comments(other)[0]["id"]
    issue = fake_github.create_issue("Plain")
    for number, comment in ((pull, theirs), (pull, 99), (issue, theirs)):
        answer = send(
            fake_github, "POST", f"{PULLS}/{number}/comments/{comment}/replies", json={"body": "x"}
        )
        assert answer.status_code == 404, (number, comment)


def test_a_reply_needs_a_body(fake_github: FakeGitHub, pull: int):
    fake_github.review(
        pull, "n", user="reviewer", comments=[{"path": "new.py", "line": 1, "body": "?"}]
    )
    replies = f"{PULLS}/{pull}/comments/{fake_github.review_comments(pull)[0]['id']}/replies"
    empty = send(fake_github, "POST", replies, json={"body": ""})
    assert empty.status_code == 422
    assert empty.json()["errors"][0]["code"] == "missing_field"
    with fake_github.expect_violations():
        assert send(fake_github, "POST", replies, json={}).status_code == 422
        assert send(fake_github, "POST", replies).status_code == 422


# -- listing ----------------------------------------------------------------------------------


def test_review_comments_paginate(fake_github: FakeGitHub, pull: int):
    notes = [{"path": "new.py", "line": 1, "body": f"note {i}"} for i in range(25)]
    fake_github.review(pull, "many", user="reviewer", comments=notes)
    first = send(fake_github, "GET", f"{PULLS}/{pull}/comments", params={"per_page": 10})
    assert 'rel="next"' in first.headers["Link"] and "page=3" in first.headers["Link"]
    bodies = [c["body"] for c in first.json()]
    for page in (2, 3):
        bodies += [c["body"] for c in listed(fake_github, pull, per_page="10", page=str(page))]
    assert bodies == [f"note {i}" for i in range(25)]


def test_sort_direction_and_since(fake_github: FakeGitHub, pull: int):
    ids = []
    for text in ("a", "b", "c"):
        fake_github.review(
            pull, "n", user="reviewer", comments=[{"path": "new.py", "line": 1, "body": text}]
        )
        ids.append(fake_github.review_comments(pull)[-1]["id"])
        fake_github.advance(10)
    assert [c["id"] for c in listed(fake_github, pull)] == ids
    assert [c["id"] for c in listed(fake_github, pull, direction="desc")] == ids  # no sort
    newest = listed(fake_github, pull, sort="created", direction="desc")
    assert [c["id"] for c in newest] == ids[::-1]
    assert [c["id"] for c in listed(fake_github, pull, sort="updated", direction="asc")] == ids
    since = fake_github.review_comments(pull)[0]["updated_at"]
    assert [c["id"] for c in listed(fake_github, pull, since=since)] == ids[1:]
    for params in ({"sort": "id"}, {"direction": "up"}, {"since": "yesterday"}):
        with fake_github.expect_violations():
            answer = send(fake_github, "GET", f"{PULLS}/{pull}/comments", params=params)
        assert answer.status_code == 422, params


def test_the_newer_api_version_gets_faithful_shapes_too(fake_github: FakeGitHub, pull: int):
    fake_github.review(
        pull, "n", user="reviewer", comments=[{"path": "new.py", "line": 1, "body": "?"}]
    )
    latest = {"X-GitHub-Api-Version": "2026-03-10"}
    answer = send(fake_github, "GET", f"{PULLS}/{pull}/comments", headers=latest)
    assert answer.status_code == 200 and len(answer.json()) == 1
    assert fake_github.contract_violations == []


# -- review requests --------------------------------------------------------------------------


def test_requested_reviewers_until_they_review(fake_github: FakeGitHub, pull: int):
    fake_github.set_permission("carol", "triage")
    requests = f"{PULLS}/{pull}/requested_reviewers"
    made = send(fake_github, "POST", requests, json={"reviewers": ["reviewer", "Carol"]})
    assert made.status_code == 201, made.text
    assert [u["login"] for u in made.json()["requested_reviewers"]] == ["reviewer", "carol"]
    assert fake_github.requested_reviewers(pull) == ["reviewer", "carol"]
    again = send(fake_github, "POST", requests, json={"reviewers": ["reviewer"]})
    assert [u["login"] for u in again.json()["requested_reviewers"]] == ["reviewer", "carol"]
    asked = send(fake_github, "GET", requests).json()
    assert ([u["login"] for u in asked["users"]], asked["teams"]) == (["reviewer", "carol"], [])
    # Submitting a review answers the request: GitHub drops the reviewer from the list.
    fake_github.review(pull, "Looks good", "APPROVE", user="reviewer")
    assert [u["login"] for u in fake_github.pull(pull)["requested_reviewers"]] == ["carol"]
    removed = send(fake_github, "DELETE", requests, json={"reviewers": ["carol"]})
    assert removed.status_code == 200 and removed.json()["requested_reviewers"] == []
    events = [e["event"] for e in fake_github.events_of(pull)]
    assert events.count("review_requested") == 2 and "review_request_removed" in events
    listed_events = send(fake_github, "GET", f"/repos/acme/widgets/issues/{pull}/events")
    assert listed_events.status_code == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"reviewers": ["dave"]}, "Review cannot be requested from pull request author."),
        ({"reviewers": ["reviewer", "stranger"]}, "Reviews may only be requested from"),
        ({"team_reviewers": ["core"]}, "Reviews may only be requested from"),
        ({"reviewers": []}, "Reviewers or team_reviewers must name someone."),
    ],
)
def test_a_review_request_github_refuses_is_422(
    fake_github: FakeGitHub, pull: int, body: dict[str, Any], message: str
):
    answer = send(fake_github, "POST", f"{PULLS}/{pull}/requested_reviewers", json=body)
    assert answer.status_code == 422
    assert answer.json()["message"].startswith(message)
    assert fake_github.requested_reviewers(pull) == []  # all or nothing


def test_a_read_only_user_cannot_request_reviews(fake_github: FakeGitHub, pull: int):
    fake_github.set_permission("reader", "read")
    fake_github.add_token("reader-token", "reader")
    answer = send(
        fake_github,
        "POST",
        f"{PULLS}/{pull}/requested_reviewers",
        token="reader-token",
        json={"reviewers": ["reviewer"]},
    )
    assert answer.status_code == 403


# -- webhooks ---------------------------------------------------------------------------------


@pytest.fixture
def sink(fake_github: FakeGitHub) -> Iterator[Sink]:
    made = Sink()
    with serve_app(Starlette(routes=[Route("/hook", made.endpoint, methods=["POST"])])) as base:
        fake_github.add_webhook(f"{base}/hook", SECRET)
        yield made


def test_reviews_and_replies_send_faithful_review_webhooks(
    fake_github: FakeGitHub, pull: int, sink: Sink
):
    fake_github.set_permission("carol", "write")
    for login in ("carol", "reviewer"):
        ask = send(
            fake_github, "POST", f"{PULLS}/{pull}/requested_reviewers", json={"reviewers": [login]}
        )
        assert ask.status_code == 201
    review_id = fake_github.review(
        pull, "notes", user="reviewer", comments=[{"path": "new.py", "line": 1, "body": "?"}]
    )
    fake_github.review_comment_reply(pull, fake_github.review_comments(pull)[0]["id"], "!")
    sent = [d for d in fake_github.wait_for_deliveries() if d.event == "pull_request_review"]
    payloads = [json.loads(d.body) for d in sent]
    assert payloads[0]["review"]["id"] == review_id
    assert [p["action"] for p in payloads] == ["submitted", "submitted"]
    assert [u["login"] for u in payloads[0]["pull_request"]["requested_reviewers"]] == ["carol"]
    assert all(problems(d.event, d.action, json.loads(d.body)) == [] for d in sent)
    assert fake_github.contract_violations == []


# -- anchors ----------------------------------------------------------------------------------


def test_positions_count_every_line_below_the_first_hunk_header():
    patch = "@@ -1,2 +1,2 @@\n a\n-b\n+B\n@@ -9,1 +9,2 @@\n i\n+j\n\\ No newline at end of file"
    table = rows(patch)
    numbered = [(r.position, r.old, r.new) for r in table]
    assert numbered[1:4] == [(1, 1, 1), (2, 2, None), (3, None, 2)]
    assert (table[6].new, table[6].hunk) == (10, 4)
    assert resolve({"f": patch}, {"path": "f", "line": 10}).position == 6
    with pytest.raises(Unresolved):
        resolve({"f": patch}, {"path": "f", "position": 7})  # the "no newline" marker
    with pytest.raises(Unresolved, match="Line could not be resolved"):
        resolve({"f": None}, {"path": "f", "line": 1})  # a binary file has no lines
