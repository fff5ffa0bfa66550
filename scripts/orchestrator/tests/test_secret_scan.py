"""The scan before a push: credentials by their shape, and the daemon's own in any form."""

from __future__ import annotations

import base64
from pathlib import Path

from scripts.orchestrator.core.redact import Redactor
from scripts.orchestrator.fakes.git_world import GitWorld, git, write_files
from scripts.orchestrator.secret_scan import OWN_SECRET, SecretScanner

TOKEN = "ghp_" + "Zq7Wm3Kd9Lx2Rv8Tb5Ny1Hc4Pf6Jg0Se2Ua"  # made up
AWS = "AKIA" + "Z7QXN3LK4W2RB5TJ"  # an AWS access key id's shape, made up


def diff_of(clone: Path, files: dict[str, str]) -> str:
    """The diff git writes for committing `files` on top of the clone's HEAD."""
    before = git(clone, "rev-parse", "HEAD")
    write_files(clone, files)
    git(clone, "add", "--all")
    git(clone, "commit", "--quiet", "-m", "change")
    return git(clone, "diff", "--no-color", before, "HEAD") + "\n"


def test_credentials_are_found_by_file_line_and_kind(git_world: GitWorld) -> None:
    diff = diff_of(
        git_world.clone,
        {
            "settings.py": f'DEBUG = True\nAWS_ACCESS_KEY_ID = "{AWS}"\n',
            "notes/leak.txt": "see below\n" + base64.b64encode(TOKEN.encode()).decode() + "\n",
            "deploy.sh": "curl https://admin:s3cretPassw0rd@example.com/hook\n",
        },
    )
    hits = SecretScanner(Redactor([TOKEN])).scan(diff)
    found = {(hit.path, hit.line, hit.kind) for hit in hits}
    assert ("settings.py", 2, "AWS Access Key") in found
    assert ("notes/leak.txt", 2, OWN_SECRET) in found
    assert ("deploy.sh", 1, "Basic Auth Credentials") in found
    for hit in hits:  # a hit says where and what, never the value
        assert TOKEN not in hit.kind and AWS not in hit.kind


def test_an_ordinary_change_has_no_hits(git_world: GitWorld) -> None:
    """The control: hashes, lock files and example passwords are not credentials' shapes."""
    diff = diff_of(
        git_world.clone,
        {
            "test_login.py": 'def test_login():\n    assert login("bob", password="example")\n',
            "poetry.lock": (
                'hash = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"\n'
            ),
            "README.md": "Commit 3f786850e387550fdab836ed7e6dc881de23001b fixed it.\n",
        },
    )
    assert SecretScanner(Redactor([TOKEN])).scan(diff) == []


def test_only_what_the_change_adds_counts(git_world: GitWorld) -> None:
    diff_of(git_world.clone, {"old.py": f'KEY = "{AWS}"\n'})  # already there before
    diff = diff_of(git_world.clone, {"old.py": f'KEY = "{AWS}"\nX = 1\n'})
    assert SecretScanner(Redactor([TOKEN])).scan(diff) == []
