"""State persistence: durable work items in a locked JSON file, written atomically."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from .core.errors import GitHubError
from .core.work import Status, WorkItem, WorkItemType, item_key, utcnow
from .ports import GitHub, StateStore
from .state_migrations import migrate

log = logging.getLogger(__name__)

STATE_VERSION = 2  # 1: free `data` keys per item; 2: typed facts (core/work.py)
PRUNE_EVERY = 86_400.0  # seconds between two prunings of a running daemon's state

__all__ = [
    "STATE_VERSION",
    "State",
    "StateError",
    "StateLockedError",
    "StateStore",
    "Status",
    "WorkItem",
    "WorkItemType",
    "daily_pruning",
    "item_key",
    "prunable",
    "utcnow",
]


class StateFile(BaseModel):
    """The on-disk document."""

    version: int = STATE_VERSION
    meta: dict[str, Any] = Field(default_factory=dict)
    items: list[WorkItem] = Field(default_factory=list)


_FILE = TypeAdapter(StateFile)


class StateError(Exception):
    """The state file cannot be used; the message says which file and what to do."""


class StateLockedError(StateError):
    """Another orchestrator holds the state file; `pid` is its process id as it wrote it."""

    def __init__(self, message: str, pid: str) -> None:
        super().__init__(message)
        self.pid = pid


class State:
    """A JSON-file `StateStore`: one owner at a time (a lock), every change saved atomically."""

    def __init__(self, path: Path, *, lock: bool = True, persist: bool = True) -> None:
        """Load `path` (a missing file is an empty state). `lock`: be its one owner. Without
        `persist`, changes stay in memory: a dry run works on a copy (no lock is taken)."""
        self.path = Path(path)
        self._mutex = threading.RLock()
        self._lock_fd: int | None = None
        self._batch_depth = 0
        self._dirty = False
        self._persist = persist
        if lock and persist:
            self._acquire_lock()
        try:
            doc = self._load()
        except BaseException:
            self.close()
            raise
        self._meta: dict[str, Any] = doc.meta
        self._items: dict[str, WorkItem] = {i.key: i for i in doc.items}

    # -- the spec's API -------------------------------------------------------------------

    def clear_item(self, kind: WorkItemType, number: int) -> bool:
        """Forget an item so it can be processed again; True if it was there."""
        with self._mutex:
            removed = self._items.pop(item_key(kind, number), None) is not None
            if removed:
                self._changed()
            return removed

    def prune(
        self,
        older_than: timedelta,
        open_pulls: Collection[int] = (),
        *,
        now: datetime | None = None,
    ) -> int:
        """Forget the finished items that ended more than `older_than` ago and that exactly-once
        needs no more (`prunable`); `open_pulls` are the pull requests open now. Returns how
        many went."""
        before = (now or utcnow()) - older_than
        with self._mutex:
            gone = [i.key for i in self._items.values() if prunable(i, before, open_pulls)]
            for key in gone:
                del self._items[key]
            if gone:
                self._changed()
        if gone:
            log.info("state: forgot %d item(s) finished more than %g days ago", len(gone),
                     older_than.total_seconds() / 86_400)  # fmt: skip
        return len(gone)

    # -- StateStore -----------------------------------------------------------------------

    def get(self, kind: WorkItemType, number: int) -> WorkItem | None:
        with self._mutex:
            return self._items.get(item_key(kind, number))

    def put(self, item: WorkItem) -> None:
        with self._mutex:
            self._items[item.key] = item
            self._changed()

    def items(self, kind: WorkItemType | None = None) -> list[WorkItem]:
        with self._mutex:
            return [i for i in self._items.values() if kind is None or i.type is kind]

    def meta_items(self) -> dict[str, Any]:
        """Every repository-wide record (for `migrate-state`)."""
        with self._mutex:
            return dict(self._meta)

    def get_meta(self, key: str, default: Any = None) -> Any:
        with self._mutex:
            return self._meta.get(key, default)

    def set_meta(self, key: str, value: Any) -> None:
        json.dumps(value)  # fail here, not at the next save, if it cannot be stored
        with self._mutex:
            self._meta[key] = value
            self._changed()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Group several changes into one write; an exception inside undoes them all (nested
        batches join the outermost one), as a database transaction would."""
        with self._mutex:
            outermost = self._batch_depth == 0
            # Items are immutable and meta values are replaced, never changed in place, so
            # shallow copies are what the batch started from.
            before = (dict(self._items), dict(self._meta), self._dirty) if outermost else None
            self._batch_depth += 1
            try:
                yield
            except BaseException:
                if before is not None:
                    self._items, self._meta, self._dirty = (
                        dict(before[0]),
                        dict(before[1]),
                        before[2],
                    )
                raise
            finally:
                self._batch_depth -= 1
                if self._batch_depth == 0 and self._dirty:
                    self.save()

    def save(self) -> None:
        """Write the state atomically: temp file, fsync, rename, fsync the directory."""
        with self._mutex:
            if not self._persist:
                self._dirty = False
                return
            doc = StateFile.model_construct(
                version=STATE_VERSION, meta=self._meta, items=list(self._items.values())
            )
            data = _FILE.dump_json(doc)
            directory = self.path.parent
            tmp = directory / f".{self.path.name}.{os.getpid()}.tmp"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    os.write(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, self.path)
                _fsync_dir(directory)
            except OSError as exc:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                raise StateError(f"cannot write state file {self.path}: {exc.strerror}") from exc
            self._dirty = False

    def close(self) -> None:
        """Release the lock; the state is already on disk."""
        with self._mutex:
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # closing the descriptor drops the flock
                self._lock_fd = None

    def __enter__(self) -> State:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------

    def _changed(self) -> None:
        self._dirty = True
        if self._batch_depth == 0:
            self.save()

    def _acquire_lock(self) -> None:
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateError(
                f"cannot use state file {self.path}: {exc.strerror} ({exc.filename}); "
                "set STATE_FILE to a path in a writable directory"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StateLockedError(
                f"state file {self.path} is in use by another orchestrator (pid {holder}); "
                "stop it first, or set STATE_FILE to a different file",
                holder,
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd
        # Temp files of a writer killed mid-save are debris: the rename never happened.
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            stale.unlink(missing_ok=True)

    def _load(self) -> StateFile:
        recover = f"delete it to start afresh (rm {self.path})"
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return StateFile()
        except OSError as exc:
            raise StateError(f"cannot read state file {self.path}: {exc.strerror}") from None
        try:
            document = json.loads(raw)
        except ValueError as exc:
            raise StateError(
                f"state file {self.path} is corrupted (not JSON: {exc}); {recover}"
            ) from None
        if not isinstance(document, dict):
            raise StateError(f"state file {self.path} is corrupted (not an object); {recover}")
        # Version 1 was the first; its files always said so, but one edited by hand may not.
        version = document.get("version", 1)
        if not isinstance(version, int) or isinstance(version, bool):
            raise StateError(
                f"state file {self.path} is corrupted (version: expected a number); {recover}"
            )
        if version > STATE_VERSION:
            raise StateError(
                f"state file {self.path} has version {version}, written by a newer "
                f"orchestrator; this one reads versions up to {STATE_VERSION}: upgrade, or "
                f"{recover}"
            )
        if version < STATE_VERSION:
            try:
                document = migrate(document, STATE_VERSION)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise StateError(
                    f"state file {self.path} is corrupted (version {version} cannot be "
                    f"migrated: {exc!r}); {recover}"
                ) from None
        try:
            doc = _FILE.validate_python(document)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "document"
            raise StateError(
                f"state file {self.path} is corrupted ({where}: {first['msg']}); {recover}"
            ) from None
        if version < STATE_VERSION and self._lock_fd is not None:
            # Only the owner writes the new format; a reader (`status`) writes nothing.
            self._keep_copy(raw, version)
        return doc

    def _keep_copy(self, raw: bytes, version: int) -> None:
        """Before the first write in the new format, the old file is kept next to it."""
        copy = self.path.with_name(f"{self.path.name}.v{version}.bak")
        if copy.exists():
            return
        try:
            fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, raw)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StateError(
                f"cannot keep a copy of state file {self.path} before upgrading it "
                f"({copy}: {exc.strerror}); make its directory writable"
            ) from None


def prunable(item: WorkItem, before: datetime, open_pulls: Collection[int]) -> bool:
    """Whether the state may forget `item`: it ended (done or failed) before `before`, and
    exactly-once needs it no more. Never an item pending or in progress, nor one that still
    owes GitHub a write (its outbox), nor one tied to an open pull request: its reviews (the
    heads reviewed), its merge, or the issue that made it (a new ready label updates it)."""
    match item.status:
        case Status.PENDING | Status.IN_PROGRESS:
            return False
        case Status.DONE | Status.FAILED:
            pass
    if item.outbox:
        return False
    pull = item.pr_number if item.type is WorkItemType.ISSUE else item.number
    if pull in open_pulls:
        return False
    ended = item.finished_at or item.updated_at
    if ended.tzinfo is None:  # a hand-edited state: UTC, as the daemon writes it
        ended = ended.replace(tzinfo=timezone.utc)
    return ended < before


@runtime_checkable
class Prunable(Protocol):
    """A state store that can forget finished items (`State`, `PgState`)."""

    def prune(
        self,
        older_than: timedelta,
        open_pulls: Collection[int] = (),
        *,
        now: datetime | None = None,
    ) -> int: ...


def daily_pruning(
    state: Prunable,
    github: GitHub,
    older_than: timedelta,
    *,
    every: float = PRUNE_EVERY,
    monotonic: Callable[[], float] = time.monotonic,
) -> Callable[[], Awaitable[None]]:
    """A hook for after each cycle: prune `state` the first time, then at most once per
    `every` seconds, keeping the items of the pull requests open then."""
    last: float | None = None

    async def prune() -> None:
        nonlocal last
        if last is not None and monotonic() - last < every:
            return
        try:
            open_pulls = {pull.number for pull in await github.list_open_pulls()}
        except GitHubError as exc:  # tried again after the next cycle
            log.warning("state not pruned: cannot list the open pull requests: %s", exc)
            return
        last = monotonic()
        state.prune(older_than, open_pulls)

    return prune


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
