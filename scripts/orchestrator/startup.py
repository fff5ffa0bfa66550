"""Start-up: the checks that refuse a daemon that could not work, the sandbox and the mirror."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import resource
import shutil
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from .config import MODEL_KEYS, Settings
from .core.errors import GitError, GitHubError, MalformedAnswer, RateLimited
from .core.remotes import foreign_host, git_host, repo_of_url
from .github_watcher import GitHubClient
from .sandbox import SYSTEM_DIRS, Bwrap, Sandbox, SandboxUnavailable, setsid_path
from .worktree_manager import WorktreeManager

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The daemon cannot work with this repository; one line for the user, exit code 2.

    `problem` says what is wrong and `fix` (if any) what to do; `check` shows them apart."""

    def __init__(self, problem: str, fix: str = "") -> None:
        super().__init__(f"{problem}; {fix}" if fix else problem)
        self.problem = problem
        self.fix = fix


def raise_fd_limit() -> None:
    """Open files up to the hard limit: the soft one (often 1,024) is soon reached by a daemon
    whose jobs' connections and pipes all end in it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:  # e.g. a container's cap; the soft limit stays
            log.debug("open-file limit left at %d: %s", soft, exc)


async def start_sandbox(settings: Settings) -> Sandbox | None:
    """The sandbox for pre-merge commands and Claude's runs; refuse to start without one,
    unless SANDBOX=off."""
    if settings.sandbox == "off":
        log.warning(
            "SANDBOX=off: pull requests' code runs with the daemon's own rights and can read "
            "its token; turn the sandbox on (install bubblewrap and socat) for any repository "
            "that accepts outside contributions"
        )
        return None
    bwrap = Bwrap()
    version = await probe_sandbox(bwrap)
    if exposed := exposed_daemon_file(settings):
        raise StartupError(exposed)
    # The daemon's mirror, read-only: a check may run git, never change the daemon's git.
    reads = [*settings.sandbox_read_paths, settings.git_mirror]
    network = "with" if settings.sandbox_check_network else "without"
    log.info(
        "sandbox: %s; pre-merge commands run %s network; Claude's runs reach only the model's "
        "API, through the daemon's proxy",
        version,
        network,
    )
    return Sandbox(
        bwrap,
        version=f"{version}, {bwrap.socat_path()}",
        read_paths=tuple(reads),
        network=settings.sandbox_check_network,
        withheld_env=frozenset(name.upper() for name in Settings.model_fields),
    )


async def probe_sandbox(bwrap: Bwrap) -> str:
    """bubblewrap's version, once it is shown to start a job here with socat inside it."""
    try:
        version = await bwrap.check()
    except SandboxUnavailable as exc:
        raise StartupError(
            f"SANDBOX=bwrap: {exc}",
            "install bubblewrap, or set SANDBOX=off to run pull requests' code without a "
            "sandbox (unsafe)",
        ) from None
    try:
        await bwrap.check_socat()
    except SandboxUnavailable as exc:
        raise StartupError(
            f"SANDBOX=bwrap: {exc}; Claude's runs reach the model's API through it",
            "install socat, or set SANDBOX=off to run Claude and pull requests' code without a "
            "sandbox (unsafe)",
        ) from None
    if not await _setsid_waits():
        raise StartupError(
            "SANDBOX=bwrap: `setsid -w` does not run here; Claude's runs start through it, "
            "in a session of their own (so a terminal's Ctrl-C leaves them their grace)",
            "install util-linux's setsid (busybox's has no -w)",
        )
    return version


