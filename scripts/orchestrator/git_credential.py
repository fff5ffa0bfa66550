"""The GitHub token for one git command: in an in-memory file read by a host-bound helper."""

from __future__ import annotations

import contextlib
import os
import shlex
from collections.abc import Iterator
from urllib.parse import urlparse

LOOPBACK = ("127.0.0.1", "::1", "localhost")


@contextlib.contextmanager
def credential(url: str, token: str | None) -> Iterator[tuple[dict[str, str], tuple[int, ...]]]:
    """The environment and file descriptors that let one git command authenticate to `url`.

    The token is in no environment, argument or file: it sits in an anonymous in-memory file
    whose descriptor only this git command and its children hold, read by a credential helper
    that answers only for the recorded host (a redirect elsewhere gets nothing). Every other
    credential helper is ignored. Nothing for
    ssh or a local path (the user's own setup), nor for plain http beyond loopback.
    """
    parsed = urlparse(url)
    host = parsed.hostname or ""
    if not token or not (
        parsed.scheme == "https" or (parsed.scheme == "http" and host in LOOPBACK)
    ):
        yield {}, ()
        return
    fd = _secret_fd(token)
    try:
        netloc = parsed.netloc.rpartition("@")[2]
        yield (
            {
                "GIT_CONFIG_COUNT": "2",
                "GIT_CONFIG_KEY_0": "credential.helper",
                "GIT_CONFIG_VALUE_0": "",  # forget the helpers configured anywhere else
                "GIT_CONFIG_KEY_1": "credential.helper",
                "GIT_CONFIG_VALUE_1": _helper(netloc, fd),
            },
            (fd,),
        )
    finally:
        os.close(fd)


def _helper(netloc: str, fd: int) -> str:
    """A credential helper (git runs it with `sh`) that gives the token at `fd` to `netloc`."""
    expected = shlex.quote(f"host={netloc}")
    return (
        '!f() { test "$1" = get || { cat >/dev/null; exit 0; }; ok=; '
        f'while IFS= read -r line && [ -n "$line" ]; do [ "$line" = {expected} ] && ok=1; done; '
        '[ -n "$ok" ] || exit 0; '
        f"printf 'username=x-access-token\\npassword='; cat /dev/fd/{fd}; echo; }}; f"
    )


def _secret_fd(secret: str) -> int:
    """A descriptor of an anonymous file holding `secret`: every open of /dev/fd/N reads it
    from the start (git may ask twice), and it is gone when the last holder closes it."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("orchestrator-credential", os.MFD_CLOEXEC)
        os.write(fd, secret.encode())
        return fd
    read, write = os.pipe()  # no memfd (macOS): one read is enough for one push
    os.write(write, secret.encode())
    os.close(write)
    return read
