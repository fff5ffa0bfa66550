"""Without REPO_PATH, the daemon keeps a clone of its own, fetched from GitHub with the token:
the README's start works from any directory (the orchestrator's own checkout included)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.orchestrator.fakes.git_http import GitHttpServer
from scripts.orchestrator.fakes.git_world import git
from scripts.orchestrator.fakes.model_script import Text, write

from .fixtures_world import World


@pytest.fixture
def served(world: World, tmp_path: Path) -> Iterator[GitHttpServer]:
    """The fake GitHub's own repository over smart HTTP, as github.com/acme/widgets.git is,
    asking for the token as GitHub does."""
    root = tmp_path / "git-host"
    (root / "acme").mkdir(parents=True)
    (root / "acme" / "widgets.git").symlink_to(world.git.origin)
    with GitHttpServer(root, world.github.token) as server:
        yield server


async def test_without_a_clone_the_daemon_fetches_and_pushes_its_own(
    world: World, served: GitHttpServer
) -> None:
    user_clone = git(world.git.clone, "rev-parse", "HEAD")
    world.configure(repo_path=None, repo_url=f"{served.url}/acme/widgets.git")
    number = world.github.create_issue("Add a greeting", "Write greet.py", user="alice")
    world.github.add_labels(number, "ready", user="alice")
    world.model.script_for(
        f"Implement GitHub issue #{number}",
        [write({"greet.py": "def greet() -> str:\n    return 'hi'\n"}), Text("Added greet.py.")],
    )

    assert await world.once() == 0

    # Fetched from GitHub with the token, pushed back the same way: a pull request exists.
    assert world.git.branch_exists(f"feature/issue-{number}")
    [pull] = [n for n in range(1, world.github.next_number()) if n != number]
    assert world.github.pull(pull)["head"]["ref"] == f"feature/issue-{number}"
    assert any(r.authorized and r.path.endswith("git-upload-pack") for r in served.requests)
    assert any(r.authorized and r.path.endswith("git-receive-pack") for r in served.requests)
    mirror = world.settings.git_mirror
    assert (mirror / "HEAD").is_file() and git(mirror, "config", "--get-regexp", ".", check=False)
    assert world.github.token not in (mirror / "config").read_text()
    # The user's clone played no part.
    assert git(world.git.clone, "rev-parse", "HEAD") == user_clone
    assert not git(world.git.clone, "branch", "--list", "feature/*")


async def test_a_wrong_token_is_a_clear_start_failure(
    world: World, served: GitHttpServer, tmp_path: Path
) -> None:
    world.configure(repo_path=None, repo_url=f"{served.url}/acme/widgets.git")
    served.token = "ghp_" + "wrong" * 8  # the host refuses what the daemon sends
    url = world.settings.clone_url
    done = world.run_cli("--once", extra_env={"REPO_PATH": "", "REPO_URL": url})
    assert done.returncode == 2, done.stderr
    [line] = [x for x in done.stderr.splitlines() if "error:" in x]
    assert f"cannot fetch acme/widgets from REPO_URL={url}" in line
    assert "check GITHUB_TOKEN" in line and "Traceback" not in done.stderr
    assert world.github.token not in done.stderr
    assert not world.settings.git_mirror.exists()  # nothing half made is left to trip on


def test_a_clone_made_from_a_local_path_is_not_taken_for_the_watched_repository(
    world: World, served: GitHttpServer
) -> None:
    """Found by a newcomer: started without REPO_PATH inside a clone whose remote is a local
    path (an orchestrator checkout cloned from /home/me/src/...), the daemon took that clone
    for GITHUB_REPO's. A local path names no repository: the daemon keeps its own clone."""
    git(world.root, "init", "--quiet")
    git(world.root, "remote", "add", "origin", str(world.git.origin))  # acme/widgets itself
    url = f"{served.url}/acme/widgets.git"
    done = world.run_cli("--once", extra_env={"REPO_PATH": "", "REPO_URL": url})
    assert done.returncode == 0, done.stderr
    assert any(r.authorized and r.path.endswith("git-upload-pack") for r in served.requests)
    assert (world.settings.git_mirror / "HEAD").is_file()
    assert "git: made the daemon's own copy of acme/widgets" in done.stderr
