"""Tests for a repository's settings file as the daemon reads it from the default branch."""

from __future__ import annotations

import pytest

from scripts.orchestrator.config import Settings
from scripts.orchestrator.core.errors import GitHubError, MalformedAnswer
from scripts.orchestrator.core.repo_config import REPO_CONFIG_PATH
from scripts.orchestrator.repo_settings import REFUSED_META, RepoSettings

from .ports_fakes import MemoryState, SettingsFactory, sha


class Branch:
    """The `RepoFiles` port: a default branch whose head and file a test changes."""

    def __init__(self) -> None:
        self.head = sha("c1")
        self.files: dict[str, str] = {}
        self.comments: list[tuple[str, str]] = []
        self.reads = 0
        self.down = False
        self.refuse_comments = False
        self.failure: Exception | None = None  # what reading the file raises

    async def default_branch(self) -> str:
        return "main"

    async def branch_sha(self, branch: str) -> str:
        assert branch == "main"
        if self.down:
            raise GitHubError(502, "Bad Gateway")
        return self.head

    async def file_text(self, path: str, ref: str) -> str | None:
        assert (path, ref) == (REPO_CONFIG_PATH, self.head)
        self.reads += 1
        if self.failure is not None:
            raise self.failure
        return self.files.get(ref)

    async def comment_on_commit(self, sha: str, body: str) -> None:
        if self.refuse_comments:
            raise GitHubError(403, "Resource not accessible by integration")
        self.comments.append((sha, body))

    def commit(self, seed: str, text: str | None) -> None:
        self.head = sha(seed)
        if text is not None:
            self.files[self.head] = text


@pytest.fixture
def branch() -> Branch:
    return Branch()


def watch(operator: Settings, branch: Branch) -> tuple[RepoSettings, list[Settings | None]]:
    applied: list[Settings | None] = []
    return RepoSettings(operator, branch, MemoryState(), applied.append), applied


async def test_without_a_file_the_daemons_settings_apply(
    make_settings: SettingsFactory, branch: Branch
) -> None:
    operator = make_settings()
    repo, applied = watch(operator, branch)
    await repo.refresh()
    assert applied == [operator] and repo.refused is None


async def test_the_file_overrides_and_is_read_again_only_when_the_branch_moves(
    make_settings: SettingsFactory, branch: Branch
) -> None:
    operator = make_settings(claude_max_budget_usd=2.0)
    branch.commit("c2", 'ready_label = "go"\npre_merge_commands = ["pytest -q"]\n'
                        "claude_max_budget_usd = 5.0\n")  # fmt: skip
    repo, applied = watch(operator, branch)
    await repo.refresh()
    await repo.refresh()  # the same head: not read again
    assert branch.reads == 1 and len(applied) == 1
    mine = applied[0]
    assert mine is not None
    assert (mine.ready_label, mine.pre_merge_commands) == ("go", ["pytest -q"])
    assert mine.claude_max_budget_usd == 2.0  # never above the operator's
    assert operator.ready_label == "ready"  # the daemon's own are untouched
    branch.commit("c3", None)  # the file removed
    await repo.refresh()
    assert applied[-1] == operator


async def test_a_wrong_file_stops_the_work_and_is_told_once_on_its_commit(
    make_settings: SettingsFactory, branch: Branch
) -> None:
    state = MemoryState()
    applied: list[Settings | None] = []
    repo = RepoSettings(make_settings(), branch, state, applied.append)
    branch.commit("c2", 'pre_merge_comands = ["pytest"]\n')
    await repo.refresh()
    assert applied == [None]
    assert repo.refused is not None and "pre_merge_comands" in repo.refused
    assert [c for c, _ in branch.comments] == [sha("c2")]
    body = branch.comments[0][1]
    assert REPO_CONFIG_PATH in body and "pre_merge_commands" in body  # the hint
    branch.commit("c3", 'pre_merge_comands = ["pytest"]\n')  # another commit, the same file
    await repo.refresh()
    again = RepoSettings(make_settings(), branch, state, applied.append)  # a restart
    await again.refresh()
    assert len(branch.comments) == 1 and state.get_meta(REFUSED_META)
    branch.commit("c4", 'pre_merge_commands = ["pytest"]\n')  # fixed
    await again.refresh()
    assert applied[-1] is not None and applied[-1].pre_merge_commands == ["pytest"]


