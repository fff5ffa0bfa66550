"""Git plumbing on the fake's bare repository: refs, trial merges, squash commits and diffs."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..git_world import git_env

GIT_TIMEOUT = 60.0
_FIELD = "\x1f"
_RECORD = "\x1e"
_STATUS = {
    "A": "added",
    "D": "removed",
    "M": "modified",
    "R": "renamed",
    "C": "copied",
    "T": "changed",
}


class GitError(RuntimeError):
    """A git command failed in a way the fake cannot turn into a GitHub answer."""


@dataclass(frozen=True)
class Identity:
    """Who a commit is by: name, email and when."""

    name: str
    email: str
    when: datetime


@dataclass(frozen=True)
class CommitInfo:
    """One commit as `git log` describes it."""

    sha: str
    tree: str
    parents: tuple[str, ...]
    author_name: str
    author_email: str
    author_date: str
    committer_name: str
    committer_email: str
    committer_date: str
    message: str


@dataclass(frozen=True)
class TreeEntry:
    """One entry of a tree: its mode (`100644`, `120000` a symlink, `160000` a submodule),
    object type (blob, tree, commit), SHA, size (blobs only) and path from the root."""

    mode: str
    kind: str
    sha: str
    size: int | None
    path: str


@dataclass(frozen=True)
class FileChange:
    """One file of a diff, with GitHub's status words and line counts."""

    filename: str
    status: str
    additions: int
    deletions: int
    sha: str | None
    previous_filename: str | None
    patch: str | None


