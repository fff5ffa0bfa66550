"""The sandbox, attacked as a pull request's tests would: each attack fails next to a control."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.orchestrator import checks, startup
from scripts.orchestrator.config import Settings
from scripts.orchestrator.core.models import CommandResult
from scripts.orchestrator.fakes.model_script import Text, ToolCall, ToolCalls, bash, write
from scripts.orchestrator.sandbox import (
    Bwrap,
    Policy,
    Sandbox,
    SandboxUnavailable,
    cli_env_names,
)
from scripts.orchestrator.state import Status, WorkItemType

from .fixtures_model import wait_until_gone
from .fixtures_world import World

TOKEN = "ghp_" + "S" * 36
PYTHON = shlex.quote(sys.executable)
# Reads every process's environment and command line it can see, looking for the token
# (spelt out at run time, so its own command line does not hold it).
SNOOP = (
    f'{PYTHON} -c "import glob,sys\n'
    "hits=0\n"
    "for f in glob.glob('/proc/[0-9]*/environ')+glob.glob('/proc/[0-9]*/cmdline'):\n"
    "    try: hits+=open(f,'rb').read().count(b'ghp_'+b'S'*36)\n"
    "    except OSError: pass\n"
    "print('hits', hits); sys.exit(1 if hits else 0)\""
)


@pytest.fixture
def sandbox() -> Sandbox:
    return Sandbox(Bwrap(), read_paths=(Path(sys.prefix), Path(sys.base_prefix)))


@pytest.fixture
def token_in_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The daemon as a user may start it: GITHUB_TOKEN in its initial environment, which
    `/proc/<pid>/environ` keeps showing even after the variable is removed."""
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    # A child that holds the token in its environment, like a `git push` would.
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env={**os.environ, "GIT_PASSWORD": TOKEN},
    )
    try:
        yield
    finally:
        child.kill()
        child.wait(timeout=10)


async def run(command: str, cwd: Path, sandbox: Sandbox | None) -> CommandResult:
    return await checks.run_command(command, cwd=cwd, timeout=30, sandbox=sandbox)


@pytest.mark.usefixtures("token_in_environ")
async def test_a_check_finds_no_token_in_any_process(tmp_path: Path, sandbox: Sandbox) -> None:
    unsandboxed = await run(SNOOP, tmp_path, None)
    assert not unsandboxed.ok and "hits" in unsandboxed.output  # the attack works outside
    sandboxed = await run(SNOOP, tmp_path, sandbox)
    assert sandboxed.ok, sandboxed.output
    assert "hits 0" in sandboxed.output


async def test_a_check_sees_only_its_own_processes(tmp_path: Path, sandbox: Sandbox) -> None:
    result = await run("ls /proc | grep -c '^[0-9]'", tmp_path, sandbox)
    assert result.ok and int(result.output.split()[-1]) < 10, result.output


async def test_a_setsid_child_dies_with_its_job(tmp_path: Path, sandbox: Sandbox) -> None:
    tag = uuid.uuid4().hex
    seconds = 300 + uuid.uuid4().int % 1000  # tells this test's child from any other sleep
    # The job ends only once its child runs on its own (left its process group), as an
    # attacker's would; otherwise the job's group kill could catch it mid-`setsid`.
    escape = (
        f"setsid -f env ESCAPE_TAG={tag} sleep {seconds}; "
        # Anchored: unanchored, the pattern also matches this shell's own command line.
        f"until pgrep -f '^sleep {seconds}$' >/dev/null; do :; done; echo started"
    )
    outside = await run(escape, tmp_path, None)
    assert outside.ok
    survivors = wait_until_gone("ESCAPE_TAG", tag, timeout=0.5)
    assert survivors, "the control: outside a sandbox the child outlives its job"
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    assert not wait_until_gone("ESCAPE_TAG", tag)
    inside = await run(escape, tmp_path, sandbox)
    assert inside.ok, inside.output
    assert not wait_until_gone("ESCAPE_TAG", tag), "a setsid child outlived its sandboxed job"


