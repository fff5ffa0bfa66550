"""`status` and `clear`: the state file's work items, shown or forgotten from the command line."""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .claude_slots import DAILY_SPEND_META
from .core.budget import day_of, spent_on
from .core.text import cut
from .core.work import Status, WorkItem, WorkItemType, utcnow
from .daemon import LAST_CYCLE_META
from .state import State, StateError, StateLockedError
from .workflows.followup import FOLLOWUPS_SINCE_META

EXIT_OK = 0
EXIT_NOT_FOUND = 1  # `clear`: the named issue or pull request has no work item
EXIT_UNUSABLE = 2  # a wrong request, a state file that cannot be read, or one the daemon holds

KINDS: dict[str, tuple[WorkItemType, ...]] = {
    "issue": (WorkItemType.ISSUE,),
    # A pull request's review, merge and follow-ups
    "pr": (WorkItemType.PR_REVIEW, WorkItemType.MERGE, WorkItemType.FOLLOW_UP),
}
LABELS = {
    WorkItemType.ISSUE: "issue",
    WorkItemType.PR_REVIEW: "review",
    WorkItemType.MERGE: "merge",
    WorkItemType.FOLLOW_UP: "follow-up",
}
STATUS_LABELS = {
    Status.IN_PROGRESS: "running",
    Status.PENDING: "pending",
    Status.FAILED: "failed",
    Status.DONE: "done",
}  # also the order of the counts under the table
HEADERS = ("ITEM", "STATUS", "TRIES", "HEAD", "PR", "COST", "TIME", "LAST ERROR")
RIGHT = frozenset({"TRIES", "COST", "TIME"})  # numbers, aligned on their last digit
GAP = "  "
SHA_LENGTH = 12
MIN_ERROR_COLUMN = 24  # narrower than this, the error goes on a line of its own under the row
DEFAULT_WIDTH = 100  # when the output is not a terminal
MIN_WIDTH = 80


if TYPE_CHECKING:  # psycopg is imported only for a database's state
    from .state_pg import PgState

Opener = Callable[[bool], "State | PgState"]  # a state store, with or without its lock


def show_status(
    state_file: Path,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    store: Opener | None = None,
) -> int:
    """Print the work items as a table; 0, or 2 if the state file cannot be read. `store`
    opens the state when it is not `state_file` (STATE_URL's database).

    Reads without the lock, so it works while the daemon runs: the daemon replaces the file
    in one rename, so what is read is one whole save, never half of one.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    opener: Opener = store or (lambda lock: State(state_file, lock=lock))
    try:
        with opener(False) as state:
            items = state.items()
            last_cycle = _when(state.get_meta(LAST_CYCLE_META))
            ledger = state.get_meta(DAILY_SPEND_META) or {}
    except StateError as exc:  # its message names the file and what to do
        print(exc, file=err)
        return EXIT_UNUSABLE
    if not items:
        if store is not None or state_file.exists():
            print(f"no work items in {state_file}", file=out)
        else:
            print(f"no work items: {state_file} does not exist yet (the daemon creates it)",
                  file=out)  # fmt: skip
        return EXIT_OK
    width = max(MIN_WIDTH, shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns)
    now = datetime.now(timezone.utc)
    today = spent_on(ledger, day_of(now)) if isinstance(ledger, dict) else 0.0
    print(format_status(items, now, width=width, last_cycle=last_cycle, today=today), file=out)
    return EXIT_OK


def clear_items(
    state_file: Path,
    *,
    kind: str | None,
    number: int | None,
    everything: bool,
    out: TextIO | None = None,
    err: TextIO | None = None,
    store: Opener | None = None,
) -> int:
    """Forget work items so the daemon processes them afresh: `kind` "issue" or "pr" with
    `number` (a pull request's review item and merge item both), or `everything`.

    Exit codes: 0 when something was cleared, and for `everything` on a state with no items
    (there was nothing to forget); 1 when the named issue or pull request has no item (likely
    a wrong number: the message says so, and a script can tell); 2 for a wrong request, a state
    file that cannot be read or written, or one the daemon holds: it keeps its items in memory
    and would write them back, so clearing waits until it is stopped.

    What re-processing means, per kind, once the daemon runs again:
    - issue: started afresh (a new attempt count) if it is open with the ready label.
    - review: the pull request's current head is reviewed on the next cycle if it is open and
      not a draft, even a head seen before the daemon's first watch (so `--all` reviews every
      such pull request once); the day's review count (MAX_REVIEWS_PER_DAY) restarts.
    - merge: forgotten. Its `/merge` comment stays handled, so a writer comments it again.
    An item's unsent GitHub writes (its outbox: a comment, a label change) are dropped with it;
    the message counts them.

    `everything` removes every item and keeps all of the state's metadata, which is about the
    repository, not about an item: the comment feed's cursor and its handled and pending
    comment ids (without them old `/merge` and `/review` comments would be acted on again, or
    unsettled ones lost), the review baseline's time (without it the next cycle would take a
    new baseline: open pull requests would be remembered without a review, the opposite of
    re-processing them), the heads' first sightings (which head a `/merge` may land), the
    refusal replies (one per author and hour), and the first-watch and last-cycle times. So
    `--all` is exactly `clear` of each item, in one write.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    problem = _wrong_request(kind, number, everything)
    if problem:
        print(problem, file=err)
        return EXIT_UNUSABLE
    if store is None and not state_file.exists():  # not State(): the lock would create files
        print(f"nothing to clear: {state_file} does not exist", file=out)
        return EXIT_OK if everything else EXIT_NOT_FOUND
    opener: Opener = store or (lambda lock: State(state_file, lock=lock))
    try:
        with opener(True) as state:
            if everything:
                return _clear_all(state, state_file, out)
            assert kind is not None and number is not None  # _wrong_request checked them
            return _clear_one(state, state_file, kind, number, out)
    except StateLockedError as exc:
        print(held_message(state_file, exc) if store is None else exc, file=err)
    except StateError as exc:
        print(exc, file=err)
    return EXIT_UNUSABLE


