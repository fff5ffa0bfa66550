"""Guidelines for Claude: the packaged prompt files plus a repository's own additions."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

PROMPTS_DIR = Path(__file__).parent / "prompts"
# A repository customises Claude's behaviour by committing this folder (spec: "Customizing").
REPO_GUIDELINES_DIR = Path(".github") / "claude-orchestrator"
MAX_REPO_GUIDELINES = 20_000  # characters; a runaway file must not crowd out the task

Kind = Literal["implement", "review"]


def guidelines(kind: Kind, checkout: Path | None = None) -> str:
    """The text of `prompts/<kind>.md`, followed by the repository's `<kind>.md` if present.

    Read at every run, so edits to the prompt files apply without a restart.
    """
    text = (PROMPTS_DIR / f"{kind}.md").read_text(encoding="utf-8").strip()
    if checkout is not None:
        custom = checkout / REPO_GUIDELINES_DIR / f"{kind}.md"
        if custom.is_file():
            extra = custom.read_text(encoding="utf-8", errors="replace").strip()
            text += (
                "\n\n# Repository-specific guidelines\n\n"
                f"(from {REPO_GUIDELINES_DIR / f'{kind}.md'} in this repository)\n\n"
                + extra[:MAX_REPO_GUIDELINES]
            )
    return text