async def test_a_refused_comment_is_tried_again_and_the_work_still_waits(
    make_settings: SettingsFactory, branch: Branch
) -> None:
    repo, applied = watch(make_settings(), branch)
    branch.commit("c2", "max_turns = -1\n")
    branch.refuse_comments = True
    await repo.refresh()
    assert applied == [None] and branch.comments == []
    branch.refuse_comments = False
    await repo.refresh()
    assert len(branch.comments) == 1 and applied[-1] is None


async def test_nothing_runs_on_a_guess_before_the_file_was_read(
    make_settings: SettingsFactory, branch: Branch
) -> None:
    operator = make_settings()
    repo, applied = watch(operator, branch)
    branch.down = True
    with pytest.raises(GitHubError):
        await repo.refresh()
    assert applied == [None]
    branch.down = False
    await repo.refresh()
    assert applied[-1] == operator
    branch.down = True  # known once: an outage keeps the settings in use
    with pytest.raises(GitHubError):
        await repo.refresh()
    assert applied[-1] == operator


@pytest.mark.parametrize(
    ("failure", "said"),
    [
        (MalformedAnswer(200, "GET", "/contents", "type", "is dir"), "found a folder"),
        (GitHubError(403, "This API returns blobs up to 1 MB in size"), "will not show"),
    ],
)
async def test_a_path_github_shows_no_text_for_is_a_wrong_file(
    make_settings: SettingsFactory, branch: Branch, failure: Exception, said: str
) -> None:
    """Found by an outside review: a folder or a huge file at the path kept the last settings
    for good, with a traceback every cycle and nothing said on GitHub."""
    repo, applied = watch(make_settings(), branch)
    await repo.refresh()  # no file yet: the daemon's settings
    branch.commit("c2", None)
    branch.failure = failure
    await repo.refresh()
    assert applied[-1] is None and repo.refused is not None and said in repo.refused
    assert len(branch.comments) == 1
    branch.failure = GitHubError(502, "Bad Gateway")  # GitHub's outage is no wrong file
    branch.commit("c3", None)
    with pytest.raises(GitHubError):
        await repo.refresh()
    assert len(branch.comments) == 1


async def test_a_file_wrong_again_after_a_fix_is_told_again(
    make_settings: SettingsFactory, branch: Branch
) -> None:
    repo, applied = watch(make_settings(), branch)
    branch.commit("c2", "max_turns = 0\n")
    await repo.refresh()
    branch.commit("c3", "max_turns = 5\n")
    await repo.refresh()
    assert applied[-1] is not None
    branch.commit("c4", "max_turns = 0\n")  # the same mistake, made again
    await repo.refresh()
    assert [c for c, _ in branch.comments] == [sha("c2"), sha("c4")]


async def test_commands_from_the_repository_wait_for_the_sandbox(
    make_settings: SettingsFactory, branch: Branch
) -> None:
    """Anyone who can push to one repository's default branch would choose what runs with the
    daemon's rights (and every repository's token) when SANDBOX=off."""
    branch.commit("c2", 'pre_merge_commands = ["make test"]\n')
    unsandboxed, applied = watch(make_settings(sandbox="off"), branch)
    await unsandboxed.refresh()
    assert applied == [None] and "SANDBOX=off" in (unsandboxed.refused or "")
    sandboxed, applied = watch(make_settings(), branch)  # the control
    await sandboxed.refresh()
    assert applied[-1] is not None and applied[-1].pre_merge_commands == ["make test"]
