"""Several repositories on one fake GitHub: each its own records, one token and one rate limit
for them all, git served beside the API, files and commit comments, and the client's reads."""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from scripts.orchestrator.core.errors import MalformedAnswer, NotFound, Unprocessable
from scripts.orchestrator.core.redact import REDACTED
from scripts.orchestrator.core.remotes import clone_url
from scripts.orchestrator.fakes.fake_github import FakeGitHub
from scripts.orchestrator.fakes.fake_github.repository import Repository
from scripts.orchestrator.fakes.git_world import GitWorld, git, git_env, make_world
from scripts.orchestrator.github_watcher import API_HEADERS, GitHubClient

from .fixtures_world import FAST_RETRY

GADGETS = "/repos/acme/gadgets"
WIDGETS = "/repos/acme/widgets"


@pytest.fixture
def gadgets_world(tmp_path: Path) -> GitWorld:
    return make_world(tmp_path / "gadgets", {"README.md": "# gadgets\n", "src/g.py": "g = 1\n"})


@pytest.fixture
def gadgets(fake_github: FakeGitHub, gadgets_world: GitWorld) -> Repository:
    """`acme/gadgets`, a second repository on the same fake."""
    return fake_github.add_repository(gadgets_world.origin, "acme", "gadgets")


@pytest.fixture
def api(fake_github: FakeGitHub) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"token {fake_github.token}", **API_HEADERS}
    with httpx.Client(base_url=fake_github.url, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture
async def client(fake_github: FakeGitHub, gadgets: Repository) -> AsyncIterator[GitHubClient]:
    """The daemon's client, for `acme/gadgets`."""
    async with GitHubClient(
        fake_github.token, gadgets.full_name, api_url=fake_github.url, retry=FAST_RETRY,
        write_interval=0,
    ) as gh:  # fmt: skip
        yield gh


def run_git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=git_env(), capture_output=True, text=True, check=False
    )


def with_token(url: str, token: str) -> str:
    return url.replace("http://", f"http://x-access-token:{token}@", 1)


# -- one fake, several repositories ------------------------------------------------------------


def test_each_repository_keeps_its_own_records(
    fake_github: FakeGitHub, gadgets: Repository, api: httpx.Client
) -> None:
    a = fake_github.create_issue("In widgets", labels=["ready"])
    b = gadgets.create_issue("In gadgets", labels=["bug"])
    assert a == b == 1  # numbers are per repository
    gadgets.commit("feature/g", {"g.txt": "g\n"})
    pull = gadgets.create_pull("Gadget change", "feature/g")
    assert pull == 2 and fake_github.next_number() == 2

    widgets_issues = api.get(f"{WIDGETS}/issues", params={"state": "all"}).json()
    gadgets_issues = api.get(f"{GADGETS}/issues", params={"state": "all"}).json()
    assert [i["title"] for i in widgets_issues] == ["In widgets"]
    assert sorted(i["title"] for i in gadgets_issues) == ["Gadget change", "In gadgets"]
    assert api.get(f"{WIDGETS}/pulls").json() == []
    assert [p["number"] for p in api.get(f"{GADGETS}/pulls").json()] == [pull]
    assert api.get(f"{WIDGETS}/labels/bug").status_code == 404
    assert fake_github.labels_of(1) == ["ready"] and gadgets.labels_of(1) == ["bug"]
    assert gadgets.issue(1)["repository_url"].endswith(GADGETS)
    # IDs are GitHub's, unique across repositories; so is a user.
    assert fake_github.issue(1)["id"] != gadgets.issue(1)["id"]
    assert fake_github.issue(1)["user"]["id"] == gadgets.issue(1)["user"]["id"]

    api.post(f"{GADGETS}/issues/1/comments", json={"body": "hi"})
    assert [r.path for r in gadgets.requests_to("POST")] == [f"{GADGETS}/issues/1/comments"]
    assert fake_github.requests_to("POST") == []
    assert [m.name for m in gadgets.mutations] == ["create_comment"]
    assert fake_github.mutations == []
    assert len(fake_github.all_requests()) == 6
    assert gadgets.comments_on(1)[0]["body"] == "hi" and fake_github.comments_on(1) == []


def test_repositories_are_matched_case_insensitively_and_each_has_an_id(
    fake_github: FakeGitHub, gadgets: Repository, api: httpx.Client
) -> None:
    answer = api.get("/repos/ACME/Gadgets").json()
    assert (answer["full_name"], answer["id"]) == ("acme/gadgets", gadgets.repo_id)
    assert gadgets.repo_id != fake_github.repo_id
    assert [r.full_name for r in fake_github.repositories] == ["acme/widgets", "acme/gadgets"]
    with pytest.raises(ValueError, match="served already"):
        fake_github.add_repository(gadgets.store.origin, "Acme", "GADGETS")


