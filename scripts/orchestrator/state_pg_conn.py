"""PostgreSQL connections for the state and the leases: opened so they cannot hang, named for
the daemon, and their errors worded without STATE_URL's secrets."""

from __future__ import annotations

import contextlib
import os
import re
import socket
from typing import Any
from urllib.parse import unquote

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow

from .state import StateError

Connection = psycopg.Connection[TupleRow]
CONNECT_TIMEOUT = 10  # seconds, unless STATE_URL says otherwise: a dead host is an error
# The session's settings, unless STATE_URL's `options` sets them. A database that stops
# answering is an error, never a daemon frozen; a server that ends idle sessions
# (idle_session_timeout) would cost a reconnect (and a listener its wakes): the daemon's
# connections are idle between polls by design.
SESSION = {
    "statement_timeout": "30s",
    "lock_timeout": "10s",
    "idle_in_transaction_session_timeout": "60s",
    "idle_session_timeout": "0",
}
SECRET_KEYS = ("password", "sslpassword")


def open_connection(url: str) -> Connection:
    """A connection to STATE_URL (autocommit) that names this daemon and cannot hang: psycopg's
    and libpq's errors are the caller's to word."""
    options = conninfo_to_dict(url)
    defaults: dict[str, Any] = {
        "connect_timeout": CONNECT_TIMEOUT,
        # Names this daemon to another that finds the repository taken.
        "application_name": f"claude-orchestrator pid {os.getpid()} on {socket.gethostname()}"[:63],
        # A database that stops answering is an error within a minute, never a daemon
        # frozen on its event loop (the calls are synchronous).
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
        "tcp_user_timeout": 60_000,
    }
    extra = {k: v for k, v in defaults.items() if k not in options}
    extra["options"] = merged_options(str(options.get("options") or ""), SESSION)
    return psycopg.connect(url, autocommit=True, **extra)


def merged_options(given: str, ours: dict[str, str]) -> str:
    """libpq's `options` (the server's settings for the session): each of `ours` as `-c
    name=value` unless `given` (STATE_URL's own `options`) sets that parameter, then `given`
    whole, so a URL that sets a search_path keeps the daemon's timeouts."""
    given = given.strip()
    named: set[str] = set()
    words = re.split(r"(?<!\\)\s+", given)  # a space escaped with `\` is part of a value
    for word, following in zip(words, [*words[1:], ""], strict=True):
        # The server's three spellings: `-c name=value`, `-cname=value`, `--name=value`.
        setting = following if word == "-c" else word[2:] if word[:2] in ("-c", "--") else ""
        if "=" in setting:
            named.add(setting.partition("=")[0].strip().lower().replace("-", "_"))
    settings = [f"-c {name}={value}" for name, value in ours.items() if name not in named]
    return " ".join([*settings, given] if given else settings)


def reason(exc: BaseException, secrets: list[str]) -> str:
    """A database error on one line, with every secret of STATE_URL blanked out."""
    # The server's own words, without its CONTEXT: that can quote the row's data.
    diag = exc.diag if isinstance(exc, psycopg.Error) else None
    if diag is not None and diag.message_primary:
        text = " ".join(filter(None, (diag.message_primary, diag.message_detail)))
    else:
        text = str(exc)
    text = " ".join(text.split()) or type(exc).__name__
    for secret in secrets:
        text = _blank(text, secret)
    return text


def probe(url: str) -> tuple[str, int]:
    """For `check`, reading only: STATE_URL as messages show it, and its schema version (0:
    the daemon creates the tables at its first start); `StateError` when it cannot be read."""
    where = redacted(url)
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
            row = conn.execute("SELECT to_regclass('orchestrator_schema_version') IS NOT NULL")
            if not (found := row.fetchone()) or not found[0]:
                return where, 0
            version = conn.execute("SELECT coalesce(max(version), 0) FROM "
                                   "orchestrator_schema_version").fetchone()  # fmt: skip
            return where, int(version[0]) if version else 0
    except psycopg.Error as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        for secret in secrets_of(url):
            text = _blank(text, secret)
        raise StateError(f"cannot read the state database (STATE_URL {where}): {text}") from None
    except (ValueError, UnicodeError):
        raise StateError(f"STATE_URL is not valid: it cannot be read ({where})") from None


def redacted(url: str) -> str:
    """STATE_URL without its password, for messages: as libpq reads it (`key=value` pairs), so
    a password holding `#`, `?` or `/`, which URL parsing would misplace, is never shown."""
    try:
        options = conninfo_to_dict(url)
    except (psycopg.Error, ValueError, UnicodeError):
        return "(a connection string that cannot be read)"
    return make_conninfo("", **{k: v for k, v in options.items() if k not in SECRET_KEYS})


def secrets_of(url: str) -> list[str]:
    """The secrets in `url` as libpq reads them and as written, longest first (a part of a
    secret is not blanked before the whole)."""
    found: set[str] = set()
    with contextlib.suppress(psycopg.Error, ValueError, UnicodeError):
        found.update(str(v) for k, v in conninfo_to_dict(url).items() if k in SECRET_KEYS)
    _, sep, rest = url.partition("://")
    if sep:
        # As written: everything between the user's name and the last `@` before the host,
        # whatever characters it holds; and `password=` in the query.
        userinfo = rest.rpartition("@")[0]
        if ":" in userinfo:
            found.add(userinfo.partition(":")[2])
        query = rest.partition("?")[2]
        found.update(unquote(part.partition("=")[2]) for part in query.split("&")
                     if part.partition("=")[0] in SECRET_KEYS)  # fmt: skip
        found.update(part.partition("=")[2] for part in query.split("&")
                     if part.partition("=")[0] in SECRET_KEYS)  # fmt: skip
    return sorted((s for s in found if s), key=len, reverse=True)


MIN_BLANKED = 4  # characters: blanking a shorter password would mangle words and show it


def _blank(text: str, secret: str) -> str:
    return text.replace(secret, "***") if len(secret) >= MIN_BLANKED else text