async def test_a_check_cannot_touch_the_daemons_clone(
    tmp_path: Path, sandbox: Sandbox, git_world: object
) -> None:
    clone: Path = git_world.clone  # type: ignore[attr-defined]
    git_dir = clone / ".git"
    sandbox = Sandbox(Bwrap(), read_paths=(*sandbox.read_paths, git_dir))
    before = {p: p.read_bytes() for p in git_dir.rglob("*") if p.is_file()}
    work = tmp_path / "work"
    work.mkdir()
    attack = (
        f"echo 'touch /tmp/owned' > {git_dir}/hooks/post-checkout; "
        f"git --git-dir={git_dir} config core.fsmonitor 'touch /tmp/owned'; "
        f"git --git-dir={git_dir} config remote.origin.pushurl https://evil.example/x; "
        "echo tried; echo mine > mine.txt"
    )
    result = await run(attack, work, sandbox)
    assert "Read-only file system" in result.output or "could not lock" in result.output
    assert (work / "mine.txt").read_text() == "mine\n"  # the control: its worktree is writable
    after = {p: p.read_bytes() for p in git_dir.rglob("*") if p.is_file()}
    assert after == before, "the daemon's clone changed"


async def test_a_check_run_by_a_root_daemon_has_no_root_power(
    tmp_path: Path, sandbox: Sandbox, git_world: object
) -> None:
    """An outside review escaped a first version through /proc/sys/kernel/core_pattern and
    remounted read-only binds: bwrap started by root keeps every capability inside."""
    git_dir: Path = git_world.clone / ".git"  # type: ignore[attr-defined]
    sandbox = Sandbox(Bwrap(), read_paths=(*sandbox.read_paths, git_dir))
    before = (Path("/proc/sys/kernel/core_pattern").read_text(), (git_dir / "config").read_bytes())
    attack = (
        "grep CapEff /proc/self/status; "
        "echo '|/bin/sh -c id' > /proc/sys/kernel/core_pattern; "
        f"mount -o remount,bind,rw {git_dir}; echo owned >> {git_dir}/config; "
        "mount -t proc proc /tmp; unshare -U true; "
        "echo mine > mine.txt"
    )
    result = await run(attack, tmp_path, sandbox)
    assert "CapEff:\t0000000000000000" in result.output, result.output
    after = (Path("/proc/sys/kernel/core_pattern").read_text(), (git_dir / "config").read_bytes())
    assert after == before, result.output
    assert (tmp_path / "mine.txt").read_text() == "mine\n"  # the control


@pytest.mark.parametrize("sandboxed", [True, False])
async def test_a_check_cannot_swap_its_log_for_a_secret(
    tmp_path: Path, sandbox: Sandbox, sandboxed: bool
) -> None:
    """The daemon posts the tail of a failed check's output: the check must not be able to
    turn its log into a link to a secret (or a FIFO that would hang the daemon)."""
    secret = tmp_path / "secret.env"
    secret.write_text(f"GITHUB_TOKEN={TOKEN}\n")
    work = tmp_path / "work"
    work.mkdir()
    swap = (
        "for d in /tmp/pre-merge-*; do rm -f $d/output.log; "
        f"ln -s {secret} $d/output.log || mkfifo $d/output.log; done; echo printed; exit 1"
    )
    result = await run(swap, work, sandbox if sandboxed else None)
    assert not result.ok and "printed" in result.output  # the control: its real output
    assert TOKEN not in result.output