def test_an_unknown_repository_is_not_found(fake_github: FakeGitHub, api: httpx.Client) -> None:
    for path in ("/repos/acme/nothing", "/repos/acme/nothing/issues", "/repos/other/widgets"):
        answer = api.get(path)
        assert answer.status_code == 404, path
        assert answer.json()["message"] == "Not Found"
    assert fake_github.unknown_routes == []  # the routes exist; the repository does not


def test_link_headers_by_repository_id_lead_to_that_repository(
    fake_github: FakeGitHub, gadgets: Repository, api: httpx.Client
) -> None:
    for n in range(3):
        gadgets.create_issue(f"gadget {n}")
    fake_github.create_issue("widget")
    first = api.get(f"/repositories/{gadgets.repo_id}/issues", params={"per_page": 1})
    assert first.json()[0]["title"] == "gadget 2"
    follow = first.links["next"]["url"]
    assert [i["title"] for i in api.get(follow).json()] == ["gadget 1"]
    widgets = api.get(f"/repositories/{fake_github.repo_id}/issues").json()
    assert [i["title"] for i in widgets] == ["widget"]


def test_one_rate_limit_for_the_token_across_repositories(
    fake_github: FakeGitHub, gadgets: Repository, api: httpx.Client
) -> None:
    def remaining(path: str) -> int:
        return int(api.get(path).headers["x-ratelimit-remaining"])

    start = remaining(WIDGETS)
    assert remaining(GADGETS) == start - 1
    assert remaining(WIDGETS) == start - 2
    gadgets.set_rate_limit(remaining=0)
    refused = api.get(WIDGETS)
    assert refused.status_code == 403 and "rate limit" in refused.json()["message"]


def test_graphql_answers_for_the_repository_the_query_names(
    fake_github: FakeGitHub, gadgets: Repository
) -> None:
    gadgets.create_issue("Only in gadgets", "body")
    query = """query($owner: String!, $name: String!) {
      repository(owner: $owner, name: $name) { issue(number: 1) { title } } }"""
    headers = {"Authorization": f"token {fake_github.token}"}

    def ask(owner: str, name: str) -> httpx.Response:
        body = {"query": query, "variables": {"owner": owner, "name": name}}
        return httpx.post(f"{fake_github.url}/graphql", json=body, headers=headers, timeout=30)

    found = ask("acme", "gadgets").json()
    assert found["data"]["repository"]["issue"]["title"] == "Only in gadgets"
    assert [r.path for r in gadgets.requests] == ["/graphql"]
    assert ask("acme", "widgets").json()["errors"][0]["type"] == "NOT_FOUND"  # no issue 1 there
    assert ask("acme", "nothing").json()["errors"][0]["type"] == "NOT_FOUND"


# -- git over HTTP ------------------------------------------------------------------------------


def test_clone_and_push_with_the_token(
    fake_github: FakeGitHub, gadgets: Repository, gadgets_world: GitWorld, tmp_path: Path
) -> None:
    assert gadgets.git_url == clone_url(fake_github.url, "acme/gadgets")
    work = tmp_path / "work"
    cloned = run_git(tmp_path, "clone", "--quiet", with_token(gadgets.git_url, "x"), str(work))
    assert cloned.returncode != 0  # a wrong token is refused
    cloned = run_git(
        tmp_path, "clone", "--quiet", with_token(gadgets.git_url, fake_github.token), str(work)
    )
    assert cloned.returncode == 0, cloned.stderr
    assert (work / "src" / "g.py").read_text() == "g = 1\n"

    git(work, "checkout", "--quiet", "-b", "feature/pushed")
    (work / "new.txt").write_text("new\n")
    git(work, "add", "new.txt")
    git(work, "commit", "--quiet", "-m", "Add new")
    pushed = run_git(work, "push", "--quiet", "origin", "feature/pushed")
    assert pushed.returncode == 0, pushed.stderr
    first = git(work, "rev-parse", "HEAD")
    assert gadgets.branch_sha("feature/pushed") == first == gadgets_world.sha("feature/pushed")
    number = gadgets.create_pull("Pushed", "feature/pushed")

    (work / "new.txt").write_text("newer\n")
    git(work, "commit", "--quiet", "-am", "Newer")
    assert run_git(work, "push", "--quiet", "origin", "feature/pushed").returncode == 0
    second = git(work, "rev-parse", "HEAD")
    with gadgets.store.lock:  # seen as it landed, before any request or helper asks
        info = gadgets.store.issues[number].pull
        assert info is not None and info.seen_head == second
    assert gadgets.pull(number)["head"]["sha"] == second
    assert gadgets.requests == []  # git is no REST call, and costs no rate
    pushes = [r for r in gadgets.git_requests if r.path.endswith("/git-receive-pack")]
    assert len(pushes) == 2 and all(r.authorized and r.method == "POST" for r in pushes)
    assert fake_github.git_requests == [] and fake_github.contract_violations == []
    gadgets.clear_logs()
    assert gadgets.git_requests == [] == fake_github.all_git_requests


