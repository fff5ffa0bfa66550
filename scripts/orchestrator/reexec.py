"""The daemon restarts itself once without the token (and its other secrets) in its environment.

Removing a variable from `os.environ` does not change `/proc/<pid>/environ`, which shows the
environment the process started with to every process of the same user. So when the token
came in through the environment, the daemon replaces itself (same PID, same arguments) with a
process started without it, and hands the token over through a pipe that only it inherits.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

from .core.redact import SECRET_ENV_VARS

# The pipe's descriptor number travels in this variable; the number is no secret.
TOKEN_FD_ENV = "CLAUDE_ORCHESTRATOR_TOKEN_FD"  # noqa: S105


def secrets_in_environment() -> bool:
    return any(name in os.environ for name in SECRET_ENV_VARS)


def restart_without_secrets(secrets: Mapping[str, str], argv: Sequence[str]) -> NoReturn:
    """Replace this process with `python -m scripts.orchestrator.main ARGV`, without the
    secret variables in its environment; `inherited_secrets` reads `secrets` (settings'
    field names to values) back."""
    read, write = os.pipe()
    os.set_inheritable(read, True)
    os.write(write, json.dumps(dict(secrets)).encode())  # a few hundred bytes: never blocks
    os.close(write)
    env = {name: value for name, value in os.environ.items() if name not in SECRET_ENV_VARS}
    env[TOKEN_FD_ENV] = str(read)
    sys.stdout.flush()
    sys.stderr.flush()
    command = [sys.executable, "-m", "scripts.orchestrator.main", *argv]
    os.execve(sys.executable, command, env)  # noqa: S606  (ourselves, minus the secrets)


def inherited_secrets() -> dict[str, str]:
    """The secrets a restart handed over, once; empty when this process was not restarted."""
    fd = os.environ.pop(TOKEN_FD_ENV, None)
    if fd is None:
        return {}
    with os.fdopen(int(fd), "rb") as pipe:
        handed = json.loads(pipe.read().decode())
    return {str(name): str(value) for name, value in handed.items()}
