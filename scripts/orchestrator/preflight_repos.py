"""`check` for every repository watched: the daemon's own checks once, then each repository's
(its clone, GitHub and its labels, its settings file) under its name."""

from __future__ import annotations

from .config import Settings
from .core.errors import GitHubError, MalformedAnswer
from .core.redact import Redactor
from .core.repo_config import REPO_CONFIG_PATH, RepoConfigError
from .github_http import RetryPolicy
from .github_watcher import GitHubClient
from .preflight import GITHUB_TIMEOUT, Finding, Level, preflight
from .repo_settings import changes, overrides

# The findings that are one repository's; the others are the daemon's, shown once.
OWN = frozenset({"repository", "GitHub", "permissions", "labels", "WORKTREE_BASE", "STATE_FILE",
                 "settings file"})  # fmt: skip


async def preflight_all(settings: Settings, redactor: Redactor, *, fix: bool) -> list[Finding]:
    """Every check for every repository: with several, each one's own findings named with it."""
    findings: list[Finding] = []
    for number, name in enumerate(settings.repositories):
        mine = settings.for_repo(name)
        # No retries and a short timeout: an unreachable GitHub is one finding, soon.
        github = GitHubClient(
            mine.token, mine.github_repo, api_url=mine.github_api_url,
            retry=RetryPolicy(max_retries=0), timeout=GITHUB_TIMEOUT, redactor=redactor,
        )  # fmt: skip
        async with github:
            # The repository's own settings first: its labels are the ones to look for.
            own, effective = await settings_file(mine, github)
            found = await preflight(effective, github, fix=fix)
            if not any(f.name == "GitHub" and f.level is Level.PROBLEM for f in found):
                found.append(own)
        if settings.several:
            found = [
                Finding(f"{f.name} ({name})", f.level, f.detail, f.fix) if f.name in OWN else f
                for f in found
                if number == 0 or f.name in OWN
            ]
        findings += found
    return findings


async def settings_file(settings: Settings, github: GitHubClient) -> tuple[Finding, Settings]:
    """The repository's `.github/claude-orchestrator.toml` on its default branch, read only,
    and the settings the daemon would work with there (the operator's when it cannot tell)."""
    name = "settings file"
    try:
        head = await github.branch_sha(await github.default_branch())
        text = await github.file_text(REPO_CONFIG_PATH, head)
    except MalformedAnswer:
        text = "\0"  # a folder or a link: refused below as not TOML
    except GitHubError as exc:
        said = f"could not read {REPO_CONFIG_PATH}: {exc}"
        return Finding(name, Level.WARNING, said), settings
    if text is None:
        said = f"no {REPO_CONFIG_PATH}: the daemon's settings apply"
        return Finding(name, Level.OK, said), settings
    try:
        changed = changes(settings, overrides(settings, text))
    except RepoConfigError as exc:
        fix = (
            f"correct it on the default branch: no work starts in {settings.github_repo} until then"
        )
        return Finding(name, Level.PROBLEM, f"{exc} (at {head[:7]})", fix), settings
    said = ", ".join(f"{k.upper()}={v!r}" for k, v in sorted(changed.items())) or "nothing new"
    found = Finding(name, Level.OK, f"{REPO_CONFIG_PATH} at {head[:7]} sets {said}")
    return found, settings.model_copy(update=changed)
