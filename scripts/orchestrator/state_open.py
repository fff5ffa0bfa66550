"""Which state the daemon keeps: the JSON file (STATE_FILE), or PostgreSQL (STATE_URL)."""

from __future__ import annotations

import socket
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from .config import Settings, repo_state_file
from .state import State, StateError

if TYPE_CHECKING:
    from .state_pg import PgState


def open_state(
    settings: Settings, *, lock: bool = True, lease: str | None = None
) -> State | PgState:
    """The daemon's state store; raises `StateError` (one line) when it cannot be used.
    psycopg is imported only for a database's state. `lease`: the daemon's lease owner, when
    several daemons share the database's repositories (`PgState`)."""
    if settings.state_url is not None:
        from .state_pg import PgState

        url = settings.state_url.get_secret_value()
        return PgState(url, settings.github_repo, lock=lock, lease=lease)
    return State(settings.state_file, lock=lock)


# The daemon's own records beside several repositories' states (Claude's spend by day, the
# runs in progress): under this name in a database, where no repository can be called so.
DAEMON_KEY = "*"


def open_daemon_state(settings: Settings) -> State | PgState:
    """With several repositories, the store of what is the daemon's, not one repository's:
    STATE_FILE itself, or DAEMON_KEY's rows in STATE_URL's database. Refused when STATE_FILE
    holds a one-repository daemon's work items: they belong in that repository's own file."""
    if settings.state_url is not None:
        from .state_pg import PgState

        # Each daemon's own (several may share the database): its host and its folder.
        own = f"{DAEMON_KEY}{socket.gethostname()}:{settings.worktree_base}"
        return PgState(settings.state_url.get_secret_value(), own)
    state = State(settings.state_file)
    items = state.items()
    if items:
        state.close()
        mine = settings.for_repo(settings.github_repo).state_file.name
        raise StateError(
            f"STATE_FILE={settings.state_file} holds the work items of a daemon that watched "
            f"one repository ({len(items)} items); with several, each repository has a file of "
            f"its own beside it: rename it to {mine} if it was {settings.github_repo}'s (or "
            "to that of the repository it was for), then start again"
        )
    return state


def check_one_repository(settings: Settings) -> None:
    """A daemon that watched several repositories and now watches one: its repository's items
    are in that repository's own file, not STATE_FILE. Refused in one line, not started on an
    empty state (which would take every open command and pull request as new)."""
    if settings.several or settings.state_url is not None:
        return
    own = repo_state_file(settings.state_file, settings.github_repo)
    if not own.is_file():
        return
    with State(settings.state_file, lock=False) as state:
        if state.items():
            return
    raise StateError(
        f"{own} holds {settings.github_repo}'s state from when several repositories were "
        f"watched, and STATE_FILE={settings.state_file} holds no work items: move {own.name} "
        f"to {settings.state_file.name} (or set GITHUB_REPOS again), then start again"
    )


def dry_run_copy(settings: Settings) -> State:
    """The daemon's state as it stands, in memory, for a dry run to change freely: the file
    read without its lock, or the database's rows read without the repository's lock."""
    if settings.state_url is None:
        return State(settings.state_file, persist=False)
    from .state_pg import PgState

    # Empty to start with (no such file): a file lying at STATE_FILE is not the daemon's state.
    copy = State(Path(tempfile.gettempdir()) / f"orchestrator-{uuid.uuid4().hex}", persist=False)
    with PgState(settings.state_url.get_secret_value(), settings.github_repo, lock=False) as db:
        for item in db.items():
            copy.put(item)
        for key in db.meta_keys():
            copy.set_meta(key, db.get_meta(key))
    return copy


def migrate_state(state_file: Path, url: str, repo: str) -> str:
    """Copy `state_file`'s items and records into the database at `url` (STATE_URL), for
    `repo`: one line saying what was copied. Refused when the database already holds state
    for the repository (nothing is overwritten) or either side is in use (a daemon holds it)."""
    from .state_pg import PgState

    if not state_file.is_file():
        raise ValueError(f"STATE_FILE={state_file} does not exist: nothing to copy")
    with State(state_file) as source:
        items, meta = source.items(), source.meta_items()
        with PgState(url, repo) as target:
            if target.items() or target.meta_keys():
                raise ValueError(
                    f"STATE_URL already holds state for {repo}: nothing copied (the daemon has "
                    "run on it; keep using it, or point STATE_URL at an empty database)"
                )
            with target.batch():
                for item in items:
                    target.put(item)
                for key, value in meta.items():
                    target.set_meta(key, value)
    return (
        f"copied {len(items)} work item(s) and {len(meta)} record(s) of {repo} from "
        f"{state_file} into STATE_URL; {state_file} is left as it was"
    )
