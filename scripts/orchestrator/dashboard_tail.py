"""The live tail of an item's newest transcript, as server-sent events."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import anyio

from .core.work import WorkItemType
from .transcripts import SUFFIX, TRANSCRIPT_NAME, item_folder

POLL_INTERVAL = 0.2  # seconds between looks at the file: a new line shows within a second
PING_EVERY = 15.0  # seconds of quiet before a comment line, so proxies keep the stream open
CHUNK = 256 * 1024  # bytes read at once, so one big transcript never holds the loop long
RETRY_MS = 2000  # how soon a browser reconnects after the stream breaks
MAX_LINE = 1024 * 1024  # bytes of one unended line kept before it is sent as it stands
_NEWLINE = re.compile(r"\r\n|\r|\n")


def transcript_files(
    log_dir: Path, kind: WorkItemType, number: int, repo: str | None = None
) -> list[Path]:
    """The transcripts of an item's runs in `log_dir`, oldest first (a `DashboardSource` helper).

    The folder is the one `Transcripts.start` makes for the runner's item label
    (`issue#12` -> `issue-12`; beside other repositories, `repo`'s: `acme+api-issue-12`);
    only the daemon's own file names count.
    """
    label = f"{kind.value}#{number}"
    folder = log_dir / item_folder(f"{repo} {label}" if repo else label)
    try:
        if folder.is_symlink():  # the daemon makes folders, never links: someone else's
            return []
        names = [p for p in folder.iterdir() if TRANSCRIPT_NAME.fullmatch(p.name) and _plain(p)]
    except OSError:  # no run yet, or LOG_DIR unreadable: nothing to show
        return []
    return sorted(names, key=_run_order)


def _plain(path: Path) -> bool:
    """A regular file, not a link: a link planted in LOG_DIR would serve any file the daemon
    can read."""
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def open_transcript(path: Path) -> BinaryIO:
    """`path` opened for reading, refusing a link put there since it was listed."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path.name} is not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _run_order(path: Path) -> tuple[str, int]:
    # `…Z.jsonl` is the first run of that second and `…Z-1.jsonl` the next: text order is wrong.
    stamp, _, count = path.name.removesuffix(SUFFIX).partition("Z")
    return stamp, int(count.lstrip("-") or 0)


def sse(data: str, *, event: str | None = None, id: str | None = None) -> str:
    """One server-sent event; `data` may hold line breaks (each becomes a `data:` field)."""
    fields = [f"event: {event}"] if event else []
    if id is not None:
        fields.append(f"id: {id}")
    fields += [f"data: {part}" for part in _NEWLINE.split(data)]
    return "\n".join(fields) + "\n\n"


class _File:
    """Where the tail stands in one transcript: the bytes sent, and a line not yet ended."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = path
        self.offset = offset
        self.inode: int | None = None
        self.partial = b""

    def read(self) -> tuple[list[tuple[str, str]], bool]:
        """The lines ended since the last read, each with its event id, and whether the file
        started over."""
        try:
            with open_transcript(self.path) as f:
                stat = os.fstat(f.fileno())
                restarted = (self.inode is not None and stat.st_ino != self.inode) or (
                    stat.st_size < self.offset
                )
                if restarted:  # rotated or truncated: its new content from the start
                    self.offset, self.partial = 0, b""
                self.inode = stat.st_ino
                f.seek(self.offset)
                data = f.read(CHUNK)
        except OSError:  # not there (yet, or any more): the listing tells what comes next
            return [], False
        end = self.offset - len(self.partial)
        self.offset += len(data)
        *ended, self.partial = (self.partial + data).split(b"\n")
        lines = []
        for line in ended:
            # An id names the end of its line: a reconnect resumes after the last line sent.
            end += len(line) + 1
            lines.append((_text(line), f"{self.path.name}:{end}"))
        if len(self.partial) > MAX_LINE:  # a line that never ends is sent in pieces
            end += len(self.partial)
            lines.append((_text(self.partial), f"{self.path.name}:{end}"))
            self.partial = b""
        return lines, restarted

    def rest(self) -> list[tuple[str, str]]:
        """The last line, if the writer never ended it."""
        line, self.partial = self.partial, b""
        return [(_text(line), f"{self.path.name}:{self.offset}")] if line.strip() else []


def _text(line: bytes) -> str:
    return line.rstrip(b"\r").decode("utf-8", "replace")


async def tail(
    files: Callable[[], Sequence[Path]],
    live: Callable[[], bool],
    disconnected: Callable[[], Awaitable[bool]],
    *,
    resume: str | None = None,
    poll: float = POLL_INTERVAL,
) -> AsyncGenerator[str, None]:
    """Server-sent events of the newest transcript: its lines so far, then each new one.

    `files` lists the item's transcripts (oldest first), `live` says whether its job still
    runs or waits; the stream ends once it does not and the newest file is read to its end,
    or when `disconnected`. A newer run's transcript is followed when it appears (event
    `file`, data its name); a file that starts over is read again from its start (event
    `reset`). Each line is an event whose id lets a reconnecting browser (`resume`, the
    `Last-Event-ID`) go on after the last line it got.
    """
    yield f"retry: {RETRY_MS}\n\n"
    current = _resumed(files(), resume)
    if current is not None:
        yield sse(current.path.name, event="file")
    quiet = 0.0
    while not await disconnected():
        running = live()  # asked before reading: what it wrote before it stopped is read below
        sent = False
        if current is not None:
            lines, restarted = current.read()
            if restarted:
                yield sse(current.path.name, event="reset")
            for line, id in lines:
                yield sse(line, id=id)
            sent = bool(lines) or restarted
        if sent:
            quiet = 0.0
            continue  # more may be waiting past CHUNK: read on before sleeping
        paths = files()
        if paths and (current is None or paths[-1] != current.path):
            if current is not None:
                for line, id in current.rest():
                    yield sse(line, id=id)
            current = _File(paths[-1])
            yield sse(current.path.name, event="file")
            continue
        if not running:
            if current is not None:
                for line, id in current.rest():
                    yield sse(line, id=id)
            yield sse("", event="end")
            return
        await anyio.sleep(poll)
        quiet += poll
        if quiet >= PING_EVERY:
            quiet = 0.0
            yield ": ping\n\n"


def _resumed(paths: Sequence[Path], resume: str | None) -> _File | None:
    """Where to start: after the last line a reconnecting browser got, else the newest file."""
    name, _, offset = (resume or "").rpartition(":")
    for path in paths:
        if resume and path.name == name and offset.isdigit():
            return _File(path, int(offset))
    return _File(paths[-1]) if paths else None
