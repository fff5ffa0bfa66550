"""Pre-merge checks: the configured commands run in a worktree, without the daemon's secrets."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from . import proc
from .core.ci import outcome
from .core.models import CommandResult
from .sandbox import Sandbox

log = logging.getLogger(__name__)

# The commands run the pull request's code: no credential of the daemon may reach them, the
# model's included, whatever the caller passes as extra variables.
WITHHELD_ENV_VARS = proc.WITHHELD_FROM_CHILDREN | {
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN",
}
# Nobody is at the terminal: a prompt would only wait for the timeout, and colour codes and
# pagers are noise in a comment.
CHECK_ENV = {
    "CI": "true",
    "GIT_TERMINAL_PROMPT": "0",
    "GCM_INTERACTIVE": "never",
    "DEBIAN_FRONTEND": "noninteractive",
    "NO_COLOR": "1",
    "TERM": "dumb",
    "PAGER": "cat",
    "GIT_PAGER": "cat",
}
# Enough for any comment after redaction, bounded so a runaway log cannot exhaust memory.
MAX_OUTPUT_BYTES = 1_000_000


def check_env(
    extra: Mapping[str, str] | None = None, *, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The commands' environment: `base` (default: ours, so PATH and HOME) without credentials."""
    env = proc.child_env(base, {**CHECK_ENV, **(extra or {})})
    for name in WITHHELD_ENV_VARS:
        env.pop(name, None)
    return env


async def run_command(
    command: str,
    *,
    cwd: Path,
    timeout: float,
    extra_env: Mapping[str, str] | None = None,
    sandbox: Sandbox | None = None,
) -> CommandResult:
    """Run one shell command in `cwd` (inside `sandbox` when given); on timeout its whole
    process group, or with a sandbox its whole PID namespace, is killed."""
    with tempfile.TemporaryDirectory(prefix="pre-merge-") as scratch:
        log_file = Path(scratch) / "output.log"
        # A file, not a pipe: what a command printed before its timeout is still there to
        # show, stdout and stderr stay interleaved, and only the tail is read into memory.
        # The daemon opens it and hands the command only the descriptor: the file is not in
        # the sandbox, so the command cannot swap it for a link to a secret, or a FIFO.
        # The commands are the operator's own shell strings (PRE_MERGE_COMMANDS).
        fd = os.open(log_file, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            if sandbox is None:
                done = await proc.run(  # noqa: S604
                    [command], cwd=cwd, timeout=timeout, env=check_env(extra_env), shell=True,
                    output=fd,
                )  # fmt: skip
            else:
                env = {**CHECK_ENV, **(extra_env or {})}
                argv = sandbox.wrap(["/bin/sh", "-c", command], workdir=cwd, env=env)
                done = await proc.run(
                    argv, cwd=cwd, timeout=timeout, env=sandbox.env(env), output=fd
                )
            output = _read_tail(fd, MAX_OUTPUT_BYTES)
        finally:
            os.close(fd)
    result = CommandResult(
        command=command,
        returncode=done.returncode,
        timed_out=done.timed_out,
        duration_s=done.duration_s,
        timeout_s=timeout,
        output=(done.stdout + done.stderr + output).rstrip(),
    )
    log.info("pre-merge command %r: %s in %.1f s", command, outcome(result), done.duration_s)
    return result


async def run_commands(
    commands: Sequence[str],
    *,
    cwd: Path,
    timeout: float,
    extra_env: Mapping[str, str] | None = None,
    sandbox: Sandbox | None = None,
) -> list[CommandResult]:
    """Run `commands` in order until one fails; the results of those that ran.

    The checks passed if and only if every result is `ok` and there is one per command.
    """
    results: list[CommandResult] = []
    for command in commands:
        result = await run_command(
            command, cwd=cwd, timeout=timeout, extra_env=extra_env, sandbox=sandbox
        )
        results.append(result)
        if not result.ok:
            break
    return results


def _read_tail(fd: int, limit: int) -> str:
    """The last `limit` bytes written to `fd`, read through the descriptor itself: whatever a
    command did to the file's path (a link to a secret, a FIFO) changes nothing here."""
    size = os.fstat(fd).st_size
    data = os.pread(fd, min(size, limit), max(0, size - limit))
    text = data.decode("utf-8", errors="replace")
    # A cut through the middle of a line (or a character) would open the output with garbage.
    return text.split("\n", 1)[-1] if size > limit else text


class ShellChecks:
    """The `Checks` port: the commands run by the shell, credentials withheld, inside
    `sandbox` (None only when the user turned it off with SANDBOX=off)."""

    def __init__(self, sandbox: Sandbox | None) -> None:
        self.sandbox = sandbox

    async def run(
        self, commands: Sequence[str], *, cwd: Path, timeout: float
    ) -> list[CommandResult]:
        return await run_commands(commands, cwd=cwd, timeout=timeout, sandbox=self.sandbox)
