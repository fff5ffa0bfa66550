"""The sandbox for code the daemon did not write: bubblewrap, one namespace set per job.

Each job runs under `bwrap` with its own PID, IPC, UTS, cgroup and (unless allowed) network
namespaces, so it sees no other process's `/proc`, and every process it starts dies with it,
`setsid` or not. Its filesystem is the system's own directories read-only, the paths the user
listed read-only, its working directory read-write, and a throwaway HOME and /tmp; the
daemon's home, `.env`, state, other worktrees and credentials do not exist in there. Its
environment is built from an allowlist: no token, no daemon settings. A Claude run has no
network either: its only way out is the daemon's model proxy, whose Unix socket socat bridges
to a loopback port inside.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import proc
from .core.redact import DATABASE_ENV_VARS, SECRET_ENV_VARS

log = logging.getLogger(__name__)

HOME = "/home/sandbox"  # a tmpfs: what a job writes to its HOME is gone with it
PRIVATE_TMP = "/tmp"  # noqa: S108  (a tmpfs of the job's own, not the host's /tmp)
# System directories a job reads: programs, libraries, certificates, name resolution.
SYSTEM_DIRS = ("/usr", "/opt", "/srv/tools")
MERGED_USR = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = (
    "alternatives", "ca-certificates", "ca-certificates.conf", "crypto-policies", "gai.conf",
    "group", "host.conf", "hosts", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime",
    "mime.types", "nsswitch.conf", "passwd", "pki", "protocols", "resolv.conf", "services",
    "ssl", "timezone",
)  # fmt: skip
# Variables a job may inherit from the daemon: how to find programs and speak its language.
INHERITED_ENV = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ")
# Parts of /proc a job must not write (or read), as Docker's defaults have it: a job started
# by a root daemon is root in the host's eyes, and /proc/sys/kernel/core_pattern alone would
# let it run a program on the host. With every capability dropped it cannot remount them.
PROC_READ_ONLY = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs")
PROC_MASKED = ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug")
# Inside a Claude run: where the model proxy's socket is bound, and the loopback port socat
# serves it on (the namespace's own loopback: any port is free; this one is unlikely to be
# wanted by a project's own test servers).
MODEL_SOCKET = "/run/model-api.sock"
MODEL_PORT = 41999


class SandboxUnavailable(Exception):
    """bubblewrap is missing or cannot create namespaces here; the message says which."""


@dataclass(frozen=True)
class Policy:
    """What one job may touch."""

    workdir: Path  # read-write; the job starts here
    read_paths: Sequence[Path] = ()  # read-only, at the same paths
    write_paths: Sequence[Path] = ()  # read-write, at the same paths (e.g. a log file's folder)
    network: bool = False
    env: Mapping[str, str] = field(default_factory=dict)  # added to the inherited allowlist
    read_only_workdir: bool = False  # e.g. a review: it reads the code, it changes nothing
    ro_binds: Mapping[str, Path] = field(default_factory=dict)  # path inside -> path outside


class Bwrap:
    """Builds and checks `bwrap` command lines."""

    def __init__(self, executable: str = "bwrap", socat: str = "socat") -> None:
        self.executable = executable
        self.socat = socat

    def command(self, argv: Sequence[str], policy: Policy) -> list[str]:
        """`argv` wrapped so that it runs under `policy`."""
        args = [self.executable, "--unshare-all"]
        if policy.network:
            args.append("--share-net")
        # No capability, and no user namespace of its own inside: nothing to remount with.
        args += ["--unshare-user", "--disable-userns", "--cap-drop", "ALL"]
        # --die-with-parent: the job dies with the daemon; --new-session: no terminal to
        # inject keystrokes into (TIOCSTI).
        args += ["--die-with-parent", "--new-session", "--proc", "/proc", "--dev", "/dev"]
        for path in PROC_READ_ONLY:
            args += ["--ro-bind-try", path, path]
        for path in PROC_MASKED:
            if os.path.exists(path):  # the new /proc has what the host's has
                args += ["--ro-bind", "/dev/null", path]
        for path in SYSTEM_DIRS:
            args += ["--ro-bind-try", path, path]
        for path in MERGED_USR:
            target = _link_target(path)
            if target is not None:
                args += ["--symlink", target, path]
            else:
                args += ["--ro-bind-try", path, path]
        for name in ETC_FILES:
            args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        args += ["--tmpfs", PRIVATE_TMP, "--tmpfs", "/home", "--dir", HOME]
        workdir = "--ro-bind" if policy.read_only_workdir else "--bind"
        binds = [
            *(("--ro-bind-try", Path(read)) for read in policy.read_paths),
            *(("--bind", Path(write)) for write in policy.write_paths),
            (workdir, policy.workdir),
        ]
        # Outer paths first: a path inside another keeps its own mode (the clone's .git stays
        # read-only even when a worktree around it is writable, and the other way round).
        for option, mount in sorted(binds, key=lambda bind: len(bind[1].parts)):
            args += [option, str(mount), str(mount)]
        for inside, outside in policy.ro_binds.items():
            args += ["--ro-bind", str(outside), inside]
        args += ["--clearenv"]
        for name, value in _environment(policy.env).items():
            args += ["--setenv", name, value]
        args += ["--chdir", str(policy.workdir), "--", *argv]
        return args

    async def check(self) -> str:
        """bubblewrap's version, or `SandboxUnavailable` unless a job can be started here."""
        if shutil.which(self.executable) is None:
            raise SandboxUnavailable(
                f"{self.executable} is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
            )

        with tempfile.TemporaryDirectory(prefix="sandbox-probe-") as scratch:
            probe = Path(scratch)
            argv = self.command(["/bin/sh", "-c", ":"], Policy(workdir=probe))
            done = await proc.run(argv, cwd=probe, timeout=30)
        if not done.ok:
            why = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
            raise SandboxUnavailable(
                f"{self.executable} cannot create a sandbox here ({why[0]}); user namespaces "
                "may be disabled (sysctl kernel.unprivileged_userns_clone=1)"
            )
        version = await proc.run([self.executable, "--version"], cwd=Path("/"), timeout=30)
        return version.stdout.strip() or self.executable

    def socat_path(self) -> str | None:
        """socat's own path (not a link's: the link's folder may not be in the sandbox)."""
        found = shutil.which(self.socat)
        return str(Path(found).resolve()) if found else None

    async def check_socat(self) -> None:
        """`SandboxUnavailable` unless socat, which bridges the model proxy into a Claude run,
        runs inside a sandbox."""
        socat = self.socat_path()
        if socat is None:
            raise SandboxUnavailable(
                f"{self.socat} is not installed (Debian/Ubuntu: apt-get install socat)"
            )
        with tempfile.TemporaryDirectory(prefix="sandbox-probe-") as scratch:
            probe = Path(scratch)
            argv = self.command([socat, "-V"], Policy(workdir=probe))
            done = await proc.run(argv, cwd=probe, timeout=30)
        if not done.ok:
            raise SandboxUnavailable(
                f"{socat} does not run inside the sandbox (exit {done.returncode})"
            )


