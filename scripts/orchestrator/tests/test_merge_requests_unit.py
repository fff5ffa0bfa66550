"""Unit tests of `/merge` requests through the port fakes: who may ask, faults, asking again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from scripts.orchestrator.core.errors import GitHubError, NotFound
from scripts.orchestrator.core.work import Status, WorkItemType

from .merge_rig import Rig, build, rig
from .ports_fakes import sha

__all__ = ["build", "rig"]  # fixtures


async def test_a_writers_merge_comment_becomes_a_job(rig: Rig) -> None:
    await rig.cycle()  # the first watch: the feed starts here
    number = rig.gh.add_pull()
    rig.gh.permissions["carol"] = "write"
    await rig.seen()
    comment = rig.gh.comment(number, "/merge", user="carol")
    assert await rig.cycle() == [number]
    facts = rig.item(number).merge
    assert (facts.trigger_comment_id, facts.requested_by) == (comment, "carol")
    assert (facts.base_ref, facts.requested_head) == ("main", rig.gh.pulls[number].head_sha)
    assert rig.gh.reactions == [("comment", comment, "eyes")]
    await rig.wf.run(number)
    assert rig.gh.pulls[number].merged
    assert await rig.cycle() == [] and len(rig.gh.bot_comments(number)) == 1


@pytest.mark.parametrize("permission", ["read", "triage", "none"])
async def test_a_readers_merge_gets_one_reply(rig: Rig, permission: str) -> None:
    await rig.cycle()
    number = rig.gh.add_pull()
    rig.gh.permissions["eve"] = permission
    await rig.seen()
    rig.gh.comment(number, "/merge", user="eve")
    assert await rig.cycle() == []
    assert await rig.cycle() == []
    reply = rig.one_comment(number)
    assert "@eve only people with write access" in reply and "`/merge`" in reply
    assert rig.state.get(WorkItemType.MERGE, number) is None
    assert "merge_pull" not in rig.gh.names()


@pytest.mark.parametrize("target", ["issue", "closed pull request", "missing"])
async def test_a_writers_merge_of_what_is_no_open_pull_gets_one_reply(
    rig: Rig, target: str
) -> None:
    await rig.cycle()
    number = rig.gh.add_issue() if target == "issue" else rig.gh.add_pull()
    if target == "closed pull request":
        rig.gh.edit_pull(number, state="closed")
    if target == "missing":  # there for the comment, gone when it is read
        rig.gh.fail("get_pull", NotFound(404, "Not Found"), times=None)
    rig.gh.permissions["carol"] = "write"
    rig.gh.comment(number, "/merge")
    assert await rig.cycle() == []
    assert await rig.cycle() == []
    assert "works on open pull requests only" in rig.one_comment(number)
    assert rig.state.items() == []


async def test_an_outsiders_merge_on_an_issue_gets_no_reply(rig: Rig) -> None:
    """Anyone can comment on any issue: a reply to each would be theirs to command."""
    await rig.cycle()
    number = rig.gh.add_issue()
    for _ in range(15):
        rig.gh.comment(number, "/merge", user="mallory")
    assert await rig.cycle() == []
    assert rig.gh.bot_comments(number) == [] and rig.gh.reactions == []
    assert rig.state.items() == []


async def test_an_outsiders_repeated_commands_get_one_reply_an_hour(rig: Rig) -> None:
    await rig.cycle()
    number = rig.gh.add_pull()
    rig.gh.permissions["mallory"] = "read"
    for _ in range(15):
        rig.gh.comment(number, "/merge", user="mallory")
    assert await rig.cycle() == []
    assert len(rig.gh.bot_comments(number)) == 1
    assert [r for r in rig.gh.reactions if r[2] == "-1"] and len(rig.gh.reactions) == 14
    rig.clock.advance(3601)  # an hour later (the comments' clock is the fake's)
    rig.gh.comment(number, "/merge", user="mallory")
    await rig.cycle()
    assert len(rig.gh.bot_comments(number)) == 2


async def test_merge_disabled_ignores_the_command(build: Callable[..., Rig]) -> None:
    rig = build(auto_merge_enabled=False)
    await rig.cycle()
    number = rig.gh.add_pull()
    await rig.seen()
    rig.gh.comment(number, "/merge")
    assert await rig.cycle() == []
    assert rig.gh.bot_comments(number) == [] and "get_pull" not in rig.gh.names()
    assert rig.state.items() == []


@pytest.mark.parametrize(
    ("fault", "jobs", "asked"),
    [
        (("permission", GitHubError(502, "Bad Gateway")), [[], [1]], 2),  # waits a cycle
        (("permission", GitHubError(403, "Must have push access")), [[], []], 1),  # dropped
        (("react_to_comment", GitHubError(502, "Bad Gateway")), [[1], [1]], 1),  # a courtesy
    ],
    ids=["transient", "refused", "acknowledgement"],
)
async def test_a_fault_while_accepting(
    rig: Rig, fault: tuple[str, Exception], jobs: list[list[int]], asked: int
) -> None:
    await rig.cycle()
    number = rig.gh.add_pull()
    rig.gh.permissions["carol"] = "write"
    await rig.seen()
    rig.gh.comment(number, "/merge")
    rig.gh.fail(*fault)
    assert [await rig.cycle(), await rig.cycle()] == jobs
    assert len(rig.gh.called("permission")) == asked


# -- a writer asks again ---------------------------------------------------------------------


async def test_a_new_merge_after_a_push_while_the_first_waits_merges_the_new_head(rig: Rig) -> None:
    await rig.cycle()
    number = rig.gh.add_pull()
    rig.gh.permissions["carol"] = "write"
    await rig.seen()
    rig.gh.comment(number, "/merge")
    assert await rig.cycle() == [number]
    rig.gh.fail("get_pull", GitHubError(502, "Bad Gateway"))  # the job meets an outage
    await rig.wf.run(number)
    assert rig.item(number).status is Status.PENDING
    rig.gh.push(number, sha("fix"))
    await rig.seen()
    rig.gh.comment(number, "/merge")  # carol saw the new head, and asks again
    assert await rig.cycle() == [number]
    await rig.wf.run(number)
    assert rig.gh.pulls[number].merged, rig.gh.bot_comments(number)


async def test_a_new_merge_while_the_first_runs_lands_the_new_head_next(rig: Rig) -> None:
    await rig.cycle()
    number = rig.gh.add_pull()
    head = rig.gh.pulls[number].head_sha
    rig.gh.permissions["carol"] = "write"
    await rig.seen()
    rig.gh.comment(number, "/merge")
    assert await rig.cycle() == [number]
    gate = rig.checks.gate("run")
    job = asyncio.create_task(rig.wf.run(number))
    while not rig.checks.called("run"):  # the first attempt is in its checks
        await asyncio.sleep(0)
    rig.gh.push(number, sha("fix"))
    await rig.seen()
    rig.gh.comment(number, "/merge")  # carol saw the new head and asks again
    assert await rig.cycle() == [number]
    assert rig.item(number).merge.rerequested_head == sha("fix")
    gate.set()
    await job  # the old head is refused (409): the stop is told, the new head is next
    assert rig.item(number).status is Status.PENDING
    assert rig.item(number).merge.rerequested_head == sha("fix")  # the next attempt's head
    assert rig.item(number).errors == 0 and rig.item(number).attempts == 2
    assert "new commits arrived" in rig.one_comment(number)
    await rig.wf.run(number)
    assert rig.gh.pulls[number].merged
    assert [args[1] for args in rig.gh.called("merge_pull")] == [head, sha("fix")]


async def test_the_same_merge_asked_twice_while_it_runs_is_one_merge(rig: Rig) -> None:
    await rig.cycle()
    number = rig.gh.add_pull()
    rig.gh.permissions["carol"] = "write"
    await rig.seen()
    rig.gh.comment(number, "/merge")
    assert await rig.cycle() == [number]
    rig.state.put(rig.item(number).evolve(status=Status.IN_PROGRESS))
    await rig.seen()
    rig.gh.comment(number, "/merge")  # no new head: nothing to do twice
    await rig.cycle()
    assert rig.item(number).merge.rerequested_head is None
    rig.state.put(rig.item(number).evolve(status=Status.PENDING))
    await rig.wf.run(number)
    assert rig.gh.pulls[number].merged
    assert len(rig.gh.called("merge_pull")) == 1


async def test_a_new_merge_while_the_first_meets_a_fault_lands_the_new_head_quietly(
    rig: Rig,
) -> None:
    await rig.cycle()
    number = rig.gh.add_pull()
    rig.gh.permissions["carol"] = "write"
    await rig.seen()
    rig.gh.comment(number, "/merge")
    assert await rig.cycle() == [number]
    rig.gh.fail("check_runs", GitHubError(502, "Bad Gateway"))
    rig.state.put(rig.item(number).evolve(status=Status.IN_PROGRESS))
    rig.gh.push(number, sha("fix"))
    await rig.seen()
    rig.gh.comment(number, "/merge")  # asked again while the attempt runs
    await rig.cycle()
    rig.state.put(rig.item(number).evolve(status=Status.PENDING))
    await rig.wf.run(number)  # meets the outage: waits, with the newer request kept
    assert rig.item(number).status is Status.PENDING
    await rig.wf.run(number)
    assert rig.gh.pulls[number].merged
    assert [args[1] for args in rig.gh.called("merge_pull")] == [sha("fix")]
    assert all("pushed after the request" not in c for c in rig.gh.bot_comments(number))


async def test_asking_again_while_pending_replaces_an_older_re_request(rig: Rig) -> None:
    await rig.cycle()
    number = rig.gh.add_pull()
    rig.gh.permissions["carol"] = "write"
    await rig.seen()
    rig.gh.comment(number, "/merge")
    assert await rig.cycle() == [number]
    rig.state.put(rig.item(number).with_facts(rerequested_head=sha("older")))
    rig.gh.push(number, sha("newest"))
    await rig.seen()
    rig.gh.comment(number, "/merge")
    await rig.cycle()
    facts = rig.item(number).merge
    assert (facts.requested_head, facts.rerequested_head) == (sha("newest"), None)
    await rig.wf.run(number)
    assert [args[1] for args in rig.gh.called("merge_pull")] == [sha("newest")]


# -- the head the writer saw ----------------------------------------------------------------


async def test_a_push_between_the_merge_and_the_next_look_is_not_merged(rig: Rig) -> None:
    """The attack: a fork pushes right after a writer's `/merge`, before the daemon reads it."""
    await rig.cycle()
    number = rig.gh.add_pull()
    seen_head = rig.gh.pulls[number].head_sha
    rig.gh.permissions["carol"] = "write"
    await rig.seen()
    rig.gh.comment(number, "/merge", user="carol")
    rig.clock.advance(1)
    rig.gh.push(number, sha("backdoor"))
    assert await rig.cycle() == []
    reply = rig.one_comment(number)
    assert "nothing was merged" in reply and f"/merge {sha('backdoor')[:12]}" in reply
    assert rig.state.get(WorkItemType.MERGE, number) is None
    assert "merge_pull" not in rig.gh.names() and seen_head != sha("backdoor")
    # The control: the writer reads the reply, checks the new head and names it.
    rig.clock.advance(1)
    rig.gh.comment(number, f"/merge {sha('backdoor')[:7]}", user="carol")
    assert await rig.cycle() == [number]
    assert rig.item(number).merge.requested_head == sha("backdoor")


