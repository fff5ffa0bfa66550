"""Cut the fake GitHub's contract from the pinned `@octokit/openapi`: only the routes it serves.

    python tools/update_openapi.py            # npm pack the pinned version, rewrite the files
    python tools/update_openapi.py --check    # exit 1 if a committed file is not what it writes
    python tools/update_openapi.py --tarball octokit-openapi-23.0.2.tgz

The package holds GitHub's own REST description (github/rest-api-description) for
api.github.com at its first version, 2022-11-28, with every later version's changes attached
as `x-github-breaking-changes` patches. The daemon asks for 2022-11-28 and githubkit's typed
methods (used by tests) for 2026-03-10, so one file is written per version, each with the
patches up to it applied as GitHub's own build applies them: a list (or an object with `op`)
is a JSON Patch (RFC 6902), any other object a JSON Merge Patch (RFC 7396).
To move to a new release, change VERSION, run this, and run the tests.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.orchestrator.fakes.fake_github.fake import build_router  # noqa: E402
from scripts.orchestrator.fakes.fake_github.openapi import (  # noqa: E402
    description_path,
    template_shape,
)
from scripts.orchestrator.fakes.fake_github.versions import VERSIONS  # noqa: E402

PACKAGE = "@octokit/openapi"
VERSION = "23.0.2"
MEMBER = "package/generated/api.github.com.json"
BREAKING = "x-github-breaking-changes"
METHODS = ("get", "put", "post", "patch", "delete")
# Where the description contradicts what GitHub sends, the fake follows GitHub and the
# description is corrected here (a JSON Merge Patch at a pointer), each with its evidence.
# The committed file lists them under info.x-errata.
ERRATA: dict[str, tuple[dict[str, Any], str]] = {
    "/components/schemas/pull-request-simple/properties/labels/items/properties/description": (
        {"nullable": True},
        "GitHub sends null for a label without a description (github/rest-api-description"
        "#1812; githubkit's models correct it the same way).",
    ),
    "/components/schemas/issue/properties/pull_request/properties/merged_at": (
        {"nullable": True},
        "The 2026-03-10 changeset deprecate_beta_media_type makes it non-nullable along with "
        "the pull request's URLs, yet an unmerged pull request has no merge time; githubkit's "
        "2026-03-10 models, from a later description, keep it nullable.",
    ),
}
# Bulk only people read; no validator looks at them. Keys under a name map (`properties`,
# `schemas`, ...) are names, never these keywords, and are kept whatever they are called.
DROPPED = {"examples", "example", "x-octokit", "x-github", "externalDocs"}
NAME_MAPS = {"properties", "schemas", "parameters", "responses", "headers", "content", "paths"}


def fetch(tarball: Path | None) -> dict[str, Any]:
    """The description in the pinned package, from `tarball` or from `npm pack`."""
    with tempfile.TemporaryDirectory() as tmp:
        if tarball is None:
            subprocess.run(
                ["npm", "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", tmp, "--silent"],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            tarball = next(Path(tmp).glob("*.tgz"))
        with tarfile.open(tarball) as archive:
            member = archive.extractfile(MEMBER)
            if member is None:
                raise SystemExit(f"{tarball} has no {MEMBER}")
            doc: dict[str, Any] = json.load(member)
    found = doc["info"]["version"]
    if found != VERSION:
        raise SystemExit(f"{tarball} is {PACKAGE} {found}, not the pinned {VERSION}")
    return doc


def apply_breaking_changes(node: Any, version: str) -> Any:
    """Apply every change dated at or before `version`, deepest first, and drop the notes."""
    if isinstance(node, list):
        return [apply_breaking_changes(item, version) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: apply_breaking_changes(v, version) for k, v in node.items() if k != BREAKING}
    for change in node.get(BREAKING, []):
        if change["version"] > version:  # ISO dates compare as text
            continue
        patch = change["patch"]
        if isinstance(patch, list) or "op" in patch:
            out = json_patch(out, patch if isinstance(patch, list) else [patch])
        else:
            out = merge_patch(out, patch)
    return out


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396: objects merge key by key, `null` removes, anything else replaces."""
    if not isinstance(patch, dict) or not isinstance(target, dict):
        return patch
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def json_patch(doc: Any, ops: Iterable[dict[str, Any]]) -> Any:
    """RFC 6902's add, remove and replace (the only operations GitHub's changes use)."""
    for op in ops:
        *parents, last = [
            p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]
        ]
        parent = doc
        for part in parents:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        kind = op["op"]
        if kind not in ("add", "remove", "replace"):
            raise SystemExit(f"unsupported JSON Patch operation {kind!r}")
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if kind != "add":
                del parent[index]
            if kind != "remove":
                parent.insert(index, op["value"])
        elif kind == "remove":
            del parent[last]
        else:
            parent[last] = op["value"]
    return doc


