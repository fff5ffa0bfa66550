"""Pull request operations backed by real git: heads, trial merges, merging, branches."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from . import ci, errors
from .gitops import Identity
from .model import Happening, Issue, PullInfo
from .store import Store

PULLS_DOC = "https://docs.github.com/rest/pulls/pulls"
MERGE_DOC = f"{PULLS_DOC}#merge-a-pull-request"
CREATE_DOC = f"{PULLS_DOC}#create-a-pull-request"
REF_DOC = "https://docs.github.com/rest/git/refs#delete-a-reference"
GITHUB_COMMITTER = ("GitHub", "noreply@github.com")
# GitHub's closing keywords: "Fixes #12", "closes: #3", "Resolved acme/widgets#4".
_CLOSING = re.compile(
    r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s*:?\s+(?:([\w.-]+/[\w.-]+))?#(\d+)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Tips:
    """A pull request's head and base commits as git has them right now."""

    head: str
    base: str


def pull_ref(number: int) -> str:
    return f"refs/pull/{number}/head"


def get_pull(store: Store, number: int) -> tuple[Issue, PullInfo]:
    issue = store.issue(number)
    if issue.pull is None:
        raise errors.not_found()
    return issue, issue.pull


def sync_heads(store: Store) -> dict[str, str]:
    """Read every ref fresh and move each open same-repo PR's `refs/pull/N/head` to its branch.

    The post-receive hook does this on pushes; this catches refs moved without a push. A new
    head bumps the pull request's `updated_at`, as a push does on GitHub (the time is when
    the fake notices, i.e. the next API request).
    """
    refs = store.git.refs()
    for issue in store.issues.values():
        info = issue.pull
        if info is None or issue.state != "open":
            continue
        ref = pull_ref(issue.number)
        branch = refs.get(f"refs/heads/{info.head_ref}")
        if info.fork_owner is None and branch and refs.get(ref) != branch:
            store.git.update_ref(ref, branch)
            refs[ref] = branch
        if refs.get(ref) != info.seen_head:
            before, info.seen_head = info.seen_head, refs.get(ref)
            store.touch(issue)
            if before is not None and info.seen_head is not None:
                # A push to the head: who pushed is not known here, so the author is named.
                store.emit(
                    Happening(
                        "pull_request",
                        "synchronize",
                        issue.number,
                        issue.user,
                        before=before,
                        after=info.seen_head,
                    )
                )
    return refs


def tips(store: Store, issue: Issue, refs: dict[str, str]) -> Tips:
    info = _info(issue)
    head = refs.get(pull_ref(issue.number), "")
    base = info.frozen_base_sha or refs.get(f"refs/heads/{info.base_ref}", "")
    return Tips(head=head, base=base)


def create_pull(
    store: Store,
    *,
    title: str,
    head: str,
    base: str,
    body: str | None,
    author: str,
    draft: bool = False,
    fork_owner: str | None = None,
    head_sha: str | None = None,
    maintainer_can_modify: bool = False,
) -> Issue:
    """Open a pull request, validating like GitHub; a fork's head lives only in refs/pull/N/head."""
    if not title or not str(title).strip():
        raise errors.invalid_field("PullRequest", "title", "missing_field", CREATE_DOC)
    base_sha = store.git.resolve(f"refs/heads/{base}")
    if base_sha is None:
        raise errors.invalid_field("PullRequest", "base", doc=CREATE_DOC)
    if fork_owner is None:
        head_sha = store.git.resolve(f"refs/heads/{head}")
        if head_sha is None:
            raise errors.invalid_field("PullRequest", "head", doc=CREATE_DOC)
        label = f"{store.owner}:{head}"
    else:
        if head_sha is None or store.git.resolve(head_sha) is None:
            raise ValueError("a fork's pull request needs a head_sha that exists in origin")
        label = f"{fork_owner}:{head}"
    for other in store.issues.values():
        info = other.pull
        if (
            info is not None
            and other.state == "open"
            and info.base_ref == base
            and info.head_ref == head
            and info.fork_owner == fork_owner
        ):
            raise errors.custom(
                "PullRequest", f"A pull request already exists for {label}.", CREATE_DOC
            )
    if store.git.count_commits(base_sha, head_sha) == 0:
        raise errors.custom("PullRequest", f"No commits between {base} and {head}", CREATE_DOC)
    issue = store.new_issue(title, body, author)
    issue.pull = PullInfo(
        head_ref=head,
        base_ref=base,
        fork_owner=fork_owner,
        draft=draft,
        maintainer_can_modify=maintainer_can_modify,
    )
    issue.pull_id = store.next_id("pull")
    store.git.update_ref(pull_ref(issue.number), head_sha)
    issue.pull.seen_head = head_sha
    install_hook(store)
    store.emit(Happening("pull_request", "opened", issue.number, author))
    return issue