def held_message(state_file: Path, exc: StateLockedError) -> str:
    """One line for a `clear` refused because a running daemon holds the state file."""
    pid = exc.pid
    if not pid.isdigit():
        return f"the daemon holds {state_file}: stop it (Ctrl-C or SIGTERM), then run clear again"
    return (
        f"the daemon (pid {pid}) holds {state_file}: stop it (Ctrl-C, or kill -TERM {pid}), "
        "then run clear again"
    )


def format_status(
    items: Sequence[WorkItem],
    now: datetime,
    *,
    width: int = DEFAULT_WIDTH,
    last_cycle: datetime | None = None,
    today: float = 0.0,
) -> str:
    """The table of `items` (running first, then by type and number), the counts under it."""
    ordered = sorted(items, key=sort_key)
    rows = [item_row(item, now) for item in ordered]
    fixed = [max(len(HEADERS[i]), *(len(r[i]) for r in rows)) for i in range(len(HEADERS) - 1)]
    room = width - sum(fixed) - len(GAP) * len(fixed)
    inline = room >= MIN_ERROR_COLUMN
    lines = [_line(HEADERS if inline else HEADERS[:-1], fixed, room)]
    for row in rows:
        if inline:
            lines.append(_line(row, fixed, room))
            continue
        lines.append(_line(row[:-1], fixed, room))
        if row[-1] != "-":
            lines.append(cut(f"    error: {row[-1]}", width))
    lines += _pack(summary(ordered, now, last_cycle, today), width)
    return "\n".join(lines)


def sort_key(item: WorkItem) -> tuple[bool, int, int]:
    return item.status is not Status.IN_PROGRESS, list(LABELS).index(item.type), item.number


def item_row(item: WorkItem, now: datetime) -> tuple[str, ...]:
    """One item's cells, in the order of `HEADERS`; "-" where there is nothing to show."""
    return (
        f"{LABELS[item.type]} #{item.number}",
        STATUS_LABELS[item.status],
        str(item.attempts),
        item.head_sha[:SHA_LENGTH] if item.head_sha else "-",
        f"#{item.pr_number}" if item.pr_number is not None else "-",
        _spent(item),
        _time(item, now),
        " ".join(item.last_error.split()) if item.last_error else "-",  # one line
    )


def _spent(item: WorkItem) -> str:
    """What the item's Claude runs cost, all of them (`$0.4200 (3 runs)` after more than one)."""
    if item.runs == 0:  # none counted yet (a state from before the ledger): the last run's
        return f"${item.cost_usd:.4f}" if item.cost_usd is not None else "-"
    return f"${item.spent_usd:.4f}" + (f" ({item.runs} runs)" if item.runs > 1 else "")


def summary(
    items: Sequence[WorkItem], now: datetime, last_cycle: datetime | None, today: float = 0.0
) -> list[str]:
    """What goes under the table: counts per status, cost (all, and today's), unsent writes,
    the last cycle."""
    counts = Counter(item.status for item in items)
    noun = "item" if len(items) == 1 else "items"
    by_status = ", ".join(f"{counts[s]} {label}" for s, label in STATUS_LABELS.items() if counts[s])
    parts = [f"{len(items)} {noun}: {by_status}"]
    cost = sum(item.spent_usd if item.runs else (item.cost_usd or 0.0) for item in items)
    if cost:
        parts.append(f"cost ${cost:.4f}")
    if today:
        parts.append(f"today ${today:.4f}")
    unsent = sum(len(item.outbox) for item in items)
    if unsent:
        parts.append(f"{unsent} unsent GitHub write{'s' if unsent != 1 else ''}")
    if last_cycle is not None:
        parts.append(f"last cycle {format_duration((now - _utc(last_cycle)).total_seconds())} ago")
    return parts


def _pack(parts: Sequence[str], width: int) -> list[str]:
    """`parts` joined by "; " on as few lines as fit in `width`."""
    lines = [parts[0]]
    for part in parts[1:]:
        if len(lines[-1]) + 2 + len(part) <= width:
            lines[-1] += f"; {part}"
        else:
            lines.append(part)
    return lines