def correct(doc: dict[str, Any]) -> dict[str, Any]:
    for pointer, (patch, _) in ERRATA.items():
        *parents, last = pointer.strip("/").split("/")
        parent = doc
        for part in parents:
            parent = parent[part]
        parent[last] = merge_patch(parent[last], patch)
    return doc


def served_operations(doc: dict[str, Any]) -> dict[str, set[str]]:
    """Description path -> methods, for every route of the fake; fails on an undocumented one."""
    by_shape: dict[str, list[str]] = {}
    for path in doc["paths"]:
        by_shape.setdefault(template_shape(path), []).append(path)
    served: dict[str, set[str]] = {}
    missing = []
    for route in build_router().routes:
        method = route.method.lower()
        paths = [p for p in by_shape.get(route.shape, []) if method in doc["paths"][p]]
        if len(paths) != 1:
            missing.append(f"{route.method} {route.shape} ({route.name}): {paths}")
            continue
        served.setdefault(paths[0], set()).add(method)
    if missing:
        raise SystemExit("routes of the fake that GitHub does not document:\n" + "\n".join(missing))
    return served


def subset(doc: dict[str, Any], served: dict[str, set[str]], version: str) -> dict[str, Any]:
    """The served operations and every component they reach through `$ref`."""
    paths: dict[str, Any] = {}
    for path, methods in sorted(served.items()):
        item = doc["paths"][path]
        kept = {m: item[m] for m in METHODS if m in methods}
        if "parameters" in item:
            kept["parameters"] = item["parameters"]
        paths[path] = slim(kept)
    components: dict[str, dict[str, Any]] = {}
    pending = _refs(paths)
    while pending:
        ref = pending.pop()
        _, _, kind, name = ref.split("/", 3)
        if name in components.get(kind, {}):
            continue
        target = slim(doc["components"][kind][name])
        components.setdefault(kind, {})[name] = target
        pending |= _refs(target)
    return {
        "openapi": doc["openapi"],
        "info": {
            "title": "GitHub REST API: the operations the fake GitHub serves",
            "version": VERSION,
            "x-source": {
                "package": PACKAGE,
                "version": VERSION,
                "file": MEMBER.removeprefix("package/"),
                "api-version": version,
                "written-by": "tools/update_openapi.py",
            },
            "x-errata": {pointer: reason for pointer, (_, reason) in ERRATA.items()},
        },
        "servers": doc["servers"],
        "paths": paths,
        "components": {kind: dict(sorted(v.items())) for kind, v in sorted(components.items())},
    }


def slim(node: Any, names: bool = False) -> Any:
    """`node` without the keywords in DROPPED (`names`: its keys are names, keep them all)."""
    if isinstance(node, list):
        return [slim(item) for item in node]
    if not isinstance(node, dict):
        return node
    return {
        key: slim(value, names=not names and key in NAME_MAPS)
        for key, value in node.items()
        if names or key not in DROPPED
    }


def _refs(node: Any) -> set[str]:
    text = json.dumps(node)
    return set(re.findall(r'"\$ref": "(#/components/[^"]+)"', text))


def render(doc: dict[str, Any]) -> str:
    # One key a line keeps the file reviewable in diffs when the pinned version moves.
    return json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tarball", type=Path, help=f"a downloaded {PACKAGE}-{VERSION}.tgz")
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    raw = fetch(args.tarball)
    stale = []
    for version in VERSIONS:
        doc = correct(apply_breaking_changes(copy.deepcopy(raw), version))
        text = render(subset(doc, served_operations(doc), version))
        path = description_path(version)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path.relative_to(ROOT)))
            continue
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)} ({len(text) // 1024} KiB)")
    if stale:
        print(f"not what {PACKAGE} {VERSION} gives (rerun without --check): {', '.join(stale)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
