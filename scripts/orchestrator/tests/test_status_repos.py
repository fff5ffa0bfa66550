"""Tests for `status` and `clear` when several repositories are watched (GITHUB_REPOS)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.orchestrator.config import load_settings
from scripts.orchestrator.core.work import Status, WorkItem, WorkItemType
from scripts.orchestrator.main import main
from scripts.orchestrator.state import State, StateError
from scripts.orchestrator.state_open import check_one_repository

pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.fixture
def two(monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> Path:
    """acme/api with issue #1 and acme/web with issue #1 and pull request #2's review."""
    monkeypatch.setenv("GITHUB_REPOS", "acme/api,acme/web")
    with State(clean_env / ".orchestrator-state.acme+api.json") as api:
        api.put(WorkItem(type=WorkItemType.ISSUE, number=1, status=Status.DONE, pr_number=5))
    with State(clean_env / ".orchestrator-state.acme+web.json") as web:
        web.put(
            WorkItem(
                type=WorkItemType.ISSUE, number=1, status=Status.FAILED, last_error="tests failed"
            )
        )
        web.put(WorkItem(type=WorkItemType.PR_REVIEW, number=2, status=Status.DONE))
    return clean_env


def test_status_shows_each_repository_under_its_name(
    two: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    api, web = out.index("acme/api:"), out.index("acme/web:")
    assert api < out.index("#5") < web < out.index("tests failed")
    assert main(["status", "--repo", "ACME/web"]) == 0
    only = capsys.readouterr().out
    assert "tests failed" in only and "#5" not in only and "acme/api" not in only


def test_clear_needs_the_repository_and_clears_only_its_items(
    two: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["clear", "issue", "1"]) == 2
    assert ("2 repositories are watched (GITHUB_REPOS): say which with --repo, one of "
            "acme/api, acme/web") in capsys.readouterr().err  # fmt: skip
    assert main(["clear", "--repo", "acme/web", "issue", "1"]) == 0
    with State(two / ".orchestrator-state.acme+web.json", lock=False) as web:
        assert web.get(WorkItemType.ISSUE, 1) is None
    with State(two / ".orchestrator-state.acme+api.json", lock=False) as api:
        assert api.get(WorkItemType.ISSUE, 1) is not None


def test_a_repository_not_watched_is_one_line(
    two: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--repo", "acme/docs"]) == 2
    assert capsys.readouterr().err.strip() == (
        "claude-orchestrator: error: --repo acme/docs is not watched: expected one of "
        "acme/api, acme/web"
    )


def test_one_repository_again_is_refused_while_its_items_are_in_its_own_file(
    two: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by an outside review: from two repositories back to one, the daemon read an empty
    STATE_FILE and would have taken every open command as new."""
    monkeypatch.delenv("GITHUB_REPOS")
    monkeypatch.setenv("GITHUB_REPO", "acme/web")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_" + "x" * 36)
    with pytest.raises(StateError, match=r"\.orchestrator-state\.acme\+web\.json holds acme/web's "
                       r"state from when several .* move \.orchestrator-state\.acme\+web\.json to "
                       r"\.orchestrator-state\.json"):  # fmt: skip
        check_one_repository(load_settings())
    monkeypatch.setenv("GITHUB_REPO", "acme/docs")  # the control: a repository of its own
    check_one_repository(load_settings())
