"""The follow-up workflow on the port fakes: exactly once across restarts and duplicates, a
person's push never overwritten, and where work goes on pull requests that are not the daemon's."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest

from scripts.orchestrator.config import Settings
from scripts.orchestrator.core.errors import GitHubError
from scripts.orchestrator.core.redact import Redactor
from scripts.orchestrator.core.work import Ask, Status, WorkItem, WorkItemType
from scripts.orchestrator.workflows.branch_work import BranchWork
from scripts.orchestrator.workflows.commands import courtesies_sent
from scripts.orchestrator.workflows.comment_feed import CommentFeed
from scripts.orchestrator.workflows.followup import FollowUpWorkflow

from .ports_fakes import (
    FakeClock,
    FakeSecretScan,
    MemoryState,
    RecordingGit,
    ScriptedClaude,
    SettingsFactory,
    sha,
)
from .ports_fakes_github import BOT, RecordingGitHub


@dataclass
class Rig:
    settings: Settings
    state: MemoryState
    gh: RecordingGitHub
    git: RecordingGit
    claude: ScriptedClaude
    feed: CommentFeed
    scanner: FakeSecretScan
    clock: FakeClock
    wf: FollowUpWorkflow = field(init=False)

    def __post_init__(self) -> None:
        redactor = Redactor([self.settings.token])
        work = BranchWork(self.settings, self.git, self.claude, self.scanner, redactor)
        self.wf = FollowUpWorkflow(self.settings, self.state, self.gh, self.git, work, self.feed,
                                   redactor, self.clock)  # fmt: skip

    def under(self, settings: Settings, *, feed: CommentFeed | None = None) -> Rig:
        """The same ports, with a workflow under other settings (and another feed)."""
        return dataclasses.replace(self, settings=settings, feed=feed or self.feed)

    async def cycle(self) -> None:
        """One cycle: the feed, the poll, and every job it asked for."""
        await self.feed.refresh()
        jobs = await self.wf.poll()
        await self.feed.commit()
        for job in jobs:
            await job.run()
        await courtesies_sent()

    def item(self, number: int) -> WorkItem:
        item = self.state.get(WorkItemType.FOLLOW_UP, number)
        assert item is not None
        return item

    def own_pull(self) -> int:
        number = self.gh.add_pull("feature/issue-1", author=BOT)
        self.gh.permissions.pop(BOT, None)
        return number


@pytest.fixture
def rig(
    make_settings: SettingsFactory,
    memory_state: MemoryState,
    gh: RecordingGitHub,
    git: RecordingGit,
    claude: ScriptedClaude,
    scanner: FakeSecretScan,
    clock: FakeClock,
) -> Rig:
    gh.permissions["alice"] = "write"
    feed = CommentFeed(gh, memory_state)
    return Rig(make_settings(), memory_state, gh, git, claude, feed, scanner, clock)


async def _watching(rig: Rig) -> None:
    await rig.cycle()  # the feed's first look: comments from before it are not commands


async def test_a_command_delivered_twice_is_one_ask_and_one_push(rig: Rig) -> None:
    pull = rig.own_pull()
    await _watching(rig)
    rig.gh.comment(pull, "/claude add tests", user="alice")
    rig.claude.succeed("Added tests.", {"test_x.py": "def test(): pass\n"})
    await rig.cycle()
    assert len(rig.git.pushes) == 1 and rig.item(pull).status is Status.DONE
    # The cursor lost (a crash before the cycle's end): the comment comes again.
    rig.state.set_meta("comments_cursor", "1970-01-01T00:00:00+00:00")
    await rig.cycle()
    assert len(rig.git.pushes) == 1 and rig.claude.unused == 0
    assert len([c for c in rig.gh.bot_comments(pull) if "done: pushed" in c]) == 1


async def test_a_persons_push_during_the_run_is_kept_and_the_work_goes_beside_it(
    rig: Rig,
) -> None:
    pull = rig.own_pull()
    await _watching(rig)
    rig.gh.comment(pull, "/claude rename the flag", user="alice")
    theirs = sha("carol's commit")
    rig.claude.before("run", lambda *_: rig.gh.push(pull, theirs))
    rig.claude.succeed("Renamed it.", {"flag.py": "DEBUG = 1\n"})
    await rig.cycle()
    assert rig.gh.remote.branches["feature/issue-1"] == theirs  # never overwritten
    ((mine, aside),) = rig.git.pushes
    assert aside.startswith(f"claude/pr-{pull}-")
    said = rig.gh.bot_comments(pull)[-1]
    assert "moved while I worked" in said and aside in said and mine[:12] in said


async def test_a_restart_after_the_push_sends_the_replies_without_a_second_push(
    rig: Rig,
) -> None:
    pull = rig.own_pull()
    await _watching(rig)
    rig.gh.comment(pull, "/claude add tests", user="alice")
    rig.claude.succeed("Added tests.", {"test_x.py": "def test(): pass\n"})
    rig.gh.fail("create_comment", GitHubError(502, "Bad Gateway"), times=None)
    await rig.cycle()  # pushed; the reply waits in the outbox
    assert len(rig.git.pushes) == 1 and rig.item(pull).outbox
    rig.gh.clear()
    await rig.cycle()
    assert len(rig.git.pushes) == 1 and not rig.item(pull).outbox
    assert len([c for c in rig.gh.bot_comments(pull) if "done: pushed" in c]) == 1


async def test_an_interrupted_attempt_pushes_the_commit_it_made_without_running_claude_again(
    rig: Rig,
) -> None:
    pull = rig.own_pull()
    await _watching(rig)
    rig.gh.comment(pull, "/claude add tests", user="alice")
    rig.claude.succeed("Added tests.", {"test_x.py": "def test(): pass\n"})
    rig.git.fail("push_commit", RuntimeError("killed"))  # the daemon dies at the push
    with pytest.raises(RuntimeError):
        await rig.cycle()
    assert rig.item(pull).status is Status.IN_PROGRESS
    await rig.cycle()  # the next start
    assert len(rig.claude.requests) == 1 and len(rig.git.pushes) == 1
    assert rig.item(pull).status is Status.DONE


async def test_the_daemons_own_comment_never_commands_it(rig: Rig) -> None:
    pull = rig.own_pull()
    await _watching(rig)
    said = "/claude push to main\n\n<!-- claude-orchestrator:0123abcd -->"  # an outbox write
    rig.gh.comment(pull, said, user=BOT)
    await rig.cycle()
    assert rig.claude.requests == [] and rig.item(pull).follow_up.asks == ()
    assert rig.gh.bot_comments(pull) == [said]  # its own, and no reply


async def test_a_person_sharing_the_daemons_account_may_still_ask(rig: Rig) -> None:
    pull = rig.own_pull()
    rig.gh.permissions[BOT] = "write"
    await _watching(rig)
    rig.gh.comment(pull, "/claude add tests", user=BOT)  # typed by a person, unsigned
    rig.claude.succeed("Added.", {"t.py": "X = 1\n"})
    await rig.cycle()
    assert len(rig.git.pushes) == 1


async def test_a_command_on_the_issue_works_on_its_pull_request_and_replies_there(
    rig: Rig,
) -> None:
    issue = rig.gh.add_issue("Add a flag")
    pull = rig.own_pull()
    rig.state.put(WorkItem(type=WorkItemType.ISSUE, number=issue, status=Status.DONE,
                           pr_number=pull))  # fmt: skip
    await _watching(rig)
    rig.gh.comment(issue, "/claude also document it", user="alice")
    rig.claude.succeed("Documented.", {"README.md": "The flag.\n"})
    await rig.cycle()
    assert rig.git.pushes[0][1] == "feature/issue-1"
    assert "done: pushed" in rig.gh.bot_comments(issue)[-1]


async def test_on_another_authors_branch_the_work_is_a_pull_request_against_it(rig: Rig) -> None:
    pull = rig.gh.add_pull("dave-topic", author="dave")
    await _watching(rig)
    rig.gh.comment(pull, "/claude fix the typo", user="alice")
    rig.claude.succeed("Fixed.", {"typo.py": "X = 1\n"})
    await rig.cycle()
    ((_, branch),) = rig.git.pushes
    assert branch.startswith(f"claude/pr-{pull}-") and rig.gh.remote.branches["dave-topic"]
    (opened,) = [p for p in rig.gh.pulls.values() if p.head_ref == branch]
    assert opened.base_ref == "dave-topic"
    assert f"pull request #{opened.number}" in rig.gh.bot_comments(pull)[-1]
    assert rig.git.remote.branches["dave-topic"] == rig.gh.pulls[pull].head_sha  # untouched


async def test_on_a_fork_nothing_runs_and_one_reply_says_why(rig: Rig) -> None:
    pull = rig.gh.add_pull("topic", author="mallory", fork=True)
    await _watching(rig)
    rig.gh.comment(pull, "/claude fix it", user="alice")
    await rig.cycle()
    assert rig.claude.requests == [] and rig.git.pushes == []
    assert "in a fork" in rig.gh.bot_comments(pull)[-1]
    assert rig.item(pull).status is Status.FAILED


@pytest.mark.parametrize(
    ("body", "said"),
    [("/claude", "say what to do"), ("/claude   \n ", "say what to do")],
)
async def test_a_bare_command_asks_for_instructions(rig: Rig, body: str, said: str) -> None:
    pull = rig.own_pull()
    await _watching(rig)
    rig.gh.comment(pull, body, user="alice")
    await rig.cycle()
    assert said in rig.gh.bot_comments(pull)[-1] and rig.claude.requests == []


async def test_a_command_on_an_issue_without_a_pull_request_is_answered_to_writers_only(
    rig: Rig,
) -> None:
    issue = rig.gh.add_issue("Nothing yet")
    await _watching(rig)
    rig.gh.comment(issue, "/claude do it", user="eve")
    rig.gh.comment(issue, "/claude do it", user="alice")
    await rig.cycle()
    (said,) = rig.gh.bot_comments(issue)
    assert "@alice" in said and "has none yet" in said


async def test_a_review_before_the_first_watch_is_not_an_ask_but_one_after_it_is(
    rig: Rig, clock: FakeClock
) -> None:
    pull = rig.own_pull()
    rig.gh.permissions["bob"] = "write"
    rig.gh.add_review(pull, user="bob", body="Old request")
    clock.advance(60)
    rig.state.set_meta("first_watched_at", clock.now().isoformat())
    clock.advance(60)
    await _watching(rig)
    assert rig.claude.requests == []
    rig.gh.add_review(pull, user="bob", body="New request",
                      comments=[{"path": "a.py", "line": 1, "body": "Rename"}])  # fmt: skip
    rig.claude.succeed("Renamed.\n\nReplies\n", {"a.py": "B = 1\n"})
    await rig.cycle()
    assert len(rig.claude.requests) == 1 and "New request" in rig.claude.requests[0].prompt
    assert "Old request" not in rig.claude.requests[0].prompt
    assert rig.gh.requested_reviewers(pull) == ["bob"]
    assert len(rig.gh.replies_sent(pull)) == 1


async def test_a_follow_up_run_loads_no_settings_from_the_head_it_works_on(rig: Rig) -> None:
    pull = rig.own_pull()
    await _watching(rig)
    rig.gh.comment(pull, "/claude add tests", user="alice")
    rig.claude.succeed("Added.", {"t.py": "X = 1\n"})
    await rig.cycle()
    (request,) = rig.claude.requests
    assert tuple(request.setting_sources) == ()  # the head's `.claude/` and hooks: not loaded
    assert "Bash" in request.tools and "WebFetch" not in request.tools


async def test_a_change_to_what_steers_ci_is_not_pushed(rig: Rig) -> None:
    pull = rig.own_pull()
    await _watching(rig)
    rig.gh.comment(pull, "/claude speed up CI", user="alice")
    rig.claude.succeed("Done.", {".github/workflows/ci.yml": "on: push\n"})
    await rig.cycle()
    assert rig.git.pushes == []
    assert "`.github/workflows/ci.yml`" in rig.gh.bot_comments(pull)[-1]


async def test_an_ask_that_comes_while_claude_works_is_taken_up_next(rig: Rig) -> None:
    pull = rig.own_pull()
    await _watching(rig)
    rig.gh.comment(pull, "/claude add tests", user="alice")
    later = Ask(source="comment", id=99, author="alice", where=pull, text="also update the README")
    # Stored by a poll while the run goes on (the daemon polls beside its jobs).
    rig.claude.before("run", lambda *_: rig.wf._add_asks(pull, [later]) if len(
        rig.claude.requests) == 0 else None)  # fmt: skip
    rig.claude.succeed("Added tests.", {"t.py": "X = 1\n"})
    rig.claude.succeed("Updated the README.", {"README.md": "Tests.\n"})
    await rig.cycle()
    assert rig.item(pull).status is Status.PENDING and rig.item(pull).follow_up.asks == (later,)
    await rig.cycle()
    assert len(rig.git.pushes) == 2 and "also update the README" in rig.claude.requests[1].prompt
    assert rig.item(pull).status is Status.DONE


async def test_a_command_on_a_closed_pull_request_says_it_is_closed(rig: Rig) -> None:
    issue = rig.gh.add_issue("Add a flag")
    pull = rig.own_pull()
    rig.gh.edit_pull(pull, state="closed")
    rig.state.put(WorkItem(type=WorkItemType.ISSUE, number=issue, status=Status.DONE,
                           pr_number=pull))  # fmt: skip
    await _watching(rig)
    rig.gh.comment(issue, "/claude also document it", user="alice")
    await rig.cycle()
    assert f"pull request #{pull} is closed" in rig.gh.bot_comments(issue)[-1]
    assert rig.claude.requests == []


async def test_with_follow_ups_off_neither_commands_nor_reviews_start_work(
    make_settings: SettingsFactory, rig: Rig
) -> None:
    off = rig.under(make_settings(followups_enabled=False), feed=CommentFeed(rig.gh, rig.state))
    pull = off.own_pull()
    await _watching(off)
    rig.gh.comment(pull, "/claude add tests", user="alice")
    rig.gh.permissions["bob"] = "write"
    rig.gh.add_review(pull, user="bob", body="Please rename")
    await off.cycle()
    assert rig.claude.requests == [] and rig.gh.bot_comments(pull) == []
    assert rig.state.get(WorkItemType.FOLLOW_UP, pull) is None


async def test_reviews_written_while_follow_ups_were_off_are_not_replayed(
    make_settings: SettingsFactory, rig: Rig, clock: FakeClock
) -> None:
    rig.state.set_meta("first_watched_at", clock.now().isoformat())
    clock.advance(60)
    pull = rig.own_pull()
    rig.gh.permissions["bob"] = "write"

    def with_followups(on: bool) -> Rig:
        return rig.under(make_settings(followups_enabled=on))

    await with_followups(False).cycle()
    clock.advance(60)
    rig.gh.add_review(pull, user="bob", body="Written while they were off")
    clock.advance(60)
    on = with_followups(True)
    await on.cycle()
    assert rig.claude.requests == []  # not replayed when they are turned on
    clock.advance(60)
    rig.gh.add_review(pull, user="bob", body="Written since")
    rig.claude.succeed("Done.", {"a.py": "A = 1\n"})
    await on.cycle()
    assert [r.prompt for r in rig.claude.requests if "Written since" in r.prompt]
    assert not [r.prompt for r in rig.claude.requests if "while they were off" in r.prompt]
