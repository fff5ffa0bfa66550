"""The `StateStore` contract: one suite that the JSON file and PostgreSQL backends both pass."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from scripts.orchestrator.core.work import (
    Ask,
    FollowUpFacts,
    IssueFacts,
    KeptReview,
    MergeFacts,
    PassedCommand,
    ReviewFacts,
    Thread,
    Write,
)
from scripts.orchestrator.state import State, StateLockedError, Status, WorkItem, WorkItemType
from scripts.orchestrator.state_pg import PgState

from .fixtures_postgres import pg_state_url, postgres_url  # noqa: F401
from .test_state import MONTH, NOW, _finished

if TYPE_CHECKING:
    from scripts.orchestrator.ports import StateStore

    def _both_fit_the_port(json_store: State, pg_store: PgState) -> tuple[StateStore, StateStore]:
        return json_store, pg_store


REPO = "acme/widgets"
AnyState = State | PgState
ISSUE, REVIEW, MERGE, FOLLOW_UP = (
    WorkItemType.ISSUE,
    WorkItemType.PR_REVIEW,
    WorkItemType.MERGE,
    WorkItemType.FOLLOW_UP,
)


class Stores:
    """Opens stores of one backend on one place: a file per repository, or a database."""

    def __init__(self, backend: str, tmp_path: Path, url: str | None) -> None:
        self.backend = backend
        self._tmp_path = tmp_path
        self._url = url
        self._opened: list[AnyState] = []

    def open(self, repo: str = REPO, *, lock: bool = True) -> AnyState:
        store: AnyState
        if self._url is None:
            store = State(self.place(repo), lock=lock)
        else:
            store = PgState(self._url, repo, lock=lock)
        self._opened.append(store)
        return store

    def place(self, repo: str = REPO) -> Path:
        return self._tmp_path / f"{repo.replace('/', '_')}.json"

    def owner_named(self, repo: str = REPO) -> str:
        """What the message of a refused second owner names."""
        return str(self.place(repo)) if self._url is None else f"repository {repo}"

    def close_all(self) -> None:
        for store in self._opened:
            store.close()


@pytest.fixture(params=["json", "postgres"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    """Opens (and reopens) stores of the backend under test; they are closed afterwards."""
    url = request.getfixturevalue("pg_state_url") if request.param == "postgres" else None
    stores = Stores(request.param, tmp_path, url)
    try:
        yield stores
    finally:
        stores.close_all()


def _reopened(stores: Stores, store: AnyState) -> AnyState:
    store.close()
    return stores.open()


# -- items ----------------------------------------------------------------------------------

AT = datetime(2026, 12, 5, 12, 30, 15, 123456, tzinfo=timezone.utc)
SHA = "a" * 40


def _every_kind() -> list[WorkItem]:
    """An item of each kind with every sort of fact set: tuples, nested models, outbox
    entries, times (one in another zone), floats, text that needs escaping."""
    outbox = (
        Write(op="comment", number=4, text='Done: "quotes", \\ back\\slash, é ✓ 😀', id="w1"),
        Write(op="edit_comment", number=4, text="edited", id="w2", tried=True, comment_id=99),
        Write(op="remove_label", number=4, text="claude-ready"),
    )
    issue = WorkItem(
        type=ISSUE, number=4, status=Status.IN_PROGRESS, attempts=2, created_at=AT,
        updated_at=AT, started_at=AT, head_sha=SHA, pr_number=12, cost_usd=0.1 + 0.2,
        turns=7, duration_s=12.5, spent_usd=1.25, runs=2, last_error="line one\nline two",
        errors=1, outbox=outbox,
        facts=IssueFacts(label_events=3, summary="did it", pushed_sha="b" * 40,
                         remote_sha="c" * 40, updating_pull=12, progress_comment=2**40,
                         labelled_at=AT - timedelta(hours=1), title="Add a thing",
                         body="# Heading\n\n- item\n", kept_sha="d" * 40, stopped="max_turns"),
    )  # fmt: skip
    review = WorkItem(
        type=REVIEW, number=12, status=Status.FAILED, finished_at=AT,
        facts=ReviewFacts(
            reviewed=("e" * 40, "f" * 40), baseline=True, retry_at=AT + timedelta(minutes=5),
            last_review="looks fine", requested=True, forced=True, requested_head="f" * 40,
            unposted=KeptReview(body="body", event="COMMENT", commit_id="f" * 40, text="t"),
            runs=(AT, AT.astimezone(timezone(timedelta(hours=2)))), first_head="e" * 40,
            capped_at=AT,
        ),
    )  # fmt: skip
    merge = WorkItem(
        type=MERGE, number=12, status=Status.DONE, finished_at=AT,
        facts=MergeFacts(
            trigger_comment_id=5, requested_by="alice", base_ref="main", requested_head=SHA,
            rerequested_head="b" * 40, merging_head=SHA, tested_base="c" * 40,
            results=(PassedCommand(command="pytest -q", duration_s=3.25),), ci="passed",
            merge_sha="d" * 40, fixes=1, fixed_heads=("e" * 40,), fix_sha="e" * 40,
        ),
    )  # fmt: skip
    thread = Thread(id=31, path="src/app.py", line=10, body="rename this")
    follow_up = WorkItem(
        type=FOLLOW_UP, number=12, status=Status.PENDING,
        facts=FollowUpFacts(
            asks=(Ask(source="comment", id=30, author="bob", where=4, text="/claude fix it"),),
            doing=(Ask(source="review", id=32, author="carol", where=12, text="changes",
                       threads=(thread,)),),
            reviews_seen=(32, 33), reviews_floor=AT, start_sha=SHA, branch="feature/issue-4",
            pushed_sha="b" * 40, summary="fixed", opened_pull=13,
        ),
    )  # fmt: skip
    return [issue, review, merge, follow_up]


@pytest.mark.parametrize("item", _every_kind(), ids=lambda item: item.type.value)
def test_every_kind_of_item_round_trips_with_its_facts(
    store_factory: Stores, item: WorkItem
) -> None:
    store = store_factory.open()
    store.put(item)
    assert store.get(item.type, item.number) == item
    store = _reopened(store_factory, store)
    assert store.get(item.type, item.number) == item
    assert store.items() == [item]
    assert store.get(item.type, item.number + 1) is None


def test_items_filter_by_kind_whatever_the_order_they_were_put_in(store_factory: Stores) -> None:
    items = [WorkItem(type=kind, number=n) for kind in WorkItemType for n in (1, 2, 30)]
    shuffled = items[:]
    random.Random(7).shuffle(shuffled)
    store = store_factory.open()
    for item in shuffled:
        store.put(item)
    for reopen in (False, True):
        current = _reopened(store_factory, store) if reopen else store
        assert sorted(current.items(), key=_order) == sorted(items, key=_order)
        for kind in WorkItemType:
            got = current.items(kind)
            assert sorted(got, key=_order) == [i for i in items if i.type is kind]


def _order(item: WorkItem) -> tuple[str, int]:
    return item.type.value, item.number


def test_the_same_number_of_another_kind_is_another_item(store_factory: Stores) -> None:
    store = store_factory.open()
    for kind in WorkItemType:
        store.put(WorkItem(type=kind, number=7, attempts=len(kind.value)))
    assert store.clear_item(REVIEW, 7) is True
    store = _reopened(store_factory, store)
    assert store.get(REVIEW, 7) is None
    for kind in (ISSUE, MERGE, FOLLOW_UP):
        found = store.get(kind, 7)
        assert found is not None and found.attempts == len(kind.value)


def test_put_replaces_the_item_of_its_kind_and_number(store_factory: Stores) -> None:
    store = store_factory.open()
    first = WorkItem(type=ISSUE, number=1)
    second = first.evolve(status=Status.DONE, attempts=1, finished_at=AT)
    store.put(first)
    store.put(second)
    assert store.items() == [second]
    assert _reopened(store_factory, store).items() == [second]


def test_a_cleared_item_is_gone_for_good(store_factory: Stores) -> None:
    store = store_factory.open()
    store.put(WorkItem(type=ISSUE, number=42, status=Status.DONE, pr_number=7))
    assert store.clear_item(ISSUE, 42) is True
    assert store.clear_item(ISSUE, 42) is False
    assert store.get(ISSUE, 42) is None
    store = _reopened(store_factory, store)
    assert store.get(ISSUE, 42) is None
    assert store.clear_item(ISSUE, 42) is False


# -- meta -----------------------------------------------------------------------------------

META_VALUES: list[Any] = [
    {"cursor": "2026-12-05T12:00:00+00:00", "nested": {"list": [1, 2.5, None, True]}},
    [3, 1, 2],  # order kept
    [],
    {},
    "a string with \"quotes\" and 'é ✓ 😀'",
    "",
    0,
    -17,
    2**53 + 1,
    0.1 + 0.2,
    1e-12,
    True,
    False,
    None,
]


@pytest.mark.parametrize("value", META_VALUES, ids=repr)
def test_meta_keeps_every_json_type(store_factory: Stores, value: Any) -> None:
    store = store_factory.open()
    store.set_meta("key", value)
    assert _same(store.get_meta("key", "default"), value)
    store = _reopened(store_factory, store)
    assert _same(store.get_meta("key", "default"), value)


def _same(got: Any, expected: Any) -> bool:
    """Equal, and of the same type all the way down (True is not 1, 1.0 is not 1)."""
    if type(got) is not type(expected):
        return False
    if isinstance(expected, dict):
        return got.keys() == expected.keys() and all(_same(got[k], v) for k, v in expected.items())
    if isinstance(expected, list):
        return len(got) == len(expected) and all(map(_same, got, expected))
    return bool(got == expected)


def test_missing_meta_is_the_default_and_set_meta_replaces(store_factory: Stores) -> None:
    store = store_factory.open()
    assert store.get_meta("missing") is None
    assert store.get_meta("missing", "dflt") == "dflt"
    store.set_meta("k", 1)
    store.set_meta("k", {"now": "a dict"})
    assert _reopened(store_factory, store).get_meta("k") == {"now": "a dict"}


def test_unserialisable_meta_is_refused_and_nothing_is_stored(store_factory: Stores) -> None:
    store = store_factory.open()
    with pytest.raises(TypeError):
        store.set_meta("bad", object())
    assert store.get_meta("bad", "absent") == "absent"


# -- writes, batches, durability ------------------------------------------------------------


def test_a_write_outside_a_batch_is_durable_when_it_returns(store_factory: Stores) -> None:
    store = store_factory.open()
    store.put(WorkItem(type=MERGE, number=3))
    store.set_meta("generation", 1)
    # A reader (as `status` opens it) sees both while the owner still holds the store.
    with store_factory.open(lock=False) as reader:
        assert [i.number for i in reader.items()] == [3]
        assert reader.get_meta("generation") == 1


def test_a_batch_is_written_at_its_end_and_a_nested_batch_joins_it(store_factory: Stores) -> None:
    store = store_factory.open()
    with store.batch():
        store.put(WorkItem(type=MERGE, number=4))
        with store.batch():
            store.put(WorkItem(type=MERGE, number=5))
            store.set_meta("generation", 2)
        assert store.get(MERGE, 5) is not None  # the store sees its own batch
        with store_factory.open(lock=False) as reader:  # ... nobody else, yet
            assert reader.items() == []
            assert reader.get_meta("generation") is None
    with store_factory.open(lock=False) as reader:
        assert sorted(i.number for i in reader.items()) == [4, 5]
        assert reader.get_meta("generation") == 2


def test_an_exception_in_a_batch_undoes_all_of_it(store_factory: Stores) -> None:
    store = store_factory.open()
    store.put(WorkItem(type=ISSUE, number=1))
    store.set_meta("kept", "before")
    with pytest.raises(KeyError, match="boom"), store.batch():
        store.put(WorkItem(type=ISSUE, number=2))
        store.clear_item(ISSUE, 1)
        with store.batch():  # nested: undone with the outer one
            store.set_meta("kept", "during")
            store.put(WorkItem(type=ISSUE, number=3))
        raise KeyError("boom")
    for reopen in (False, True):
        current = _reopened(store_factory, store) if reopen else store
        assert [i.number for i in current.items()] == [1]
        assert current.get_meta("kept") == "before"


def test_an_exception_in_a_nested_batch_caught_inside_the_outer_one_keeps_it(
    store_factory: Stores,
) -> None:
    """A nested batch is no savepoint: it joins the outer one, which ends normally here."""
    store = store_factory.open()
    with store.batch():
        store.put(WorkItem(type=ISSUE, number=1))
        with pytest.raises(KeyError), store.batch():
            store.put(WorkItem(type=ISSUE, number=2))
            raise KeyError("inner")
        store.put(WorkItem(type=ISSUE, number=3))
    assert sorted(i.number for i in _reopened(store_factory, store).items()) == [1, 2, 3]


def test_the_store_works_after_a_failed_batch(store_factory: Stores) -> None:
    store = store_factory.open()
    with pytest.raises(RuntimeError), store.batch():
        store.put(WorkItem(type=ISSUE, number=1))
        raise RuntimeError("boom")
    store.put(WorkItem(type=ISSUE, number=2))
    with store.batch():
        store.set_meta("after", True)
    store.save()  # a no-op or a write: either way harmless
    store = _reopened(store_factory, store)
    assert store.get(ISSUE, 2) is not None
    assert store.get_meta("after") is True


# -- one owner ------------------------------------------------------------------------------


def test_a_second_owner_is_refused_until_the_first_closes(store_factory: Stores) -> None:
    first = store_factory.open()
    with pytest.raises(StateLockedError) as info:
        store_factory.open()
    message = str(info.value)
    assert store_factory.owner_named() in message
    assert "in use by another orchestrator" in message
    assert f"pid {os.getpid()}" in message
    assert info.value.pid == str(os.getpid())
    assert "\n" not in message
    with store_factory.open(lock=False):  # a reader is no owner
        pass
    first.close()
    with store_factory.open() as second:  # released on close
        second.put(WorkItem(type=ISSUE, number=1))


def test_stores_are_context_managers_that_close(store_factory: Stores) -> None:
    with store_factory.open() as store:
        store.put(WorkItem(type=ISSUE, number=1))
    with store_factory.open() as again:
        assert [i.number for i in again.items()] == [1]


# -- pruning (the rule is state.prunable; the scenario of test_state.py) ---------------------


def test_pruning_forgets_old_finished_items_and_keeps_what_exactly_once_needs(
    store_factory: Stores,
) -> None:
    dropped = [
        _finished(ISSUE, 1, 31),
        _finished(ISSUE, 2, 40, status=Status.FAILED, last_error="Claude failed"),
        _finished(REVIEW, 3, 31, facts=ReviewFacts(reviewed=("a" * 40,))),  # closed since
        _finished(MERGE, 4, 90),
        _finished(ISSUE, 5, 45, pr_number=4),  # its pull request is closed
        _finished(ISSUE, 6, 60, finished_at=None),  # no end time: its last update counts
        _finished(FOLLOW_UP, 7, 31),
    ]
    kept = [
        _finished(ISSUE, 10, 29),  # not old enough
        _finished(ISSUE, 11, 90, status=Status.PENDING),
        _finished(ISSUE, 12, 90, status=Status.IN_PROGRESS),
        _finished(REVIEW, 13, 90),  # its pull request is still open: its heads stay known
        _finished(MERGE, 14, 90, status=Status.FAILED),  # likewise
        _finished(ISSUE, 15, 90, pr_number=13),  # a new ready label updates its open PR
        _finished(ISSUE, 16, 90, outbox=(Write(op="remove_label", number=16, text="ready"),)),
        _finished(FOLLOW_UP, 13, 90),  # on the open pull request
    ]
    store = store_factory.open()
    with store.batch():
        for item in [*dropped, *kept]:
            store.put(item)
    assert store.prune(MONTH, open_pulls={13, 14}, now=NOW) == len(dropped)
    assert store.prune(MONTH, open_pulls={13, 14}, now=NOW) == 0
    expected = sorted(kept, key=_order)
    assert sorted(store.items(), key=_order) == expected
    assert sorted(_reopened(store_factory, store).items(), key=_order) == expected


def test_pruning_an_empty_store_or_a_young_one_forgets_nothing(store_factory: Stores) -> None:
    store = store_factory.open()
    assert store.prune(MONTH, now=NOW) == 0
    store.put(_finished(ISSUE, 1, 1))
    assert store.prune(MONTH, (), now=NOW) == 0
    assert store.prune(timedelta(hours=1), (), now=NOW) == 1


# -- several repositories in one database (PostgreSQL only) -----------------------------------


def test_two_repositories_in_one_database_do_not_see_each_other(pg_state_url: str) -> None:  # noqa: F811
    with PgState(pg_state_url, "acme/widgets") as a, PgState(pg_state_url, "acme/gadgets") as b:
        a.put(WorkItem(type=ISSUE, number=1, attempts=1))
        b.put(WorkItem(type=ISSUE, number=1, attempts=2))
        b.put(_finished(ISSUE, 2, 90))
        a.set_meta("cursor", "a")
        b.set_meta("cursor", "b")
        assert [(i.number, i.attempts) for i in a.items()] == [(1, 1)]
        assert [(i.number, i.attempts) for i in b.items(ISSUE)] == [(1, 2), (2, 0)]
        assert (a.get_meta("cursor"), b.get_meta("cursor")) == ("a", "b")
        assert a.prune(MONTH, now=NOW) == 0  # b's old item is not a's to forget
        assert a.clear_item(ISSUE, 2) is False
        assert b.get(ISSUE, 2) is not None
        with pytest.raises(KeyError), a.batch():  # a's rollback leaves b alone
            a.put(WorkItem(type=ISSUE, number=9))
            raise KeyError("boom")
        assert b.clear_item(ISSUE, 1) is True
        assert a.get(ISSUE, 1) is not None
    with PgState(pg_state_url, "acme/widgets") as a:  # each repository's lock is its own
        assert a.get_meta("cursor") == "a"
