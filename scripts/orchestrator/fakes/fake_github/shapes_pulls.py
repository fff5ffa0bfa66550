"""JSON shapes of pull requests, their files, their commits and their review comments."""

from __future__ import annotations

from datetime import datetime

from . import versions
from .clock import iso
from .gitops import CommitInfo, FileChange
from .model import Issue, ReviewComment
from .pulls import Tips, mergeability
from .reviews import comments_of
from .shapes_base import Json, label, node_id, reaction_rollup, repository, stamp, user
from .shapes_issues import issue as issue_shape
from .store import Store

_FORK_REPO_ID_BASE = 7000000


def pull_simple(store: Store, item: Issue, now: Tips) -> Json:
    """GitHub's PullRequestSimple, the shape `GET /pulls` lists."""
    info = item.pull
    assert info is not None, "only pull requests have a pull shape"
    ctx = store.context()
    url = f"{ctx.api}/pulls/{item.number}"
    html = f"{ctx.html}/pull/{item.number}"
    issue_url = f"{ctx.api}/issues/{item.number}"
    head_owner = info.fork_owner or store.owner
    if info.fork_owner is None:
        head_repo = repository(ctx)
    else:
        # A fork is another repository: its clone URL leads nowhere on this machine, so a
        # daemon must fetch `refs/pull/N/head` from origin, as it must on GitHub.
        fork_path = store.origin.parent / "forks" / f"{info.fork_owner}-{store.name}.git"
        head_repo = repository(
            ctx,
            owner=info.fork_owner,
            repo_id=_FORK_REPO_ID_BASE + store.user_id(info.fork_owner),
            clone_url=str(fork_path),
        )
    links = {
        "self": {"href": url},
        "html": {"href": html},
        "issue": {"href": issue_url},
        "comments": {"href": f"{issue_url}/comments"},
        "review_comments": {"href": f"{url}/comments"},
        "review_comment": {"href": f"{ctx.api}/pulls/comments{{/number}}"},
        "commits": {"href": f"{url}/commits"},
        "statuses": {"href": f"{ctx.api}/statuses/{now.head}"},
    }
    data: Json = {
        "url": url,
        "id": item.pull_id,
        "node_id": node_id("PullRequest", item.pull_id),
        "html_url": html,
        "diff_url": f"{html}.diff",
        "patch_url": f"{html}.patch",
        "issue_url": issue_url,
        "commits_url": f"{url}/commits",
        "review_comments_url": f"{url}/comments",
        "review_comment_url": f"{ctx.api}/pulls/comments{{/number}}",
        "comments_url": f"{issue_url}/comments",
        "statuses_url": f"{ctx.api}/statuses/{now.head}",
        "number": item.number,
        "state": item.state,
        "locked": item.locked,
        "title": item.title,
        "user": user(ctx, item.user),
        "body": item.body,
        "labels": [label(ctx, store.ensure_label(n), embedded=True) for n in item.labels],
        "milestone": None,
        "active_lock_reason": None,
        "created_at": stamp(item.created_at),
        "updated_at": stamp(item.updated_at),
        "closed_at": stamp(item.closed_at),
        "merged_at": stamp(info.merged_at),
        "assignees": [],
        "requested_reviewers": [user(ctx, login) for login in info.requested_reviewers],
        "requested_teams": [],
        "head": {
            "label": f"{head_owner}:{info.head_ref}",
            "ref": info.head_ref,
            "sha": now.head,
            "user": user(ctx, head_owner),
            "repo": head_repo,
        },
        "base": {
            "label": f"{store.owner}:{info.base_ref}",
            "ref": info.base_ref,
            "sha": now.base,
            "user": user(ctx, store.owner),
            "repo": repository(ctx),
        },
        "_links": links,
        "author_association": store.association(item.user, item.author_association),
        "auto_merge": None,
        "draft": info.draft,
    }
    if versions.before_2026():
        # GitHub's test merge commit while open is not modelled: null until merged.
        data.update(assignee=None, merge_commit_sha=info.merge_commit_sha)
    return data


def pull_full(store: Store, item: Issue, now: Tips, *, trial_merge: bool = True) -> Json:
    """GitHub's PullRequest, with `mergeable` from a real trial merge and line counts from git;
    without `trial_merge`, `mergeable` not yet computed (null, state `unknown`), as webhooks
    carry it."""
    info = item.pull
    assert info is not None, "only pull requests have a pull shape"
    data = pull_simple(store, item, now)
    mergeable: bool | None = None
    state = "unknown"
    if trial_merge:
        mergeable, state, _ = mergeability(store, item, now)
    start = store.git.merge_base(now.base, now.head) or now.base
    files = store.git.diff(start, now.head)
    data.update(
        {
            "merged": info.merged,
            "mergeable": mergeable,
            "rebaseable": mergeable,
            "mergeable_state": state,
            "merged_by": user(store.context(), info.merged_by) if info.merged_by else None,
            "comments": issue_shape(store, item)["comments"],
            # Everyone's count: a pending review's comments are not in it.
            "review_comments": len(comments_of(store, item.number, viewer="")),
            "maintainer_can_modify": info.maintainer_can_modify,
            "commits": store.git.count_commits(start, now.head),
            "additions": sum(f.additions for f in files),
            "deletions": sum(f.deletions for f in files),
            "changed_files": len(files),
        }
    )
    return data


