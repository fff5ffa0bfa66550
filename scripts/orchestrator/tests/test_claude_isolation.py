"""Claude's runs reach only the model's API and never hold its key: each attack next to a control.

No test here sends anything beyond loopback: what a run could reach besides is shown by its
network namespace's interfaces, not by trying outside addresses.
"""

from __future__ import annotations

import os
import shlex
import socket
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.orchestrator import proc
from scripts.orchestrator.claude_runner import RUN_MARKER_ENV, SdkClaudeRunner
from scripts.orchestrator.core.models import READ_ONLY_TOOLS, ClaudeRequest
from scripts.orchestrator.fakes.model_script import Step, Text, bash, write
from scripts.orchestrator.fakes.scripted_model import ScriptedModel, bundled_cli_path
from scripts.orchestrator.model_proxy import ModelProxy, placeholder
from scripts.orchestrator.sandbox import Bwrap, Sandbox
from scripts.orchestrator.state import Status, WorkItemType

from .fixtures_model import wait_until_gone
from .fixtures_world import World

PYTHON = shlex.quote(sys.executable)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A server on the host's loopback that nothing but the attack would connect to."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        yield server


def was_reached(server: socket.socket) -> bool:
    """Whether a connection waits in `server`'s backlog (a connect completes without accept)."""
    try:
        server.accept()[0].close()
    except BlockingIOError:
        return False
    return True


async def implement_with(world: World, sandboxed: bool, attack: str) -> str:
    """Issue #1 implemented by a run whose first step is the Bash `attack`; its output."""
    world.configure(sandbox="bwrap" if sandboxed else "off")
    world.github.create_issue("Add a greeting", "Write greet.py", user="alice")
    world.github.add_labels(1, "ready", user="alice")
    steps: list[Step] = [bash(attack), write({"greet.py": "X = 1\n"}), Text("Added greet.py.")]
    world.model.script_for("Implement GitHub issue #1", steps)
    assert await world.once() == 0
    item = world.item(WorkItemType.ISSUE, 1)
    # The control for every attack: the model's answers after it still reached the run.
    assert item is not None and item.status is Status.DONE
    (result,) = {r.tool_use_id: r for req in world.model.main_requests()
                 for r in req.all_tool_results if r.tool_name == "Bash"}.values()  # fmt: skip
    return result.text


@pytest.mark.parametrize("sandboxed", [True, False])
async def test_a_claude_run_reaches_the_model_and_no_other_host(
    world: World, listener: socket.socket, sandboxed: bool
) -> None:
    port = listener.getsockname()[1]
    attack = (
        f"{PYTHON} -c \"import socket; socket.create_connection(('127.0.0.1', {port}), 5); "
        "print('connected')\"; echo interfaces: $(tail -n +3 /proc/net/dev | cut -d: -f1)"
    )
    output = await implement_with(world, sandboxed, attack)
    if not sandboxed:  # the control: outside the sandbox the same command gets through
        assert "connected" in output and was_reached(listener), output
        return
    assert "ConnectionRefusedError" in output and not was_reached(listener), output
    # No way to any host but its own loopback (socat's port on it is the way to the model).
    assert "interfaces: lo\n" in output + "\n", output


@pytest.mark.parametrize("sandboxed", [True, False])
async def test_a_claude_run_never_holds_the_real_key(world: World, sandboxed: bool) -> None:
    suffix = uuid.uuid4().hex
    key = world.claude_env["ANTHROPIC_API_KEY"] = f"sk-ant-real-{suffix}"
    # Every environment and command line the run can see, searched for the key (spelt out at
    # run time, so that this command's own line does not hold it).
    snoop = (
        f'echo "key=$ANTHROPIC_API_KEY"; {PYTHON} -c "import glob\n'
        f"key = b'sk-ant-real-' + b'{suffix}'\n"
        "hits = 0\n"
        "for f in glob.glob('/proc/[0-9]*/environ') + glob.glob('/proc/[0-9]*/cmdline'):\n"
        "    try: hits += open(f, 'rb').read().count(key)\n"
        "    except OSError: pass\n"
        "print('hits', hits)\""
    )
    output = await implement_with(world, sandboxed, snoop)
    assert {r.headers.get("x-api-key") for r in world.model.requests} == {key}  # the real one
    if not sandboxed:  # the control: the CLI itself holds the key, and the snoop finds it
        assert f"key={key}" in output and "hits 0" not in output, output
        return
    assert f"key={placeholder('ANTHROPIC_API_KEY')}" in output, output
    assert "hits 0" in output, output


async def test_the_bridge_dies_with_the_run(tmp_path: Path, scripted_model: ScriptedModel) -> None:
    """socat runs in the background of the sandbox's first process: when the CLI ends, the
    namespace's end kills it, whatever it is doing."""
    tag = uuid.uuid4().hex
    sandbox = Sandbox(Bwrap(), read_paths=(Path(sys.prefix), Path(sys.base_prefix)))
    # A stand-in for the CLI: it sees socat running, asks the model's API, and ends.
    cli = (
        "import glob, os, urllib.request\n"
        "lines = [open(f, 'rb').read() for f in glob.glob('/proc/[0-9]*/cmdline')]\n"
        "print('socat', sum(line.split(bytes(1))[0].endswith(b'/socat') for line in lines))\n"
        "print(urllib.request.urlopen(os.environ['ANTHROPIC_BASE_URL'] + '/api/hello').status)\n"
    )
    env = {"ANTHROPIC_BASE_URL": scripted_model.url, "ANTHROPIC_API_KEY": "key"}
    with ModelProxy(env) as proxy:
        wrapper = sandbox.cli_wrapper(
            sys.executable, workdir=tmp_path, read_only=True, directory=tmp_path,
            env_names=[RUN_MARKER_ENV], model_socket=proxy.socket_path, model_env=proxy.cli_env,
        )  # fmt: skip
        done = await proc.run(
            [str(wrapper), "-c", cli], cwd=tmp_path, timeout=30,
            env={**os.environ, RUN_MARKER_ENV: tag},
        )  # fmt: skip
    assert done.ok, done.stderr
    assert done.stdout.split() == ["socat", "1", "200"]  # the control: the bridge was there
    assert wait_until_gone(RUN_MARKER_ENV, tag) == [], "socat outlived its sandbox"


async def test_a_runner_used_outside_serving_has_a_proxy_for_each_run(
    tmp_path: Path, scripted_model: ScriptedModel, claude_env: dict[str, str]
) -> None:
    """The daemon shares one proxy between its runs (`serving()`); a runner used alone still
    never gives the CLI the key, and leaves no proxy behind."""
    sandbox = Sandbox(Bwrap(), read_paths=(Path(sys.prefix), Path(sys.base_prefix)))
    runner = SdkClaudeRunner(str(bundled_cli_path()), env=claude_env, sandbox=sandbox)
    proxies = Path(tempfile.gettempdir()).glob  # each proxy's private directory
    before = set(proxies("model-proxy-*"))
    scripted_model.script(Text("Fine."))
    request = ClaudeRequest(
        prompt="Review", cwd=tmp_path, guidelines="", tools=READ_ONLY_TOOLS, max_turns=2,
        timeout=60,
    )  # fmt: skip
    result = await runner.run(request)
    assert result.ok and result.text == "Fine.", result.error
    sent = {r.headers.get("x-api-key") for r in scripted_model.requests}
    assert sent == {claude_env["ANTHROPIC_API_KEY"]}
    assert set(proxies("model-proxy-*")) == before
