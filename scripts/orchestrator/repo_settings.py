"""A repository's settings as its default branch says: the daemon's, with the overrides of its
`.github/claude-orchestrator.toml`, read again whenever the branch moves."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from .config import Settings
from .core.errors import GitHubError, MalformedAnswer, RateLimited
from .core.repo_config import REPO_CONFIG_PATH, RepoConfig, RepoConfigError, parse_repo_config
from .ports import StateStore

log = logging.getLogger(__name__)

# The file's text (a hash) whose refusal was told on GitHub: told once, not every cycle.
REFUSED_META = "repo_config_refused"
# The default branch's commit last read and the file's text there: a restart on an unchanged
# branch reads nothing (a missing file's 404 is charged to the rate limit, and not cached).
READ_META = "repo_config_read"
UNREADABLE = "\x00unreadable: "  # no TOML text starts so: what stands for a path with no text


class RepoFiles(Protocol):
    """What is read of GitHub for the file (the GitHub client)."""

    async def default_branch(self) -> str: ...

    async def branch_sha(self, branch: str) -> str: ...

    async def file_text(self, path: str, ref: str) -> str | None: ...

    async def comment_on_commit(self, sha: str, body: str) -> None: ...


class RepoSettings:
    """Reads the file at the default branch's head once per cycle, when the head moved (an
    unchanged branch is one conditional request, answered 304), and hands the repository's
    settings to `apply`: None while they are not known (not read yet) or the file is wrong,
    which stops the repository's work: a pre-merge command or a label left out by a typo must
    not be replaced by the daemon's defaults. A wrong file is told once, as a comment on the
    commit where it was found."""

    def __init__(
        self,
        operator: Settings,
        files: RepoFiles,
        state: StateStore,
        apply: Callable[[Settings | None], None],
    ) -> None:
        self._operator = operator
        self._files = files
        self._state = state
        self._apply = apply
        self._head: str | None = None  # the default branch's commit last read
        self._text: str | None = None  # the file's text there ("" without a file)
        self.settings: Settings | None = None
        self.refused: str | None = None  # why the file is not used, one line

    async def refresh(self) -> None:
        """Read the file again if the default branch moved; GitHub's errors are raised (the
        repository waits while its settings have never been read)."""
        try:
            head = await self._files.branch_sha(await self._files.default_branch())
            if head == self._head:
                return
            text = self._kept(head)
            if text is None:
                text = await self._read(head)
        except GitHubError:
            if self._head is None:
                self._apply(None)  # nothing known yet: nothing runs on a guess
            raise
        self._head = head
        if text == self._text:
            return
        self._text = text
        try:
            updates = overrides(self._operator, text)
        except RepoConfigError as exc:
            await self._refuse(str(exc), text, head)
            return
        if self._state.get_meta(REFUSED_META):
            self._state.set_meta(REFUSED_META, "")  # a wrong file again later is told again
        changed = changes(self._operator, updates)
        self.settings = self._operator.model_copy(update=_as_settings(changed))
        self.refused = None
        if changed:
            said = ", ".join(f"{k.upper()}={v!r}" for k, v in sorted(changed.items()))
            log.info("%s at %s sets %s", REPO_CONFIG_PATH, head[:7], said)
        self._apply(self.settings)

    async def _read(self, head: str) -> str:
        """The file's text at `head` ("" without one), kept for a restart; a path GitHub shows
        as no text (a folder, a link leading out, a file over 1 MB) as UNREADABLE and why."""
        try:
            text = await self._files.file_text(REPO_CONFIG_PATH, head) or ""
        except MalformedAnswer:
            return UNREADABLE + "expected a file; found a folder or a link GitHub does not follow"
        except RateLimited:
            raise
        except GitHubError as exc:
            if exc.status != 403:  # GitHub's refusal of a file over 1 MB; else try again later
                raise
            return UNREADABLE + "expected a file of at most 64 KiB; found one GitHub will not show"
        self._state.set_meta(READ_META, {"head": head, "text": text})
        return text

    def _kept(self, head: str) -> str | None:
        """The file's text at `head` as read before (a restart), or None."""
        kept = self._state.get_meta(READ_META)
        if (
            isinstance(kept, dict)
            and kept.get("head") == head
            and isinstance(kept.get("text"), str)
        ):
            return str(kept["text"])
        return None

    async def _refuse(self, why: str, text: str, head: str) -> None:
        self.settings = None
        self.refused = why
        log.error("%s; no work starts in this repository until it is fixed", why)
        self._apply(None)
        told = hashlib.sha256(text.encode()).hexdigest()
        if self._state.get_meta(REFUSED_META) == told:
            return
        body = (
            f"The orchestrator cannot read `{REPO_CONFIG_PATH}` as of this commit:\n\n"
            f"> {why}\n\nNo issue, review or merge starts in this repository until the file "
            "is fixed on the default branch (or removed)."
        )
        try:
            await self._files.comment_on_commit(head, body)
        except GitHubError as exc:  # said again at the next cycle that reads it
            log.warning("could not comment on %s about the file: %s", head[:7], exc)
            self._text = None
            self._head = None
            return
        self._state.set_meta(REFUSED_META, told)


def overrides(operator: Settings, text: str) -> dict[str, object]:
    """What the file's `text` (or UNREADABLE and why) changes in the operator's settings;
    `RepoConfigError` (one line) when it cannot be used."""
    if text.startswith(UNREADABLE):
        raise RepoConfigError(f"{REPO_CONFIG_PATH}: {text.removeprefix(UNREADABLE)}")
    config = parse_repo_config(text) if text.strip() else RepoConfig()
    if operator.sandbox == "off" and config.pre_merge_commands is not None:
        raise RepoConfigError(
            f"{REPO_CONFIG_PATH}: pre_merge_commands: not taken from the repository while the "
            "daemon runs with SANDBOX=off (they would run with its rights); expected them in "
            "the daemon's PRE_MERGE_COMMANDS, or the sandbox on"
        )
    return config.overrides(operator.model_dump())


def changes(operator: Settings, updates: dict[str, object]) -> dict[str, object]:
    """The updates that differ from the operator's settings."""
    return {k: v for k, v in updates.items() if getattr(operator, k) != v}


def _as_settings(updates: dict[str, Any]) -> dict[str, Any]:
    """The file's values as the settings hold them (a TOML list is kept as a tuple)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in updates.items()}
