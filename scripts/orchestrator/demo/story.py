"""The demo's story, pure: how each thing that happened reads, and the closing summary."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.text import PREFIX
from ..core.work import WorkItem, said

EMOJI = {"eyes": "👀", "+1": "👍", "-1": "👎", "rocket": "🚀", "confused": "😕", "heart": "❤️"}
SHOWN = 90  # characters of a comment or a command's output shown in a line


def stamp(elapsed: float, text: str) -> str:
    """A story line: seconds since the demo started, then what happened."""
    return f"{elapsed:6.1f}s  {text}"


def first_line(text: str, limit: int = SHOWN) -> str:
    """The first line of `text`, at most `limit` characters."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def short_command(command: str, python: str) -> str:
    """`command` as a reader would type it: the demo's Python is just `python`."""
    return command.replace(shlex.quote(python), "python").replace(python, "python")


def github_write(
    name: str,
    params: Mapping[str, str],
    body: Any,
    result: Any,
    *,
    is_pull: bool,
    comment: str | None = None,
    base: str | None = None,
) -> str | None:
    """One write the orchestrator made through GitHub's API (a route of the fake GitHub and
    its request and answer bodies); None for one told elsewhere (closing an issue: GitHub
    may do it first, so the story watches the issue instead). `comment` is the text of the
    comment a reaction is on, `base` the branch a pull request merges into, when known."""
    body = body if isinstance(body, dict) else {}
    result = result if isinstance(result, dict) else {}
    number = params.get("number", "?")
    match name:
        case "react_to_issue":
            emoji = EMOJI.get(str(body.get("content")), str(body.get("content")))
            if is_pull:
                return f"the orchestrator picks up pull request #{number} for review ({emoji})"
            return f"the orchestrator picks up issue #{number} ({emoji})"
        case "react_to_comment":
            emoji = EMOJI.get(str(body.get("content")), str(body.get("content")))
            said = f"“{first_line(comment, 40)}”" if comment else f"comment {params.get('id', '?')}"
            return f"the orchestrator acknowledges {said} ({emoji})"
        case "create_pull":
            source, target = result.get("head") or {}, result.get("base") or {}
            return (
                f"pull request #{result.get('number', '?')} opened: “{result.get('title', '')}” "
                f"({source.get('ref', '?')} → {target.get('ref', '?')})"
            )
        case "create_review":
            return f"review posted on #{number}: {result.get('state', body.get('event', '?'))}"
        case "create_reply_for_review_comment":
            text = str(body.get("body", "")).removeprefix(PREFIX).strip()
            where = f"{result.get('path', '?')} line {result.get('line') or '?'}"
            return f"reply in a review thread of #{number} ({where}): “{first_line(text)}”"
        case "request_reviewers":
            who = ", ".join(str(login) for login in body.get("reviewers", [])) or "?"
            # The orchestrator asks only for the review of someone whose review it answered.
            return f"the orchestrator asks {who} to review #{number} again"
        case "create_comment":
            text = str(body.get("body", "")).removeprefix(PREFIX).strip()
            return f"comment on #{number}: “{first_line(text)}”"
        case "update_comment":  # the "working on this issue" comment, now the outcome
            text = str(body.get("body", "")).removeprefix(PREFIX).strip()
            issue = str(result.get("issue_url", "")).rsplit("/", 1)[-1] or "?"
            return f"comment on #{issue} edited: “{first_line(text)}”"
        case "merge_pull":
            method = body.get("merge_method", "merge")
            sha = str(result.get("sha") or "?")[:12]
            into = f" into {base}" if base else ""
            return f"#{number} {method}-merged{into} as {sha}"
        case "update_issue" if body.get("state") == "closed":
            return None
        case "delete_ref":
            return f"branch {params.get('ref', '?').removeprefix('heads/')} deleted"
        case "add_labels" | "set_labels":
            labels = ", ".join(str(label) for label in body.get("labels", []))
            return f"label {labels} added to #{number}"
        case "remove_label":
            return f"label {params.get('name', '?')} removed from #{number}"
    return f"GitHub: {name} #{number}"


def pushed(number: int, branch: str, sha: str) -> str:
    """Claude's follow-up work on pull request `number`, pushed."""
    return f"the orchestrator pushes Claude's follow-up on #{number} to {branch}: {sha[:12]}"


