"""Starts the Claude Code CLI inside the sandbox: the executable the SDK is given as its CLI.

`python -m scripts.orchestrator.sandbox_exec POLICY.json [CLI ARGS...]` reads the run's
policy (paths and flags only, never a secret), keeps from its environment only what the CLI
needs (its model credentials and settings, the run marker), and replaces itself with bwrap
running the real CLI. Secrets are never written to disk on the way.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .config import Settings
from .sandbox import Bwrap, Policy

# What the CLI reads from its environment; everything else (the daemon's settings) stays out.
CLI_ENV_PREFIXES = ("ANTHROPIC_", "CLAUDE_", "DISABLE_", "MCP_", "OTEL_")
CLI_ENV_NAMES = frozenset(
    {"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
     "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "SSL_CERT_DIR", "DEBUG"}
)  # fmt: skip


# The daemon's own settings (CLAUDE_TIMEOUT, CLAUDE_CLI_PATH ...) share a prefix with the
# CLI's: they stay out all the same.
DAEMON_SETTINGS = frozenset(name.upper() for name in Settings.model_fields)


def cli_env(environ: dict[str, str]) -> dict[str, str]:
    """The part of `environ` the CLI may see."""
    return {
        name: value
        for name, value in environ.items()
        if (name in CLI_ENV_NAMES or name.startswith(CLI_ENV_PREFIXES))
        and name not in DAEMON_SETTINGS
    }


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: python -m scripts.orchestrator.sandbox_exec POLICY.json [ARGS...]",
              file=sys.stderr)  # fmt: skip
        return 2
    spec = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    policy = Policy(
        workdir=Path(spec["workdir"]),
        read_paths=[Path(p) for p in spec["read_paths"]],
        read_only_workdir=bool(spec["read_only_workdir"]),
        network=bool(spec["network"]),
        env=cli_env(dict(os.environ)),
    )
    command = Bwrap(spec["bwrap"]).command([spec["cli"], *argv[2:]], policy)
    os.execv(command[0], command)  # noqa: S606  (bwrap, with the policy above)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