def review_comment(store: Store, item: ReviewComment) -> Json:
    """GitHub's PullRequestReviewComment; outdated comments are not modelled, so the
    `original_*` fields equal the current ones."""
    ctx = store.context()
    url = f"{ctx.api}/pulls/comments/{item.id}"
    pull_url = f"{ctx.api}/pulls/{item.pull_number}"
    html = f"{ctx.html}/pull/{item.pull_number}#discussion_r{item.id}"
    data: Json = {
        "url": url,
        "pull_request_review_id": item.review_id,
        "id": item.id,
        "node_id": node_id("PullRequestReviewComment", item.id),
        "diff_hunk": item.diff_hunk,
        "path": item.path,
        "position": item.position,
        "original_position": item.position,
        "commit_id": item.commit_id,
        "original_commit_id": item.commit_id,
        "user": user(ctx, item.user),
        "body": item.body,
        "created_at": stamp(item.created_at),
        "updated_at": stamp(item.updated_at),
        "html_url": html,
        "pull_request_url": pull_url,
        "author_association": store.association(item.user, item.author_association),
        "_links": {
            "self": {"href": url},
            "html": {"href": html},
            "pull_request": {"href": pull_url},
        },
        "reactions": reaction_rollup(f"{url}/reactions", item.reactions),
        "start_line": item.start_line,
        "original_start_line": item.start_line,
        "start_side": item.start_side,
        "line": item.line,
        "original_line": item.line,
        "side": item.side,
        "subject_type": "line",
    }
    if item.in_reply_to is not None:
        # A thread's first comment has no `in_reply_to_id` at all, not a null one.
        data["in_reply_to_id"] = item.in_reply_to
    return data


def diff_entry(store: Store, change: FileChange, head: str) -> Json:
    api = store.context().api
    html = store.context().html
    data: Json = {
        "sha": change.sha,
        "filename": change.filename,
        "status": change.status,
        "additions": change.additions,
        "deletions": change.deletions,
        "changes": change.additions + change.deletions,
        "blob_url": f"{html}/blob/{head}/{change.filename}",
        "raw_url": f"{html}/raw/{head}/{change.filename}",
        "contents_url": f"{api}/contents/{change.filename}?ref={head}",
    }
    if change.patch is not None:
        data["patch"] = change.patch
    if change.previous_filename is not None:
        data["previous_filename"] = change.previous_filename
    return data


def commit(store: Store, info: CommitInfo) -> Json:
    """GitHub's Commit; `author`/`committer` are users only for GitHub noreply addresses."""
    ctx = store.context()
    api = f"{ctx.api}/commits/{info.sha}"
    return {
        "url": api,
        "sha": info.sha,
        "node_id": node_id("Commit", int(info.sha[:8], 16)),
        "html_url": f"{ctx.html}/commit/{info.sha}",
        "comments_url": f"{api}/comments",
        "commit": {
            "url": f"{ctx.api}/git/commits/{info.sha}",
            "author": {
                "name": info.author_name,
                "email": info.author_email,
                "date": _utc(info.author_date),
            },
            "committer": {
                "name": info.committer_name,
                "email": info.committer_email,
                "date": _utc(info.committer_date),
            },
            "message": info.message,
            "comment_count": 0,
            "tree": {"sha": info.tree, "url": f"{ctx.api}/git/trees/{info.tree}"},
            "verification": {
                "verified": False,
                "reason": "unsigned",
                "signature": None,
                "payload": None,
                "verified_at": None,
            },
        },
        "author": _account(store, info.author_email),
        "committer": _account(store, info.committer_email),
        "parents": [
            {"sha": p, "url": f"{ctx.api}/commits/{p}", "html_url": f"{ctx.html}/commit/{p}"}
            for p in info.parents
        ],
    }


def _account(store: Store, email: str) -> Json | None:
    """The GitHub user a commit email belongs to, known only for `ID+login@users.noreply...`."""
    local, _, domain = email.partition("@")
    if domain != "users.noreply.github.com" or "+" not in local:
        return None
    return user(store.context(), local.split("+", 1)[1])


def _utc(git_date: str) -> str:
    # git prints `2024-01-01T12:00:00+00:00`; GitHub prints the same instant with `Z`.
    return iso(datetime.fromisoformat(git_date))