def format_duration(seconds: float) -> str:
    """Whole seconds under a minute, minutes under 100, then hours, then days: "42s", "4.2m",
    "37m", "2.1h", "3d" (an interrupted item's time since it started can be long)."""
    value = round(max(0.0, seconds))
    if value < 60:
        return f"{value}s"
    for unit, size, below in (("m", 60, 99.5), ("h", 3600, 47.5)):
        if (scaled := seconds / size) < below:
            return f"{scaled:.1f}{unit}" if scaled < 9.95 else f"{scaled:.0f}{unit}"
    return f"{seconds / 86400:.0f}d"


def _time(item: WorkItem, now: datetime) -> str:
    """A running item's time so far (marked +), else its last Claude run's, else its attempt's."""
    if item.status is Status.IN_PROGRESS and item.started_at is not None:
        return format_duration((now - _utc(item.started_at)).total_seconds()) + "+"
    if item.duration_s is not None:
        return format_duration(item.duration_s)
    if item.started_at is not None and item.finished_at is not None:
        return format_duration((_utc(item.finished_at) - _utc(item.started_at)).total_seconds())
    return "-"


def _line(cells: Sequence[str], fixed: Sequence[int], room: int) -> str:
    """The padded cells, and the error (if `cells` has it) cut to `room`."""
    n = len(fixed)
    padded = [
        cell.rjust(size) if header in RIGHT else cell.ljust(size)
        for cell, size, header in zip(cells[:n], fixed, HEADERS[:n], strict=True)
    ]
    padded += [cut(cell, room) for cell in cells[n:]]
    return GAP.join(padded).rstrip()


def _clear_one(
    state: State | PgState, state_file: Path, kind: str, number: int, out: TextIO
) -> int:
    found = [item for t in KINDS[kind] if (item := state.get(t, number)) is not None]
    if not found:
        what = "issue" if kind == "issue" else "pull request"
        print(f"{what} #{number} has no work item in {state_file}; nothing to clear", file=out)
        return EXIT_NOT_FOUND
    with state.batch():
        for item in found:
            state.clear_item(item.type, item.number)
        _restart_followups(state, found)
    for item in found:
        print(f"cleared {_described(item)}; {_next(item.type)}{_dropped(item.outbox)}", file=out)
    return EXIT_OK


def _restart_followups(state: State | PgState, cleared: list[WorkItem]) -> None:
    """A cleared follow-up item forgets which reviews it saw: the reviews written before now
    are then old, never asks again."""
    if any(item.type is WorkItemType.FOLLOW_UP for item in cleared):
        state.set_meta(FOLLOWUPS_SINCE_META, utcnow().isoformat())


def _clear_all(state: State | PgState, state_file: Path, out: TextIO) -> int:
    items = state.items()
    if not items:
        print(f"no work items in {state_file}; nothing to clear", file=out)
        return EXIT_OK
    with state.batch():
        for item in items:
            state.clear_item(item.type, item.number)
        _restart_followups(state, items)
    kinds = Counter(LABELS[item.type] for item in items)
    each = ", ".join(f"{kinds[label]} {label}" for label in LABELS.values() if kinds[label])
    noun = "item" if len(items) == 1 else "items"
    print(
        f"cleared {len(items)} work {noun} ({each}) from {state_file}; kept the comment "
        f"cursor, the review baseline and the other repository-wide records"
        f"{_dropped([w for item in items for w in item.outbox])}",
        file=out,
    )
    return EXIT_OK


def _wrong_request(kind: str | None, number: int | None, everything: bool) -> str | None:
    if everything:
        if kind is not None or number is not None:
            return "clear: give either `issue N`, `pr N` or --all, not both"
        return None
    if kind not in KINDS:
        return f"clear: say what to clear: issue N, pr N or --all (not {kind!r})"
    if number is None or number < 1:
        return f"clear: {kind} needs a number, 1 or more (not {number})"
    return None


def _described(item: WorkItem) -> str:
    tries = f"{item.attempts} attempt{'s' if item.attempts != 1 else ''}"
    return f"{LABELS[item.type]} #{item.number} ({STATUS_LABELS[item.status]}, {tries})"


def _next(kind: WorkItemType) -> str:
    match kind:
        case WorkItemType.ISSUE:
            return "it starts afresh if it is open with the ready label"
        case WorkItemType.PR_REVIEW:
            return "its current head is reviewed on the next cycle, if open and not a draft"
        case WorkItemType.MERGE:
            return "a writer's new merge command (/merge) starts it again"
        case WorkItemType.FOLLOW_UP:
            return "a writer's new follow-up (/claude) or review starts it again"


def _dropped(outbox: Sequence[object]) -> str:
    if not outbox:
        return ""
    return f" ({len(outbox)} unsent GitHub write{'s' if len(outbox) != 1 else ''} dropped)"


def _when(value: object) -> datetime | None:
    """A time kept in the meta; None if absent or unreadable (a hand-edited state)."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _utc(when: datetime) -> datetime:
    """Aware times as they are; a naive one (a hand-edited state) is taken as UTC."""
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)
