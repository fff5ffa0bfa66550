"""`--dry-run`: one poll cycle that reads GitHub and decides, then says what it would do.

Nothing is written: GitHub's writes are recorded instead of sent (and any other write the
client would make is refused), the state is a copy in memory, and no job runs, so no
worktree, commit, push or Claude run happens.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, TextIO

from githubkit import Response

from .checks import ShellChecks
from .claude_runner import SdkClaudeRunner
from .clock import SystemClock
from .config import Settings
from .core.models import Comment
from .core.redact import Redactor
from .core.text import cut
from .core.work import WorkItemType
from .github_watcher import GitHubClient
from .ports import Job
from .repo_settings import RepoSettings
from .secret_scan import SecretScanner
from .startup import check_start
from .state_open import dry_run_copy
from .wiring import Adapters, build_workflows
from .workflows.comment_feed import CommentFeed
from .workflows.pull_heads import PullHeads
from .worktree_manager import WorktreeManager

SHOWN = 100  # characters of a comment shown in the report

_VERBS = {
    WorkItemType.ISSUE: "implement issue",
    WorkItemType.PR_REVIEW: "review pull request",
    WorkItemType.MERGE: "test and merge pull request",
    WorkItemType.FOLLOW_UP: "follow up on pull request",
}


class UnmodelledWrite(Exception):
    """The cycle made a GitHub write the dry run does not record; it was not sent."""


class DryRunGitHub(GitHubClient):
    """The real client for reads; its writes are recorded in `would`, never sent."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.would: list[str] = []

    async def _send(
        self, method: str, url: str, *, params: dict[str, Any] | None = None, body: Any = None
    ) -> Response[Any]:
        if method != "GET":  # a write this class does not record: stop, never send it
            raise UnmodelledWrite(f"{method} {url}")
        return await super()._send(method, url, params=params, body=body)

    async def create_comment(self, number: int, body: str) -> Comment:
        first = body.strip().splitlines()[0] if body.strip() else ""
        self.would.append(f"comment on #{number}: {cut(first, SHOWN, '…')}")
        now = datetime.now(timezone.utc)
        return Comment(0, number, await self.login() or "", body, now, now)

    async def edit_comment(self, comment_id: int, body: str) -> None:
        first = body.strip().splitlines()[0] if body.strip() else ""
        self.would.append(f"edit comment {comment_id}: {cut(first, SHOWN, '…')}")

    async def react_to_issue(self, number: int, content: str) -> None:
        self.would.append(f"react {content} to #{number}")

    async def react_to_comment(self, comment_id: int, content: str) -> None:
        self.would.append(f"react {content} to comment {comment_id}")

    async def add_labels(self, number: int, *labels: str) -> None:
        self.would.append(f"label #{number} {', '.join(labels)}")

    async def remove_label(self, number: int, label: str) -> bool:
        self.would.append(f"remove the label {label} from #{number}")
        return True

    async def close_issue(self, number: int) -> None:
        self.would.append(f"close #{number}")

    async def reply_to_review_comment(self, number: int, comment_id: int, body: str) -> int:
        first = body.strip().splitlines()[0] if body.strip() else ""
        self.would.append(f"reply in thread {comment_id} of #{number}: {cut(first, SHOWN, '…')}")
        return 0

    async def request_reviewers(self, number: int, logins: Sequence[str]) -> None:
        self.would.append(f"ask {', '.join(logins)} to review #{number} again")

    async def comment_on_commit(self, sha: str, body: str) -> None:
        first = body.strip().splitlines()[0] if body.strip() else ""
        self.would.append(f"comment on commit {sha[:7]}: {cut(first, SHOWN, '…')}")


async def dry_run(settings: Settings, redactor: Redactor, out: TextIO) -> int:
    """Read, decide and report, for each repository watched; the exit code (0)."""
    for number, name in enumerate(settings.repositories):
        if number:
            print(file=out)
        await _dry_run_one(settings.for_repo(name), redactor, out)
    return 0


async def _dry_run_one(settings: Settings, redactor: Redactor, out: TextIO) -> None:
    github = DryRunGitHub(
        settings.token, settings.github_repo, api_url=settings.github_api_url, redactor=redactor
    )
    worktrees = WorktreeManager(
        settings.repo_path,
        settings.worktree_base,
        remote=settings.git_remote,
        token=None,
        url=settings.clone_url,
    )
    async with github:
        await check_start(settings, github, worktrees)
        state = dry_run_copy(settings)  # STATE_FILE's or STATE_URL's, changed in memory only
        heads = PullHeads(github, state)
        feed = CommentFeed(github, state)
        # Built as the daemon builds them; jobs never run, so no CLI, sandbox or check starts.
        adapters = Adapters(
            github,
            worktrees,
            SdkClaudeRunner(settings.claude_cli_path or "claude"),
            ShellChecks(None),
            SecretScanner(redactor),
            SystemClock(),
            redactor,
        )
        applied: list[Settings | None] = []
        mine = RepoSettings(settings, github, state, applied.append)
        await mine.refresh()  # the repository's own settings file, as the daemon reads it
        await heads.refresh()
        await feed.refresh()
        jobs: list[Job] = []
        if applied[-1] is not None:
            for workflow in build_workflows(applied[-1], state, adapters, feed, heads):
                jobs.extend(await workflow.poll())
    said = report(settings, jobs, github.would)
    if mine.refused is not None:
        said += f"\nwould start nothing in this repository: {mine.refused}"
    print(redactor.redact(said), file=out)


def report(settings: Settings, jobs: Sequence[Job], would: Sequence[str]) -> str:
    """What one cycle would do: the work it would start and the writes it would make."""
    lines = [f"dry run of {settings.github_repo}: nothing was written to GitHub, git or the state"]
    lines.append("would start:" if jobs else "would start no work")
    lines += [f"  {_VERBS[job.kind]} #{job.number}" for job in jobs]
    lines.append("would write to GitHub:" if would else "would write nothing to GitHub")
    lines += [f"  {line}" for line in would]
    return "\n".join(lines)
