"""The daemon restarts itself once without the token in its environment.

Removing a variable from `os.environ` does not change `/proc/<pid>/environ`, which shows the
environment the process started with to every process of the same user. So when the token
came in through the environment, the daemon replaces itself (same PID, same arguments) with a
process started without it, and hands the token over through a pipe that only it inherits.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from .core.redact import SECRET_ENV_VARS

# The pipe's descriptor number travels in this variable; the number is no secret.
TOKEN_FD_ENV = "CLAUDE_ORCHESTRATOR_TOKEN_FD"  # noqa: S105


def secrets_in_environment() -> bool:
    return any(name in os.environ for name in SECRET_ENV_VARS)


def restart_without_secrets(token: str, argv: Sequence[str]) -> NoReturn:
    """Replace this process with `python -m scripts.orchestrator.main ARGV`, without the
    GitHub credentials in its environment; `inherited_token` reads the token back."""
    read, write = os.pipe()
    os.set_inheritable(read, True)
    os.write(write, token.encode())  # far below a pipe's capacity: this never blocks
    os.close(write)
    env = {name: value for name, value in os.environ.items() if name not in SECRET_ENV_VARS}
    env[TOKEN_FD_ENV] = str(read)
    sys.stdout.flush()
    sys.stderr.flush()
    command = [sys.executable, "-m", "scripts.orchestrator.main", *argv]
    os.execve(sys.executable, command, env)  # noqa: S606  (ourselves, minus the secrets)


def inherited_token() -> str | None:
    """The token a restart handed over, once; None when this process was not restarted."""
    fd = os.environ.pop(TOKEN_FD_ENV, None)
    if fd is None:
        return None
    with os.fdopen(int(fd), "rb") as pipe:
        return pipe.read().decode()
