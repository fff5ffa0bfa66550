"""The `demo` command as a user runs it, in a process of its own, and its pure parts."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from scripts.orchestrator.core.work import Status, WorkItemType
from scripts.orchestrator.demo import run as demo
from scripts.orchestrator.demo import story as demo_story
from scripts.orchestrator.fakes import demo_scene
from scripts.orchestrator.fakes.git_world import git
from scripts.orchestrator.fakes.scripted_model import ScriptedModel
from scripts.orchestrator.model_proxy import CREDENTIAL_ENV
from scripts.orchestrator.state import State

DEMO_TIMEOUT = 120.0  # the story takes about 10 s here; this is for a loaded machine
TAG = "DEMO_TEST_RUN"  # marks the demo's processes, to find any it leaves behind

# The story's milestones, in the order they happen.
MILESTONES = (
    "issue #1 “Add a subtract function” is filed by bob",
    "issue #1 is labelled ready by alice",
    "dave opens pull request #2 “Add a multiply function”",
    "the orchestrator picks up issue #1 (👀)",
    "the orchestrator makes worktree feature-issue-1",
    "Claude (issue #1): Edit calc.py",
    "Claude (issue #1): Bash `python -m pytest -q -p no:cacheprovider` → 2 passed",
    "pull request #3 opened: “Add a subtract function” (feature/issue-1 → main)",
    "review posted on #3: COMMENTED",
    "alice requests changes on #3, commenting on calc.py line 9: “Say in the docstring that "
    "the result may be negative.”",
    "Claude starts on follow-up on #3 in worktree followup-pr-3",
    "Claude (follow-up on #3): Edit calc.py",
    "the orchestrator pushes Claude's follow-up on #3 to feature/issue-1: ",
    "reply in a review thread of #3 (calc.py line 9): “Addressed in `",
    "the orchestrator asks alice to review #3 again",
    "review posted on #3: COMMENTED",  # the new head's
    "alice comments “/merge ",
    "checks pass on #3 merged onto main: `python -m pytest -q -p no:cacheprovider`",
    "#3 squash-merged into main as ",
    "issue #1 closed by orchestrator-bot",
    "Done in ",
)


def demo_command(*flags: str) -> list[str]:
    """The demo as a user starts it."""
    return [sys.executable, "-m", "scripts.orchestrator.main", "demo", *flags]


def _env(tag: str, **extra: str) -> dict[str, str]:
    """The user's environment, without a model credential (the demo needs none)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_"))}
    return {**env, TAG: tag, **extra}


def _run(cwd: Path, *flags: str, **extra: str) -> tuple[subprocess.CompletedProcess[str], str]:
    tag = uuid.uuid4().hex
    result = subprocess.run(
        demo_command(*flags),
        cwd=cwd,
        env=_env(tag, **extra),
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT,
        check=False,
    )
    return result, tag


def _sandbox(stdout: str) -> Path:
    match = re.match(r"sandbox: (\S+)\n", stdout)
    assert match, f"no `sandbox:` line first:\n{stdout}"
    return Path(match.group(1))