def mergeability(store: Store, issue: Issue, now: Tips) -> tuple[bool | None, str, str | None]:
    """(`mergeable`, `mergeable_state`, test merge commit) computed by a real trial merge.

    Like GitHub, an open pull request also gets `refs/pull/N/merge`: its head merged onto the
    current base, the commit CI would test.
    """
    info = _info(issue)
    if issue.state != "open":
        return None, "unknown", info.merge_commit_sha
    if info.mergeable_unknown > 0:
        info.mergeable_unknown -= 1
        return None, "unknown", None
    key = (now.base, now.head)
    if key not in store.merge_cache:
        tree = store.git.trial_merge(now.base, now.head)
        sha = None
        if tree is not None:
            who = _author(store, issue.user, store.now())
            sha = store.git.commit_tree(
                tree,
                [now.base, now.head],
                f"Merge {now.head} into {now.base}",
                who,
                _committer(store),
            )
        store.merge_cache[key] = (tree, sha)
    tree, merge_sha = store.merge_cache[key]
    merge_ref = f"refs/pull/{issue.number}/merge"
    if merge_sha is None:
        if store.git.resolve(merge_ref):
            store.git.delete_ref(merge_ref)
        return False, "dirty", None
    store.git.update_ref(merge_ref, merge_sha)
    if info.draft:
        return True, "draft", merge_sha
    return True, ("clean" if ci.all_green(store, now.head) else "unstable"), merge_sha


def merge(
    store: Store,
    issue: Issue,
    actor: str,
    *,
    method: str = "merge",
    sha: str | None = None,
    title: str | None = None,
    message: str | None = None,
) -> dict[str, object]:
    """Merge for real into the base branch, with GitHub's 405/409/422 refusals."""
    info = _info(issue)
    if info.merged or issue.state != "open":
        raise errors.basic(405, "Pull Request is not mergeable", MERGE_DOC)
    if method not in ("merge", "squash", "rebase"):
        raise errors.invalid_field("PullRequest", "merge_method", doc=MERGE_DOC)
    if info.draft:
        raise errors.basic(405, "Pull Request is still a draft", MERGE_DOC)
    now = tips(store, issue, sync_heads(store))
    if sha is not None and sha != now.head:
        raise errors.basic(
            409, "Head branch was modified. Review and try the merge again.", MERGE_DOC
        )
    if method not in store.merge_methods:
        raise errors.basic(
            405, f"{method.capitalize()} merges are not allowed on this repository.", MERGE_DOC
        )
    tree = store.git.trial_merge(now.base, now.head)
    if tree is None:
        raise errors.basic(405, "Pull Request is not mergeable", MERGE_DOC)
    when = store.now()
    commits = store.git.commits(now.base, now.head)
    if method == "squash":
        headline = title or f"{issue.title} (#{issue.number})"
        body = message if message is not None else _squash_body(c.message for c in commits)
        parents = [now.base]
    else:
        source = f"{info.fork_owner or store.owner}/{info.head_ref}"
        headline = title or f"Merge pull request #{issue.number} from {source}"
        body = message if message is not None else issue.title
        parents = [now.base, now.head]
    full = f"{headline}\n\n{body}" if body else headline
    new_sha = store.git.commit_tree(
        tree, parents, full, _author(store, issue.user, when), _committer(store)
    )
    # Compare-and-swap: a push to the base since we looked makes this fail, not clobber it.
    store.git.update_ref(f"refs/heads/{info.base_ref}", new_sha, now.base)
    info.merged, info.merged_at, info.merged_by = True, when, actor
    info.merge_commit_sha, info.frozen_base_sha = new_sha, now.base
    store.record_event(issue, actor, "merged", commit_id=new_sha)
    store.set_state(issue, "closed", actor, commit_id=new_sha)
    if store.close_issues_on_merge and info.base_ref == store.default_branch:
        for number in closing_references(store, issue.body or ""):
            target = store.issues.get(number)
            if target is not None and target.pull is None and target.state == "open":
                store.set_state(target, "closed", actor, "completed", commit_id=new_sha)
    if store.delete_branch_on_merge and info.fork_owner is None:
        delete_branch(store, f"heads/{info.head_ref}", actor)
    install_hook(store)
    return {"sha": new_sha, "merged": True, "message": "Pull Request successfully merged"}


