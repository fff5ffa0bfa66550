"""Guidelines for Claude: the packaged prompt files plus a repository's own additions."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

PROMPTS_DIR = Path(__file__).parent / "prompts"
# A repository customises Claude's behaviour by committing this folder (spec: "Customizing").
REPO_GUIDELINES_DIR = Path(".github") / "claude-orchestrator"
MAX_REPO_GUIDELINES = 20_000  # characters; a runaway file must not crowd out the task

Kind = Literal["implement", "review"]


def guidelines(kind: Kind, repo_text: str | None = None) -> str:
    """The text of `prompts/<kind>.md`, followed by the repository's own `<kind>.md` text.

    Read at every run, so edits to the prompt files apply without a restart. The caller reads
    `repo_text` from where it is trusted: the default branch's checkout for an implementation,
    the base branch (never the pull request) for a review.
    """
    text = (PROMPTS_DIR / f"{kind}.md").read_text(encoding="utf-8").strip()
    if repo_text and repo_text.strip():
        text += (
            "\n\n# Repository-specific guidelines\n\n"
            f"(from {repo_guidelines_path(kind)} in this repository)\n\n"
            + repo_text.strip()[:MAX_REPO_GUIDELINES]
        )
    return text


def repo_guidelines_path(kind: Kind) -> str:
    return (REPO_GUIDELINES_DIR / f"{kind}.md").as_posix()


def read_repo_guidelines(checkout: Path, kind: Kind) -> str | None:
    """The repository's own guidelines in a checkout, if it has them."""
    path = checkout / repo_guidelines_path(kind)
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else None