async def test_a_look_alike_of_the_named_head_is_not_merged(rig: Rig) -> None:
    """The attack: the writer names the head the daemon showed them by 12 hex digits; before
    the next look the author force-pushes a commit whose SHA shares those digits."""
    await rig.cycle()
    shown = "abc123def456" + "0" * 28
    twin = "abc123def456" + "f" * 28
    number = rig.gh.add_pull(head=shown, author="eve", fork=True)
    rig.gh.permissions["carol"] = "write"
    await rig.seen()
    rig.gh.comment(number, f"/merge {shown[:12]}", user="carol")
    rig.gh.push(number, twin)
    assert await rig.cycle() == []
    assert "cannot tell which commits you saw" in rig.one_comment(number)
    assert rig.state.get(WorkItemType.MERGE, number) is None
    # The control: the full SHA names one commit, whoever pushed it last.
    rig.clock.advance(1)
    rig.gh.comment(number, f"/merge {twin}", user="carol")
    assert await rig.cycle() == [number]
    assert rig.item(number).merge.requested_head == twin


async def test_a_comment_in_the_second_the_head_was_first_seen_is_not_enough(rig: Rig) -> None:
    await rig.cycle()
    number = rig.gh.add_pull()
    rig.gh.permissions["carol"] = "write"
    await rig.heads.refresh()  # seen at T; the comment, also at T, may predate a push at T
    rig.gh.comment(number, "/merge", user="carol")
    assert await rig.cycle() == []
    assert "cannot tell which commits you saw" in rig.one_comment(number)