class GitRepo:
    """Plumbing commands on one (bare) repository, each with a timeout."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def run(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        ok_codes: Sequence[int] = (0,),
    ) -> subprocess.CompletedProcess[str]:
        full_env = git_env()
        if env:
            full_env.update(env)
        proc = subprocess.run(
            ["git", *args],
            cwd=self.path,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
        if proc.returncode not in ok_codes:
            raise GitError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def refs(self, prefix: str = "refs/") -> dict[str, str]:
        """Every ref under `prefix` and the commit it points to, read fresh from disk."""
        out = self.run("for-each-ref", "--format=%(refname) %(objectname)", prefix).stdout
        pairs = (line.split(" ", 1) for line in out.splitlines() if line)
        return {name: sha for name, sha in pairs}

    def resolve(self, ref: str) -> str | None:
        """The commit `ref` names (a SHA, branch, tag or full ref), or None."""
        proc = self.run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", ok_codes=(0, 1))
        return proc.stdout.strip() or None

    def resolve_branch_or_sha(self, ref: str) -> str | None:
        """Resolve what GitHub accepts as `{ref}` in a URL: a branch, tag or SHA."""
        for candidate in (f"refs/heads/{ref}", f"refs/tags/{ref}", ref):
            sha = self.resolve(candidate)
            if sha:
                return sha
        return None

    def update_ref(self, ref: str, sha: str, old: str | None = None) -> None:
        """Point `ref` at `sha`; with `old`, only if it still points there (compare and swap)."""
        args = ["update-ref", ref, sha] + ([old] if old else [])
        self.run(*args)

    def delete_ref(self, ref: str) -> None:
        self.run("update-ref", "-d", ref)

    def merge_base(self, a: str, b: str) -> str | None:
        return self.run("merge-base", a, b, ok_codes=(0, 1)).stdout.strip() or None

    def is_ancestor(self, a: str, b: str) -> bool:
        return self.run("merge-base", "--is-ancestor", a, b, ok_codes=(0, 1)).returncode == 0

    def trial_merge(self, base: str, head: str) -> str | None:
        """The tree of merging `head` into `base`, or None when they conflict.

        `git merge-tree --write-tree` merges without a work tree, so it is safe in a bare
        repository and leaves no refs behind; exit status 1 means conflicts.
        """
        proc = self.run(
            "merge-tree",
            "--write-tree",
            "--no-messages",
            "--allow-unrelated-histories",
            base,
            head,
            ok_codes=(0, 1),
        )
        if proc.returncode == 1:
            return None
        return proc.stdout.splitlines()[0].strip()

    def commit_tree(
        self,
        tree: str,
        parents: Sequence[str],
        message: str,
        author: Identity,
        committer: Identity,
    ) -> str:
        """Create a commit object (no ref moves) and return its SHA."""
        args = ["commit-tree", tree]
        for parent in parents:
            args += ["-p", parent]
        args += ["-m", message]
        return self.run(*args, env=_identity_env(author, committer)).stdout.strip()

    def commit_files(
        self,
        parent: str,
        files: Mapping[str, str | None],
        message: str,
        author: Identity,
    ) -> str:
        """A commit on top of `parent` that writes (or, for None, deletes) `files`.

        Built with a throwaway index file, so it works in the bare repository without a
        checkout; no ref is moved.
        """
        with tempfile.TemporaryDirectory(prefix="fake-gh-index-") as tmp:
            index_env = {"GIT_INDEX_FILE": os.path.join(tmp, "index")}
            self.run("read-tree", parent, env=index_env)
            for path, content in files.items():
                if content is None:
                    self.run("update-index", "--force-remove", "--", path, env=index_env)
                    continue
                blob = self._hash_blob(content, Path(tmp))
                self.run(
                    "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=index_env
                )
            tree = self.run("write-tree", env=index_env).stdout.strip()
        return self.commit_tree(tree, [parent], message, author, author)

    def _hash_blob(self, content: str, tmp: Path) -> str:
        blob_file = tmp / "blob"
        blob_file.write_text(content, encoding="utf-8")
        return self.run("hash-object", "-w", "--", str(blob_file)).stdout.strip()

    def entries(self, commit: str, directory: str = "") -> list[TreeEntry] | None:
        """The entries of `directory` (a path from the root, "" for the root) at `commit`, in
        git's order; None if it is no directory there."""
        proc = self.run("ls-tree", "-z", "--long", f"{commit}:{directory}", ok_codes=(0, 128))
        if proc.returncode != 0:
            return None
        prefix = f"{directory}/" if directory else ""
        found: list[TreeEntry] = []
        for record in proc.stdout.split("\0"):
            if not record:
                continue
            meta, _, name = record.partition("\t")
            mode, kind, sha, size = meta.split()
            blob_size = int(size) if size != "-" else None
            found.append(TreeEntry(mode, kind, sha, blob_size, prefix + name))
        return found

    def entry(self, commit: str, path: str) -> TreeEntry | None:
        """The entry at `path` (exactly that path, no globbing) at `commit`, or None."""
        directory = path.rpartition("/")[0]
        listed = self.entries(commit, directory) or []
        return next((e for e in listed if e.path == path), None)

    def blob(self, sha: str) -> bytes:
        """A blob's bytes, as stored."""
        proc = subprocess.run(
            ["git", "cat-file", "blob", sha],
            cwd=self.path,
            env=git_env(),
            capture_output=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
        if proc.returncode != 0:
            raise GitError(f"git cat-file blob {sha} failed: {proc.stderr.decode().strip()}")
        return proc.stdout

    def count_commits(self, base: str, head: str) -> int:
        return int(self.run("rev-list", "--count", f"{base}..{head}").stdout.strip() or "0")

    def commits(self, base: str, head: str, limit: int = 250) -> list[CommitInfo]:
        """Commits reachable from `head` but not `base`, oldest first (as GitHub lists them)."""
        fmt = _FIELD.join(["%H", "%T", "%P", "%an", "%ae", "%aI", "%cn", "%ce", "%cI", "%B"])
        out = self.run(
            "log",
            "--reverse",
            f"--max-count={limit}",
            f"--format={fmt}{_RECORD}",
            f"{base}..{head}",
        ).stdout
        return [_parse_commit(rec) for rec in out.split(_RECORD) if rec.strip()]

    def commit(self, sha: str) -> CommitInfo:
        fmt = _FIELD.join(["%H", "%T", "%P", "%an", "%ae", "%aI", "%cn", "%ce", "%cI", "%B"])
        return _parse_commit(self.run("show", "-s", f"--format={fmt}", sha).stdout)

    def diff(self, base: str, head: str) -> list[FileChange]:
        """The files changed from `base` to `head`, in git's order, with patches."""
        raw = self.run("diff", "-z", "--raw", "--no-abbrev", "-M", base, head).stdout
        numstat = self.run("diff", "-z", "--numstat", "-M", base, head).stdout
        patch = self.run("diff", "--no-color", "--no-ext-diff", "-M", base, head).stdout
        counts = _parse_numstat(numstat)
        patches = _split_patches(patch)
        changes: list[FileChange] = []
        for index, (status, sha, path, old_path) in enumerate(_parse_raw(raw)):
            additions, deletions = counts[index] if index < len(counts) else (0, 0)
            changes.append(
                FileChange(
                    filename=path,
                    status=status,
                    additions=additions,
                    deletions=deletions,
                    sha=sha,
                    previous_filename=old_path,
                    patch=patches[index] if index < len(patches) else None,
                )
            )
        return changes


def _identity_env(author: Identity, committer: Identity) -> dict[str, str]:
    return {
        "GIT_AUTHOR_NAME": author.name,
        "GIT_AUTHOR_EMAIL": author.email,
        "GIT_AUTHOR_DATE": f"@{int(author.when.timestamp())} +0000",
        "GIT_COMMITTER_NAME": committer.name,
        "GIT_COMMITTER_EMAIL": committer.email,
        "GIT_COMMITTER_DATE": f"@{int(committer.when.timestamp())} +0000",
    }


def _parse_commit(record: str) -> CommitInfo:
    parts = record.strip("\n").split(_FIELD)
    sha, tree, parents, an, ae, ad, cn, ce, cd, message = parts
    return CommitInfo(
        sha=sha,
        tree=tree,
        parents=tuple(parents.split()),
        author_name=an,
        author_email=ae,
        author_date=ad,
        committer_name=cn,
        committer_email=ce,
        committer_date=cd,
        message=message.rstrip("\n"),
    )


def _parse_raw(out: str) -> list[tuple[str, str | None, str, str | None]]:
    """Parse `git diff -z --raw`: `:modes shas status\\0path\\0[new path\\0]` per file."""
    tokens = out.split("\0")
    result: list[tuple[str, str | None, str, str | None]] = []
    i = 0
    while i < len(tokens) and tokens[i].startswith(":"):
        _old_mode, _new_mode, old_sha, new_sha, letter_score = tokens[i][1:].split(" ")
        letter = letter_score[0]
        status = _STATUS.get(letter, "modified")
        if letter in "RC":
            old_path, path = tokens[i + 1], tokens[i + 2]
            i += 3
        else:
            old_path, path = None, tokens[i + 1]
            i += 2
        sha = old_sha if letter == "D" else new_sha
        result.append((status, sha, path, old_path))
    return result


def _parse_numstat(out: str) -> list[tuple[int, int]]:
    """Parse `git diff -z --numstat`; a rename's paths follow as two extra fields."""
    tokens = out.split("\0")
    counts: list[tuple[int, int]] = []
    i = 0
    while i < len(tokens) and tokens[i]:
        added, deleted, path = tokens[i].split("\t", 2)
        # Binary files report "-" for both counts; GitHub shows them as 0 changed lines.
        counts.append((int(added) if added != "-" else 0, int(deleted) if deleted != "-" else 0))
        i += 3 if path == "" else 1
    return counts


def _split_patches(out: str) -> list[str | None]:
    """One hunk text per file (what GitHub puts in `patch`), None for binary files."""
    blocks = [b for b in ("\n" + out).split("\ndiff --git ") if b.strip()]
    patches: list[str | None] = []
    for block in blocks:
        at = block.find("\n@@")
        patches.append(block[at + 1 :].rstrip("\n") if at >= 0 else None)
    return patches
