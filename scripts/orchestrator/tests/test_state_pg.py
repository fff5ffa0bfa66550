"""Tests for the PostgreSQL state: migrations, the owner of a repository, lost connections."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import psycopg
import pytest
from psycopg.rows import TupleRow

from scripts.orchestrator.core.work import WorkItem, WorkItemType
from scripts.orchestrator.state import StateError, StateLockedError
from scripts.orchestrator.state_pg import PgState, redacted, secrets_of
from scripts.orchestrator.state_pg_conn import merged_options, open_connection
from scripts.orchestrator.state_pg_schema import MIGRATIONS, SCHEMA_VERSION, advisory_key, migrate

from .fixtures_postgres import pg_state_url, postgres_url  # noqa: F401

REPO = "acme/widgets"
UNREADABLE = "(a connection string that cannot be read)"
SECRET = "hunter2-Secret"
ISSUE = WorkItemType.ISSUE
Admin = psycopg.Connection[TupleRow]
DEADLINE = 10.0  # seconds, for what the server does on its own (ending a killed client)


@pytest.fixture
def admin(pg_state_url: str) -> Iterator[Admin]:  # noqa: F811
    """A connection of the test's own to the store's database."""
    with psycopg.connect(pg_state_url, autocommit=True) as conn:
        yield conn


def _with_password(url: str, secret: str = SECRET) -> str:
    """The URL with a password: the test server trusts loopback, so it connects all the same."""
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{secret}@", 1)


def _versions(admin: Admin) -> list[TupleRow]:
    query = "SELECT version, applied_at FROM orchestrator_schema_version ORDER BY version"
    return admin.execute(query).fetchall()


def _terminate_stores(admin: Admin) -> int:
    """End the server side of every store's connection, as a restarted or failed-over server
    would; returns how many. The two-argument form waits until each has ended."""
    rows = admin.execute(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND application_name LIKE 'claude-orchestrator pid %%'"
    ).fetchall()
    assert all(ended for (ended,) in rows)
    return len(rows)


# -- migrations -----------------------------------------------------------------------------


def test_an_empty_database_is_migrated_to_the_latest_version(
    pg_state_url: str,  # noqa: F811
    admin: Admin,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (
        caplog.at_level("INFO", logger="scripts.orchestrator.state_pg_schema"),
        PgState(pg_state_url, REPO),
    ):
        pass
    assert [v for v, _ in _versions(admin)] == list(range(1, SCHEMA_VERSION + 1))
    assert SCHEMA_VERSION == len(MIGRATIONS) >= 1
    tables = admin.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
        "ORDER BY table_name"
    ).fetchall()
    assert [t for (t,) in tables] == [
        "orchestrator_daemons",
        "orchestrator_items",
        "orchestrator_leases",
        "orchestrator_meta",
        "orchestrator_schema_version",
    ]
    keys = admin.execute(
        "SELECT c.relname, pg_get_constraintdef(k.oid) FROM pg_constraint k "
        "JOIN pg_class c ON c.oid = k.conrelid WHERE k.contype = 'p' ORDER BY c.relname"
    ).fetchall()
    assert ("orchestrator_items", "PRIMARY KEY (repo, kind, number)") in keys
    assert ("orchestrator_meta", "PRIMARY KEY (repo, key)") in keys
    assert ("orchestrator_leases", "PRIMARY KEY (repo)") in keys
    assert f"schema migrated from version 0 to {SCHEMA_VERSION}" in caplog.text


def test_migrating_again_changes_nothing(
    pg_state_url: str,  # noqa: F811
    admin: Admin,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with PgState(pg_state_url, REPO) as store:
        store.put(WorkItem(type=ISSUE, number=1))
    applied = _versions(admin)
    caplog.clear()  # the first migration's line, if INFO was on already (another test's logs)
    with caplog.at_level("INFO", logger="scripts.orchestrator.state_pg_schema"):
        with PgState(pg_state_url, REPO) as store:
            assert [i.number for i in store.items()] == [1]
        with psycopg.connect(pg_state_url, autocommit=True) as conn:
            assert migrate(conn, "here") == SCHEMA_VERSION  # the version it found
    assert _versions(admin) == applied  # not even re-stamped
    assert "migrated" not in caplog.text


def test_a_newer_schema_is_refused_in_one_line_naming_state_url(
    pg_state_url: str,  # noqa: F811
    admin: Admin,
) -> None:
    PgState(pg_state_url, REPO).close()
    newer = SCHEMA_VERSION + 1
    admin.execute("INSERT INTO orchestrator_schema_version (version) VALUES (%s)", (newer,))
    with pytest.raises(StateError) as info:
        PgState(_with_password(pg_state_url), REPO)
    message = str(info.value)
    assert "\n" not in message
    assert f"STATE_URL {redacted(pg_state_url)}" in message  # its password left out
    assert "user=postgres" in message
    assert f"schema version {newer}" in message
    assert f"up to {SCHEMA_VERSION}" in message
    assert "upgrade" in message
    assert SECRET not in message
    assert len(_versions(admin)) == newer  # refused, not rewritten


def test_daemons_starting_at_once_migrate_exactly_once(
    pg_state_url: str,  # noqa: F811
    admin: Admin,
    caplog: pytest.LogCaptureFixture,
) -> None:
    starters = 8
    ready = threading.Barrier(starters, timeout=DEADLINE)

    def start(n: int) -> int | None:
        ready.wait()
        if n % 2:  # half through PgState, half through migrate itself (what it found)
            PgState(pg_state_url, f"acme/repo{n}").close()
            return None
        with psycopg.connect(pg_state_url, autocommit=True) as conn:
            return migrate(conn, "here")

    logs = caplog.at_level("INFO", logger="scripts.orchestrator.state_pg_schema")
    with logs, ThreadPoolExecutor(starters) as pool:
        futures = [pool.submit(start, n) for n in range(starters)]
        found = [f.result(timeout=DEADLINE) for f in futures]  # raises what a thread did
    assert [v for v, _ in _versions(admin)] == list(range(1, SCHEMA_VERSION + 1))
    assert caplog.text.count("schema migrated") == 1
    assert set(found) <= {None, 0, SCHEMA_VERSION} and found.count(0) <= 1


# -- the owner of a repository --------------------------------------------------------------


def test_a_killed_owner_releases_the_repository(pg_state_url: str) -> None:  # noqa: F811
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            from scripts.orchestrator.state_pg import PgState
            s = PgState({pg_state_url!r}, {REPO!r})
            print("locked", flush=True)
            import time; time.sleep(60)
        """)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StateLockedError, match=f"pid {holder.pid} on ") as info:
            PgState(pg_state_url, REPO)
        assert info.value.pid == str(holder.pid)
    finally:
        holder.kill()
        holder.wait(timeout=10)
    # The server ends the killed client's session (and its lock) when it sees the socket close.
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            PgState(pg_state_url, REPO).close()
            break
        except StateLockedError:
            if time.monotonic() > deadline:
                raise


