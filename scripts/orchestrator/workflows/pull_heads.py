"""When the daemon first saw each open pull request's head, on GitHub's clock: what a `/merge`
written later may act on (`triggers.pinned_head`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from ..core.triggers import Sighting
from ..ports import GitHub, StateStore

log = logging.getLogger(__name__)

SIGHTINGS_META = "head_sightings"  # {"<number>": {"sha": ..., "at": ISO time}}, open PRs only


@dataclass
class PullHeads:
    """Lists the open pull requests once per cycle (before the comments are read) and keeps,
    for each, its head and the time of the first answer that showed it. Kept in the state, so
    a restart still knows what was seen before it."""

    github: GitHub
    state: StateStore

    async def refresh(self) -> None:
        known = self._load()
        seen: dict[int, Sighting] = {}
        for pull in await self.github.list_open_pulls():
            before = known.get(pull.number)
            if before is not None and before.sha == pull.head_sha:
                seen[pull.number] = before  # the first sighting is the one that counts
            elif pull.seen_at is not None:
                seen[pull.number] = Sighting(pull.head_sha, pull.seen_at)
        if seen != known:
            self.state.set_meta(
                SIGHTINGS_META,
                {str(n): {"sha": s.sha, "at": s.at.isoformat()} for n, s in seen.items()},
            )

    def sighting(self, number: int) -> Sighting | None:
        return self._load().get(number)

    def _load(self) -> dict[int, Sighting]:
        raw = self.state.get_meta(SIGHTINGS_META) or {}
        loaded = {}
        for number, entry in raw.items():
            try:
                loaded[int(number)] = Sighting(entry["sha"], datetime.fromisoformat(entry["at"]))
            except (KeyError, TypeError, ValueError):  # a hand-edited state: seen again later
                log.warning("ignoring an unreadable head sighting for #%s", number)
        return loaded
