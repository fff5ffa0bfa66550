"""State persistence: durable work items in a locked JSON file, written atomically."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

STATE_VERSION = 1


class WorkItemType(str, Enum):
    """What a work item is about."""

    ISSUE = "issue"  # an issue to implement
    PR_REVIEW = "pr_review"  # a pull request to review
    MERGE = "merge"  # a pull request to test and merge


class Status(str, Enum):
    """Where a work item stands."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    FAILED = "failed"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class WorkItem(BaseModel):
    """One unit of work and what came of it; immutable, replaced through `State.put`."""

    model_config = ConfigDict(frozen=True)

    type: WorkItemType
    number: int
    status: Status = Status.PENDING
    attempts: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    head_sha: str | None = None
    pr_number: int | None = None
    cost_usd: float | None = None
    turns: int | None = None
    duration_s: float | None = None
    last_error: str | None = None
    # Workflow-specific facts (e.g. the trigger comment a merge answers); JSON values only.
    data: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        return item_key(self.type, self.number)

    def evolve(self, **changes: Any) -> WorkItem:
        """A copy with `changes` applied and `updated_at` refreshed."""
        changes.setdefault("updated_at", utcnow())
        return self.model_copy(update=changes)


def item_key(kind: WorkItemType, number: int) -> str:
    return f"{kind.value}:{number}"


class StateFile(BaseModel):
    """The on-disk document."""

    version: int = STATE_VERSION
    meta: dict[str, Any] = Field(default_factory=dict)
    items: list[WorkItem] = Field(default_factory=list)


_FILE = TypeAdapter(StateFile)


class StateError(Exception):
    """The state file cannot be used; the message says which file and what to do."""


class StateLockedError(StateError):
    """Another orchestrator holds the state file."""


class StateStore(Protocol):
    """What the daemon needs from a state backend (a JSON file today, a database later)."""

    def get(self, kind: WorkItemType, number: int) -> WorkItem | None: ...

    def put(self, item: WorkItem) -> None: ...

    def items(self, kind: WorkItemType | None = None) -> list[WorkItem]: ...

    def clear_item(self, kind: WorkItemType, number: int) -> bool: ...

    def get_meta(self, key: str, default: Any = None) -> Any: ...

    def set_meta(self, key: str, value: Any) -> None: ...

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Group changes into one atomic write."""
        ...

    def save(self) -> None: ...

    def close(self) -> None: ...


class State:
    """A JSON-file `StateStore`: one owner at a time (a lock), every change saved atomically."""

    def __init__(self, path: Path, *, lock: bool = True) -> None:
        self.path = Path(path)
        self._mutex = threading.RLock()
        self._lock_fd: int | None = None
        self._batch_depth = 0
        self._dirty = False
        if lock:
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
        """Group several changes into one write."""
        with self._mutex:
            self._batch_depth += 1
            try:
                yield
            finally:
                self._batch_depth -= 1
                if self._batch_depth == 0 and self._dirty:
                    self.save()

    def save(self) -> None:
        """Write the state atomically: temp file, fsync, rename, fsync the directory."""
        with self._mutex:
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
                "stop it first, or set STATE_FILE to a different file"
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
            doc = _FILE.validate_json(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "document"
            raise StateError(
                f"state file {self.path} is corrupted ({where}: {first['msg']}); {recover}"
            ) from None
        if doc.version != STATE_VERSION:
            raise StateError(
                f"state file {self.path} has version {doc.version}, this orchestrator reads "
                f"version {STATE_VERSION}; {recover}"
            )
        return doc


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