def test_a_reader_takes_no_lock_and_a_closed_store_refuses_work(pg_state_url: str) -> None:  # noqa: F811
    with PgState(pg_state_url, REPO) as owner, PgState(pg_state_url, REPO, lock=False) as reader:
        owner.set_meta("k", 1)
        assert reader.get_meta("k") == 1  # read from the database each time: no cache
    owner.close()  # twice is fine
    with pytest.raises(StateError, match="closed"):
        owner.get_meta("k")


@pytest.mark.parametrize("repo", ["widgets", "acme/", "/widgets", "a/b/c", ""])
def test_the_repository_is_owner_slash_name(pg_state_url: str, repo: str) -> None:  # noqa: F811
    with pytest.raises(StateError, match=r"GITHUB_REPO=.* is not valid: expected owner/name"):
        PgState(pg_state_url, repo)


# -- lost connections: reconnect once outside a batch; inside a batch, an error ---------------


def test_a_connection_lost_outside_a_batch_is_opened_again(
    pg_state_url: str,  # noqa: F811
    admin: Admin,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with PgState(_with_password(pg_state_url), REPO) as store:
        store.put(WorkItem(type=ISSUE, number=1))
        assert _terminate_stores(admin) == 1
        assert [i.number for i in store.items()] == [1]  # a read, on a new connection
        assert _terminate_stores(admin) == 1
        store.put(WorkItem(type=ISSUE, number=2))  # a write, likewise
        assert _terminate_stores(admin) == 1
        with store.batch():  # a batch starts on a new connection too
            store.set_meta("k", "v")
        with pytest.raises(StateLockedError):  # the lock was taken again with it
            PgState(pg_state_url, REPO)
    assert "connection lost" in caplog.text
    assert SECRET not in caplog.text
    with PgState(pg_state_url, REPO) as again:
        assert [i.number for i in again.items()] == [1, 2]
        assert again.get_meta("k") == "v"


def test_a_connection_lost_inside_a_batch_is_an_error_and_the_batch_is_undone(
    pg_state_url: str,  # noqa: F811
    admin: Admin,
) -> None:
    with PgState(pg_state_url, REPO) as store:
        with pytest.raises(StateError) as info, store.batch():
            store.put(WorkItem(type=ISSUE, number=1))
            _terminate_stores(admin)
            store.put(WorkItem(type=ISSUE, number=2))
        assert "STATE_URL" in str(info.value)
        assert "\n" not in str(info.value)
        assert store.items() == []  # the next call connects again; nothing of the batch stayed
        store.put(WorkItem(type=ISSUE, number=3))
        assert [i.number for i in store.items()] == [3]


def test_a_repository_taken_while_the_connection_was_lost_is_not_written(
    pg_state_url: str,  # noqa: F811
    admin: Admin,
) -> None:
    first = PgState(pg_state_url, REPO)
    try:
        _terminate_stores(admin)  # the first's lock went with its session
        with PgState(pg_state_url, REPO) as second:
            with pytest.raises(StateLockedError, match=f"repository {REPO}"):
                first.put(WorkItem(type=ISSUE, number=1))
            assert second.items() == []
    finally:
        first.close()


# -- secrets and clear errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # Shown as libpq reads it (key=value), so no URL parsing can misplace a password.
        (f"postgresql://bob:{SECRET}@127.0.0.1:1/db", "user=bob host=127.0.0.1 port=1 dbname=db"),
        (f"postgres://bob:{SECRET}@[::1]:1/db?sslmode=disable",
         "user=bob host=::1 port=1 dbname=db sslmode=disable"),
        (f"postgresql://127.0.0.1:1/db?user=bob&password={SECRET}",
         "user=bob host=127.0.0.1 port=1 dbname=db"),
        (f"postgresql://:{SECRET}@127.0.0.1:1/db", "host=127.0.0.1 port=1 dbname=db"),
        (f"host=127.0.0.1 port=1 user=bob password={SECRET}", "host=127.0.0.1 port=1 user=bob"),
        # libpq quotes a token it cannot decode: here, the password itself.
        (f"postgresql://bob:{SECRET}%zz@127.0.0.1:1/db", UNREADABLE),
        (f"host=127.0.0.1 password='{SECRET}", UNREADABLE),
    ],
)  # fmt: skip
def test_the_password_never_shows_in_an_error(url: str, shown: str) -> None:
    assert sorted(redacted(url).split()) == sorted(shown.split())  # libpq orders key=value
    with pytest.raises(StateError) as info:
        PgState(url, REPO)
    message = str(info.value)
    assert message.startswith("cannot connect to the state database (STATE_URL ")
    assert f"(STATE_URL {redacted(url)})" in message
    assert SECRET not in message
    assert "\n" not in message