async def test_the_first_process_of_the_sandbox_holds_no_daemon_environment(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    os.environ["ORCHESTRATOR_DAEMON_ONLY"] = "daemon-secret-value"
    try:
        result = await run("cat /proc/1/environ | tr '\\0' '\\n'", tmp_path, sandbox)
    finally:
        del os.environ["ORCHESTRATOR_DAEMON_ONLY"]
    assert "daemon-secret-value" not in result.output
    assert "PATH=" in result.output  # the control: the job's own environment is there


async def test_a_check_reads_its_worktree_but_not_the_daemons_files(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    secret = tmp_path / "daemon" / ".env"
    secret.parent.mkdir()
    secret.write_text(f"GITHUB_TOKEN={TOKEN}\n")
    work = tmp_path / "work"
    work.mkdir()
    (work / "README").write_text("hello\n")
    result = await run(f"cat README; cat {secret}; cat ~/.ssh/id_rsa", work, sandbox)
    assert "hello" in result.output  # the control
    assert TOKEN not in result.output
    assert "No such file or directory" in result.output


@pytest.fixture
def listener() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    thread = threading.Thread(target=lambda: server.accept()[0].close(), daemon=True)
    thread.start()
    yield server.getsockname()[1]
    server.close()


async def test_checks_have_no_network_unless_allowed(
    tmp_path: Path, sandbox: Sandbox, listener: int
) -> None:
    connect = (
        f"{PYTHON} -c \"import socket; socket.create_connection(('127.0.0.1', {listener}), 5)\""
    )
    denied = await run(connect, tmp_path, sandbox)
    assert not denied.ok and "refused" in denied.output.lower(), denied.output
    allowed = Sandbox(sandbox.bwrap, read_paths=sandbox.read_paths, network=True)
    assert (await run(connect, tmp_path, allowed)).ok


async def test_the_environment_is_an_allowlist(tmp_path: Path, sandbox: Sandbox) -> None:
    os.environ["ORCHESTRATOR_TEST_SETTING"] = "leaky"
    try:
        result = await run("env", tmp_path, sandbox)
    finally:
        del os.environ["ORCHESTRATOR_TEST_SETTING"]
    names = {line.split("=", 1)[0] for line in result.output.splitlines() if "=" in line}
    assert "ORCHESTRATOR_TEST_SETTING" not in names
    assert {"PATH", "HOME", "CI"} <= names
    assert "HOME=/home/sandbox" in result.output


def test_a_token_passed_by_a_caller_is_dropped() -> None:
    argv = Bwrap().command(["true"], Policy(workdir=Path("/w"), env={"GITHUB_TOKEN": TOKEN}))
    assert TOKEN not in " ".join(argv)


async def test_a_missing_bwrap_is_a_clear_error() -> None:
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        await Bwrap("bwrap-that-is-not-there").check()


async def test_without_socat_the_daemon_refuses_to_start_unless_the_sandbox_is_off(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    await Bwrap().check_socat()  # the control: socat, as installed here, runs in the sandbox
    monkeypatch.setattr(startup, "Bwrap", lambda: Bwrap(socat="socat-that-is-not-there"))
    with pytest.raises(startup.StartupError, match=r"not installed .*apt-get install socat"):
        await startup.start_sandbox(world.settings)
    world.configure(sandbox="off")
    assert await startup.start_sandbox(world.settings) is None


async def test_without_util_linux_setsid_the_daemon_refuses_to_start(
    world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Claude's sandboxed runs start through `setsid -w` (a session of their own): found by an
    outside review, busybox's setsid has no -w and every run would have failed at exec."""
    assert await startup.start_sandbox(world.settings) is not None  # the control
    fake = tmp_path / "bin" / "setsid"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'setsid: unrecognized option: w' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    with pytest.raises(startup.StartupError, match=r"`setsid -w` does not run here"):
        await startup.start_sandbox(world.settings)


async def test_socat_found_through_a_link_outside_the_sandbox_still_runs_in_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    link = tmp_path / "bin" / "socat"  # e.g. a tools folder of links; the sandbox lacks it
    link.parent.mkdir()
    link.symlink_to(shutil.which("socat") or "socat")
    monkeypatch.setenv("PATH", f"{link.parent}:{os.environ['PATH']}")
    await Bwrap().check_socat()
    assert Bwrap().socat_path() == str(link.resolve())


@pytest.mark.parametrize("sandboxed", [True, False])
async def test_a_pull_requests_test_cannot_steal_the_daemons_token(
    world: World, sandboxed: bool
) -> None:
    """End to end: a writer's `/merge` runs the pull request's own test, which hunts for the
    token in /proc. A process started with GITHUB_TOKEN in its environment stands for the
    daemon as users start it (/proc keeps the initial environment, whatever is unset later)."""
    daemon_like = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"],
        env={**os.environ, "GITHUB_TOKEN": world.github.token},
    )
    hunt = (
        "import glob, os, sys\n"
        "token = os.environ.get('HUNTED', '').encode()\n"
        "def test_no_token_anywhere():\n"
        "    found = 0\n"
        "    for f in glob.glob('/proc/[0-9]*/environ'):\n"
        "        try: found += open(f, 'rb').read().count(b'GITHUB_TOKEN=' + token)\n"
        "        except OSError: pass\n"
        "    assert not found, 'stole the token'\n"
    )
    world.configure(
        pre_merge_commands=[
            f"HUNTED={world.github.token} {PYTHON} -m pytest -q -p no:cacheprovider"
        ],
        sandbox="bwrap" if sandboxed else "off",
    )
    assert await world.once() == 0
    world.git.push_branch("topic", {"test_hunt.py": hunt}, "a test")
    number = world.github.create_pull("Hunt", "topic", body="", user="mallory")
    world.github.set_permission("carol", "write")
    world.request_merge(number)
    try:
        await world.once()
    finally:
        daemon_like.kill()
        daemon_like.wait(timeout=10)
    merged = world.github.pull(number)["merged"]
    comments = " ".join(world.bot_comments(number))
    if sandboxed:
        assert merged, comments
    else:  # the control: without the sandbox the same test finds it
        assert not merged and "stole the token" in comments


# -- Claude's runs -------------------------------------------------------------------------------


def _daemon_secret(world: World) -> Path:
    """A `.env` beside the worktrees, as the README's layout puts it."""
    secret = world.settings.worktree_base.parent / ".env"
    secret.write_text(f"GITHUB_TOKEN={world.github.token}\n")
    return secret


@pytest.mark.parametrize("sandboxed", [True, False])
async def test_a_review_reads_its_worktree_but_not_the_daemons_env(
    world: World, sandboxed: bool
) -> None:
    world.configure(sandbox="bwrap" if sandboxed else "off")
    secret = _daemon_secret(world)
    assert await world.once() == 0
    world.git.push_branch("topic", {"calc.py": "X = 1\n"})
    number = world.github.create_pull("Tweak", "topic", body="", user="mallory")
    reads = ToolCalls((ToolCall("Read", {"file_path": "calc.py"}),
                       ToolCall("Read", {"file_path": str(secret)})))  # fmt: skip
    world.model.script_for(f"Review pull request #{number}", [reads, Text("VERDICT: COMMENT")])
    assert await world.once() == 0
    results = {r.tool_input["file_path"]: r for req in world.model.main_requests()
               for r in req.all_tool_results if r.tool_name == "Read"}  # fmt: skip
    inside = results[str(world.settings.worktree_base / "pr-review-1" / "calc.py")]
    outside = results[str(secret)]
    assert not inside.is_error and "X = 1" in inside.text  # the control
    leaked = world.github.token in outside.text
    assert leaked is not sandboxed, outside.text


@pytest.mark.parametrize("sandboxed", [True, False])
async def test_an_implement_runs_bash_cannot_read_the_daemons_env_or_processes(
    world: World, sandboxed: bool
) -> None:
    world.configure(sandbox="bwrap" if sandboxed else "off")
    secret = _daemon_secret(world)
    world.github.create_issue("Add a greeting", "Write greet.py", user="alice")
    world.github.add_labels(1, "ready", user="alice")
    world.model.script_for(
        "Implement GitHub issue #1",
        [
            bash(f"cat {secret}; ls /proc | grep -c '^[0-9]'"),
            write({"greet.py": "X = 1\n"}),
            Text("Added greet.py."),
        ],
    )
    assert await world.once() == 0
    (result,) = {r.tool_use_id: r for req in world.model.main_requests()
                 for r in req.all_tool_results if r.tool_name == "Bash"}.values()  # fmt: skip
    assert (world.github.token in result.text) is not sandboxed, result.text
    item = world.item(WorkItemType.ISSUE, 1)
    assert item is not None and item.status is Status.DONE  # the work itself went on


def test_the_cli_gets_its_own_variables_and_nothing_of_the_daemons() -> None:
    names = {
        "CLAUDE_ORCHESTRATOR_RUN", "HTTPS_PROXY", "ANTHROPIC_MODEL",
        "CLAUDE_CODE_MAX_OUTPUT_TOKENS", "DISABLE_AUTOUPDATER",
        "CLAUDE_TIMEOUT", "CLAUDE_CLI_PATH",  # the daemon's settings, despite the prefix
        "GITHUB_TOKEN", "GITHUB_REPO", "HOME", "CLAUDE_X; rm -rf /",
        # Credentials, by their names (an outside review found these forwarded): the model's
        # own reach the CLI only as the proxy's placeholders.
        "ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_CUSTOM_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS", "ANTHROPIC_FOUNDRY_API_KEY",
        "MCP_SERVER_SECRET", "CLAUDE_PASSWORD",
    }  # fmt: skip
    withheld = frozenset(name.upper() for name in Settings.model_fields)
    assert cli_env_names(names, withheld) == [
        "ANTHROPIC_MODEL", "CLAUDE_CODE_MAX_OUTPUT_TOKENS", "CLAUDE_ORCHESTRATOR_RUN",
        "DISABLE_AUTOUPDATER", "HTTPS_PROXY",
    ]  # fmt: skip


def test_the_cli_wrapper_holds_no_secret(
    tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-" + "k" * 20)
    monkeypatch.setenv("ANTHROPIC_MODEL", "claude-x")
    wrapper = sandbox.cli_wrapper(
        "/bin/true", workdir=tmp_path, read_only=True, directory=tmp_path,
        env_names=["ANTHROPIC_API_KEY", "ANTHROPIC_MODEL", "HTTPS_PROXY"],
        model_socket=tmp_path / "model.sock", model_env={"ANTHROPIC_API_KEY": "placeholder"},
    )  # fmt: skip
    text = wrapper.read_text()
    assert "sk-ant-" not in text and "--setenv ANTHROPIC_API_KEY placeholder" in text
    assert '"${ANTHROPIC_API_KEY}"' not in text  # the real key is not even forwarded by name
    assert '--setenv ANTHROPIC_MODEL "${ANTHROPIC_MODEL}"' in text  # the CLI's other settings are
    assert "HTTPS_PROXY" not in text  # a proxy would take the CLI's requests off loopback


@pytest.mark.parametrize("setting", ["state_file", "worktree_base", "log_dir"])
async def test_daemon_files_a_job_could_read_are_refused_at_start(
    world: World, tmp_path: Path, setting: str
) -> None:
    """Found by an outside review: a daemon installed under /opt (which jobs read) kept its
    state and worktrees there. A folder in SANDBOX_READ_PATHS stands for /opt here."""
    shared = tmp_path / "opt-like"
    shared.mkdir()
    assert await startup.start_sandbox(world.settings) is not None  # the control
    inside = (
        shared / {"state_file": "state.json", "worktree_base": "trees", "log_dir": "logs"}[setting]
    )
    world.configure(sandbox_read_paths=[*world.settings.sandbox_read_paths, shared],
                    **{setting: inside})  # fmt: skip
    with pytest.raises(startup.StartupError) as refused:
        await startup.start_sandbox(world.settings)
    assert str(refused.value).startswith(f"{setting.upper()}={inside} is inside {shared}")