def test_git_without_the_token_is_challenged(fake_github: FakeGitHub, gadgets: Repository):
    refs = f"{gadgets.git_url}/info/refs"
    answer = httpx.get(refs, params={"service": "git-upload-pack"}, timeout=30)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == 'Basic realm="GitHub"'
    listed = run_git(Path.cwd(), "ls-remote", gadgets.git_url)
    assert listed.returncode != 0
    assert not any(r.authorized for r in gadgets.git_requests)


def test_git_refuses_what_github_refuses(
    fake_github: FakeGitHub, gadgets_world: GitWorld, tmp_path: Path
) -> None:
    secret = fake_github.add_repository(
        make_world(tmp_path / "secret").origin, "acme", "secret", private=True
    )
    fake_github.add_token("reader-token", "reader")
    fake_github.add_token("public-token", "helper", scopes=("public_repo",))
    public = fake_github.add_repository(gadgets_world.origin, "acme", "gadgets")
    public.set_permission("reader", "read")
    public.set_permission("helper", "write")
    secret.set_permission("helper", "write")

    def status(repo: str, token: str, service: str) -> int:
        auth = base64.b64encode(f"x:{token}".encode()).decode()
        url = f"{fake_github.url}/{repo}.git/info/refs"
        answer = httpx.get(
            url, params={"service": service}, headers={"Authorization": f"Basic {auth}"}
        )
        return answer.status_code

    assert status("acme/gadgets", "reader-token", "git-upload-pack") == 200
    assert status("acme/gadgets", "reader-token", "git-receive-pack") == 403
    assert status("acme/gadgets", "public-token", "git-receive-pack") == 200
    assert status("acme/secret", "reader-token", "git-upload-pack") == 404  # not even seen
    assert status("acme/secret", "public-token", "git-upload-pack") == 404  # no `repo` scope
    assert status("acme/secret", fake_github.token, "git-receive-pack") == 200
    assert status("acme/nothing", fake_github.token, "git-upload-pack") == 404
    assert status("acme/gadgets", fake_github.token, "dumb") == 404


# -- files ------------------------------------------------------------------------------------


def test_a_file_at_a_ref_as_github_shows_it(
    fake_github: FakeGitHub, gadgets: Repository, api: httpx.Client
) -> None:
    text = "".join(f"line {n}\n" for n in range(20))
    sha = gadgets.commit("feature/text", {"src/g.py": text})
    for ref in ("feature/text", sha, sha[:12]):
        answer = api.get(f"{GADGETS}/contents/src/g.py", params={"ref": ref}).json()
        assert (answer["type"], answer["encoding"], answer["name"]) == ("file", "base64", "g.py")
        lines = answer["content"].split("\n")
        assert all(len(line) == 60 for line in lines[:-2]) and lines[-1] == ""
        assert base64.b64decode(answer["content"]).decode() == text
        assert answer["size"] == len(text)
        blob = git(gadgets.store.origin, "rev-parse", f"{sha}:src/g.py")
        assert answer["sha"] == blob and answer["git_url"].endswith(f"/git/blobs/{blob}")
    default = api.get(f"{GADGETS}/contents/src/g.py").json()
    assert base64.b64decode(default["content"]) == b"g = 1\n"
    assert default["url"].endswith(f"{GADGETS}/contents/src/g.py?ref=main")


def test_missing_files_refs_and_other_kinds(
    fake_github: FakeGitHub, gadgets: Repository, gadgets_world: GitWorld, api: httpx.Client
) -> None:
    missing = api.get(f"{GADGETS}/contents/nope.py")
    assert (missing.status_code, missing.json()["message"]) == (404, "Not Found")
    assert api.get(f"{WIDGETS}/contents/src/g.py").status_code == 404  # the other repository's
    unknown = api.get(f"{GADGETS}/contents/README.md", params={"ref": "no-branch"})
    assert unknown.status_code == 404
    assert unknown.json()["message"] == "No commit found for the ref no-branch"
    assert api.get(f"{GADGETS}/contents/README.md", params={"ref": "main~1"}).status_code == 404

    listing = api.get(f"{GADGETS}/contents/src").json()
    assert [(e["name"], e["type"], e["path"]) for e in listing] == [("g.py", "file", "src/g.py")]

    clone = gadgets_world.clone
    os.symlink("src/g.py", clone / "to-file")
    os.symlink("../outside", clone / "out")
    git(clone, "add", "--all")
    git(clone, "commit", "--quiet", "-m", "links")
    git(clone, "push", "--quiet", "origin", "main")
    linked = api.get(f"{GADGETS}/contents/to-file").json()
    assert (linked["type"], linked["path"]) == ("file", "src/g.py")
    out = api.get(f"{GADGETS}/contents/out").json()
    assert (out["type"], out["target"]) == ("symlink", "../outside")

    gadgets.commit("big", {"big.txt": "x" * (1024 * 1024 + 1)})
    large = api.get(f"{GADGETS}/contents/big.txt", params={"ref": "big"})
    assert large.status_code == 403 and large.json()["errors"][0]["code"] == "too_large"


