"""Open pull requests and ready issues between polls, kept current by GitHub's change feed.

An idle cycle then asks GitHub one question, "what changed since the cursor?", which is
answered 304 when nothing did, instead of listing every open pull request. The view is kept
in a file beside the state, so the first cycle after a restart asks that same question.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from .core.errors import NotFound
from .core.models import Issue, PullRequest

log = logging.getLogger(__name__)

VERSION = 1
# The first cursor lies this far before GitHub's clock at the first listing: what changes
# while the lists are read is listed again, not missed.
SEED_MARGIN = timedelta(minutes=1)
# GitHub's times have whole seconds and `since` may mean "after": the cursor steps back one.
OVERLAP = timedelta(seconds=1)


@dataclass(frozen=True)
class Changes:
    """Issues and pull requests updated since a time, oldest first, and when GitHub said so."""

    items: list[Issue]
    answered_at: datetime | None


class Source(Protocol):
    """What the view reads GitHub through (`GitHubClient`'s direct calls)."""

    async def server_time(self) -> datetime: ...
    async def list_changed(self, since: datetime) -> Changes: ...
    async def get_pull(self, number: int) -> PullRequest: ...
    async def open_pulls_now(self) -> list[PullRequest]: ...
    async def open_issues_now(self, label: str) -> list[Issue]: ...


@dataclass
class Listings:
    label: str
    cursor: datetime
    pulls: dict[int, PullRequest] = field(default_factory=dict)
    issues: dict[int, Issue] = field(default_factory=dict)  # open, labelled, not pull requests
    # What was applied per number (its `updated_at` and a fingerprint of the entry), for the
    # numbers the cursor can still list again: two changes in one second share `updated_at`.
    applied: dict[int, tuple[datetime, str]] = field(default_factory=dict)
    # Pull requests read in the second of their last update: a push later in that second
    # would not move `updated_at`, so they are read again while the feed lists them.
    recheck: set[int] = field(default_factory=set)


class ListingView:
    """The open pull requests and the open issues labelled `label`, as of the last `refresh`.
    `path` None keeps it in memory only (a dry run writes no file)."""

    def __init__(self, path: Path | None, label: str) -> None:
        self.path = path
        self.label = label
        self._listings: Listings | None = None
        self._loaded = False

    @property
    def seeded(self) -> bool:
        return self._load() is not None

    def pulls(self) -> list[PullRequest]:
        listings = self._require()
        return [listings.pulls[n] for n in sorted(listings.pulls)]

    def issues(self) -> list[Issue]:
        listings = self._require()
        return [listings.issues[n] for n in sorted(listings.issues)]

    async def refresh(self, source: Source) -> None:
        """Apply what changed since the cursor; the first time, list what is open."""
        listings = self._load()
        if listings is None:
            await self._seed(source)
            return
        changes = (await source.list_changed(listings.cursor)).items
        changed = False
        for item in changes:  # oldest first: the cursor may stop at a failure
            mark = (item.updated_at, fingerprint(item))
            if listings.applied.get(item.number) == mark and item.number not in listings.recheck:
                continue  # listed again only because of the overlap
            await self._apply(listings, item, source)
            listings.applied[item.number] = mark
            changed = True
        if changes:
            newest = max(c.updated_at for c in changes) - OVERLAP
            if newest > listings.cursor:
                listings.cursor = newest
                changed = True
        listings.applied = {
            n: mark for n, mark in listings.applied.items() if mark[0] >= listings.cursor
        }
        listings.recheck &= set(listings.applied)
        if changed:
            self._store(listings)

    async def _seed(self, source: Source) -> None:
        start = await source.server_time()
        pulls = await source.open_pulls_now()
        issues = [i for i in await source.open_issues_now(self.label) if not i.is_pull_request]
        listings = Listings(
            self.label,
            start - SEED_MARGIN,
            {p.number: p for p in pulls},
            {i.number: i for i in issues},
        )
        log.info("listed %d open pull request(s) and %d %r issue(s); from now on only changes",
                 len(pulls), len(issues), self.label)  # fmt: skip
        self._store(listings)

    async def _apply(self, listings: Listings, item: Issue, source: Source) -> None:
        number = item.number
        listings.recheck.discard(number)
        if item.is_pull_request:
            listings.issues.pop(number, None)
            pull = None
            if item.state == "open":
                with contextlib.suppress(NotFound):  # deleted, or not yet visible
                    pull = await source.get_pull(number)
            if pull is not None and pull.state == "open":
                listings.pulls[number] = pull
                if pull.seen_at is None or pull.seen_at <= item.updated_at + OVERLAP:
                    listings.recheck.add(number)
            else:
                listings.pulls.pop(number, None)
        elif item.state == "open" and self.label in item.labels:
            listings.issues[number] = item
        else:
            listings.issues.pop(number, None)

    def _require(self) -> Listings:
        listings = self._load()
        if listings is None:
            raise RuntimeError("the listings are read before their first refresh")
        return listings

    def _load(self) -> Listings | None:
        if self._loaded:
            return self._listings
        self._loaded = True
        if self.path is None or not self.path.exists():
            return None
        try:
            listings = decode(json.loads(self.path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s is unreadable (%s); listing what is open again", self.path, exc)
            return None
        if listings.label != self.label:  # READY_LABEL changed: the issues kept are others
            return None
        self._listings = listings
        return listings

    def _store(self, listings: Listings) -> None:
        self._listings, self._loaded = listings, True
        if self.path is None:
            return
        data = json.dumps(encode(listings), separators=(",", ":")).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "wb") as out:  # mkstemp's file is 0600
                out.write(data)
            os.replace(tmp, self.path)
        except OSError as exc:  # next time the lists are read again: slower, never wrong
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            log.warning("could not keep the listings in %s: %s", self.path, exc)


def listings_file(state_file: Path) -> Path:
    return state_file.with_name(f"{state_file.stem}.listings.json")


# -- the file's shape ------------------------------------------------------------------------


def encode(listings: Listings) -> dict[str, Any]:
    return {
        "version": VERSION,
        "label": listings.label,
        "cursor": listings.cursor.isoformat(),
        "pulls": [_plain(p) for p in listings.pulls.values()],
        "issues": [_plain(i) for i in listings.issues.values()],
        "applied": {str(n): [t.isoformat(), mark] for n, (t, mark) in listings.applied.items()},
        "recheck": sorted(listings.recheck),
    }


def decode(data: dict[str, Any]) -> Listings:
    if data.get("version") != VERSION:
        raise ValueError(f"version {data.get('version')!r}, not {VERSION}")
    pulls = [_model(PullRequest, p) for p in data["pulls"]]
    issues = [_model(Issue, i) for i in data["issues"]]
    return Listings(
        label=str(data["label"]),
        cursor=datetime.fromisoformat(data["cursor"]),
        pulls={p.number: p for p in pulls},
        issues={i.number: i for i in issues},
        applied={
            int(n): (datetime.fromisoformat(t), str(mark))
            for n, (t, mark) in data["applied"].items()
        },
        recheck={int(n) for n in data["recheck"]},
    )


def fingerprint(item: Issue) -> str:
    """What the feed showed of an item, in 16 hex digits."""
    shown = json.dumps(_plain(item), sort_keys=True, default=str)
    return hashlib.sha256(shown.encode()).hexdigest()[:16]


def _plain(model: PullRequest | Issue) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(model):
        value = getattr(model, f.name)
        out[f.name] = value.isoformat() if isinstance(value, datetime) else value
    return out


_TIMES = {"created_at", "updated_at", "seen_at"}


def _model(cls: type[Any], data: dict[str, Any]) -> Any:
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.default is dataclasses.MISSING:
                raise KeyError(f.name)
            continue
        value = data[f.name]
        if f.name in _TIMES and value is not None:
            value = datetime.fromisoformat(value)
        elif f.name == "labels":
            value = tuple(value)
        values[f.name] = value
    return cls(**values)