def test_a_corrupted_row_names_the_item_and_the_way_out(
    pg_state_url: str,  # noqa: F811
    admin: Admin,
) -> None:
    with PgState(pg_state_url, REPO) as store:
        store.put(WorkItem(type=ISSUE, number=5))
        admin.execute('UPDATE orchestrator_items SET data = data || \'{"attempts": "many"}\'')
        with pytest.raises(StateError) as info:
            store.get(ISSUE, 5)
        assert f"corrupted item issue:5 of {REPO} (attempts:" in str(info.value)
        assert "delete its row from orchestrator_items" in str(info.value)


def test_the_owner_is_named_by_its_process(pg_state_url: str) -> None:  # noqa: F811
    url = _with_password(pg_state_url)
    with PgState(url, REPO), pytest.raises(StateLockedError) as info:
        PgState(url, REPO)
    assert info.value.pid == str(os.getpid())
    assert SECRET not in str(info.value)


# -- found by an outside review --------------------------------------------------------------


@pytest.mark.parametrize("password", ["pw#Hash123", "pw?Q=1&x", "a/b+c/d==", "p%40ss@word"])
def test_a_password_url_parsing_would_misplace_is_still_never_shown(password: str) -> None:
    url = f"postgresql://user:{password}@127.0.0.1:9/db?sslmode=disable"
    shown = redacted(url)
    decoded = password.replace("%40", "@")
    assert decoded not in shown and password not in shown and "user" in shown
    assert set(secrets_of(url)) >= {password} or decoded in secrets_of(url)


def test_a_nul_character_is_stored_as_a_replacement(pg_state_url: str) -> None:  # noqa: F811
    with PgState(pg_state_url, REPO) as state:
        state.put(WorkItem(type=WorkItemType.ISSUE, number=1, last_error="out\x00put"))
        state.set_meta("said", "a\x00b")
        item = state.get(WorkItemType.ISSUE, 1)
        assert item is not None and item.last_error == "out\ufffdput"
        assert state.get_meta("said") == "a\ufffdb"


def test_a_repositorys_name_is_one_state_whatever_its_case(pg_state_url: str) -> None:  # noqa: F811
    with PgState(pg_state_url, "Acme/Widgets") as state:
        state.put(WorkItem(type=WorkItemType.ISSUE, number=1))
        with pytest.raises(StateLockedError):
            PgState(pg_state_url, "acme/widgets")
    with PgState(pg_state_url, "acme/WIDGETS", lock=False) as other:
        assert other.get(WorkItemType.ISSUE, 1) is not None


