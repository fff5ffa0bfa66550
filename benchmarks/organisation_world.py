"""The world of `organisation.py`: many repositories on one fake GitHub, the scripted model,
the day's events, and a timed record of every request the fake answered.

The fake GitHub and the scripted model run in the benchmark's process (threads); the fake's
checks of its own replies against GitHub's description are switched off (the test world's cost,
see `contract_checks.py`), its checks of the requests stay on.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from organisation_fleet import Daemon, daemon_env

from scripts.orchestrator.fakes.fake_github import FakeGitHub, Repository, graphql_api
from scripts.orchestrator.fakes.fake_github.app import App, RawResponse
from scripts.orchestrator.fakes.fake_github.contract import Contract
from scripts.orchestrator.fakes.git_world import make_world
from scripts.orchestrator.fakes.model_script import Dynamic, RecordedRequest, Step, Text, write
from scripts.orchestrator.fakes.scripted_model import ScriptedModel, claude_cli_env

REPO = re.compile(r"^/repos/([^/]+/[^/]+)(/.*)?$")


# -- what the fake GitHub answered, and when ------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    at: float  # time.monotonic() when the answer was ready
    method: str
    path: str  # without the query
    status: int
    pid: int  # the daemon's, from its User-Agent (0 for none)
    repo: str  # `owner/name`, lower case, or "" for a request naming none
    rest: str  # the path after the repository's, e.g. `/issues/comments`

    @property
    def graphql(self) -> bool:
        return self.path == "/graphql"

    @property
    def poll(self) -> bool:
        """One of an idle cycle's reads: the changed issues, the comment feed, and the default
        branch's head (for the repository's settings file)."""
        reads = ("/issues", "/issues/comments", "/git/ref/heads/main")
        return self.method == "GET" and self.rest in reads

    @property
    def cycle(self) -> bool:
        """The comment feed: read once in every cycle of a repository."""
        return self.method == "GET" and self.rest == "/issues/comments"

    @property
    def write(self) -> bool:
        """A request the daemon's write spacing holds to one a second."""
        return self.method not in ("GET", "HEAD", "OPTIONS") and not self.graphql


class Recorder:
    """Every request the fake answers, timed, with the daemon's pid; and when each pull request
    was opened (by head; and its number), reviewed and merged (by number)."""

    def __init__(self) -> None:
        self._hits: list[Hit] = []
        self.done: dict[tuple[str, str, str], float] = {}  # (what, repo, head or number)
        self.numbers: dict[tuple[str, str, str], int] = {}  # each pull request opened: its number
        self._lock = threading.Lock()

    def hits(self, start: float = 0.0, end: float = float("inf")) -> list[Hit]:
        with self._lock:
            return [h for h in self._hits if start <= h.at <= end]

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        handle = App.handle

        def timed(
            app: App, method: str, target: str, headers: Mapping[str, str], raw_body: bytes
        ) -> RawResponse:
            response = handle(app, method, target, headers, raw_body)
            self._note(method, target.split("?")[0], headers, raw_body, response)
            return response

        with (
            mock.patch.object(App, "handle", timed),
            mock.patch.object(Contract, "check_response", lambda *_args: None),
        ):
            yield

    def _note(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes, answer: RawResponse
    ) -> None:
        status = answer.status
        agent = next((v for k, v in headers.items() if k.lower() == "user-agent"), "")
        pid = re.search(r"\(pid (\d+)\)", agent)
        found = REPO.match(path)
        repo, rest = (found.group(1).lower(), found.group(2) or "") if found else ("", "")
        hit = Hit(time.monotonic(), method, path, status, int(pid.group(1)) if pid else 0,
                  repo, rest)  # fmt: skip
        ends = re.fullmatch(r"/pulls/(\d+)/(reviews|merge)", rest)
        key: tuple[str, str, str] | None = None
        if not 200 <= status < 300:
            key = None
        elif method == "POST" and rest == "/pulls":
            key = ("pull", repo, str(json.loads(body).get("head", "")))
            self.numbers[key] = int(json.loads(answer.body)["number"])
        elif ends and (method, ends.group(2)) in (("POST", "reviews"), ("PUT", "merge")):
            key = (ends.group(2), repo, ends.group(1))
        with self._lock:
            self._hits.append(hit)
            if key is not None:
                self.done.setdefault(key, hit.at)


