"""Transcripts of Claude's runs: one JSON-lines file per run under LOG_DIR, capped, redacted,
pruned by age."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from .core.redact import Redactor

log = logging.getLogger(__name__)

PRUNE_EVERY = 86_400.0  # seconds: old transcripts are looked for at most once a day
SUFFIX = ".jsonl"
# A transcript's name: its run's start in UTC, and a count if two started in one second.
TRANSCRIPT_NAME = re.compile(r"\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ(-\d+)?\.jsonl")
_SAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def item_folder(item: str) -> str:
    """The folder of `item`'s transcripts (a log label such as `issue#12`: `issue-12`; beside
    other repositories', `acme/api issue#12`: `acme+api-issue-12`, so `acme/api-x` and
    `acme-api/x` never share one)."""
    return _SAFE.sub("-", item.replace("/", "+")).strip("-.+") or "other"


class Transcripts:
    """Where each run's transcript goes: `log_dir/<item>/<UTC start time>.jsonl`.

    Files are 0600 in folders 0700, every string in them redacted. A failure to write (disk
    full, LOG_DIR not writable) never fails the run, and is logged once: again only after a
    transcript was written whole since.
    """

    def __init__(
        self,
        log_dir: Path,
        *,
        max_bytes: int,
        retention: timedelta,
        redactor: Redactor,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log_dir = log_dir
        self._max_bytes = max_bytes
        self._retention = retention
        self._redactor = redactor
        self._monotonic = monotonic
        self._pruned_at: float | None = None
        self._failing = False  # the last write failed: the next failure is not logged again

    def prune(self) -> int:
        """Delete the transcripts older than the retention (at start, then at most daily)."""
        self._pruned_at = self._monotonic()
        return prune_transcripts(self.log_dir, self._retention)

    def start(self, item: str) -> Transcript:
        """A new transcript for a run of `item` (e.g. `issue#12`); it writes nothing if its
        file cannot be made."""
        if self._pruned_at is None or self._monotonic() - self._pruned_at >= PRUNE_EVERY:
            self.prune()
        folder = self.log_dir / item_folder(item)
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H-%M-%SZ")
        try:
            _private_dir(self.log_dir, parents=True)
            _private_dir(folder)
            for n in range(100):  # two runs of one item in one second: the second gets `-1`
                path = folder / f"{stamp}{f'-{n}' if n else ''}{SUFFIX}"
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
                except FileExistsError:
                    continue
                return Transcript(self, path, fd, self._max_bytes)
            raise FileExistsError(f"too many transcripts of {item} in one second in {folder}")
        except OSError as exc:
            self.failed(exc)
            return Transcript.none()

    def redact(self, value: Any) -> Any:
        """`value` with every string in it (keys too) redacted."""
        if isinstance(value, str):
            return self._redactor.redact(value)
        if isinstance(value, dict):
            return {self.redact(str(k)): self.redact(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.redact(v) for v in value]
        return value

    def failed(self, exc: OSError) -> None:
        if not self._failing:
            log.warning("cannot write Claude's transcripts in %s (%s); the runs go on without",
                        self.log_dir, exc)  # fmt: skip
        self._failing = True

    def recovered(self) -> None:
        self._failing = False


class Transcript:
    """One run's transcript: a JSON object per line, until `max_bytes` (then a line that says
    so, and nothing more)."""

    def __init__(
        self, owner: Transcripts | None, path: Path | None, fd: int | None, max_bytes: int
    ) -> None:
        self.path = path  # None: this run has no transcript
        self._owner = owner
        self._fd = fd
        self._left = max_bytes
        self._cut = _line({"type": "cut", "note": f"transcript cut at {max_bytes} bytes"})
        self._ok = True

    @classmethod
    def none(cls) -> Transcript:
        """A transcript that writes nothing (a runner without LOG_DIR)."""
        return cls(None, None, None, 0)

    def write(self, record: dict[str, Any]) -> None:
        """Add `record` (redacted) as one line; never raises."""
        if self._fd is None or self._owner is None:
            return
        line = _line(self._owner.redact(record))
        if len(line) + len(self._cut) > self._left:
            line, self._left = self._cut, 0
        try:
            os.write(self._fd, line)
        except OSError as exc:
            self._fail(exc)
            return
        self._left -= len(line)
        if line is self._cut:
            self.close()

    def message(self, message: object) -> None:
        """Add one message of the SDK's stream."""
        self.write(as_record(message))

    def close(self) -> None:
        if self._fd is None or self._owner is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.close(fd)
        except OSError as exc:
            self._fail(exc)
        if self._ok:
            self._owner.recovered()

    def _fail(self, exc: OSError) -> None:
        assert self._owner is not None
        self._ok = False
        self._owner.failed(exc)
        self.close()


def as_record(message: object) -> dict[str, Any]:
    """An SDK message as a JSON object: its fields, and its type (blocks' types too)."""
    plain = _plain(message)
    return plain if isinstance(plain, dict) else {"type": type(message).__name__, "value": plain}


def _plain(value: object) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"type": type(value).__name__, **fields}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def _line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, ensure_ascii=False, default=repr) + "\n").encode()


def _private_dir(folder: Path, *, parents: bool = False) -> None:
    if not folder.is_dir():
        folder.mkdir(mode=0o700, parents=parents, exist_ok=True)
        folder.chmod(0o700)  # whatever the umask


def prune_transcripts(log_dir: Path, older_than: timedelta, now: float | None = None) -> int:
    """Delete the transcripts (`log_dir/*/<UTC time>.jsonl`, by name) last written more than
    `older_than` ago, and the folders they leave empty; return how many files went. Other
    files and folders are left alone."""
    limit = (time.time() if now is None else now) - older_than.total_seconds()
    removed = 0
    try:
        folders = [f for f in log_dir.iterdir() if f.is_dir() and not f.is_symlink()]
    except (FileNotFoundError, NotADirectoryError):  # nothing written yet: nothing to prune
        return 0
    except OSError as exc:
        log.warning("cannot prune Claude's transcripts in %s: %s", log_dir, exc)
        return 0
    for folder in folders:
        try:
            gone = 0
            for file in folder.glob(f"*{SUFFIX}"):
                # Only the daemon's own names: LOG_DIR may be a folder others write to as well.
                if not TRANSCRIPT_NAME.fullmatch(file.name) or not file.is_file():
                    continue
                if file.stat().st_mtime < limit:
                    file.unlink()
                    gone += 1
            removed += gone
            if gone and not any(folder.iterdir()):
                folder.rmdir()
        except OSError as exc:
            log.warning("cannot prune Claude's transcripts in %s: %s", folder, exc)
    if removed:
        log.info("deleted %d transcript(s) older than %g days from %s", removed,
                 older_than.total_seconds() / 86_400, log_dir)  # fmt: skip
    return removed
