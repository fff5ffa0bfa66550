"""`--dry-run` as a user runs it: it says what one cycle would do, and writes nothing."""

from __future__ import annotations

from scripts.orchestrator.fakes.git_world import git
from scripts.orchestrator.fakes.model_script import Text

from .fixtures_world import World


def _refs(world: World) -> list[str]:
    """The remote's branches and pull request heads; GitHub itself makes the test merge
    refs (`refs/pull/N/merge`) when a pull request is read."""
    listed = git(world.git.origin, "for-each-ref", "--format=%(refname) %(objectname)")
    return [line for line in listed.splitlines() if "/merge " not in line]


async def test_a_dry_run_reports_the_cycle_and_writes_nothing(world: World) -> None:
    assert await world.once() == 0  # the daemon has watched once: a state file exists
    world.github.set_permission("alice", "write")
    issue = world.github.create_issue("Add greet", "Write greet.py.", user="alice")
    world.github.add_labels(issue, "ready", user="alice")
    world.git.push_branch("topic", {"feature.py": "VALUE = 1\n"}, "work on topic")
    pull = world.github.create_pull("Change topic", "topic", user="dave")
    world.github.comment(pull, "/merge", user="mallory")  # an outsider: one reply is due
    state_before = world.state_file.read_bytes()
    refs_before = _refs(world)
    writes_before = len(world.github.mutations)

    done = world.run_cli("--dry-run")

    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "nothing was written to GitHub, git or the state" in out
    assert f"implement issue #{issue}" in out and f"review pull request #{pull}" in out
    assert f"comment on #{pull}: **Claude Orchestrator**: @mallory only people with" in out
    assert world.github.token not in out + done.stderr
    # Byte for byte: GitHub, the remote and the state.
    assert len(world.github.mutations) == writes_before
    assert _refs(world) == refs_before
    assert world.state_file.read_bytes() == state_before
    assert world.model.requests == []

    # The control: the same cycle, for real, does what the dry run said.
    world.model.script_for(f"Review pull request #{pull}", [Text("Fine.\n\nVERDICT: COMMENT")])
    world.model.script_for(f"Implement GitHub issue #{issue}", [Text("Nothing to do.")])
    assert await world.once() == 0
    assert len(world.github.reviews_on(pull)) == 1
    assert any("@mallory only people with" in c for c in world.bot_comments(pull))
    assert world.state_file.read_bytes() != state_before


async def test_a_dry_run_before_any_state_leaves_none(world: World) -> None:
    done = world.run_cli("--dry-run")
    assert done.returncode == 0, done.stderr
    assert "would start no work" in done.stdout
    assert not world.state_file.exists()
    assert world.github.mutations == []