def endpoints(hits: list[Hit]) -> list[tuple[str, int, int]]:
    """(`METHOD /path`, requests, of them not answered 304) per endpoint, most used first."""
    counts: Counter[str] = Counter()
    charged: Counter[str] = Counter()
    for h in hits:
        name = (
            h.method + " " + re.sub(r"/([0-9a-f]{40}|\d+)\b", "/{n}", h.rest if h.repo else h.path)
        )
        counts[name] += 1
        charged[name] += h.status != 304
    return [(name, n, charged[name]) for name, n in counts.most_common()]


# -- the organisation and its day ----------------------------------------------------------------

REVIEW = "Fine.\n\nVERDICT: COMMENT"
WHAT = {"label": "pull", "review": "reviews", "merge": "merge"}  # what ends each kind of event


@dataclass
class Event:
    at: float  # seconds after the day's first moment
    kind: str  # label, review, merge
    repo: str  # acme/rNN
    number: int = 0
    sha: str = ""
    marker: str = ""  # in its Claude run's prompt
    fired: float = 0.0  # time.monotonic() just before the writer's action

    @property
    def key(self) -> tuple[str, str, str]:
        """What ends it: its pull request opened, reviewed, merged."""
        head = f"feature/issue-{self.number}" if self.kind == "label" else str(self.number)
        return WHAT[self.kind], self.repo, head

    def items(self, recorder: Recorder) -> list[float | None]:
        """When each of its items was done: an issue's pull request and that pull request's
        review (every new pull request of the daemon is reviewed), a review, a merge."""
        done = recorder.done
        if self.kind != "label":
            return [done.get(self.key)]
        number = recorder.numbers.get(self.key)
        return [done.get(self.key), done.get(("reviews", self.repo, str(number)))]


@dataclass
class Org:
    root: Path
    github: FakeGitHub
    repos: dict[str, Repository]
    model: ScriptedModel
    recorder: Recorder
    claude_env: dict[str, str]

    def start(self, url: str, count: int, poll: float, lease: float, slots: int) -> list[Daemon]:
        """`count` daemons on every repository, the database at `url`."""
        settings = {"GITHUB_TOKEN": self.github.token, "GITHUB_API_URL": self.github.url,
                    "GITHUB_REPOS": ",".join(self.repos), "STATE_URL": url,
                    "POLL_INTERVAL": f"{poll:g}", "LEASE_SECONDS": f"{lease:g}",
                    "MAX_CONCURRENT": str(slots), "CI_WAIT_TIMEOUT": "5",
                    "REVIEW_ON_PUSH": "false", "SHUTDOWN_GRACE": "1"}  # fmt: skip
        folders = [self.root / f"daemon-{n}" for n in range(count)]
        return [Daemon(f, daemon_env(f, self.claude_env, **settings)) for f in folders]

    def starts(self) -> dict[str, list[float]]:
        """Each script's Claude runs (CLI sessions): their first turns' arrival times."""
        runs: dict[tuple[str, str | None], float] = {}
        for r in self.model.main_requests():
            key = (r.conversation or "", r.session_id)
            runs[key] = min(runs.get(key, r.received_at), r.received_at)
        found: dict[str, list[float]] = {}
        for (marker, _), at in runs.items():
            found.setdefault(marker, []).append(at)
        return {marker: sorted(times) for marker, times in found.items()}

    def fire(self, e: Event) -> None:
        repo = self.repos[e.repo]
        e.fired = time.monotonic()
        if e.kind == "label":
            repo.add_labels(e.number, "ready", user="alice")
        else:
            repo.comment(e.number, f"/{e.kind} {e.sha}", user="carol")

    def done_twice(self) -> list[str]:
        """Pull requests opened twice for one head, merges twice, reviews twice of a commit."""
        found = []
        for name, repo in self.repos.items():
            heads = Counter(m.body["head"] for m in repo.mutations_named("create_pull"))
            merged = Counter(m.params.get("number") for m in repo.mutations_named("merge_pull"))
            found += [f"{name} {head}: {n} pull requests" for head, n in heads.items() if n > 1]
            found += [f"{name}#{pull}: {n} merges" for pull, n in merged.items() if n > 1]
            for number in range(1, repo.next_number()):
                seen = Counter(r["commit_id"] for r in repo.reviews_on(number)
                               if r["user"]["login"] == repo.bot_login)  # fmt: skip
                found += [f"{name}#{number}: {n} reviews of {c}" for c, n in seen.items() if n > 1]
        return found