def _left_behind(tag: str, sandbox: Path) -> list[str]:
    """Live processes of a demo: its marker in their environment, or its sandbox in their
    command line (the sandboxed ones start from a clean environment)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and (
            f"{TAG}={tag}".encode() in environ.split(b"\0") or str(sandbox) in cmdline
        ):
            found.append(f"{entry.name}: {cmdline[:200]}")
    return found


def _in_order(stdout: str, lines: tuple[str, ...]) -> None:
    at = 0
    for line in lines:
        found = stdout.find(line, at)
        assert found != -1, f"{line!r} missing, or out of order, in:\n{stdout}"
        at = found


# -- the whole story --------------------------------------------------------------------------


def test_the_demo_tells_the_story_and_keeps_its_sandbox(tmp_path: Path) -> None:
    result, tag = _run(tmp_path, "--keep")
    assert result.returncode == 0, result.stdout + result.stderr
    root = _sandbox(result.stdout)
    try:
        _in_order(result.stdout, MILESTONES)
        assert "review posted on #2: COMMENTED" in result.stdout  # the person's pull request
        # Each Claude run counted once, the review of #3's two runs in one line.
        assert "Claude ran 5 times on the scripted model" in result.stdout
        assert re.search(r"\n  review of #3: 2 runs, \$[\d.]+ \(the last took 2 turns\)\n",
                         result.stdout)  # fmt: skip
        assert re.search(r"\n  follow-up on #3: 3 turns, \$", result.stdout)
        assert f"The sandbox is kept in {root}" in result.stdout
        elapsed = float(re.search(r"Done in ([\d.]+)s", result.stdout).group(1))  # type: ignore[union-attr]
        assert elapsed < 60
        assert result.stderr == ""

        # What GitHub ended with: #3 merged, the issue it closes closed, both pulls reviewed.
        record = {e["issue"]["number"]: e for e in json.loads((root / "github.json").read_text())}
        assert record[3]["pull"]["merged"] is True
        assert "Closes #1" in record[3]["pull"]["body"]
        assert record[1]["issue"]["state"] == "closed"
        assert record[2]["pull"]["merged"] is False
        assert [r["state"] for r in record[2]["reviews"]] == ["COMMENTED"]
        # The repository: feature/issue-1 (deleted, its head kept in #3) got Claude's
        # implementation and exactly one follow-up commit, which only changed the docstring.
        origin, bot, change = root / "origin.git", "orchestrator-bot", demo_scene.CHANGES
        head = record[3]["pull"]["head"]["sha"]
        assert git(origin, "log", "--format=%s", f"main~1..{head}").splitlines() == [
            f"Follow-up on #3: {change.body}",
            "Implement #1: Add a subtract function",
        ]
        first = git(origin, "rev-parse", f"{head}~1")
        assert git(origin, "diff", "--name-only", first, head) == "calc.py"
        assert git(origin, "show", f"{head}:calc.py") == demo_scene.ANSWERED.rstrip("\n")
        # #3's reviews: the daemon's of the first head; alice's asking for changes; and on the
        # new head the daemon's review and the bodiless one its reply in her thread came with
        # (GitHub makes one for a comment outside a review), in either order.
        reviews = [(r["user"]["login"], r["state"], r["body"] != "", r["commit_id"])
                   for r in record[3]["reviews"]]  # fmt: skip
        assert reviews[:2] == [(bot, "COMMENTED", True, first),
                               ("alice", "CHANGES_REQUESTED", True, first)]  # fmt: skip
        assert sorted(reviews[2:]) == [(bot, "COMMENTED", False, head),
                                       (bot, "COMMENTED", True, head)]  # fmt: skip
        asked, reply = record[3]["review_comments"]
        assert (asked["user"]["login"], asked["path"], asked["line"], asked["body"]) == (
            "alice", change.path, change.line, change.comment)  # fmt: skip
        assert (reply["user"]["login"], reply["in_reply_to_id"]) == (bot, asked["id"])
        assert f"Addressed in `{head[:12]}`" in reply["body"]
        assert [u["login"] for u in record[3]["pull"]["requested_reviewers"]] == ["alice"]
        # main: one squashed commit, with Claude's change and its answer to the review.
        assert git(origin, "log", "-1", "--format=%s", "main") == "Add a subtract function (#3)"
        assert git(origin, "show", "main:calc.py") == demo_scene.ANSWERED.rstrip("\n")
        assert "__pycache__" not in git(origin, "ls-tree", "-r", "--name-only", "main")
        # The orchestrator's state and log.
        with State(root / "state.json", lock=False) as state:
            merge = state.get(WorkItemType.MERGE, 3)
            issue = state.get(WorkItemType.ISSUE, 1)
            follow_up = state.get(WorkItemType.FOLLOW_UP, 3)
            review = state.get(WorkItemType.PR_REVIEW, 3)
        assert merge is not None and merge.status is Status.DONE
        assert merge.merge.merge_sha == git(origin, "rev-parse", "main")
        assert merge.merge.requested_head == head  # the answer to the review, as alice named it
        assert issue is not None and issue.pr_number == 3 and issue.turns
        assert follow_up is not None and follow_up.status is Status.DONE
        assert (follow_up.runs, follow_up.follow_up.pushed_sha) == (1, head)
        assert review is not None and review.runs == 2 and review.review.reviewed == (first, head)
        assert "merged #3" in (root / "daemon.log").read_text()
        assert _left_behind(tag, root) == []
    finally:
        shutil.rmtree(root)


def test_without_keep_nothing_is_left_behind(tmp_path: Path) -> None:
    result, tag = _run(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    root = _sandbox(result.stdout)
    assert "#3 squash-merged into main" in result.stdout
    assert "The sandbox is removed" in result.stdout
    assert not root.exists()
    assert _left_behind(tag, root) == []


def test_ctrl_c_stops_the_story_and_cleans_up(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex
    process = subprocess.Popen(
        demo_command(), cwd=tmp_path, env=_env(tag), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in process.stdout or ():
            lines.put(line)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        root = _sandbox(lines.get(timeout=DEMO_TIMEOUT))
        deadline = time.monotonic() + DEMO_TIMEOUT
        while "Claude starts on issue #1" not in lines.get(timeout=deadline - time.monotonic()):
            pass
        process.send_signal(signal.SIGINT)  # Ctrl-C, while Claude works
        assert process.wait(timeout=DEMO_TIMEOUT) == demo.EXIT_INTERRUPTED
    finally:
        process.kill()
        process.wait()
        reader.join()
    stderr = (process.stderr.read() if process.stderr else "").strip()
    assert stderr == "claude-orchestrator demo: interrupted"
    assert not root.exists()
    assert _left_behind(tag, root) == []


def test_a_failure_ends_the_story_with_one_line_and_cleans_up(tmp_path: Path) -> None:
    """Claude's implementation fails (the model refuses it): the demo stops at once, says
    why in one line, and leaves nothing behind."""
    tag = uuid.uuid4().hex
    failing = (
        "from scripts.orchestrator.fakes import demo_scene, model_script; "
        "demo_scene.implement_script = lambda _: [model_script.invalid_request('refused')]; "
        "from scripts.orchestrator.main import main; raise SystemExit(main(['demo']))"
    )
    command = [sys.executable, "-c", failing]  # the command line's own path, one scene changed
    result = subprocess.run(command, cwd=tmp_path, env=_env(tag), capture_output=True,
                            text=True, timeout=DEMO_TIMEOUT, check=False)  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("claude-orchestrator demo: issue #1 failed: ")
    assert "-v shows the orchestrator's log" in line
    root = _sandbox(result.stdout)
    assert not root.exists()
    assert _left_behind(tag, root) == []


def test_real_claude_talks_to_the_model_with_the_users_credential(tmp_path: Path) -> None:
    """--real-claude, with a scripted model as the upstream API: the credential reaches it
    (the daemon's proxy puts it in place of the sandbox's placeholder), and no scripted
    model of the demo's own is in the way."""
    key = "sk-ant-api03-" + "demo" * 20
    with ScriptedModel() as upstream:
        command = demo.check_command(sys.executable, has_pytest=True)
        for marker, (_, steps) in demo_scene.model_scripts(1, 2, 3, command).items():
            upstream.script_for(marker, steps)
        result, _ = _run(tmp_path, "--real-claude", ANTHROPIC_BASE_URL=upstream.url,
                         ANTHROPIC_API_KEY=key)  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Claude works on the real model, on your account" in result.stdout
        assert "Claude starts" not in result.stdout  # its turns are not seen
        assert "#3 squash-merged into main" in result.stdout
        turns = upstream.main_requests()
        assert turns and {r.headers.get("x-api-key") for r in turns} == {key}
        assert upstream.errors == []
    assert not _sandbox(result.stdout).exists()