async def test_a_named_head_is_merged_only_while_it_is_the_head(rig: Rig) -> None:
    await rig.cycle()
    number = rig.gh.add_pull()  # never listed before the comment: naming it is enough
    head = rig.gh.pulls[number].head_sha
    rig.gh.permissions["carol"] = "write"
    rig.gh.comment(number, f"/merge {sha('other')[:10]}", user="carol")
    assert await rig.cycle() == []
    assert f"the head is `{head[:12]}`, not `{sha('other')[:10]}`" in rig.one_comment(number)
    rig.gh.comment(number, f"/merge {head.upper()}", user="carol")
    assert await rig.cycle() == [number]
    await rig.wf.run(number)
    assert rig.gh.pulls[number].merged


async def test_other_text_after_the_trigger_is_not_a_command(rig: Rig) -> None:
    await rig.cycle()
    number = rig.gh.add_pull()
    rig.gh.permissions["carol"] = "write"
    await rig.seen()
    for body in ("/merge after lunch", "/merge 123456", "/merge please", "/merge abc1234 now"):
        rig.gh.comment(number, body, user="carol")
    assert await rig.cycle() == []
    assert rig.gh.bot_comments(number) == [] and rig.state.items() == []


async def test_what_was_seen_survives_a_restart(rig: Rig, build: Callable[..., Rig]) -> None:
    await rig.cycle()
    number = rig.gh.add_pull()
    rig.gh.permissions["carol"] = "write"
    await rig.seen()
    rig.gh.comment(number, "/merge", user="carol")
    restarted = build()  # new workflow and sightings over the same state
    assert await restarted.cycle() == [number]
