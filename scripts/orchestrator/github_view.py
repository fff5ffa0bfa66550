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

from .core.errors import GitHubError, NotFound
from .core.models import Issue, PullRequest

log = logging.getLogger(__name__)

VERSION = 1
# The first cursor lies this far before GitHub's clock at the first listing: what changes
# while the lists are read is listed again, not missed.
SEED_MARGIN = timedelta(minutes=1)
# GitHub's times have whole seconds, `since` may mean "after", and a change may show in the
# list a moment after its `updated_at`: the cursor stays this far behind the newest change.
# What it lists again is told apart by fingerprint, and an idle read is still answered 304.
OVERLAP = timedelta(minutes=2)
# A pull request read within this of its update may change again without moving `updated_at`.
SAME_SECOND = timedelta(seconds=1)
# Once a day the view is listed whole again: what the feed cannot show (a deleted or
# transferred issue, a renamed label) does not linger longer.
RELIST_EVERY = timedelta(days=1)


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
    scope: str  # the repository (API root and owner/name) and READY_LABEL it lists
    cursor: datetime
    seeded_at: datetime  # GitHub's clock at the last whole listing
    pulls: dict[int, PullRequest] = field(default_factory=dict)
    issues: dict[int, Issue] = field(default_factory=dict)  # open, labelled, not pull requests
    # What was applied per number (its `updated_at` and a fingerprint of the entry), for the
    # numbers the cursor can still list again: two changes in one second share `updated_at`.
    applied: dict[int, tuple[datetime, str]] = field(default_factory=dict)
    # Pull requests read in the second of their last update: a push later in that second
    # would not move `updated_at`, so they are read again while the feed lists them.
    recheck: set[int] = field(default_factory=set)
    # Pull requests whose read failed: read again at every refresh until it works.
    retry: set[int] = field(default_factory=set)


class ListingView:
    """The open pull requests and the open issues labelled `label` of `repo` (its API root
    and owner/name), as of the last `refresh`. `path` None keeps it in memory only (a dry run
    writes no file). Pull requests are kept without their description: read the pull request
    itself for it."""

    def __init__(self, path: Path | None, label: str, repo: str = "") -> None:
        self.path = path
        self.label = label
        self.scope = f"{repo} {label}"
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
        answer = await source.list_changed(listings.cursor)
        if (
            answer.answered_at is not None
            and answer.answered_at - listings.seeded_at > RELIST_EVERY
        ):
            await self._seed(source)
            return
        changes = answer.items
        changed = await self._retry(listings, source)
        for item in changes:  # oldest first
            mark = (item.updated_at, fingerprint(item))
            if listings.applied.get(item.number) == mark and item.number not in listings.recheck:
                continue  # listed again only because of the overlap
            try:
                await self._apply(listings, item, source)
            except GitHubError as exc:  # one item must not hold up the others
                log.warning("pull request #%d not read (%s); read again next cycle",
                            item.number, exc)  # fmt: skip
                listings.retry.add(item.number)
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

    async def _retry(self, listings: Listings, source: Source) -> bool:
        """Read again the pull requests whose read failed; True if any was."""
        done = False
        for number in sorted(listings.retry):
            try:
                pull = await source.get_pull(number)
            except NotFound:
                pull = None
            except GitHubError:
                continue
            listings.retry.discard(number)
            if pull is not None and pull.state == "open":
                listings.pulls[number] = _lean(pull)
            else:
                listings.pulls.pop(number, None)
            done = True
        return done

    async def _seed(self, source: Source) -> None:
        start = await source.server_time()
        pulls = await source.open_pulls_now()
        issues = [i for i in await source.open_issues_now(self.label) if not i.is_pull_request]
        listings = Listings(
            self.scope,
            start - SEED_MARGIN,
            start,
            {p.number: _lean(p) for p in pulls},
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
            listings.retry.discard(number)
            if item.state == "open":
                with contextlib.suppress(NotFound):  # deleted, or not yet visible
                    pull = await source.get_pull(number)
            if pull is not None and pull.state == "open":
                listings.pulls[number] = _lean(pull)
                if pull.seen_at is None or pull.seen_at <= item.updated_at + SAME_SECOND:
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
        # Any damage (JSON of another shape, a naive time...): the view is a cache, listed again.
        except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            log.warning("%s is unreadable (%s); listing what is open again", self.path, exc)
            return None
        if listings.scope != self.scope:  # another repository, or READY_LABEL changed
            log.info("%s lists %s, not %s; listing what is open again",
                     self.path.name, listings.scope, self.scope)  # fmt: skip
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
    return state_file.with_name(f"{state_file.name}.listings.json")


def _lean(pull: PullRequest) -> PullRequest:
    """A pull request as the view keeps it: without its description (anyone may write a
    long one; whoever needs it reads the pull request itself)."""
    return dataclasses.replace(pull, body="")


# -- the file's shape ------------------------------------------------------------------------


def encode(listings: Listings) -> dict[str, Any]:
    return {
        "version": VERSION,
        "scope": listings.scope,
        "cursor": listings.cursor.isoformat(),
        "seeded_at": listings.seeded_at.isoformat(),
        "pulls": [_plain(p) for p in listings.pulls.values()],
        "issues": [_plain(i) for i in listings.issues.values()],
        "applied": {str(n): [t.isoformat(), mark] for n, (t, mark) in listings.applied.items()},
        "recheck": sorted(listings.recheck),
        "retry": sorted(listings.retry),
    }


def decode(data: dict[str, Any]) -> Listings:
    if data.get("version") != VERSION:
        raise ValueError(f"version {data.get('version')!r}, not {VERSION}")
    pulls = [_model(PullRequest, p) for p in data["pulls"]]
    issues = [_model(Issue, i) for i in data["issues"]]
    return Listings(
        scope=str(data["scope"]),
        cursor=_aware(data["cursor"]),
        seeded_at=_aware(data["seeded_at"]),
        pulls={p.number: p for p in pulls},
        issues={i.number: i for i in issues},
        applied={
            int(n): (datetime.fromisoformat(t), str(mark))
            for n, (t, mark) in data["applied"].items()
        },
        recheck={int(n) for n in data["recheck"]},
        retry={int(n) for n in data["retry"]},
    )


def _aware(text: str) -> datetime:
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return when


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
