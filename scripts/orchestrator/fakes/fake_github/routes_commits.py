"""Routes for a repository's files (the contents API) and for comments on its commits."""

from __future__ import annotations

import posixpath
import re
from typing import Any

from . import errors
from . import shapes_commits as shapes
from .anchors import Unresolved, resolve
from .model import CommitComment
from .router import Reply, Request, Router
from .store import Store, check_body

router = Router()
CONTENTS_DOC = "https://docs.github.com/rest/repos/contents#get-repository-content"
COMMENTS_DOC = "https://docs.github.com/rest/commits/comments#create-a-commit-comment"
# Files above 1 MB come only with the raw or object media types, which the fake does not serve.
MAX_FILE = 1024 * 1024
MAX_LISTED = 1000
TOO_LARGE = (
    "This API returns blobs up to 1 MB in size. The requested blob is too large to fetch via "
    "the API, but you can use the Git Data API to request blobs up to 100 MB in size."
)
# git's empty tree: what a root commit's diff starts from.
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
_SHA = re.compile(r"[0-9a-f]{40}")
_ABBREVIATED = re.compile(r"[0-9a-f]{7,40}")


@router.route("GET", "/contents/{path:path}", "get_content")
def get_content(store: Store, req: Request) -> Reply:
    """A file, or a directory's list of entries (its first 1,000), at `ref` (a branch, tag or
    commit SHA; the default branch without it), in the default (JSON) media type only.

    As GitHub documents it: a symlink to a file of the repository answers that file, any
    other symlink the symlink itself; a file over 1 MB is 403 `too_large`. An unknown ref is
    404 "No commit found for the ref ...". Not served: the raw, html and object media types
    (the answer is JSON whatever `Accept` asks for), and a submodule's own answer (404, where
    GitHub names the submodule's repository; in a directory listing it is a `file`, as on
    GitHub).
    """
    ref = req.query.get("ref") or store.default_branch
    sha = _commit_of(store, ref)
    if sha is None:
        raise errors.basic(404, f"No commit found for the ref {ref}", CONTENTS_DOC)
    path = req.params["path"]
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise errors.not_found()
    listing = store.git.entries(sha, path)
    if listing is not None:
        return Reply(body=[shapes.content_entry(store, e, ref) for e in listing[:MAX_LISTED]])
    entry = store.git.entry(sha, path)
    if entry is None or shapes.content_kind(entry) == "submodule":
        raise errors.not_found()
    if shapes.content_kind(entry) == "symlink":
        target = store.git.blob(entry.sha).decode("utf-8", "replace")
        pointed = _link_target(path, target)
        found = store.git.entry(sha, pointed) if pointed is not None else None
        if found is None or shapes.content_kind(found) != "file":
            return Reply(body=shapes.content_symlink(store, entry, ref, target))
        entry = found
    if (entry.size or 0) > MAX_FILE:
        blob_error = {"resource": "Blob", "field": "data", "code": "too_large"}
        body = errors.error_body(403, TOO_LARGE, CONTENTS_DOC, errors=[blob_error])
        raise errors.ApiError(403, body)
    return Reply(body=shapes.content_file(store, entry, ref, store.git.blob(entry.sha)))


@router.route("POST", "/commits/{commit_sha:path}/comments", "create_commit_comment")
def create_commit_comment(store: Store, req: Request) -> Reply:
    """A comment on the commit, or with `path` on a line of its diff (from its first parent):
    `position` in the diff, or the closing-down `line` of the file (which, if given beside
    `position`, must be that position's line). Stricter than GitHub where unsure: the commit
    is named by its full SHA only, and a `path` needs a place in the diff."""
    sha = _commit_sha(store, req.params["commit_sha"])
    data = req.body()
    text = check_body(data.get("body"), "CommitComment")
    path, position, line = _place(store, sha, data)
    now = store.now()
    item = CommitComment(
        store.next_id("commit_comment"), sha, req.login, text, now, now, path, position, line
    )
    store.commit_comments[item.id] = item
    body = shapes.commit_comment(store, item)
    return Reply(status=201, body=body, headers={"Location": body["url"]})


@router.route("GET", "/commits/{commit_sha:path}/comments", "list_commit_comments")
def list_commit_comments(store: Store, req: Request) -> Reply:
    """The commit's comments, oldest first; an unknown commit is 422, as creating one is."""
    sha = _commit_sha(store, req.params["commit_sha"])
    found = sorted(
        (c for c in store.commit_comments.values() if c.commit_id == sha), key=lambda c: c.id
    )
    return Reply(body=[shapes.commit_comment(store, c) for c in found], paginate=True)


def _commit_of(store: Store, ref: str) -> str | None:
    """The commit a contents `ref` names: a branch, a tag, a full ref or a (short) SHA; no
    other revision syntax (`main~1`), which GitHub does not take either."""
    for candidate in (f"refs/heads/{ref}", f"refs/tags/{ref}"):
        sha = store.git.resolve(candidate)
        if sha is not None:
            return sha
    if ref.startswith(("refs/heads/", "refs/tags/")) or _ABBREVIATED.fullmatch(ref):
        return store.git.resolve(ref)
    return None


def _commit_sha(store: Store, sha: str) -> str:
    if _SHA.fullmatch(sha) and store.git.resolve(sha) == sha:
        return sha
    raise errors.basic(422, f"No commit found for SHA: {sha}", COMMENTS_DOC)


def _link_target(link: str, target: str) -> str | None:
    """The path from the root a symlink's target names, None if it leaves the repository."""
    if target.startswith("/"):
        return None
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(link), target))
    return None if joined == ".." or joined.startswith("../") else joined


def _place(
    store: Store, sha: str, data: dict[str, Any]
) -> tuple[str | None, int | None, int | None]:
    """(`path`, `position`, `line`) of a comment on the commit's diff; all None for a comment
    on the whole commit."""
    path, position, line = data.get("path"), data.get("position"), data.get("line")
    if path is None:
        if position is not None or line is not None:
            raise errors.custom("CommitComment", "Path could not be resolved", COMMENTS_DOC)
        return None, None, None
    parents = store.git.commit(sha).parents
    changes = store.git.diff(parents[0] if parents else EMPTY_TREE, sha)
    patches = {c.filename: c.patch for c in changes}
    # `position` names the place when given; `line` alone only when it is not.
    place = {"position": position} if position is not None else {"line": line}
    try:
        anchor = resolve(patches, {"path": path, **place})
    except Unresolved as exc:
        raise errors.custom("CommitComment", str(exc), COMMENTS_DOC) from None
    if line is not None and line != anchor.line:
        raise errors.custom("CommitComment", "Line could not be resolved", COMMENTS_DOC)
    return anchor.path, anchor.position, anchor.line
