"""Table tests of the merge decisions: every branch of what a merge request's facts call for."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import pytest

from scripts.orchestrator.core.ci import Verdict
from scripts.orchestrator.core.decide_merge import (
    MAX_BASE_ROUNDS,
    AfterRefusal,
    Ci,
    Refusal,
    RefusalDecision,
    Round,
    Start,
    StartDecision,
    Stop,
    after_refusal,
    after_round,
    already_tested,
    merged_by_us,
    on_ci,
    on_start,
    pushed_since_request,
)
from scripts.orchestrator.core.merge_text import stop_text
from scripts.orchestrator.core.models import PullRequest
from scripts.orchestrator.core.work import MergeFacts

OPEN = PullRequest(
    7, "t", "b", "dave", "open", False, False, "topic", "h1", "acme/widgets",
    "main", "b0", "acme/widgets", datetime(2024, 1, 1, tzinfo=timezone.utc),
)  # fmt: skip


def _pr(**changes: object) -> PullRequest:
    return dataclasses.replace(OPEN, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pull", "requested_base", "requested_head", "merged_by_us", "expected"),
    [
        (OPEN, "main", "h1", False, StartDecision(Start.TEST)),
        (OPEN, None, None, False, StartDecision(Start.TEST)),  # stored by an older version
        (_pr(merged=True, state="closed"), "main", "h1", True, StartDecision(Start.FINISH)),
        (_pr(merged=True, state="closed"), "main", "h1", False,
         StartDecision(Start.ALREADY_MERGED)),
        (_pr(state="closed"), "main", "h1", False, StartDecision(Start.STOP, Stop.CLOSED)),
        (_pr(draft=True), "main", "h1", False, StartDecision(Start.STOP, Stop.DRAFT)),
        (_pr(base_ref="develop"), "main", "h1", False,
         StartDecision(Start.STOP, Stop.RETARGETED)),
        # A push after the writer's /merge: that head was never approved.
        (_pr(head_sha="h2"), "main", "h1", False,
         StartDecision(Start.STOP, Stop.PUSHED_SINCE_REQUEST)),
        # Closed wins over draft and retarget: the comment names the plainest reason.
        (_pr(state="closed", draft=True, base_ref="x"), "main", "h1", False,
         StartDecision(Start.STOP, Stop.CLOSED)),
    ],
)  # fmt: skip
def test_on_start(
    pull: PullRequest,
    requested_base: str | None,
    requested_head: str | None,
    merged_by_us: bool,
    expected: StartDecision,
) -> None:
    decision = on_start(
        pull,
        requested_base=requested_base,
        requested_head=requested_head,
        merged_by_us=merged_by_us,
    )
    assert decision == expected


@pytest.mark.parametrize(
    ("requested", "head", "expected"),
    [("h1", "h1", False), ("h1", "h2", True), (None, "h2", False)],
)
def test_pushed_since_request(requested: str | None, head: str, expected: bool) -> None:
    assert pushed_since_request(requested, head) is expected


@pytest.mark.parametrize(
    ("verdict", "wait", "waited", "expected"),
    [
        (Verdict.RED, False, 0.0, Ci.RED),  # red before the checks: fail fast
        (Verdict.RED, True, 5.0, Ci.RED),
        (Verdict.GREEN, False, 0.0, Ci.PASSED),
        (Verdict.GREEN, True, 99.0, Ci.PASSED),
        (Verdict.PENDING, False, 0.0, Ci.PENDING),  # before the checks: do not wait
        (Verdict.PENDING, True, 0.0, Ci.WAIT),
        (Verdict.PENDING, True, 9.9, Ci.WAIT),
        (Verdict.PENDING, True, 10.0, Ci.TIMED_OUT),
        (Verdict.PENDING, True, 60.0, Ci.TIMED_OUT),
    ],
)
def test_on_ci(verdict: Verdict, wait: bool, waited: float, expected: Ci) -> None:
    assert on_ci(verdict, wait=wait, waited_s=waited, timeout_s=10.0) is expected


@pytest.mark.parametrize(
    ("base_now", "rounds", "expected"),
    [
        ("b1", 1, Round.MERGE),
        ("b1", MAX_BASE_ROUNDS, Round.MERGE),  # a still base on the last round still merges
        ("b2", 1, Round.RETEST),
        ("b2", MAX_BASE_ROUNDS - 1, Round.RETEST),
        ("b2", MAX_BASE_ROUNDS, Round.STOP),
    ],
)
def test_after_round(base_now: str, rounds: int, expected: Round) -> None:
    assert after_round(tested_base="b1", base_now=base_now, rounds=rounds) is expected


MERGED = RefusalDecision(AfterRefusal.MERGED)


@pytest.mark.parametrize(
    ("refusal", "merged_now", "head_now", "expected"),
    [
        # A lost answer: GitHub merged what we tested; whatever the error said, it landed.
        (Refusal.OTHER, True, "h1", MERGED),
        (Refusal.NOT_MERGEABLE, True, "h1", MERGED),
        (Refusal.CONFLICT, True, "h1", MERGED),
        # Merged at another head: someone else merged; our refusal stands.
        (Refusal.CONFLICT, True, "h2", RefusalDecision(AfterRefusal.STOP, Stop.HEAD_MOVED)),
        (Refusal.CONFLICT, False, "h2", RefusalDecision(AfterRefusal.STOP, Stop.HEAD_MOVED)),
        (Refusal.NOT_MERGEABLE, False, "h1", RefusalDecision(AfterRefusal.STOP, Stop.REFUSED)),
        (Refusal.OTHER, False, "h1", RefusalDecision(AfterRefusal.RETRY)),
        (Refusal.OTHER, True, "h2", RefusalDecision(AfterRefusal.RETRY)),
    ],
)
def test_after_refusal(
    refusal: Refusal, merged_now: bool, head_now: str, expected: RefusalDecision
) -> None:
    decision = after_refusal(refusal, merged_now=merged_now, head_now=head_now, tested_head="h1")
    assert decision == expected


@pytest.mark.parametrize(
    ("facts", "head", "expected"),
    [
        (MergeFacts(), "h1", False),  # never sent: merged by someone else
        (MergeFacts(merge_sha="m1"), "h1", True),  # GitHub's answer came
        (MergeFacts(merging_head="h1"), "h1", True),  # sent for this head, answer lost
        (MergeFacts(merging_head="h0"), "h1", False),  # sent for another head
    ],
)
def test_merged_by_us(facts: MergeFacts, head: str, expected: bool) -> None:
    assert merged_by_us(facts, head) is expected


TESTED = MergeFacts(merging_head="h1", tested_base="b1")


@pytest.mark.parametrize(
    ("facts", "head", "base_tip", "expected"),
    [
        (TESTED, "h1", "b1", True),  # the same head on the same base: merge it
        (TESTED, "h2", "b1", False),  # a new head
        (TESTED, "h1", "b2", False),  # the base moved
        (TESTED, "h1", None, False),
        (MergeFacts(merging_head="h1"), "h1", "b1", False),  # the base was not recorded
        (MergeFacts(), "h1", "b1", False),  # never tested
    ],
)
def test_tested_before(facts: MergeFacts, head: str, base_tip: str | None, expected: bool) -> None:
    assert already_tested(facts, head=head, base_tip=base_tip) is expected


@pytest.mark.parametrize("stop", list(Stop))
def test_every_stop_has_its_own_comment_with_a_way_forward(stop: Stop) -> None:
    comment = stop_text(stop, base_ref="release", head="h" * 40, message="Nope", trigger="/merge")
    assert comment.startswith("**Claude Orchestrator**: not merged")
    others = {stop_text(s, base_ref="release", head="h" * 40, message="Nope", trigger="/merge")
              for s in Stop if s is not stop}  # fmt: skip
    assert comment not in others
    if stop not in (Stop.CLOSED, Stop.DRAFT):
        assert "/merge" in comment  # how to ask again