@contextlib.contextmanager
def organisation(root: Path, repos: int, turn: float) -> Iterator[Org]:
    """`repos` repositories (acme/r00, ...) on one fake GitHub; the model answers each turn
    after `turn` seconds."""
    recorder = Recorder()
    names = [f"r{n:02d}" for n in range(repos)]
    origins = [make_world(root / name, {"README.md": f"# {name}\n"}).origin for name in names]
    # The compressed day would spend the 5,000 an hour the fake allows: no limit here; the
    # requests GitHub would charge are counted instead.
    with (
        recorder.installed(),
        FakeGitHub(origins[0], "acme", names[0], rate_limit=10**9) as github,
        ScriptedModel(reply_delay=turn, exhausted_reply=REVIEW) as model,
    ):
        handles: dict[str, Repository] = {github.full_name: github}
        for name, origin in zip(names[1:], origins[1:], strict=True):
            handles[f"acme/{name}"] = github.add_repository(origin, "acme", name)
        for handle in handles.values():
            for user in ("alice", "carol"):
                handle.set_permission(user, "write")
            for label in ("ready", "claude-failed"):
                handle.create_label(label)
        graphql_api.schema()  # the fake's first query reads the schema: not the daemons' time
        (root / "claude-home").mkdir()
        yield Org(root, github, handles, model, recorder,
                  claude_cli_env(model.url, root / "claude-home"))  # fmt: skip


def writes(name: str) -> Dynamic:
    """A run's first turn writes `name`, its next says it is done (a run begun again after a
    takeover writes it again)."""

    def answer(request: RecordedRequest) -> Step:
        return Text("Added.") if request.tool_results else write({name: "N = 1\n"})

    return answer


def plan(org: Org, seed: int, counts: Mapping[str, int], window: float) -> list[Event]:
    """The day: `counts` events of each kind at random times in `window` on random
    repositories; their issues and pull requests made, their scripts given to the model."""
    rng = random.Random(seed)
    kinds = [kind for kind, n in counts.items() for _ in range(n)]
    rng.shuffle(kinds)
    times = sorted(rng.uniform(0, window) for _ in kinds)
    names = list(org.repos)
    events = [Event(at, kind, rng.choice(names)) for at, kind in zip(times, kinds, strict=True)]
    for n, e in enumerate(events):
        repo, name = org.repos[e.repo], f"{e.repo.split('/')[1]}_{n}"
        if e.kind == "label":
            e.marker = f"Write {name}.py please"
            org.model.script_for(e.marker, [writes(f"{name}.py")] * 8)
            e.number = repo.create_issue(f"Add {name}.py", f"{e.marker}.", user="alice")
        else:  # a person's pull request, one file of its own: none conflicts with another
            e.marker = f"Tweak {name}.txt"
            if e.kind == "review":  # not for a merge: once merged, a Claude run on that
                # repository sees its title in the recent commits (the CLI's git status)
                org.model.script_for(e.marker, [Text(REVIEW)] * 4)
            e.sha = repo.commit(f"topic-{n}", {f"{name}.txt": f"{n}\n"}, user="dave")
            e.number = repo.create_pull(e.marker, f"topic-{n}", user="dave")
    return events
