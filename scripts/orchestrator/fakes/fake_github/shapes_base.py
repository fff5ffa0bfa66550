"""JSON shapes shared by every endpoint: users, repositories, labels and reactions."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import versions
from .clock import iso
from .model import REACTIONS, Label, Reaction

Json = dict[str, Any]

# Placeholder for a repository's URL-template fields; `{api}` is the repository's API URL.
_REPO_URL_TEMPLATES = {
    "archive_url": "{api}/{{archive_format}}{{/ref}}",
    "assignees_url": "{api}/assignees{{/user}}",
    "blobs_url": "{api}/git/blobs{{/sha}}",
    "branches_url": "{api}/branches{{/branch}}",
    "collaborators_url": "{api}/collaborators{{/collaborator}}",
    "comments_url": "{api}/comments{{/number}}",
    "commits_url": "{api}/commits{{/sha}}",
    "compare_url": "{api}/compare/{{base}}...{{head}}",
    "contents_url": "{api}/contents/{{+path}}",
    "contributors_url": "{api}/contributors",
    "deployments_url": "{api}/deployments",
    "downloads_url": "{api}/downloads",
    "events_url": "{api}/events",
    "forks_url": "{api}/forks",
    "git_commits_url": "{api}/git/commits{{/sha}}",
    "git_refs_url": "{api}/git/refs{{/sha}}",
    "git_tags_url": "{api}/git/tags{{/sha}}",
    "hooks_url": "{api}/hooks",
    "issue_comment_url": "{api}/issues/comments{{/number}}",
    "issue_events_url": "{api}/issues/events{{/number}}",
    "issues_url": "{api}/issues{{/number}}",
    "keys_url": "{api}/keys{{/key_id}}",
    "labels_url": "{api}/labels{{/name}}",
    "languages_url": "{api}/languages",
    "merges_url": "{api}/merges",
    "milestones_url": "{api}/milestones{{/number}}",
    "notifications_url": "{api}/notifications{{?since,all,participating}}",
    "pulls_url": "{api}/pulls{{/number}}",
    "releases_url": "{api}/releases{{/id}}",
    "stargazers_url": "{api}/stargazers",
    "statuses_url": "{api}/statuses/{{sha}}",
    "subscribers_url": "{api}/subscribers",
    "subscription_url": "{api}/subscription",
    "tags_url": "{api}/tags",
    "teams_url": "{api}/teams",
    "trees_url": "{api}/git/trees{{/sha}}",
}


def node_id(kind: str, ident: int) -> str:
    """An opaque global ID in the spirit of GitHub's (base64 of type and database ID)."""
    return base64.b64encode(f"{kind}:{ident}".encode()).decode().rstrip("=")


@dataclass(frozen=True)
class RepoContext:
    """What every shape needs to know: where the API lives and which repository it serves."""

    base_url: str
    owner: str
    name: str
    repo_id: int
    default_branch: str
    private: bool
    clone_url: str
    created_at: datetime
    user_id: Callable[[str], int]

    @property
    def api(self) -> str:
        """The repository's API URL, e.g. `http://127.0.0.1:PORT/repos/acme/widgets`."""
        return f"{self.base_url}/repos/{self.owner}/{self.name}"

    @property
    def html(self) -> str:
        # Web links point at the fake itself, so nothing in a reply leads off the machine.
        return f"{self.base_url}/{self.owner}/{self.name}"

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


def user(ctx: RepoContext, login: str) -> Json:
    """GitHub's SimpleUser; logins ending in `[bot]` are Bots, as GitHub Apps' users are."""
    ident = ctx.user_id(login)
    api = f"{ctx.base_url}/users/{login}"
    return {
        "login": login,
        "id": ident,
        "node_id": node_id("User", ident),
        "avatar_url": f"{ctx.base_url}/avatars/u/{ident}",
        "gravatar_id": "",
        "url": api,
        "html_url": f"{ctx.base_url}/{login}",
        "followers_url": f"{api}/followers",
        "following_url": f"{api}/following{{/other_user}}",
        "gists_url": f"{api}/gists{{/gist_id}}",
        "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{api}/subscriptions",
        "organizations_url": f"{api}/orgs",
        "repos_url": f"{api}/repos",
        "events_url": f"{api}/events{{/privacy}}",
        "received_events_url": f"{api}/received_events",
        "type": "Bot" if login.endswith("[bot]") else "User",
        "user_view_type": "public",
        "site_admin": False,
    }


