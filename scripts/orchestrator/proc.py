"""Child processes: a timeout, the whole process group killed, no GitHub tokens inherited."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from .core.models import Completed
from .core.redact import DATABASE_ENV_VARS
from .core.redact import SECRET_ENV_VARS as SECRET_ENV_VARS  # callers know it from here

# What no child process gets: the daemon's secrets, and libpq's password variables.
WITHHELD_FROM_CHILDREN = SECRET_ENV_VARS | DATABASE_ENV_VARS

KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL
CHUNK = 65_536
MAX_STDERR = 65_536  # bytes of standard error kept when stdout is read up to a limit


def child_env(
    base: Mapping[str, str] | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A child's environment: `base` (default: ours) minus GitHub credentials, plus `extra`."""
    env = {
        k: v
        for k, v in (os.environ if base is None else base).items()
        if k not in WITHHELD_FROM_CHILDREN
    }
    if extra:
        env.update(extra)
    return env


async def run(
    args: Sequence[str],
    *,
    cwd: Path,
    timeout: float,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    shell: bool = False,
    output: int | None = None,
    pass_fds: Sequence[int] = (),
    limit: int | None = None,
) -> Completed:
    """Run a command in its own process group; on timeout or cancellation kill the group.

    `env` is used as given (build it with `child_env`); None means `child_env()`. `output`, a
    file descriptor, takes stdout and stderr both (then `Completed` holds neither). `pass_fds`
    stay open in the child, at the same numbers (e.g. a credential only it may read). With
    `limit`, stdout is read as it comes and the group is stopped once it passes `limit` bytes
    (`Completed.cut`): a huge output never sits in memory whole.
    """
    if limit is not None and (stdin is not None or output is not None):
        raise ValueError("limit reads stdout from a pipe, with no input")
    started = time.monotonic()
    kwargs: dict[str, object] = {
        "cwd": cwd,
        "env": child_env() if env is None else dict(env),
        "stdin": asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        "stdout": asyncio.subprocess.PIPE if output is None else output,
        "stderr": asyncio.subprocess.PIPE if output is None else output,
        # A new session makes the child a group leader, so a timeout can kill its descendants
        # too (the original daemon killed the shell and left pytest running).
        "start_new_session": True,
        "pass_fds": tuple(pass_fds),
    }
    if shell:
        (command,) = args
        proc = await asyncio.create_subprocess_shell(command, **kwargs)  # type: ignore[arg-type]
    else:
        proc = await asyncio.create_subprocess_exec(*args, **kwargs)  # type: ignore[arg-type]
    cut = False
    try:
        if limit is None:
            out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
        else:
            out, err, cut = await asyncio.wait_for(_read_up_to(proc, limit), timeout)
    except asyncio.TimeoutError:
        out, err = await _kill_group(proc)
        return Completed(
            tuple(args), None, _text(out), _text(err), time.monotonic() - started, timed_out=True
        )
    except BaseException:  # cancelled: the child must not outlive its caller
        await _kill_group(proc)
        raise
    finally:
        # Descendants that detached from the pipes may still be running in the group.
        _signal_group(proc.pid, signal.SIGKILL)
    return Completed(
        tuple(args), proc.returncode, _text(out), _text(err), time.monotonic() - started, cut=cut
    )


async def _read_up_to(proc: asyncio.subprocess.Process, limit: int) -> tuple[bytes, bytes, bool]:
    """Stdout up to `limit` bytes (the group killed past it), stderr's first `MAX_STDERR`."""
    assert proc.stdout is not None and proc.stderr is not None
    errors = asyncio.ensure_future(_first_bytes(proc.stderr, MAX_STDERR))
    try:
        out = bytearray()
        while chunk := await proc.stdout.read(CHUNK):
            out += chunk
            if len(out) > limit:
                _signal_group(proc.pid, signal.SIGKILL)
                await proc.wait()
                return bytes(out[:limit]), await errors, True
        await proc.wait()
        return bytes(out), await errors, False
    finally:
        if not errors.done():  # a timeout or a cancellation: the caller reads what is left
            errors.cancel()
            await asyncio.gather(errors, return_exceptions=True)


async def _first_bytes(stream: asyncio.StreamReader, keep: int) -> bytes:
    """Read `stream` to its end (a writer is never blocked on it); keep its first `keep` bytes."""
    kept = bytearray()
    while chunk := await stream.read(CHUNK):
        kept += chunk[: max(0, keep - len(kept))]
    return bytes(kept)


async def _kill_group(proc: asyncio.subprocess.Process) -> tuple[bytes, bytes]:
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        return await asyncio.wait_for(proc.communicate(), KILL_GRACE)
    except asyncio.TimeoutError:
        _signal_group(proc.pid, signal.SIGKILL)
        with contextlib.suppress(asyncio.TimeoutError):
            return await asyncio.wait_for(proc.communicate(), KILL_GRACE)
        return b"", b""


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace")


def processes_with_env(name: str, value: str) -> list[int]:
    """PIDs of live processes whose environment holds `name=value` (Linux /proc; else none).

    A run's children inherit a marker variable, so this finds what a run left behind even
    when the children moved to process groups of their own.
    """
    proc_dir = Path("/proc")
    if not proc_dir.is_dir():
        return []
    wanted = f"{name}={value}".encode()
    found = []
    for entry in proc_dir.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # exited meanwhile, or not ours to read
        if state != "Z" and wanted in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def kill_processes_with_env(name: str, value: str) -> list[int]:
    """SIGKILL every live process carrying `name=value`; return their PIDs."""
    pids = processes_with_env(name, value)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return pids
