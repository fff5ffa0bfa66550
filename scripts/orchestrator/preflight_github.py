"""`check`'s questions to GitHub: the token and the repository, what the token may do there,
and the labels (created with `check --fix`)."""

from __future__ import annotations

from .config import Settings
from .core.models import RepoAccess
from .github_http import GitHubError
from .github_watcher import GitHubClient
from .preflight_findings import Finding, Level
from .startup import check_github, labels_missing, missing_labels

# What a fine-grained token or a GitHub App needs; GitHub's answers do not say what it has.
# Workflows: none, so that GitHub itself refuses a change to .github/workflows/ (README).
PERMISSIONS_NEEDED = (
    "Contents, Issues and Pull requests: read and write; Commit statuses, Checks and Metadata: "
    "read; Workflows: none"
)
# Scopes `repo` contains: beside it they give nothing more.
REPO_PARTS = frozenset(
    {"repo:status", "repo_deployment", "public_repo", "repo:invite", "security_events"}
)
# The labels' colors and descriptions when `check --fix` creates them.
READY_LOOK = ("0e8a16", "Claude Code implements the issue (a writer's label counts)")
FAILED_LOOK = ("d73a4a", "Claude Code could not implement the issue; label it ready to try again")


async def github_checks(settings: Settings, github: GitHubClient, fix: bool) -> list[Finding]:
    """The token and the repository, then what the token may do there and the labels; the
    later ones only once GitHub answers at all."""
    await check_github(settings, github)
    who = await github.login()
    account = f"as {who}" if who else "as an app installation"
    visible = f"{settings.github_repo} visible {account} at {settings.github_api_url}"
    access = await github.access()
    # An App installation's `permissions` describe no account, and are no evidence of what
    # the App may do (semantic-release/github#182: all false for a token that could push).
    role = [] if who is None else [_permissions(settings.github_repo, who, access.role)]
    return [
        Finding("GitHub", Level.OK, visible),
        *role,
        _token(settings, who, access),
        await _labels(settings, github, fix),
    ]


def _permissions(repo: str, who: str, role: str | None) -> Finding:
    """The account's role: pushing and merging need write."""
    if role is None:
        return Finding(
            "permissions", Level.WARNING, f"GitHub did not say what {who} may do in {repo}",
            f"check that {who} has write access to {repo}",
        )  # fmt: skip
    if role in ("none", "read", "triage"):
        return Finding(
            "permissions", Level.PROBLEM,
            f"{who} has {role} access to {repo}: it cannot push branches or merge pull requests",
            f"give {who} write access to {repo} (Settings, Collaborators and teams), or use "
            "the token of an account that has it",
        )  # fmt: skip
    if role == "admin":
        return Finding(
            "permissions", Level.WARNING,
            f"{who} has admin access to {repo}, more than the daemon needs (write): an admin's "
            "merge may bypass branch protection",
            f"run the daemon as an account with write access to {repo} (a machine user)",
        )  # fmt: skip
    return Finding(
        "permissions", Level.OK,
        f"{who} has {role} access to {repo}: enough to push branches, comment, label and "
        "merge (whether branch protection lets a merge through shows only at the merge)",
    )  # fmt: skip


def _token(settings: Settings, who: str | None, access: RepoAccess) -> Finding:
    """A classic token's scopes, judged; what any other token needs, since GitHub does not
    say what it has (only a write would show it)."""
    if access.scopes is None:
        kind = "a fine-grained token" if who else "an App installation's token"
        where = "the token's settings" if who else "the App's settings (Permissions & events)"
        return Finding(
            "token", Level.WARNING,
            f"{kind}: GitHub does not say what it may do, and only a write would show it; "
            f"it needs {PERMISSIONS_NEEDED}",
            f"check its repository permissions in {where}",
        )  # fmt: skip
    granted = access.scopes
    shown = f"a classic token with scopes: {', '.join(sorted(granted)) or 'none'}"
    needed = {"repo"} if access.private else {"repo", "public_repo"}
    if not granted & needed:
        return Finding(
            "token", Level.PROBLEM,
            f"{shown}; it needs `repo`" + ("" if access.private else " or `public_repo`"),
            "make a token with the `repo` scope (`public_repo` is enough for a public "
            "repository) and no other",
        )  # fmt: skip
    allowed = needed | (REPO_PARTS if "repo" in granted else set())
    if settings.allow_sensitive_changes:
        allowed.add("workflow")
    extra = sorted(granted - allowed)
    if extra:
        why = (
            "; `workflow` lets a push change .github/workflows/, which the daemon must not"
            if "workflow" in extra
            else ""
        )
        return Finding(
            "token", Level.WARNING, f"{shown}; more than needed: {', '.join(extra)}{why}",
            "make a token with only `repo` (`public_repo` for a public repository)",
        )  # fmt: skip
    if settings.allow_sensitive_changes and "workflow" not in granted:
        return Finding(
            "token", Level.WARNING,
            f"{shown}; with ALLOW_SENSITIVE_CHANGES=true it needs `workflow` too, or GitHub "
            "refuses pushes that change .github/workflows/",
            "add the `workflow` scope, or unset ALLOW_SENSITIVE_CHANGES",
        )  # fmt: skip
    public = "repo" in granted and not access.private
    return Finding("token", Level.OK, shown + ("; `public_repo` would be enough" if public else ""))


async def _labels(settings: Settings, github: GitHubClient, fix: bool) -> Finding:
    """READY_LABEL and FAILED_LABEL exist; the rule and the words of the start-up warning.
    With `fix`, the missing ones are created."""
    missing = await missing_labels(settings, github)
    if not missing:
        return Finding("labels", Level.OK, f"{settings.ready_label} and {settings.failed_label} "
                       "exist")  # fmt: skip
    if not fix:
        # Without READY_LABEL nothing can start ("exit 0 only when all is well"); the daemon
        # itself starts (reviews and merges work) and warns in the same words. FAILED_LABEL
        # alone is a warning: GitHub makes a label when the daemon first adds it.
        level = Level.PROBLEM if settings.ready_label in missing else Level.WARNING
        return Finding("labels", level, *labels_missing(settings, missing))
    looks = {settings.ready_label: READY_LOOK, settings.failed_label: FAILED_LOOK}
    for name in missing:
        color, description = looks[name]
        try:
            await github.create_label(name, color=color, description=description)
        except GitHubError as exc:
            return Finding(
                "labels", Level.PROBLEM, f"could not create the label {name}: {exc}",
                "create it on GitHub (Issues, Labels), or give the token write access to issues",
            )  # fmt: skip
    return Finding("labels", Level.OK, f"created {' and '.join(missing)}")