def _environment(extra: Mapping[str, str]) -> dict[str, str]:
    env = {name: os.environ[name] for name in INHERITED_ENV if name in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update({"HOME": HOME, "TMPDIR": PRIVATE_TMP, "USER": "sandbox", "LOGNAME": "sandbox"})
    env.update(extra)
    for name in SECRET_ENV_VARS | DATABASE_ENV_VARS:  # whatever a caller passes, never a secret
        env.pop(name, None)
    return env


def _link_target(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:  # not a link (or absent): bound as it is, if it exists
        return None


@dataclass(frozen=True)
class Sandbox:
    """The daemon's sandbox settings, applied to each job: `wrap` one job's command line."""

    bwrap: Bwrap
    version: str = ""  # what `check` and the start log show, e.g. "bubblewrap 0.8.0"
    read_paths: Sequence[Path] = ()  # the user's SANDBOX_READ_PATHS and the daemon's mirror
    network: bool = False
    withheld_env: frozenset[str] = frozenset()  # the daemon's settings, kept from the CLI

    def wrap(
        self,
        argv: Sequence[str],
        *,
        workdir: Path,
        write_paths: Sequence[Path] = (),
        env: Mapping[str, str] | None = None,
    ) -> list[str]:
        policy = Policy(
            workdir=workdir,
            read_paths=tuple(self.read_paths),
            write_paths=tuple(write_paths),
            network=self.network,
            env=dict(env or {}),
        )
        return self.bwrap.command(argv, policy)

    @staticmethod
    def env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment to start bwrap itself with: the job's own. The namespace's first
        process is bwrap's, and the job can read its environment in /proc/1/environ."""
        return _environment(extra or {})

    def cli_wrapper(
        self,
        cli: str,
        *,
        workdir: Path,
        read_only: bool,
        directory: Path,
        env_names: Iterable[str],
        model_socket: Path,
        model_env: Mapping[str, str],
    ) -> Path:
        """An executable in `directory` that runs the CLI `cli` in this sandbox, for one run in
        `workdir`: what the SDK is told the CLI is.

        A shell script that execs bwrap (no interpreter to start). Inside there is no network
        but the namespace's own loopback: a socat started before the CLI serves the model
        proxy's `model_socket` on MODEL_PORT, which is the CLI's ANTHROPIC_BASE_URL, and
        `model_env` (the credential's placeholders) is set as it is. The CLI's other variables
        among `env_names` (the names the SDK will pass) are forwarded by name, their values
        read when the script runs: the file holds paths, names and placeholders, no secret.
        """
        real = Path(shutil.which(cli) or cli).resolve()
        literal = {
            **model_env,
            "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{MODEL_PORT}",
            # Telemetry, error reports and update checks cannot go out: do not wait for them.
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        }
        policy = Policy(
            workdir=workdir,
            # The CLI's own files, and (read-only) the daemon's mirror the worktree leads to.
            read_paths=(real.parent, *self.read_paths),
            read_only_workdir=read_only,
            env=literal,
            ro_binds={MODEL_SOCKET: model_socket},
        )
        bwrap = shutil.which(self.bwrap.executable) or self.bwrap.executable
        socat = self.bwrap.socat_path() or self.bwrap.socat
        args = Bwrap(bwrap).command(["/bin/sh", "-c", _bridge(socat), str(real)], policy)
        cut = args.index("--chdir")
        names = cli_env_names(env_names, self.withheld_env)
        forwarded = [
            f'--setenv {name} "${{{name}}}"'
            for name in names
            # A proxy setting would send the CLI's loopback requests to a host it cannot reach.
            if name not in literal and name.upper() not in PROXY_ENV
        ]
        # `env -i`: bwrap itself starts with nothing (see `env`); what the CLI gets is set by
        # --setenv. The forwarded values do show in bwrap's command line, to the job as well,
        # which holds them anyway (its own settings).
        line = " ".join(
            ["env", "-i", *map(shlex.quote, args[:cut]), *forwarded, *map(shlex.quote, args[cut:]),
             '"$@"']
        )  # fmt: skip
        wrapper = directory / "claude"
        # setsid: a session of its own, so a terminal's Ctrl-C (sent to the daemon's whole
        # process group) reaches the daemon, which gives the run SHUTDOWN_GRACE, and not the
        # run itself. -w: should setsid have to fork, it waits and passes on the exit code.
        setsid = shlex.quote(setsid_path() or "setsid")
        wrapper.write_text(f"#!/bin/sh\nexec {setsid} -w {line}\n", encoding="utf-8")
        wrapper.chmod(0o700)
        return wrapper


def setsid_path() -> str | None:
    """util-linux's setsid, which Claude's sandboxed runs start through: on PATH, else where
    Debian and Ubuntu put it (a daemon's PATH may be short)."""
    found = shutil.which("setsid")
    if found is not None:
        return found
    return next((p for p in ("/usr/bin/setsid", "/bin/setsid") if os.access(p, os.X_OK)), None)


def _bridge(socat: str) -> str:
    """The sandbox's first command: serve the model socket on MODEL_PORT, wait until it
    listens (the CLI's first request must not find the port closed), then become the CLI."""
    listening = f"0100007F:{MODEL_PORT:04X} 00000000:0000 0A"  # 127.0.0.1:port, LISTEN
    # nodelay: socat relays each piece of a streamed answer as it comes; with Nagle's algorithm
    # a kept-alive connection waited for the CLI's delayed ACK, 40 ms per answer (measured).
    return (
        # max-children: a hijacked run cannot open connections to the proxy without bound.
        f"{shlex.quote(socat)} TCP-LISTEN:{MODEL_PORT},bind=127.0.0.1,fork,reuseaddr,nodelay,"
        "max-children=16 "
        f"UNIX-CONNECT:{MODEL_SOCKET} </dev/null >/dev/null &\n"
        # Bounded: a socat that failed leaves the CLI to report the closed port.
        f"i=0; while [ $i -lt 2000 ] && ! grep -q '{listening}' /proc/net/tcp; do "
        "i=$((i+1)); done\n"
        'exec "$0" "$@"'
    )


# What the CLI reads from its environment; everything else (the daemon's settings) stays out.
CLI_ENV_PREFIXES = ("ANTHROPIC_", "CLAUDE_", "DISABLE_", "MCP_", "OTEL_")
PROXY_ENV = frozenset({"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"})
CLI_ENV_NAMES = frozenset(
    {"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
     "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "SSL_CERT_DIR", "DEBUG"}
)  # fmt: skip
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A credential by its name (ANTHROPIC_CUSTOM_HEADERS, OTEL_EXPORTER_OTLP_HEADERS,
# ANTHROPIC_FOUNDRY_API_KEY ...): never forwarded. The model's own credentials reach the CLI
# as the proxy's placeholders; CLAUDE_CODE_MAX_OUTPUT_TOKENS and the like are no secrets.
_SECRET_NAME = re.compile(
    r"(?:^|_)(?:KEY|TOKEN|SECRET|PASSWORD|PASSWD|HEADERS|CREDENTIALS?|AUTH)(?:_|$)", re.I
)


def cli_env_names(names: Iterable[str], withheld: frozenset[str] = frozenset()) -> list[str]:
    """The variables the CLI may see, of `names`; `withheld` names the daemon's settings, which
    share a prefix with the CLI's (CLAUDE_TIMEOUT, CLAUDE_CLI_PATH ...)."""
    return sorted(
        name
        for name in set(names)
        if (name in CLI_ENV_NAMES or name.startswith(CLI_ENV_PREFIXES))
        and name not in withheld
        and name not in SECRET_ENV_VARS | DATABASE_ENV_VARS
        and not _SECRET_NAME.search(name)
        and _NAME.match(name)  # it is written into a shell script
    )
