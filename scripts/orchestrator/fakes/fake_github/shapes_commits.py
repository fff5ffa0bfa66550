"""JSON shapes of repository contents (files, directories, symlinks) and commit comments."""

from __future__ import annotations

import base64
from urllib.parse import quote

from .gitops import TreeEntry
from .model import CommitComment
from .shapes_base import Json, node_id, reaction_rollup, stamp, user
from .store import Store

# GitHub encodes with Ruby's Base64.encode64: a newline after every 60 characters and at the
# end (none at all for empty content).
_LINE = 60
_KINDS = {"tree": "dir", "commit": "submodule"}


def encode64(data: bytes) -> str:
    text = base64.b64encode(data).decode("ascii")
    return "".join(text[i : i + _LINE] + "\n" for i in range(0, len(text), _LINE))


def content_kind(entry: TreeEntry) -> str:
    """`file`, `dir`, `symlink` or `submodule`, as the contents API names an entry."""
    if entry.mode == "120000":
        return "symlink"
    return _KINDS.get(entry.kind, "file")


def content_entry(store: Store, entry: TreeEntry, ref: str) -> Json:
    """What the contents API says of any entry: as a directory listing's item."""
    ctx = store.context()
    kind = content_kind(entry)
    path = quote(entry.path)
    url = f"{ctx.api}/contents/{path}?ref={quote(ref, safe='')}"
    git_url = f"{ctx.api}/git/{'trees' if kind == 'dir' else 'blobs'}/{entry.sha}"
    html_url = f"{ctx.html}/{'tree' if kind == 'dir' else 'blob'}/{quote(ref)}/{path}"
    download = None if kind == "dir" else f"{ctx.html}/raw/{quote(ref)}/{path}"
    return {
        "name": entry.path.rpartition("/")[2],
        "path": entry.path,
        "sha": entry.sha,
        "size": entry.size or 0,
        "url": url,
        "html_url": html_url,
        "git_url": git_url,
        "download_url": download,
        # GitHub lists a submodule as a file in a directory (for backward compatibility).
        "type": "file" if kind == "submodule" else kind,
        "_links": {"self": url, "git": git_url, "html": html_url},
    }


def content_file(store: Store, entry: TreeEntry, ref: str, data: bytes) -> Json:
    """A file, its bytes base64-encoded as GitHub encodes them."""
    return {**content_entry(store, entry, ref), "content": encode64(data), "encoding": "base64"}


def content_symlink(store: Store, entry: TreeEntry, ref: str, target: str) -> Json:
    """A symlink whose target is not a file of the repository."""
    return {**content_entry(store, entry, ref), "type": "symlink", "target": target}


def commit_comment(store: Store, item: CommitComment) -> Json:
    ctx = store.context()
    url = f"{ctx.api}/comments/{item.id}"
    return {
        "html_url": f"{ctx.html}/commit/{item.commit_id}#commitcomment-{item.id}",
        "url": url,
        "id": item.id,
        "node_id": node_id("CommitComment", item.id),
        "body": item.body,
        "path": item.path,
        "position": item.position,
        "line": item.line,
        "commit_id": item.commit_id,
        "user": user(ctx, item.user),
        "created_at": stamp(item.created_at),
        "updated_at": stamp(item.updated_at),
        "author_association": store.association(item.user),
        "reactions": reaction_rollup(f"{url}/reactions", item.reactions),
    }