def test_a_reconnect_ends_this_stores_own_lost_session_that_still_holds_the_lock(
    pg_state_url: str,  # noqa: F811
) -> None:
    # The lost session, as a half-open connection leaves it: alive on the server, holding
    # the repository's lock, while the daemon has given up on it.
    lost = psycopg.connect(pg_state_url, autocommit=True)
    key = advisory_key(f"orchestrator:{REPO}")
    lost.execute("SELECT pg_advisory_lock(%s)", (key,))
    with PgState(pg_state_url, REPO, lock=False) as state:
        state._lock = True
        state._backend = lost.info.backend_pid
        state._reconnect()
        state.put(WorkItem(type=WorkItemType.ISSUE, number=1))  # it owns the repository now
    assert lost.closed or lost.broken or _is_gone(lost)
    # The control: another's session holding the lock is not ended, it is a refusal.
    other = psycopg.connect(pg_state_url, autocommit=True)
    other.execute("SELECT pg_advisory_lock(%s)", (key,))
    with pytest.raises(StateLockedError):
        PgState(pg_state_url, REPO)
    other.close()


def _is_gone(conn: psycopg.Connection[TupleRow]) -> bool:
    try:
        conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return True
    return False


def test_a_state_url_libpq_cannot_read_is_one_line(pg_state_url: str) -> None:  # noqa: F811
    with pytest.raises(StateError, match="STATE_URL") as info:
        PgState("postgresql://u:p%E9@127.0.0.1:9/db", REPO)
    assert "p%E9" not in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(StateError, match="GITHUB_REPO='justname' is not valid"):
        PgState(pg_state_url, "justname")


def test_a_write_that_failed_inside_a_batch_is_never_a_silent_rollback(
    pg_state_url: str,  # noqa: F811
) -> None:
    with PgState(pg_state_url, REPO) as state:
        failed = pytest.raises(StateError, match="failed part way; none of it was kept")
        with failed, state.batch():
            state.put(WorkItem(type=ISSUE, number=1))
            with contextlib.suppress(TypeError):  # a caller that swallows a failed write
                state.set_meta("bad", {1, 2})  # not JSON: refused before the database
            with contextlib.suppress(StateError):  # one the database refused
                state._run("fail", lambda c: c.execute("SELECT 1/0"))
        assert state.get(ISSUE, 1) is None
        state.put(WorkItem(type=ISSUE, number=2))  # the connection is good again
        assert state.get(ISSUE, 2) is not None


def test_a_reader_creates_nothing_in_an_empty_database(
    pg_state_url: str,  # noqa: F811
    admin: Admin,
) -> None:
    with PgState(pg_state_url, REPO, lock=False) as reader:  # `status`, a dry run
        assert reader.items() == [] and reader.get_meta("x", 7) == 7
        assert reader.get(ISSUE, 1) is None and reader.meta_keys() == []
    tables = admin.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'orchestrator%'")
    assert tables.fetchone() == (0,)
    PgState(pg_state_url, REPO).close()  # the control: the owner makes them
    tables = admin.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'orchestrator%'")
    assert tables.fetchone() == (5,)  # the owner made them: items, meta, leases, daemons, version


def test_a_short_password_is_not_blanked_inside_words() -> None:
    with pytest.raises(StateError) as info:
        PgState("postgresql://u:p@127.0.0.1:9/db", REPO)
    assert "***" not in str(info.value) and "port" in str(info.value)


def test_a_state_urls_own_options_keep_the_daemons_settings(pg_state_url: str) -> None:  # noqa: F811
    for settings, expected in [
        ("-c search_path=elsewhere", ["elsewhere", "30s", "10s"]),
        ("-c statement_timeout=1s", ['"$user", public', "1s", "10s"]),  # the URL's own wins
    ]:
        with open_connection(f"{pg_state_url}?options={quote(settings)}") as conn:
            shown = [conn.execute(f"SHOW {name}".encode()).fetchone() for name in
                     ("search_path", "statement_timeout", "lock_timeout")]  # fmt: skip
        assert [value for (value,) in filter(None, shown)] == expected


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("", ["statement_timeout", "lock_timeout"]),
        ("-c statement_timeout=1s", ["lock_timeout"]),
        ("-cstatement_timeout=1s", ["lock_timeout"]),
        ("--statement-timeout=1s", ["lock_timeout"]),
        ("-c Statement_Timeout=1s -c lock_timeout=2s", []),
        (r"-c search_path=a\ -c\ lock_timeout=1s", ["statement_timeout", "lock_timeout"]),
    ],
)
def test_the_daemons_settings_are_merged_with_the_urls_options(given: str, kept: list[str]) -> None:
    ours = {"statement_timeout": "30s", "lock_timeout": "10s"}
    merged = merged_options(given, ours)
    assert merged.endswith(given)  # the URL's own last, as written
    assert [name for name in ours if f"-c {name}={ours[name]}" in merged] == kept