async def _setsid_waits() -> bool:
    """Whether util-linux's `setsid -w`, which Claude's sandboxed runs start through, works."""
    setsid = setsid_path()
    if setsid is None:
        return False
    process = await asyncio.create_subprocess_exec(
        setsid, "-w", "/bin/sh", "-c", "exit 0", stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        return await asyncio.wait_for(process.wait(), 10) == 0
    except TimeoutError:
        process.kill()
        await process.wait()
        return False


async def check_start(settings: Settings, github: GitHubClient, worktrees: WorktreeManager) -> None:
    """Fail at start, in one line, on what would otherwise fail on every poll."""
    await check_clone(settings, worktrees)
    await check_github(settings, github)
    await warn_of_missing_label(settings, github)


async def warn_of_missing_label(settings: Settings, github: GitHubClient) -> None:
    """Missing labels are not fatal (GitHub makes a label when it is first added through the
    API), but people cannot pick them in GitHub's label menu: say so at start, in the words
    `check` uses."""
    try:
        missing = await missing_labels(settings, github)
    except GitHubError as exc:  # only a warning: the daemon works without knowing
        log.warning("could not look up the labels: %s", exc)
        return
    if missing:
        problem, fix = labels_missing(settings, missing)
        log.warning("%s; %s", problem, fix)


# The labels the daemon uses, with the setting that names each.
LABEL_SETTINGS = ("ready_label", "failed_label")


async def missing_labels(settings: Settings, github: GitHubClient) -> list[str]:
    """READY_LABEL and FAILED_LABEL, those that do not exist in the repository."""
    names = [getattr(settings, name) for name in LABEL_SETTINGS]
    return [name for name in names if not await github.has_label(name)]


def labels_missing(settings: Settings, missing: list[str]) -> tuple[str, str]:
    """What missing labels mean and what to do: for the start-up warning and for `check`."""
    setting = {getattr(settings, name): name.upper() for name in LABEL_SETTINGS}
    labels, them, they = ("labels", "them", "they") if len(missing) > 1 else ("label", "it", "it")
    named = " and ".join(f"{name} ({setting[name]})" for name in missing)
    return (
        f"{settings.github_repo} lacks the {labels} {named}: nobody can pick {them} in "
        f"GitHub's label menu until {they} exist{'' if len(missing) > 1 else 's'}",
        f"run `check --fix` to create {them}, or create {them} on GitHub (Issues, Labels)",
    )


async def check_clone(settings: Settings, worktrees: WorktreeManager) -> str:
    """REPO_PATH is a clone of GITHUB_REPO on GitHub's host, without a credential in its URL
    (or, without REPO_PATH, the URL of the daemon's own clone is); return that URL (recorded:
    the daemon fetches and pushes only there)."""
    try:
        url = await worktrees.record_remote()
    except GitError:
        raise StartupError(
            f"GIT_REMOTE={settings.git_remote!r} is not a remote of REPO_PATH={settings.repo_path}",
            "set GIT_REMOTE to one of its remotes (git remote -v lists them)",
        ) from None
    # What the messages name: the clone, or the URL of the daemon's own.
    source = f"REPO_PATH={settings.repo_path}" if settings.repo_path else f"REPO_URL={url}"
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https") and (parsed.username or parsed.password):
        # Jobs read the clone's .git (read-only): a credential in its config is theirs.
        raise StartupError(
            f"the {settings.git_remote} URL of {source} carries a "
            f"credential ({parsed.scheme}://…@{parsed.hostname})",
            f"remove it: git remote set-url {settings.git_remote} "
            f"{parsed.scheme}://{parsed.hostname}{parsed.path} (the daemon authenticates its "
            "pushes with GITHUB_TOKEN)",
        )
    named = repo_of_url(url)
    if named is not None and named.lower() != settings.github_repo.lower():
        raise StartupError(
            f"{source} is a clone of {named}, not of GITHUB_REPO={settings.github_repo}",
            "set REPO_PATH to a clone of the watched repository, or leave it unset for the "
            "daemon to keep a clone of its own",
        )
    expected = git_host(settings.github_api_url)
    host = foreign_host(url, settings.github_api_url)
    if host is not None:
        # The token goes with every push: only ever to the GitHub the settings name.
        raise StartupError(
            f"{source} pushes to {host}, not to {expected}, the host of "
            f"GITHUB_API_URL={settings.github_api_url}",
            f"point {settings.git_remote} at {expected}, or set GITHUB_API_URL to that host's API",
        )
    return url


async def check_github(settings: Settings, github: GitHubClient) -> None:
    """The token works and the repository is visible with it."""
    try:
        await github.default_branch()
    except GitHubError as exc:
        raise github_failure(settings, exc) from None


# What to do when GitHub cannot be reached: the network, a proxy, or the wrong URL.
REACH_FIX = (
    "check the network and GITHUB_API_URL (GitHub Enterprise: https://HOST/api/v3); behind a "
    "proxy, set HTTPS_PROXY"
)


def github_failure(settings: Settings, exc: GitHubError) -> StartupError:
    """A failed GitHub call at start, or in `check`, as what went wrong and what to do."""
    api = f"GITHUB_API_URL={settings.github_api_url}"
    if isinstance(exc, MalformedAnswer):
        return StartupError(
            f"{exc}, so {api} may not be GitHub's API root",
            "set GITHUB_API_URL to the API root: https://api.github.com, or for GitHub "
            "Enterprise https://HOST/api/v3",
        )
    if isinstance(exc, RateLimited) or (exc.transient and exc.status in (403, 429)):
        return StartupError(
            f"GitHub's rate limit for this token is used up: {exc.message}",
            "wait for it to reset (an hour at most), or stop what else uses the token",
        )
    if exc.status == 401:
        return StartupError(
            "GitHub refused GITHUB_TOKEN (401 Bad credentials)",
            "set GITHUB_TOKEN to a valid token (classic: the `repo` scope), or leave it empty "
            "and run `gh auth login`",
        )
    if exc.status in (403, 404):
        return StartupError(
            f"{_named(settings)} is not visible with this token ({exc.status})",
            "check GITHUB_REPO's spelling, and that the token's account can see the "
            "repository (a fine-grained token: its repository access)",
        )
    if exc.status == 0:
        return StartupError(f"cannot reach GitHub at {api}: {unreachable(exc)}", REACH_FIX)
    return StartupError(
        f"GitHub at {api} answered {exc.status}: {exc.message}",
        "try again in a few minutes; if it lasts, check GITHUB_API_URL",
    )


def unreachable(exc: BaseException) -> str:
    """Why no answer came, in words: the cause under githubkit's and httpx's wrappers."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, socket.gaierror):
            return "its host name does not resolve (no DNS, or a wrong name)"
        if isinstance(cause, ConnectionRefusedError):
            return "the connection was refused"
        if isinstance(cause, TimeoutError) or "timeout" in type(cause).__name__.lower():
            return "no answer in time"
        if isinstance(cause, ssl.SSLError):
            return f"the TLS handshake failed: {cause.reason or cause}"
        cause = cause.__cause__ or cause.__context__
    return "no answer"


@contextlib.contextmanager
def hold_mirror(settings: Settings) -> Iterator[None]:
    """The daemon's git is its own while it runs: a second daemon for the same repository and
    WORKTREE_BASE (with another STATE_FILE) would prune the first one's worktrees at start."""
    lock = settings.git_mirror.with_name(settings.git_mirror.name + ".lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StartupError(
            f"WORKTREE_BASE={settings.worktree_base}: cannot keep the daemon's git there "
            f"({exc.strerror}); expected a directory the daemon can write"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            raise StartupError(
                f"another daemon (pid {holder}) uses WORKTREE_BASE={settings.worktree_base} "
                f"for {settings.github_repo}",
                "stop it, or give this one a WORKTREE_BASE of its own",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)  # the lock goes with it


async def open_mirror(settings: Settings, worktrees: WorktreeManager) -> None:
    """Move the daemon's git out of REPO_PATH into its private mirror (made on first start)."""
    try:
        made = await worktrees.use_mirror(settings.git_mirror)
    except (OSError, GitError) as exc:
        if isinstance(exc, GitError) and settings.repo_path is None and "fetch" in exc.result.args:
            shutil.rmtree(settings.git_mirror, ignore_errors=True)  # half made: start over
            raise StartupError(
                f"cannot fetch {settings.github_repo} from REPO_URL={settings.clone_url} "
                f"({_last_line(exc.result.stderr)}): check GITHUB_TOKEN and the URL, or set "
                "REPO_PATH to a clone of it"
            ) from None
        why = exc.strerror if isinstance(exc, OSError) else _last_line(exc.result.stderr)
        raise StartupError(
            f"WORKTREE_BASE={settings.worktree_base}: cannot keep the daemon's git in "
            f"{settings.git_mirror} ({why}); expected a directory the daemon can write"
        ) from None
    if made:
        log.info("git: made the daemon's own copy of %s in %s", settings.github_repo,
                 settings.git_mirror)  # fmt: skip


def exposed_daemon_file(settings: Settings) -> str | None:
    """Why the daemon's own files would be readable in every job, if they would: they lie
    under a folder the sandbox shows (/usr, /opt, SANDBOX_READ_PATHS, the CLI's folder)."""
    shown = [Path(path) for path in SYSTEM_DIRS] + list(settings.sandbox_read_paths)
    if cli := settings.claude_cli_path:
        shown.append(Path(shutil.which(cli) or cli).resolve().parent)
    env_file = Path(".env")
    own = {
        "STATE_FILE": settings.state_file,
        "WORKTREE_BASE": settings.worktree_base,  # every job's worktree, and the mirror
        "LOG_DIR": settings.log_dir,  # every Claude run's prompt and output
        **({"REPO_PATH": settings.repo_path} if settings.repo_path else {}),
        **({".env": env_file} if env_file.is_file() else {}),
    }
    for name, path in own.items():
        real = path.resolve()
        for folder in shown:
            if real.is_relative_to(folder.resolve()):
                return (
                    f"{name}={real} is inside {folder}, which the sandbox lets every job read: "
                    "keep the daemon's files (its .env, state, logs, worktrees and clone) out of "
                    "/usr, /opt, SANDBOX_READ_PATHS and the Claude CLI's folder"
                )
    return None


def exposed_by_cli(cli: str) -> Path | None:
    """The home directory (or /) if the CLI's folder, which Claude's sandbox can read, holds it."""
    folder = Path(shutil.which(cli) or cli).resolve().parent
    home = Path.home().resolve()
    return folder if folder == Path("/") or home.is_relative_to(folder) else None


def _named(settings: Settings) -> str:
    """The repository as the user named it: `GITHUB_REPO=...`, or one of GITHUB_REPOS."""
    watched = settings.github_repo
    return f"GITHUB_REPO={watched}" if not settings.github_repos else f"{watched} (GITHUB_REPOS)"


def _last_line(text: str) -> str:
    """The last line git wrote: the one that says what went wrong."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def missing_model_credential(settings: Settings) -> str | None:
    """Why Claude's runs could not reach the model, if they could not, and what to do (one
    line)."""
    why = model_credential_problem(sandboxed=settings.sandbox != "off")
    return None if why is None else ": ".join(why)


def model_credential_problem(*, sandboxed: bool) -> tuple[str, str] | None:
    """No key in the environment (or `.env`), and no login the CLI would see (the sandbox
    hides the home directory): the problem and its fix."""
    if any(os.environ.get(name) for name in MODEL_KEYS):
        return None
    login = Path.home() / ".claude" / ".credentials.json"
    if login.is_file() and not sandboxed:
        return None
    where = "in the environment or .env"
    if login.is_file():
        return (
            "Claude Code is logged in, but the sandbox hides the login in your home",
            "set CLAUDE_CODE_OAUTH_TOKEN (made by `claude setup-token`) or ANTHROPIC_API_KEY "
            f"{where}",
        )
    return (
        "no credential for Claude Code",
        "set ANTHROPIC_API_KEY, or CLAUDE_CODE_OAUTH_TOKEN (made by `claude setup-token`), "
        + where,
    )