# -- commit comments ------------------------------------------------------------------------


def test_commit_comments(fake_github: FakeGitHub, gadgets: Repository, api: httpx.Client) -> None:
    sha = gadgets.commit("feature/c", {"src/g.py": "g = 2\n"})
    made = api.post(f"{GADGETS}/commits/{sha}/comments", json={"body": "Looks right"})
    assert made.status_code == 201
    assert made.headers["location"] == made.json()["url"]
    assert (made.json()["commit_id"], made.json()["path"]) == (sha, None)
    placed = api.post(
        f"{GADGETS}/commits/{sha}/comments", json={"body": "here", "path": "src/g.py", "line": 1}
    ).json()
    assert (placed["path"], placed["line"]) == ("src/g.py", 1) and placed["position"] > 0

    listed = api.get(f"{GADGETS}/commits/{sha}/comments").json()
    assert [c["body"] for c in listed] == ["Looks right", "here"]
    assert [c["body"] for c in gadgets.commit_comments(sha)] == ["Looks right", "here"]
    assert fake_github.commit_comments() == []
    assert api.get(f"{GADGETS}/commits/{sha}/comments", params={"per_page": 1}).links

    for wrong in ("0" * 40, sha[:12], "main"):
        refused = api.post(f"{GADGETS}/commits/{wrong}/comments", json={"body": "x"})
        assert refused.status_code == 422, wrong
        assert refused.json()["message"] == f"No commit found for SHA: {wrong}"
    assert api.get(f"{WIDGETS}/commits/{sha}/comments").status_code == 422  # not widgets'
    outside = {"body": "x", "path": "README.md", "position": 1}
    assert api.post(f"{GADGETS}/commits/{sha}/comments", json=outside).status_code == 422


# -- the daemon's client ----------------------------------------------------------------------


async def test_branch_sha_is_revalidated_and_costs_nothing_unchanged(
    gadgets: Repository, client: GitHubClient
) -> None:
    assert await client.branch_sha("main") == gadgets.branch_sha("main")
    assert await client.branch_sha("main") == gadgets.branch_sha("main")
    moved = gadgets.commit("main", {"later.txt": "later\n"})
    assert await client.branch_sha("main") == moved
    reads = gadgets.requests_to("GET", f"{GADGETS}/git/ref/heads/main")
    assert [r.status for r in reads] == [200, 304, 200]
    with pytest.raises(NotFound):
        await client.branch_sha("no/such/branch")


async def test_file_text(
    gadgets: Repository, gadgets_world: GitWorld, client: GitHubClient
) -> None:
    sha = gadgets.commit("feature/f", {"docs/a b.md": "ünïcode\n"})
    assert await client.file_text("docs/a b.md", sha) == "ünïcode\n"
    assert await client.file_text("docs/a b.md", "feature/f") == "ünïcode\n"
    assert await client.file_text("docs/a b.md", "main") is None
    assert await client.file_text("README.md", "no-such-ref") is None
    with pytest.raises(MalformedAnswer):
        await client.file_text("docs", sha)  # a directory
    clone = gadgets_world.clone
    (clone / "latin1.txt").write_bytes(b"caf\xe9\n")
    git(clone, "add", "latin1.txt")
    git(clone, "commit", "--quiet", "-m", "latin-1")
    git(clone, "push", "--quiet", "origin", "main")
    assert await client.file_text("latin1.txt", "main") == "caf\ufffd\n"


async def test_comment_on_commit(
    fake_github: FakeGitHub, gadgets: Repository, client: GitHubClient
) -> None:
    sha = gadgets.branch_sha("main")
    assert sha is not None
    await client.comment_on_commit(sha, f"Checked with {fake_github.token}")
    [made] = gadgets.commit_comments(sha)
    assert made["body"] == f"Checked with {REDACTED}"
    assert made["user"]["login"] == fake_github.bot_login
    assert [m.name for m in gadgets.mutations] == ["create_commit_comment"]
    with pytest.raises(Unprocessable):
        await client.comment_on_commit("0" * 40, "no such commit")
