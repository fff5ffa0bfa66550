#!/usr/bin/env python3
"""Copy the GitHub answers our client replays out of a pinned `@octokit/fixtures` into the tests.

`@octokit/fixtures` (npm) holds interactions recorded against the real api.github.com and
normalised by GitHub's Octokit team. Only the scenarios whose requests GitHubClient also makes
are copied, and only those requests, with the response headers a client acts on, into
scripts/orchestrator/tests/recordings/octokit-fixtures/; `source.json` there names the package
version and its npm integrity. Run from anywhere:

    python tools/update_octokit_fixtures.py                   # the pinned version, via `npm pack`
    python tools/update_octokit_fixtures.py --version 23.2.0  # move the pin
    python tools/update_octokit_fixtures.py --tarball octokit-fixtures-23.1.2.tgz  # offline
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

PACKAGE = "@octokit/fixtures"
PINNED = "23.1.2"
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "scripts" / "orchestrator" / "tests" / "recordings" / "octokit-fixtures"
SCENARIO_PATH = "package/scenarios/api.github.com/{}/normalized-fixture.json"
LICENSE_PATH = "package/LICENSE.md"

# Scenario -> the recorded requests to keep, as regexes over "METHOD /path" (query excluded).
# Each pattern must match at least one request, so a reshuffled scenario fails loudly here.
SCENARIOS: dict[str, tuple[str, ...]] = {
    # GitHubClient.default_branch()
    "get-repository": (r"GET /repos/octokit-fixture-org/hello-world",),
    # default_branch() of a renamed repository: a 301 to /repositories/{id}
    "rename-repository": (
        r"GET /repos/octokit-fixture-org/rename-repository",
        r"GET /repositories/1000",
    ),
    # add_labels()
    "add-labels-to-issue": (
        r"POST /repos/octokit-fixture-org/add-labels-to-issue/issues/\d+/labels",
    ),
    # list_open_issues(): Link headers that lead to /repositories/{id}/issues
    "paginate-issues": (
        r"GET /repos/octokit-fixture-org/paginate-issues/issues",
        r"GET /repositories/1000/issues",
    ),
    # statuses()
    "create-status": (r"GET /repos/octokit-fixture-org/create-status/commits/[0-9a-f]{40}/status",),
    # delete_branch()
    "git-refs": (r"DELETE /repos/octokit-fixture-org/git-refs/git/refs/heads/test",),
    # A real 422 "Validation Failed" body, for the error mapping
    "errors": (r"POST /repos/octokit-fixture-org/errors/labels",),
}

# Response headers a client acts on; the rest (CSP, CORS, OAuth scopes, ...) is noise here.
# content-length is left out on purpose: the replay serialises the body again.
KEPT_HEADERS = (
    "cache-control",
    "content-type",
    "date",
    "etag",
    "last-modified",
    "link",
    "location",
    "retry-after",
    "x-github-media-type",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "x-ratelimit-resource",
    "x-ratelimit-used",
)


def npm_pack(version: str, into: Path) -> tuple[Path, str]:
    """The package's tarball from the npm registry, and its integrity as npm reports it."""
    result = subprocess.run(
        ["npm", "pack", f"{PACKAGE}@{version}", "--json", "--pack-destination", str(into)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    (info,) = json.loads(result.stdout)
    return into / info["filename"], str(info["integrity"])


def integrity_of(tarball: Path) -> str:
    """npm's `integrity` string (Subresource Integrity, sha512) for a tarball."""
    digest = hashlib.sha512(tarball.read_bytes()).digest()
    return "sha512-" + base64.b64encode(digest).decode()


def read_member(archive: tarfile.TarFile, name: str) -> bytes:
    """One file of the tarball, read without extracting anything to disk."""
    member = archive.getmember(name)
    handle = archive.extractfile(member)
    if handle is None:
        raise SystemExit(f"{name} is not a regular file in the package")
    return handle.read()


def select(scenario: str, recorded: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The interactions of `scenario` that the client replays, trimmed to what matters."""
    patterns = [re.compile(p) for p in SCENARIOS[scenario]]
    kept: list[dict[str, Any]] = []
    used: set[str] = set()
    for interaction in recorded:
        key = f"{interaction['method'].upper()} {interaction['path'].split('?', 1)[0]}"
        hits = [p.pattern for p in patterns if p.fullmatch(key)]
        if not hits:
            continue
        used.update(hits)
        headers = interaction.get("headers") or {}
        kept.append(
            {
                "method": interaction["method"].upper(),
                "path": interaction["path"],
                "body": interaction.get("body", ""),
                "status": interaction["status"],
                "headers": {k: str(headers[k]) for k in KEPT_HEADERS if k in headers},
                "response": interaction.get("response", ""),
            }
        )
    missing = [p.pattern for p in patterns if p.pattern not in used]
    if missing:
        raise SystemExit(f"{scenario}: no recorded request matches {missing}")
    return kept


def extract(tarball: Path, version: str, integrity: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for stale in OUT.glob("*.json"):
        stale.unlink()
    with tarfile.open(tarball, "r:gz") as archive:
        manifest = json.loads(read_member(archive, "package/package.json"))
        if manifest.get("version") != version:
            raise SystemExit(f"the tarball is version {manifest.get('version')}, not {version}")
        for scenario in SCENARIOS:
            recorded = json.loads(read_member(archive, SCENARIO_PATH.format(scenario)))
            kept = select(scenario, recorded)
            _write_json(OUT / f"{scenario}.json", kept)
        (OUT / "LICENSE.md").write_bytes(read_member(archive, LICENSE_PATH))
    _write_json(
        OUT / "source.json",
        {
            "package": PACKAGE,
            "version": version,
            "integrity": integrity,
            "scenarios": sorted(SCENARIOS),
            "written_by": "tools/update_octokit_fixtures.py",
        },
    )


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", default=PINNED, help=f"package version (default {PINNED})")
    parser.add_argument("--tarball", type=Path, help="use this tarball instead of `npm pack`")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.tarball is not None:
            tarball, integrity = args.tarball, integrity_of(args.tarball)
        else:
            tarball, integrity = npm_pack(args.version, Path(tmp))
            if integrity != integrity_of(tarball):
                raise SystemExit(f"{tarball.name} does not match npm's integrity {integrity}")
        extract(tarball, args.version, integrity)
    print(f"{PACKAGE}@{args.version}: {len(SCENARIOS)} scenarios in {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
