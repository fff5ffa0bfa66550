"""STATE_URL through the real path: the daemon keeps its state in PostgreSQL, `status` and
`clear` read it there, `migrate-state` copies a state file into it, and its password stays out
of every output."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from scripts.orchestrator.core.work import IssueFacts
from scripts.orchestrator.fakes.model_script import Text, write
from scripts.orchestrator.proc import child_env
from scripts.orchestrator.state import State, Status, WorkItem, WorkItemType
from scripts.orchestrator.state_pg import PgState

from .fixtures_world import World

PASSWORD = "pw-Zq81-not-needed-by-trust"  # the test server trusts 127.0.0.1; never printed


def _with_password(url: str) -> str:
    return url.replace("postgres@", f"postgres:{PASSWORD}@", 1)


def test_the_daemon_keeps_its_state_in_postgresql(world: World, pg_state_url: str) -> None:
    url = _with_password(pg_state_url)
    number = world.github.create_issue("Add a greeting", "Write greet.py", user="alice")
    world.github.add_labels(number, "ready", user="alice")
    world.model.script_for(f"Implement GitHub issue #{number}",
                           [write({"greet.py": "X = 1\n"}), Text("Added greet.py.")])  # fmt: skip

    done = world.run_cli("--once", "--verbose", extra_env={"STATE_URL": url})

    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    with PgState(pg_state_url, world.settings.github_repo, lock=False) as state:
        item = state.get(WorkItemType.ISSUE, number)
        assert item is not None and item.status is Status.DONE and item.pr_number is not None
        assert state.get_meta("first_watched_at") is not None
    assert not world.state_file.exists()  # the file was not used
    shown = world.run_cli("status", extra_env={"STATE_URL": url})
    assert shown.returncode == 0 and f"issue #{number}" in shown.stdout, shown.stderr
    assert PASSWORD not in shown.stdout + shown.stderr
    cleared = world.run_cli("clear", "issue", str(number), extra_env={"STATE_URL": url})
    assert cleared.returncode == 0 and "cleared issue" in cleared.stdout, cleared.stderr
    with PgState(pg_state_url, world.settings.github_repo, lock=False) as state:
        assert state.get(WorkItemType.ISSUE, number) is None


def test_migrate_state_copies_the_file_once(world: World, pg_state_url: str) -> None:
    with State(world.state_file) as state:
        state.put(WorkItem(type=WorkItemType.ISSUE, number=4, status=Status.DONE, pr_number=5))
        state.set_meta("comments_cursor", "2026-12-06T00:00:00+00:00")
    url = _with_password(pg_state_url)

    # It needs no GitHub token: only STATE_FILE, STATE_URL and GITHUB_REPO.
    copied = world.run_cli("migrate-state", extra_env={"STATE_URL": url, "GITHUB_TOKEN": ""})

    assert copied.returncode == 0, copied.stderr
    assert "copied 1 work item(s) and 1 record(s)" in copied.stdout
    with PgState(pg_state_url, world.settings.github_repo, lock=False) as target:
        assert target.get(WorkItemType.ISSUE, 4) is not None
        assert target.get_meta("comments_cursor") == "2026-12-06T00:00:00+00:00"
    again = world.run_cli("migrate-state", extra_env={"STATE_URL": url})
    assert again.returncode == 2 and "already holds state" in again.stderr
    assert "point STATE_URL at an empty database" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1 and PASSWORD not in again.stderr


def test_a_wrong_state_url_is_one_line_without_its_password(world: World) -> None:
    for url, expected in [
        (f"mysql://u:{PASSWORD}@h/db", "STATE_URL is not valid: expected a PostgreSQL URL"),
        (f"postgresql://u:{PASSWORD}@127.0.0.1:9/db", "STATE_URL"),  # nothing listens there
    ]:
        done = world.run_cli("--once", extra_env={"STATE_URL": url})
        assert done.returncode == 2, done.stdout + done.stderr
        line = done.stderr.strip().splitlines()[-1]
        assert expected in line and PASSWORD not in done.stdout + done.stderr


def test_a_dry_run_reads_the_databases_state_and_changes_nothing(
    world: World, pg_state_url: str
) -> None:
    url = _with_password(pg_state_url)
    assert world.run_cli("--once", extra_env={"STATE_URL": url}).returncode == 0  # watched
    number = world.github.create_issue("Add greet", "Write greet.py.", user="alice")
    world.github.add_labels(number, "ready", user="alice")
    done_issue = world.github.create_issue("Done already", "", user="alice")
    world.github.add_labels(done_issue, "ready", user="alice")
    with PgState(pg_state_url, world.settings.github_repo) as state:  # what only it knows
        state.put(WorkItem(type=WorkItemType.ISSUE, number=done_issue, status=Status.DONE,
                           facts=IssueFacts(label_events=1)))  # fmt: skip
    with PgState(pg_state_url, world.settings.github_repo, lock=False) as state:
        before = ([i.model_dump() for i in state.items()],
                  {k: state.get_meta(k) for k in state.meta_keys()})  # fmt: skip

    done = world.run_cli("--dry-run", extra_env={"STATE_URL": url})

    assert done.returncode == 0, done.stderr
    assert f"implement issue #{number}" in done.stdout
    assert f"implement issue #{done_issue}" not in done.stdout  # the database's state was read
    assert PASSWORD not in done.stdout + done.stderr
    with PgState(pg_state_url, world.settings.github_repo, lock=False) as state:
        after = ([i.model_dump() for i in state.items()],
                 {k: state.get_meta(k) for k in state.meta_keys()})  # fmt: skip
    assert after == before


def test_migrate_state_without_a_state_file_is_refused(world: World, pg_state_url: str) -> None:
    done = world.run_cli("migrate-state", extra_env={"STATE_URL": pg_state_url})
    assert done.returncode == 2 and "does not exist: nothing to copy" in done.stderr
    assert not world.state_file.exists()


def test_libpqs_password_variables_reach_no_child(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", "pg-secret")
    monkeypatch.setenv("PGPASSFILE", "/root/.pgpass")
    monkeypatch.setenv("PGHOST", "db.example")  # not a secret: the control
    env = child_env()
    assert "PGPASSWORD" not in env and "PGPASSFILE" not in env and env["PGHOST"] == "db.example"


def test_a_daemon_on_another_machine_is_answered_304_from_the_databases_validators(
    world: World, pg_state_url: str, tmp_path: Path
) -> None:
    def reads_by_another_machine(name: str, **extra: str) -> Counter[int]:
        """One cycle from folders of its own (no cache file, no listings), and how GitHub
        answered its reads."""
        own = tmp_path / name
        own.mkdir()
        before = len(world.github.all_requests())
        done = world.run_cli("--once", extra_env={
            "STATE_FILE": str(own / "state.json"), "WORKTREE_BASE": str(own / "worktrees"),
            **extra})  # fmt: skip
        assert done.returncode == 0, done.stderr
        return Counter(r.status for r in world.github.all_requests()[before:] if r.method == "GET")

    shared = {"STATE_URL": pg_state_url}
    first = reads_by_another_machine("a", **shared)
    assert first[304] == 0 and first[200] > 0
    taking_over = reads_by_another_machine("b", **shared)
    assert taking_over[304] > 0 and taking_over[200] < first[200], (first, taking_over)
    # The control: a machine whose answers are kept in its own folder starts with none.
    alone = reads_by_another_machine("c")
    assert alone[304] == 0, alone
    assert not list((tmp_path / "b").glob("*.sqlite")), "the database keeps them, not a file"