def claude_starts(what: str, worktree: str | None, tools: Sequence[str]) -> str:
    """The first turn of a Claude run: what it works on, where, and the tools it is offered."""
    where = f" in worktree {worktree}" if worktree else ""
    return f"Claude starts on {what}{where}, offered {', '.join(tools) or 'no tools'}"


def tool_use(
    what: str,
    name: str,
    tool_input: Mapping[str, Any],
    *,
    cwd: Path | None,
    failed: bool,
    output: str,
    python: str,
) -> str:
    """One tool Claude used, as the CLI ran it (seen in the next request, with its result)."""
    if name == "Bash":
        command = short_command(str(tool_input.get("command", "")), python)
        last = output.strip().splitlines()[-1] if output.strip() else ""
        done = f" → {first_line(last, 60)}" if last else ""
        used = f"Bash `{first_line(command, 60)}`{done}"
    else:
        path = str(tool_input.get("file_path") or tool_input.get("pattern") or "")
        if cwd is not None and path.startswith(f"{cwd}/"):
            path = path[len(str(cwd)) + 1 :]
        used = f"{name} {path}".rstrip()
    if failed:
        used += f" (failed: {first_line(output, 60)})"
    return f"Claude ({what}): {used}"


def checks_passed(
    number: int, base: str | None, commands: Sequence[tuple[str, float]], python: str
) -> str:
    """The pre-merge commands passed on a pull request merged onto its base."""
    ran = ", ".join(f"`{short_command(c, python)}` ({d:.1f}s)" for c, d in commands)
    return f"checks pass on #{number} merged onto {base or 'its base'}: {ran or 'none set'}"


@dataclass(frozen=True)
class Run:
    """The Claude runs of one work item, as the state recorded them."""

    what: str
    turns: int | None  # the last run's: the state keeps no more
    cost_usd: float | None  # every run's, added up
    runs: int = 1


@dataclass(frozen=True)
class Summary:
    """What the story ended with, and where its sandbox is, for the closing lines."""

    elapsed: float
    merged: int
    title: str
    base: str
    merge_sha: str
    closed: Sequence[int]
    runs: Sequence[Run]
    scripted: bool
    kept: Path | None  # the sandbox, when it stays
    origin: Path
    log: Path
    state_file: Path
    record: Path  # what the fake GitHub showed at the end, as JSON


def summary(s: Summary) -> list[str]:
    """The closing lines: what landed, what Claude cost, and where to look if it was kept."""
    issues = ", ".join(f"#{n}" for n in s.closed) or "none"
    runs = [r for r in s.runs if r.runs > 0]  # an item may have had no Claude run (yet)
    cost = sum(r.cost_usd or 0.0 for r in runs)
    model = "the scripted model, at the prices the CLI counts" if s.scripted else "the model"
    # Turns only add up when each item ran once: the state keeps an item's last run's.
    once = all(r.runs == 1 for r in runs)
    turns = f"{sum(r.turns or 0 for r in runs)} turns, " if once else ""
    lines = [
        "",
        f"Done in {s.elapsed:.1f}s: #{s.merged} “{s.title}” is squash-merged into {s.base} "
        f"as {s.merge_sha[:12]}; issues closed: {issues}.",
        f"Claude ran {sum(r.runs for r in runs)} times on {model}: {turns}${cost:.4f}",
        *(f"  {_ran(r)}" for r in runs),
    ]
    if s.kept is None:
        lines.append("The sandbox is removed (`demo --keep` keeps it).")
        return lines
    lines += [
        f"The sandbox is kept in {s.kept}. To look at it:",
        f"  git -C {shlex.quote(str(s.origin))} log --oneline --stat   # the repository",
        f"  less {shlex.quote(str(s.log))}   # the orchestrator's log",
        f"  less {shlex.quote(str(s.record))}   # GitHub's issues, pull requests and reviews",
        f"  STATE_FILE={shlex.quote(str(s.state_file))} claude-orchestrator status",
        f"  rm -rf {shlex.quote(str(s.kept))}   # when done",
    ]
    return lines


def _ran(run: Run) -> str:
    if run.runs == 1:
        return f"{run.what}: {run.turns or 0} turns, ${run.cost_usd or 0.0:.4f}"
    return (f"{run.what}: {run.runs} runs, ${run.cost_usd or 0.0:.4f} (the last took "
            f"{run.turns or 0} turns)")  # fmt: skip


def describe(item: WorkItem) -> str:
    """What a work item is, in a few words."""
    return said(item.type, item.number)