def repository(
    ctx: RepoContext,
    *,
    owner: str | None = None,
    repo_id: int | None = None,
    clone_url: str | None = None,
    minimal: bool = False,
) -> Json:
    """GitHub's Repository (or MinimalRepository); another owner makes it that owner's fork."""
    owner = owner or ctx.owner
    fork = owner != ctx.owner
    ident = repo_id if repo_id is not None else ctx.repo_id
    api = f"{ctx.base_url}/repos/{owner}/{ctx.name}"
    html = f"{ctx.base_url}/{owner}/{ctx.name}"
    data: Json = {
        "id": ident,
        "node_id": node_id("Repository", ident),
        "name": ctx.name,
        "full_name": f"{owner}/{ctx.name}",
        "owner": user(ctx, owner),
        "private": ctx.private,
        "html_url": html,
        "description": None,
        "fork": fork,
        "url": api,
        **{key: tpl.format(api=api) for key, tpl in _REPO_URL_TEMPLATES.items()},
    }
    if minimal:
        return data
    stamp = iso(ctx.created_at)
    data.update(
        {
            # The origin's path, so a clone or fetch through `clone_url` stays on this machine.
            "clone_url": clone_url or ctx.clone_url,
            "git_url": f"git://127.0.0.1/{owner}/{ctx.name}.git",
            "ssh_url": f"git@127.0.0.1:{owner}/{ctx.name}.git",
            "svn_url": html,
            "mirror_url": None,
            "homepage": None,
            "language": "Python",
            "forks_count": 0,
            "stargazers_count": 0,
            "watchers_count": 0,
            "size": 1,
            "default_branch": ctx.default_branch,
            "open_issues_count": 0,
            "is_template": False,
            "topics": [],
            "has_issues": True,
            "has_projects": True,
            "has_wiki": True,
            "has_pages": False,
            "has_discussions": False,
            "archived": False,
            "disabled": False,
            "visibility": "private" if ctx.private else "public",
            "pushed_at": stamp,
            "created_at": stamp,
            "updated_at": stamp,
            "license": None,
            "allow_forking": True,
            "web_commit_signoff_required": False,
            "forks": 0,
            "open_issues": 0,
            "watchers": 0,
        }
    )
    if versions.before_2026():
        data["has_downloads"] = True
    return data


def label(ctx: RepoContext, lab: Label, *, embedded: bool = False) -> Json:
    """A Label; labels embedded in issues and pulls carry `archived_by` but no `archived_at`."""
    data: Json = {
        "id": lab.id,
        "node_id": node_id("Label", lab.id),
        "url": f"{ctx.api}/labels/{lab.name}",
        "name": lab.name,
        "color": lab.color,
        "default": False,
        "description": lab.description,
        "archived_by": None,
    }
    if not embedded:
        # The Label model requires it (null unless the label was archived).
        data["archived_at"] = None
    return data


def reaction(ctx: RepoContext, item: Reaction) -> Json:
    return {
        "id": item.id,
        "node_id": node_id("Reaction", item.id),
        "user": user(ctx, item.user),
        "content": item.content,
        "created_at": iso(item.created_at),
    }


def reaction_rollup(url: str, items: Iterable[Reaction]) -> Json:
    """The `reactions` summary embedded in issues and comments."""
    counts = dict.fromkeys(REACTIONS, 0)
    for item in items:
        counts[item.content] += 1
    return {"url": url, "total_count": sum(counts.values()), **counts}


def stamp(when: datetime | None) -> str | None:
    return iso(when) if when is not None else None
