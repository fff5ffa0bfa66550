"""Tests for the repositories' settings: GITHUB_REPOS, GITHUB_REPOS_FILE and each one's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.orchestrator.config import ConfigError, load_settings

pytestmark = pytest.mark.usefixtures("clean_env")

TOKEN = "ghp_" + "t0ken" * 8


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)


@pytest.mark.parametrize(
    "raw",
    ["acme/api,acme/web", "acme/api, acme/web", " acme/api\nacme/web ", '["acme/api", "acme/web"]'],
)
def test_github_repos_is_a_list_in_either_form(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("GITHUB_REPOS", raw)
    settings = load_settings()
    assert settings.repositories == ["acme/api", "acme/web"]
    assert settings.github_repo == "acme/api"  # the first, for what names one
    assert settings.several and settings.repo_path is None


def test_github_repo_and_the_list_add_up_each_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_REPO", "acme/web")
    monkeypatch.setenv("GITHUB_REPOS", "acme/api,ACME/Web,acme/api")
    assert load_settings().repositories == ["acme/web", "acme/api"]


def test_one_repository_in_the_list_is_the_one_repository_daemon(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    monkeypatch.setenv("GITHUB_REPOS", "acme/api")
    settings = load_settings()
    assert not settings.several
    assert settings.for_repo("acme/api") is settings
    assert settings.state_file == clean_env / ".orchestrator-state.json"


def test_the_file_names_repositories_with_comments(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    (clean_env / "repos.txt").write_text("# the team's\nacme/api  # the API\n\nacme/web\n")
    monkeypatch.setenv("GITHUB_REPOS_FILE", "repos.txt")
    monkeypatch.setenv("GITHUB_REPOS", "acme/docs")
    assert load_settings().repositories == ["acme/docs", "acme/api", "acme/web"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "acme/api\nnot a repo\n",
            r"GITHUB_REPOS_FILE='.*repos.txt' line 2: 'not a repo' is not "
            r"valid: expected owner/repo",
        ),
        ("# nothing\n\n", r".*names no repository: expected one owner/repo per line"),
        (None, r"GITHUB_REPOS_FILE='.*repos.txt' cannot be read \(No such file or directory\)"),
    ],
)
def test_a_bad_repositories_file_is_one_line(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path, text: str | None, message: str
) -> None:
    if text is not None:
        (clean_env / "repos.txt").write_text(text)
    monkeypatch.setenv("GITHUB_REPOS_FILE", "repos.txt")
    with pytest.raises(ConfigError, match=f"^{message}"):
        load_settings()


@pytest.mark.parametrize("raw", ["acme", "acme/api,/web", '["acme/api", 3]', "[nope"])
def test_a_bad_list_names_the_variable(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("GITHUB_REPOS", raw)
    with pytest.raises(ConfigError, match=r"^GITHUB_REPOS=.* is not valid: expected"):
        load_settings()


def test_no_repository_at_all_says_what_to_set() -> None:
    with pytest.raises(ConfigError, match=r"^GITHUB_REPO is required \(expected owner/repo.*"
                                          r"GITHUB_REPOS"):  # fmt: skip
        load_settings()


@pytest.mark.parametrize("name", ["REPO_PATH", "REPO_URL"])
def test_one_clone_for_several_repositories_is_refused(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path, name: str
) -> None:
    monkeypatch.setenv("GITHUB_REPOS", "acme/api,acme/web")
    monkeypatch.setenv(name, str(clean_env) if name == "REPO_PATH" else "https://x/y.git")
    with pytest.raises(ConfigError, match=f"^{name} names one repository's clone, but 2 "
                                          f"repositories are watched: remove {name}"):  # fmt: skip
        load_settings()


def test_each_repository_keeps_its_own_state_and_git(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    monkeypatch.setenv("GITHUB_REPOS", "acme/api,acme/web")
    settings = load_settings()
    api, web = settings.for_repo("acme/api"), settings.for_repo("acme/web")
    assert api.state_file == clean_env / ".orchestrator-state.acme+api.json"
    assert web.state_file == clean_env / ".orchestrator-state.acme+web.json"
    assert api.worktree_base == clean_env / "worktrees" / "acme+api"
    assert api.git_mirror != web.git_mirror
    assert (api.github_repo, api.repositories, api.several) == ("acme/api", ["acme/api"], False)
    assert web.clone_url == "https://github.com/acme/web.git"
    assert settings.state_file == clean_env / ".orchestrator-state.json"  # the daemon's own
