"""Prometheus metrics for serve mode: the work items, Claude's spend, GitHub's answers and times."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from starlette.requests import Request
from starlette.responses import Response

from .core.work import Status, WorkItem, WorkItemType
from .ports import StateStore
from .state import StateError

if TYPE_CHECKING:
    from .github_cache import RateBudget

log = logging.getLogger(__name__)

PREFIX = "claude_orchestrator"

# Label values are bounded, so a caller's typo or a new word costs one "other" series, never
# an unbounded set of them.
OTHER = "other"
OUTCOMES = frozenset({*(s.value for s in Status), "cancelled", "crashed"})
WEBHOOK_RESULTS = frozenset({"accepted", "duplicate", "ignored", "rejected"})

POLL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# A job may be a merge's checks or a Claude run, which may take up to its timeout.
JOB_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0)
LABEL_TO_START_BUCKETS = (
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
)  # fmt: skip

RateReading = Callable[[], "tuple[int, int] | None"]  # (remaining, limit), None if unknown


class Metrics:
    """Prometheus metrics with their own registry and a `/metrics` endpoint. Each repository's
    daemon reports through its own `RepoMetrics` (the `Telemetry` port), and every series of
    a repository's work carries its name in the `repo` label; the rate budget (one per token)
    and the webhooks (one endpoint) have none."""

    def __init__(self, rate: RateReading) -> None:
        self.registry = CollectorRegistry()
        self._states: dict[str, StateStore] = {}  # the repositories worked on now
        self.registry.register(_StateCollector(self._states, rate))
        self.cost = Counter(
            f"{PREFIX}_claude_cost_usd",
            "What Claude's runs cost, in US dollars.",
            ["repo", "kind"],
            registry=self.registry,
        )
        self.turns = Counter(
            f"{PREFIX}_claude_turns",
            "How many turns Claude's runs took.",
            ["repo", "kind"],
            registry=self.registry,
        )
        self.github = Counter(
            f"{PREFIX}_github_requests",
            "GitHub requests by the status of the answer, or error when none came.",
            ["repo", "status"],
            registry=self.registry,
        )
        self._webhooks = Counter(
            f"{PREFIX}_webhook_deliveries",
            "Webhook deliveries by what became of them.",
            ["result"],
            registry=self.registry,
        )
        self.poll = Histogram(
            f"{PREFIX}_poll_duration_seconds",
            "How long one poll cycle took.",
            ["repo"],
            buckets=POLL_BUCKETS,
            registry=self.registry,
        )
        self.jobs = Histogram(
            f"{PREFIX}_job_duration_seconds",
            "How long jobs took, by kind of work and outcome.",
            ["repo", "kind", "outcome"],
            buckets=JOB_BUCKETS,
            registry=self.registry,
        )
        self.label_to_start = Histogram(
            f"{PREFIX}_label_to_start_seconds",
            "Time from an issue's ready label to the start of the work on it.",
            ["repo"],
            buckets=LABEL_TO_START_BUCKETS,
            registry=self.registry,
        )
        # Series that exist from the start read as zero rather than as absent.
        for result in sorted(WEBHOOK_RESULTS):
            self._webhooks.labels(result=result)

    def repo(self, repo: str, state: StateStore) -> RepoMetrics:
        """`repo`'s metrics, its items read from `state` at each scrape until `forget`."""
        self._states[repo] = state
        return RepoMetrics(self, repo, state)

    def forget(self, repo: str) -> None:
        """`repo` is no longer worked on here (another daemon took it): its items are no
        longer counted here; its counters stay, as counters do."""
        self._states.pop(repo, None)

    def webhook(self, result: str) -> None:
        self._webhooks.labels(result=_bounded(result, WEBHOOK_RESULTS)).inc()

    async def endpoint(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class RepoMetrics:
    """One repository's `Telemetry`: its polls, jobs, Claude runs and GitHub answers.

    Cost and turns are read from the state when a job ends; a run is counted once, and what
    the state held when these were made is taken as counted already (by an earlier process,
    whose counters Prometheus has seen reset, or by another daemon that held the repository)."""

    def __init__(self, metrics: Metrics, repo: str, state: StateStore) -> None:
        self._m = metrics
        self._repo = repo
        self._state = state
        self._counted: dict[str, tuple[float | None, int | None]] = {}
        self._waited: dict[str, datetime] = {}  # the attempt whose label-to-start was observed
        for item in state.items():
            self._counted[item.key] = (item.cost_usd, item.turns)
            if item.type is WorkItemType.ISSUE and item.started_at is not None:
                self._waited[item.key] = item.started_at
        # Series that exist from the start read as zero rather than as absent.
        for kind in WorkItemType:
            metrics.cost.labels(repo=repo, kind=kind.value)
            metrics.turns.labels(repo=repo, kind=kind.value)
        metrics.poll.labels(repo=repo)
        metrics.label_to_start.labels(repo=repo)

    def poll_done(self, seconds: float) -> None:
        self._m.poll.labels(repo=self._repo).observe(seconds)

    def job_done(self, kind: WorkItemType, number: int, seconds: float, outcome: str) -> None:
        self._m.jobs.labels(repo=self._repo, kind=kind.value,
                            outcome=_bounded(outcome, OUTCOMES)).observe(seconds)  # fmt: skip
        item = self._state.get(kind, number)
        if item is None:
            return
        self._count_run(item)
        if item.type is WorkItemType.ISSUE:
            self._observe_wait(item)

    def github_answer(self, status: int) -> None:
        code = str(status) if 100 <= status <= 599 else OTHER
        self._m.github.labels(repo=self._repo, status=code).inc()

    def github_failed(self) -> None:
        """A request that got no answer: a timeout, a reset connection."""
        self._m.github.labels(repo=self._repo, status="error").inc()

    def github_observer(self, status: int | None) -> None:
        """`AuthTransport.observers`' form: the status, or None when no answer came."""
        if status is None:
            self.github_failed()
        else:
            self.github_answer(status)

    def _count_run(self, item: WorkItem) -> None:
        # A run replaces the item's cost and turns, and a new attempt that fails before Claude
        # keeps the last run's: only a change is a new run. Two runs costing exactly the
        # same to the last digit, with as many turns, would count once; the price is small.
        run = (item.cost_usd, item.turns)
        if run == (None, None) or self._counted.get(item.key) == run:
            return
        self._counted[item.key] = run
        kind = item.type.value
        if item.cost_usd is not None:
            self._m.cost.labels(repo=self._repo, kind=kind).inc(max(item.cost_usd, 0.0))
        if item.turns is not None:
            self._m.turns.labels(repo=self._repo, kind=kind).inc(max(item.turns, 0))

    def _observe_wait(self, item: WorkItem) -> None:
        started, labelled = item.started_at, item.issue.labelled_at
        if started is None or labelled is None or self._waited.get(item.key) == started:
            return
        self._waited[item.key] = started
        # GitHub's clock stamps the label and ours the start: a small skew may reverse them.
        wait = max((started - labelled).total_seconds(), 0.0)
        self._m.label_to_start.labels(repo=self._repo).observe(wait)


class _StateCollector:
    """Read at each scrape: each repository's items by kind and status, and GitHub's rate
    budget."""

    def __init__(self, states: dict[str, StateStore], rate: RateReading) -> None:
        self._states = states
        self._rate = rate

    def collect(self) -> Iterable[Metric]:
        items = GaugeMetricFamily(
            f"{PREFIX}_items",
            "Work items by repository, kind and status.",
            labels=["repo", "kind", "status"],
        )
        for repo, state in list(self._states.items()):
            counts = {(kind, status): 0 for kind in WorkItemType for status in Status}
            try:
                for item in state.items():
                    counts[item.type, item.status] += 1
            except StateError as exc:  # one repository's database fault: the others are shown
                log.warning("the metrics leave out %s's items: %s", repo, exc)
                continue
            for (kind, status), count in counts.items():
                items.add_metric([repo, kind.value, status.value], count)
        yield items

        rate = self._rate()
        if rate is None:  # no answer from GitHub yet: absent, not a made-up zero
            return
        remaining, limit = rate
        yield GaugeMetricFamily(
            f"{PREFIX}_github_rate_limit_remaining_requests",
            "Requests left in GitHub's core rate limit until it resets.",
            value=remaining,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_github_rate_limit_requests",
            "Requests GitHub's core rate limit allows per hour.",
            value=limit,
        )


def budget_reading(budget: RateBudget) -> RateReading:
    """The `rate` of `Metrics`, read from the budget GitHub's answers keep current."""

    def reading() -> tuple[int, int] | None:
        if budget.remaining is None or budget.limit is None:
            return None
        return budget.remaining, budget.limit

    return reading


def _bounded(value: str, allowed: frozenset[str]) -> str:
    return value if value in allowed else OTHER
