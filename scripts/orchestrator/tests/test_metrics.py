"""`/metrics`: what the exposition says of the state, Claude's runs, GitHub and the webhooks."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.routing import Route

from scripts.orchestrator.core.work import IssueFacts, Status, WorkItem, WorkItemType
from scripts.orchestrator.github_cache import RateBudget
from scripts.orchestrator.metrics import Metrics, RepoMetrics, budget_reading
from scripts.orchestrator.ports import Telemetry
from scripts.orchestrator.state import StateError

from .ports_fakes import MemoryState

ISSUE, REVIEW, MERGE = WorkItemType.ISSUE, WorkItemType.PR_REVIEW, WorkItemType.MERGE
T0 = datetime(2025, 1, 6, 9, 0, tzinfo=timezone.utc)
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(metrics: Metrics) -> Samples:
    """Every sample of the exposition, as `/metrics` serves it, by name and labels."""
    app = Starlette(routes=[Route("/metrics", metrics.endpoint)])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        answer = await client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == CONTENT_TYPE_LATEST
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


REPO = "acme/api"
UNLABELLED = ("webhook_", "github_rate_limit_")  # one per daemon: no repository's name


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """A sample; a repository's series are `REPO`'s unless `repo` is given."""
    if not name.startswith(UNLABELLED):
        labels.setdefault("repo", REPO)
    return samples.get((f"claude_orchestrator_{name}", frozenset(labels.items())))


def issue(number: int, **changes: object) -> WorkItem:
    return WorkItem(type=ISSUE, number=number, **changes)  # type: ignore[arg-type]


def no_rate() -> tuple[int, int] | None:
    return None


@pytest.fixture
def state() -> MemoryState:
    return MemoryState()


@pytest.fixture
def metrics(state: MemoryState) -> Metrics:
    made = Metrics(no_rate)
    made.repo(REPO, state)
    return made


@pytest.fixture
def telemetry(metrics: Metrics, state: MemoryState) -> RepoMetrics:
    return metrics.repo(REPO, state)


async def test_every_family_is_documented_and_named_by_the_conventions(
    metrics: Metrics,
) -> None:
    app = Starlette(routes=[Route("/metrics", metrics.endpoint)])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        text = (await client.get("/metrics")).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert all(f.documentation.endswith(".") for f in families.values())
    assert {f.type for f in families.values()} == {"gauge", "counter", "histogram"}
    assert all(n.endswith("_seconds") for n, f in families.items() if f.type == "histogram")
    assert "claude_orchestrator_claude_cost_usd_total" in text


async def test_items_by_kind_and_status_are_read_from_the_state_at_each_scrape(
    state: MemoryState, metrics: Metrics
) -> None:
    state.put(issue(1, status=Status.IN_PROGRESS))
    state.put(issue(2, status=Status.IN_PROGRESS))
    state.put(issue(3, status=Status.DONE))
    state.put(WorkItem(type=REVIEW, number=7, status=Status.FAILED))

    samples = await scrape(metrics)
    assert value(samples, "items", kind="issue", status="in_progress") == 2
    assert value(samples, "items", kind="issue", status="done") == 1
    assert value(samples, "items", kind="pr_review", status="failed") == 1
    assert value(samples, "items", kind="merge", status="pending") == 0  # zero, not absent
    assert sum(v for (n, _), v in samples.items() if n == "claude_orchestrator_items") == 4

    state.clear_item(ISSUE, 3)
    assert value(await scrape(metrics), "items", kind="issue", status="done") == 0


async def test_a_claude_run_is_counted_once_however_often_its_job_ends(
    state: MemoryState, metrics: Metrics, telemetry: RepoMetrics
) -> None:
    state.put(issue(1, started_at=T0, cost_usd=0.5, turns=3))
    telemetry.job_done(ISSUE, 1, 60.0, "failed")
    telemetry.job_done(ISSUE, 1, 1.0, "pending")  # e.g. the outbox's retry: no new run
    samples = await scrape(metrics)
    assert value(samples, "claude_cost_usd_total", kind="issue") == 0.5
    assert value(samples, "claude_turns_total", kind="issue") == 3

    state.put(issue(1, started_at=T0 + timedelta(hours=1), cost_usd=0.25, turns=2))
    telemetry.job_done(ISSUE, 1, 60.0, "done")
    samples = await scrape(metrics)
    assert value(samples, "claude_cost_usd_total", kind="issue") == 0.75
    assert value(samples, "claude_turns_total", kind="issue") == 5
    assert value(samples, "claude_cost_usd_total", kind="pr_review") == 0


async def test_an_attempt_that_ends_before_claude_runs_adds_no_cost(
    state: MemoryState, metrics: Metrics, telemetry: RepoMetrics
) -> None:
    state.put(issue(1, started_at=T0, cost_usd=0.5, turns=3))
    telemetry.job_done(ISSUE, 1, 60.0, "failed")
    # A new attempt keeps the last run's cost and turns until its own run replaces them.
    state.put(issue(1, started_at=T0 + timedelta(hours=1), cost_usd=0.5, turns=3))
    telemetry.job_done(ISSUE, 1, 2.0, "failed")
    assert value(await scrape(metrics), "claude_cost_usd_total", kind="issue") == 0.5


async def test_runs_already_in_the_state_at_start_are_not_counted_again(
    state: MemoryState, metrics: Metrics
) -> None:
    state.put(WorkItem(type=REVIEW, number=4, started_at=T0, cost_usd=1.5, turns=9))
    telemetry = metrics.repo(REPO, state)
    telemetry.job_done(REVIEW, 4, 5.0, "done")
    samples = await scrape(metrics)
    assert value(samples, "claude_cost_usd_total", kind="pr_review") == 0
    assert value(samples, "claude_turns_total", kind="pr_review") == 0


async def test_label_to_start_is_observed_once_per_attempt(
    state: MemoryState, metrics: Metrics, telemetry: RepoMetrics
) -> None:
    labelled = IssueFacts(labelled_at=T0)
    state.put(issue(1, started_at=T0 + timedelta(seconds=90), facts=labelled))
    telemetry.job_done(ISSUE, 1, 10.0, "failed")
    telemetry.job_done(ISSUE, 1, 10.0, "failed")
    samples = await scrape(metrics)
    assert value(samples, "label_to_start_seconds_count") == 1
    assert value(samples, "label_to_start_seconds_sum") == 90
    assert value(samples, "label_to_start_seconds_bucket", le="60.0") == 0
    assert value(samples, "label_to_start_seconds_bucket", le="120.0") == 1

    state.put(issue(1, started_at=T0 + timedelta(seconds=600), facts=labelled))
    telemetry.job_done(ISSUE, 1, 10.0, "done")
    assert value(await scrape(metrics), "label_to_start_seconds_count") == 2


async def test_label_to_start_needs_both_times_and_an_issue(
    state: MemoryState, metrics: Metrics, telemetry: RepoMetrics
) -> None:
    state.put(issue(1, started_at=T0))  # labelled_at unknown
    state.put(issue(2, facts=IssueFacts(labelled_at=T0)))  # never started
    state.put(WorkItem(type=MERGE, number=3, started_at=T0))
    for kind, number in ((ISSUE, 1), (ISSUE, 2), (MERGE, 3), (ISSUE, 99)):
        telemetry.job_done(kind, number, 1.0, "done")
    samples = await scrape(metrics)
    assert value(samples, "label_to_start_seconds_count") == 0
    # A job whose item is gone is still timed.
    assert value(samples, "job_duration_seconds_count", kind="issue", outcome="done") == 3


async def test_a_label_stamped_after_the_start_by_a_skewed_clock_counts_as_no_wait(
    state: MemoryState, metrics: Metrics, telemetry: RepoMetrics
) -> None:
    state.put(issue(1, started_at=T0, facts=IssueFacts(labelled_at=T0 + timedelta(seconds=2))))
    telemetry.job_done(ISSUE, 1, 1.0, "done")
    samples = await scrape(metrics)
    assert value(samples, "label_to_start_seconds_sum") == 0
    assert value(samples, "label_to_start_seconds_bucket", le="0.1") == 1


async def test_jobs_are_timed_by_kind_and_a_bounded_outcome(
    metrics: Metrics, telemetry: RepoMetrics
) -> None:
    telemetry.job_done(REVIEW, 1, 30.0, "done")
    telemetry.job_done(REVIEW, 2, 45.0, "cancelled")
    telemetry.job_done(MERGE, 3, 3.0, "exploded in a new way")
    samples = await scrape(metrics)
    assert value(samples, "job_duration_seconds_count", kind="pr_review", outcome="done") == 1
    assert value(samples, "job_duration_seconds_sum", kind="pr_review", outcome="cancelled") == 45
    assert value(samples, "job_duration_seconds_count", kind="merge", outcome="other") == 1
    assert not any("exploded" in dict(labels).get("outcome", "") for _, labels in samples)


async def test_polls_are_timed_through_the_port(metrics: Metrics, telemetry: RepoMetrics) -> None:
    port: Telemetry = telemetry  # and mypy checks that `RepoMetrics` is the daemon's port
    port.poll_done(0.2)
    port.poll_done(3.0)
    samples = await scrape(metrics)
    assert value(samples, "poll_duration_seconds_count") == 2
    assert value(samples, "poll_duration_seconds_bucket", le="0.25") == 1
    assert value(samples, "poll_duration_seconds_sum") == pytest.approx(3.2)


async def test_github_requests_are_counted_by_status(
    metrics: Metrics, telemetry: RepoMetrics
) -> None:
    for status in (200, 200, 304, 403):
        telemetry.github_answer(status)
    telemetry.github_failed()
    telemetry.github_answer(42)  # not an HTTP status: one bounded series
    samples = await scrape(metrics)
    assert value(samples, "github_requests_total", status="200") == 2
    assert value(samples, "github_requests_total", status="304") == 1
    assert value(samples, "github_requests_total", status="403") == 1
    assert value(samples, "github_requests_total", status="error") == 1
    assert value(samples, "github_requests_total", status="other") == 1


async def test_webhook_deliveries_are_counted_by_a_bounded_result(metrics: Metrics) -> None:
    metrics.webhook("accepted")
    metrics.webhook("accepted")
    metrics.webhook("duplicate")
    metrics.webhook("surprising")
    samples = await scrape(metrics)
    assert value(samples, "webhook_deliveries_total", result="accepted") == 2
    assert value(samples, "webhook_deliveries_total", result="duplicate") == 1
    assert value(samples, "webhook_deliveries_total", result="rejected") == 0
    assert value(samples, "webhook_deliveries_total", result="other") == 1


async def test_the_rate_limit_is_read_at_each_scrape_and_absent_while_unknown(
    state: MemoryState,
) -> None:
    budget = RateBudget()
    metrics = Metrics(budget_reading(budget))
    samples = await scrape(metrics)
    assert value(samples, "github_rate_limit_remaining_requests") is None
    assert value(samples, "github_rate_limit_requests") is None

    budget.note(
        httpx.Headers(
            {
                "x-ratelimit-limit": "5000",
                "x-ratelimit-remaining": "4321",
                "x-ratelimit-reset": "1736157600",
            }
        )
    )
    samples = await scrape(metrics)
    assert value(samples, "github_rate_limit_remaining_requests") == 4321
    assert value(samples, "github_rate_limit_requests") == 5000


async def test_each_instance_has_a_registry_of_its_own(state: MemoryState) -> None:
    first, second = Metrics(no_rate), Metrics(no_rate)
    first.repo(REPO, state).github_answer(200)
    assert value(await scrape(first), "github_requests_total", status="200") == 1
    assert value(await scrape(second), "github_requests_total", status="200") is None


async def test_each_repository_has_its_own_series_and_one_let_go_leaves_the_items(
    metrics: Metrics, state: MemoryState
) -> None:
    other = MemoryState()
    state.put(issue(1, status=Status.DONE))
    other.put(issue(1, status=Status.FAILED))
    other.put(issue(2, status=Status.FAILED))
    mine, theirs = metrics.repo(REPO, state), metrics.repo("acme/web", other)
    other.put(issue(2, status=Status.FAILED, started_at=T0, cost_usd=0.25, turns=2))
    theirs.job_done(ISSUE, 2, 3.0, "failed")
    mine.poll_done(0.5)
    theirs.github_answer(304)
    samples = await scrape(metrics)
    assert value(samples, "items", kind="issue", status="done") == 1
    assert value(samples, "items", kind="issue", status="failed") == 0
    assert value(samples, "items", repo="acme/web", kind="issue", status="failed") == 2
    assert value(samples, "claude_cost_usd_total", repo="acme/web", kind="issue") == 0.25
    assert value(samples, "claude_cost_usd_total", kind="issue") == 0
    assert value(samples, "poll_duration_seconds_count") == 1
    assert value(samples, "poll_duration_seconds_count", repo="acme/web") == 0
    assert value(samples, "github_requests_total", repo="acme/web", status="304") == 1
    # Taken by another daemon: its items are that daemon's to count; its counters stay.
    metrics.forget("acme/web")
    samples = await scrape(metrics)
    assert value(samples, "items", repo="acme/web", kind="issue", status="failed") is None
    assert value(samples, "items", kind="issue", status="done") == 1
    assert value(samples, "claude_cost_usd_total", repo="acme/web", kind="issue") == 0.25


class BrokenState(MemoryState):
    broken = False

    def items(self, kind: WorkItemType | None = None) -> list[WorkItem]:
        if self.broken:
            raise StateError("the database went away")
        return super().items(kind)


async def test_one_repositorys_state_fault_leaves_the_others_in_the_metrics(
    metrics: Metrics, state: MemoryState
) -> None:
    state.put(issue(1, status=Status.DONE))
    broken = BrokenState()
    metrics.repo("acme/web", broken)
    broken.broken = True
    samples = await scrape(metrics)
    assert value(samples, "items", kind="issue", status="done") == 1
    assert value(samples, "items", repo="acme/web", kind="issue", status="done") is None