def test_real_claude_without_a_credential_says_which_to_set(tmp_path: Path) -> None:
    result, _ = _run(tmp_path, "--real-claude")
    assert result.returncode == 2
    assert result.stdout == ""  # refused before any sandbox was made
    assert "ANTHROPIC_API_KEY" in result.stderr and "CLAUDE_CODE_OAUTH_TOKEN" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# -- the pure parts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({}, True),
        ({"ANTHROPIC_API_KEY": ""}, True),
        ({"ANTHROPIC_BASE_URL": "http://127.0.0.1:1"}, True),
        ({"ANTHROPIC_API_KEY": "sk-ant-x"}, False),
        ({"CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat-x"}, False),
        ({"ANTHROPIC_AUTH_TOKEN": "bearer"}, False),
    ],
)
def test_the_credential_check(env: dict[str, str], missing: bool) -> None:
    assert (demo.missing_credential(env) is not None) == missing
    assert set(CREDENTIAL_ENV) >= {"ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"}


def test_the_users_settings_do_not_reach_the_demo(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("POLL_INTERVAL", "99")
    monkeypatch.setenv("PRE_MERGE_COMMANDS", '["make deploy"]')
    monkeypatch.setenv("SANDBOX", "off")
    (tmp_path / ".env").write_text("MAX_TURNS=1\nREVIEW_EVENT=APPROVE\n")
    monkeypatch.chdir(tmp_path)
    settings = demo.demo_settings(github_repo="acme/calc", max_concurrent=2)
    assert settings.max_concurrent == 2
    assert (settings.poll_interval, settings.pre_merge_commands) == (60, [])
    assert (settings.sandbox, settings.max_turns, settings.review_event.value) == (
        "bwrap",
        50,
        "COMMENT",
    )


def test_the_checks_run_with_whichever_test_runner_there_is() -> None:
    python = "/opt/my python/bin/python3"
    assert demo.check_command(python, has_pytest=True) == (
        "'/opt/my python/bin/python3' -m pytest -q -p no:cacheprovider"
    )
    assert demo.check_command(python, has_pytest=False).endswith(" -m unittest -v")
    assert demo_story.short_command(demo.check_command(python, has_pytest=False), python) == (
        "python -m unittest -v"
    )


@pytest.mark.parametrize(
    ("name", "params", "body", "result", "line"),
    [
        ("react_to_issue", {"number": "1"}, {"content": "eyes"}, {},
         "the orchestrator picks up issue #1 (👀)"),
        ("create_pull", {}, {}, {"number": 3, "title": "T", "head": {"ref": "f/1"},
         "base": {"ref": "main"}}, "pull request #3 opened: “T” (f/1 → main)"),
        ("create_review", {"number": "2"}, {"event": "COMMENT"}, {"state": "COMMENTED"},
         "review posted on #2: COMMENTED"),
        ("create_comment", {"number": "3"}, {"body": "**Claude Orchestrator**: merged as x.\n\nT"},
         {}, "comment on #3: “merged as x.”"),
        ("update_comment", {"comment_id": "9"}, {"body": "**Claude Orchestrator**: done: #3."},
         {"issue_url": "http://h/repos/a/b/issues/1"}, "comment on #1 edited: “done: #3.”"),
        ("merge_pull", {"number": "3"}, {"merge_method": "squash"}, {"sha": "a" * 40},
         "#3 squash-merged into main as aaaaaaaaaaaa"),
        ("update_issue", {"number": "1"}, {"state": "closed"}, {}, None),
        ("delete_ref", {"ref": "heads/feature/issue-1"}, None, None,
         "branch feature/issue-1 deleted"),
        ("remove_label", {"number": "1", "name": "ready"}, None, None,
         "label ready removed from #1"),
        ("create_reply_for_review_comment", {"number": "3", "comment_id": "7"},
         {"body": "**Claude Orchestrator**: Addressed in `abc`.\n\nMore"},
         {"path": "calc.py", "line": 9, "in_reply_to_id": 7},
         "reply in a review thread of #3 (calc.py line 9): “Addressed in `abc`.”"),
        ("request_reviewers", {"number": "3"}, {"reviewers": ["alice"]}, {},
         "the orchestrator asks alice to review #3 again"),
        ("lock_issue", {"number": "4"}, None, None, "GitHub: lock_issue #4"),
    ],
)  # fmt: skip
def test_each_github_write_reads_as_a_line(
    name: str, params: dict[str, str], body: Any, result: Any, line: str | None
) -> None:
    told = demo_story.github_write(name, params, body, result, is_pull=False, base="main")
    assert told == line


def test_a_pull_requests_reaction_is_its_review_starting() -> None:
    line = demo_story.github_write("react_to_issue", {"number": "2"}, {"content": "eyes"}, {},
                                   is_pull=True)  # fmt: skip
    assert line == "the orchestrator picks up pull request #2 for review (👀)"


def test_claudes_tools_read_as_what_they_did() -> None:
    cwd = Path("/w/feature-issue-1")
    edit = demo_story.tool_use("issue #1", "Edit", {"file_path": f"{cwd}/calc.py"}, cwd=cwd,
                               failed=False, output="ok", python="/venv/bin/python")  # fmt: skip
    assert edit == "Claude (issue #1): Edit calc.py"
    ran = demo_story.tool_use("issue #1", "Bash", {"command": "/venv/bin/python -m pytest -q"},
                              cwd=cwd, failed=False, output="..\n2 passed in 0.01s\n",
                              python="/venv/bin/python")  # fmt: skip
    assert ran == "Claude (issue #1): Bash `python -m pytest -q` → 2 passed in 0.01s"
    failed = demo_story.tool_use("issue #1", "Read", {"file_path": "/etc/x"}, cwd=cwd,
                                 failed=True, output="No such file.", python="p")  # fmt: skip
    assert failed == "Claude (issue #1): Read /etc/x (failed: No such file.)"


def test_the_summary_says_where_to_look_only_when_the_sandbox_stays(tmp_path: Path) -> None:
    base = demo_story.Summary(
        elapsed=6.04, merged=3, title="Add a subtract function", base="main",
        merge_sha="b" * 40, closed=[1], scripted=True, kept=None,
        runs=[demo_story.Run("issue #1", 6, 0.03), demo_story.Run("review of #3", 2, None)],
        origin=tmp_path / "origin.git", log=tmp_path / "daemon.log",
        state_file=tmp_path / "state.json", record=tmp_path / "github.json",
    )  # fmt: skip
    removed = "\n".join(demo_story.summary(base))
    assert (
        "Done in 6.0s: #3 “Add a subtract function” is squash-merged into main as bbbbbbbbbbbb"
        in removed
    )
    assert "issues closed: #1" in removed and "ran 2 times on the scripted" in removed
    assert "8 turns, $0.0300\n  issue #1: 6 turns, $0.0300\n  review of #3: 2 turns" in removed
    assert "The sandbox is removed" in removed and "git -C" not in removed
    kept = "\n".join(demo_story.summary(base.__class__(**{**base.__dict__, "kept": tmp_path})))
    assert f"The sandbox is kept in {tmp_path}" in kept
    assert f"git -C {tmp_path / 'origin.git'} log" in kept
    assert f"STATE_FILE={tmp_path / 'state.json'} claude-orchestrator status" in kept
    assert f"less {tmp_path / 'github.json'}" in kept
    # An item run twice keeps its last run's turns only; an item never run is no run.
    runs = [demo_story.Run("issue #1", 6, 0.03), demo_story.Run("review of #3", 2, 0.02, 2),
            demo_story.Run("follow-up on #3", None, None, runs=0)]  # fmt: skip
    twice = demo_story.summary(base.__class__(**{**base.__dict__, "runs": runs}))
    assert twice[2:5] == [
        "Claude ran 3 times on the scripted model, at the prices the CLI counts: $0.0500",
        "  issue #1: 6 turns, $0.0300",
        "  review of #3: 2 runs, $0.0200 (the last took 2 turns)",
    ]