def closing_references(store: Store, text: str) -> list[int]:
    """Issue numbers in this repository that `text` closes with a keyword."""
    numbers: list[int] = []
    for match in _CLOSING.finditer(text):
        repo, number = match.group(1), int(match.group(2))
        same_repo = repo is None or repo.lower() == f"{store.owner}/{store.name}".lower()
        if same_repo and number not in numbers:
            numbers.append(number)
    return numbers


def delete_branch(store: Store, ref: str, actor: str) -> None:
    """`DELETE /git/refs/{ref}`; deleting an open PR's head branch closes it, as on GitHub."""
    full = f"refs/{ref}"
    if store.git.resolve(full) is None or not ref.startswith(("heads/", "tags/")):
        raise errors.basic(422, "Reference does not exist", REF_DOC)
    store.git.delete_ref(full)
    if not ref.startswith("heads/"):
        return
    branch = ref[len("heads/") :]
    for issue in store.issues.values():
        info = issue.pull
        if info is None or info.fork_owner is not None or info.head_ref != branch:
            continue
        store.record_event(issue, actor, "head_ref_deleted")
        if issue.state == "open":
            info.frozen_base_sha = store.git.resolve(f"refs/heads/{info.base_ref}")
            store.set_state(issue, "closed", actor)
    install_hook(store)


def install_hook(store: Store) -> None:
    """Write origin's post-receive hook so a push to an open PR's branch moves refs/pull/N/head.

    GitHub updates the pull ref on every push; a daemon that fetches `refs/pull/N/head` right
    after a push (without asking the API first) must see the new commit too.
    """
    lines = [
        "#!/bin/sh",
        "# Written by the fake GitHub: keep refs/pull/N/head on each open",
        "# pull request's head branch, as GitHub does.",
        "zero=0000000000000000000000000000000000000000",
        "while read old new ref; do",
        '  [ "$new" = "$zero" ] && continue',
        '  case "$ref" in',
    ]
    for issue in sorted(store.issues.values(), key=lambda i: i.number):
        info = issue.pull
        if info is None or info.fork_owner is not None or issue.state != "open":
            continue
        pattern = shlex.quote(f"refs/heads/{info.head_ref}")
        lines.append(f'    {pattern}) git update-ref {pull_ref(issue.number)} "$new" ;;')
    lines += ["  esac", "done", ""]
    hook = store.origin / "hooks" / "post-receive"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text("\n".join(lines), encoding="utf-8")
    hook.chmod(0o755)


def _info(issue: Issue) -> PullInfo:
    if issue.pull is None:
        raise errors.not_found()
    return issue.pull


def _squash_body(messages: Iterable[str]) -> str:
    """GitHub's default squash message: one bullet per commit message."""
    items = [m.strip() for m in messages]
    if len(items) == 1:
        return items[0].partition("\n")[2].strip()
    return "\n\n".join(f"* {m}" for m in items)


def _author(store: Store, login: str, when: datetime) -> Identity:
    ident = store.user_id(login)
    return Identity(login, f"{ident}+{login}@users.noreply.github.com", when)


def _committer(store: Store) -> Identity:
    return Identity(*GITHUB_COMMITTER, store.now())
