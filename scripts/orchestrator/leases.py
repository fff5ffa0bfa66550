"""Which repositories this daemon works on: all of them alone, or a share of them beside other
daemons on one database, each repository leased to one daemon at a time."""

from __future__ import annotations

import os
import secrets
import socket
from typing import Protocol


def owner_id() -> str:
    """This daemon's name in the leases: its host, its pid, and a random part (a pid is reused
    after a restart, and two hosts may share a name)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Leases(Protocol):
    """The repositories' leases. Every call is short: the lease's own clock is the database's."""

    owner: str
    seconds: float  # how long a lease lasts without a renewal

    def beat(self) -> int:
        """Say this daemon is alive; how many daemons are (this one included)."""
        ...

    def claim(self, repo: str) -> bool:
        """Take `repo` if nobody holds it (or its holder's lease ended); True when it is this
        daemon's now."""
        ...

    def renew(self) -> set[str]:
        """Extend every lease this daemon holds; the repositories whose lease it lost."""
        ...

    def release(self, repo: str) -> None:
        """Let `repo` go, for another daemon to take at once."""
        ...

    def close(self) -> None: ...


class LocalLeases:
    """One daemon alone (the state file is its own): every repository is its."""

    seconds = float("inf")

    def __init__(self) -> None:
        self.owner = owner_id()
        self._held: set[str] = set()

    def beat(self) -> int:
        return 1

    def claim(self, repo: str) -> bool:
        self._held.add(repo)
        return True

    def renew(self) -> set[str]:
        return set()

    def release(self, repo: str) -> None:
        self._held.discard(repo)

    def close(self) -> None:
        self._held.clear()
