"""Benchmark: what the sandbox adds to a pre-merge command, to starting the Claude Code CLI, and
to each request a Claude run makes to the model (through the model proxy and socat)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path

from scripts.orchestrator import checks, proc
from scripts.orchestrator.claude_runner import SdkClaudeRunner
from scripts.orchestrator.core.models import IMPLEMENT_TOOLS, ClaudeRequest
from scripts.orchestrator.fakes.scripted_model import (
    ScriptedModel,
    bundled_cli_path,
    claude_cli_env,
)
from scripts.orchestrator.model_proxy import ModelProxy
from scripts.orchestrator.sandbox import Bwrap, Policy, Sandbox, cli_env_names

COMMANDS = {
    "true": "true",
    "python -c pass": f"{sys.executable} -c pass",
}
# A client of the model's API, run directly and as the sandbox's "CLI": the median ms of N
# streamed Messages requests, on a new connection each, and on one kept-alive connection.
CLIENT = """
import http.client, json, os, statistics, sys, time, urllib.parse
base = urllib.parse.urlsplit(os.environ["ANTHROPIC_BASE_URL"])
body = json.dumps({"model": "m", "max_tokens": 8, "stream": True,
                   "messages": [{"role": "user", "content": "hi"}]}).encode()
headers = {"content-type": "application/json", "x-api-key": os.environ["ANTHROPIC_API_KEY"]}
def ask(conn):
    start = time.perf_counter()
    conn.request("POST", "/v1/messages", body, headers)
    reply = conn.getresponse()
    assert reply.status == 200 and b"message_stop" in reply.read(), reply.status
    return time.perf_counter() - start
n = int(sys.argv[1])
fresh = []
for _ in range(n):
    conn = http.client.HTTPConnection(base.hostname, base.port, timeout=30)
    fresh.append(ask(conn))
    conn.close()
conn = http.client.HTTPConnection(base.hostname, base.port, timeout=30)
kept = [ask(conn) for _ in range(n)]
print(json.dumps({"new": statistics.median(fresh) * 1e3, "kept": statistics.median(kept) * 1e3}))
"""


async def measure(command: str, sandbox: Sandbox | None, repeats: int, cwd: Path) -> float:
    """Median wall time of `command` through `checks.run_command`, in milliseconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = await checks.run_command(command, cwd=cwd, timeout=60, sandbox=sandbox)
        times.append(time.perf_counter() - start)
        if not result.ok:
            raise RuntimeError(f"{command!r} failed: {result.output}")
    return statistics.median(times) * 1e3


async def median_ms(repeats: int, action: Callable[[], Awaitable[object]]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        await action()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


async def run_ok(argv: list[str], cwd: Path, env: Mapping[str, str] | None = None) -> str:
    done = await proc.run(argv, cwd=cwd, timeout=120, env=env)
    if not done.ok:
        raise RuntimeError(f"{argv[:2]} failed: {done.stderr}")
    return done.stdout


async def main(repeats: int, runs: int) -> None:
    sandbox = Sandbox(Bwrap(), read_paths=(Path(sys.prefix), Path(sys.base_prefix)))
    await sandbox.bwrap.check()
    await sandbox.bwrap.check_socat()
    with tempfile.TemporaryDirectory() as tmp, ScriptedModel() as model:
        cwd = Path(tmp)
        print(f"{'command':>22} {'plain ms':>9} {'sandbox ms':>11} {'overhead ms':>12}")
        for name, command in COMMANDS.items():
            plain = await measure(command, None, repeats, cwd)
            boxed = await measure(command, sandbox, repeats, cwd)
            print(f"{name:>22} {plain:9.1f} {boxed:11.1f} {boxed - plain:12.1f}")
        env = {"ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "benchmark-key"}
        with ModelProxy(env) as proxy:
            cli = str(bundled_cli_path())
            wrapper = sandbox.cli_wrapper(
                cli, workdir=cwd, read_only=True, directory=cwd, env_names=[],
                model_socket=proxy.socket_path, model_env=proxy.cli_env,
            )  # fmt: skip
            plain = await median_ms(repeats, lambda: run_ok([cli, "--version"], cwd))
            boxed = await median_ms(repeats, lambda: run_ok([str(wrapper), "--version"], cwd))
            print(f"{'claude --version':>22} {plain:9.1f} {boxed:11.1f} {boxed - plain:12.1f}")
            await measure_requests(sandbox, proxy, model.url, repeats, cwd)
        await measure_proxy_lifecycle(model.url, repeats)
        await measure_runs(sandbox, model, runs, cwd)


async def measure_requests(
    sandbox: Sandbox, proxy: ModelProxy, model_url: str, repeats: int, cwd: Path
) -> None:
    """One model request: straight to the model, and from inside the sandbox through socat and
    the proxy (the same client both times)."""
    n = str(max(repeats, 20))
    direct = {**os.environ, "ANTHROPIC_BASE_URL": model_url, "ANTHROPIC_API_KEY": "k"}
    plain = json.loads(await run_ok([sys.executable, "-c", CLIENT, n], cwd, direct))
    wrapper = sandbox.cli_wrapper(
        sys.executable, workdir=cwd, read_only=True, directory=cwd, env_names=[],
        model_socket=proxy.socket_path, model_env=proxy.cli_env,
    )  # fmt: skip
    boxed = json.loads(await run_ok([str(wrapper), "-c", CLIENT, n], cwd))
    for kind, label in (("new", "request, new conn."), ("kept", "request, kept-alive")):
        extra = boxed[kind] - plain[kind]
        print(f"{label:>22} {plain[kind]:9.2f} {boxed[kind]:11.2f} {extra:12.2f}")


async def measure_proxy_lifecycle(model_url: str, repeats: int) -> None:
    """Starting and stopping the proxy: once per daemon, or once per run outside `serving()`."""
    env = {"ANTHROPIC_BASE_URL": model_url, "ANTHROPIC_API_KEY": "k"}
    starts, stops = [], []
    for _ in range(repeats):
        began = time.perf_counter()
        proxy = ModelProxy(env).start()
        started = time.perf_counter()
        proxy.stop()
        starts.append(started - began)
        stops.append(time.perf_counter() - started)
    start, stop = statistics.median(starts) * 1e3, statistics.median(stops) * 1e3
    print(f"{'proxy start / stop':>22} {start:9.1f} {stop:11.1f}")


class OpenNetworkSandbox(Sandbox):
    """The CLI's sandbox as it was before the model proxy: the host's network, the credential
    forwarded to the CLI. Only here, to measure what the proxy adds to a whole run."""

    def cli_wrapper(
        self, cli: str, *, workdir: Path, read_only: bool, directory: Path,
        env_names: Iterable[str], **_: object,
    ) -> Path:  # fmt: skip
        real = Path(shutil.which(cli) or cli).resolve()
        policy = Policy(
            workdir=workdir, read_paths=(real.parent, *self.read_paths),
            read_only_workdir=read_only, network=True,
        )  # fmt: skip
        args = Bwrap(shutil.which("bwrap") or "bwrap").command([str(real)], policy)
        cut = args.index("--chdir")
        forwarded = [f'--setenv {n} "${{{n}}}"' for n in cli_env_names(env_names)]
        line = " ".join(["env", "-i", *map(shlex.quote, args[:cut]), *forwarded,
                         *map(shlex.quote, args[cut:]), '"$@"'])  # fmt: skip
        wrapper = directory / "claude"
        wrapper.write_text(f"#!/bin/sh\nexec {line}\n", encoding="utf-8")
        wrapper.chmod(0o700)
        return wrapper


async def measure_runs(sandbox: Sandbox, model: ScriptedModel, runs: int, cwd: Path) -> None:
    """A whole one-turn Claude run (the CLI's start, one model request, its end): unsandboxed,
    sandboxed with the host's network as before the proxy, and sandboxed with the proxy shared
    as the daemon shares it."""
    home = cwd / "home"
    home.mkdir()
    env = claude_cli_env(model.url, home)
    request = ClaudeRequest(
        prompt="Say hi", cwd=cwd, guidelines="", tools=IMPLEMENT_TOOLS, max_turns=2, timeout=60
    )

    async def one(runner: SdkClaudeRunner) -> None:
        result = await runner.run(request)
        if not result.ok:
            raise RuntimeError(f"the run failed: {result.error} {result.stderr_tail}")

    cli = str(bundled_cli_path())
    open_network = OpenNetworkSandbox(sandbox.bwrap, read_paths=sandbox.read_paths)
    plain_runner = SdkClaudeRunner(cli, env=env)
    open_runner = SdkClaudeRunner(cli, env=env, sandbox=open_network)
    boxed_runner = SdkClaudeRunner(cli, env=env, sandbox=sandbox)
    plain = await median_ms(runs, lambda: one(plain_runner))
    async with open_runner.serving(), boxed_runner.serving():
        opened = await median_ms(runs, lambda: one(open_runner))
        boxed = await median_ms(runs, lambda: one(boxed_runner))
    print(f"{'run, open network':>22} {plain:9.1f} {opened:11.1f} {opened - plain:12.1f}")
    print(f"{'run, model proxy':>22} {plain:9.1f} {boxed:11.1f} {boxed - plain:12.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--runs", type=int, default=10, help="whole Claude runs per variant")
    args = parser.parse_args()
    asyncio.run(main(args.repeats, args.runs))
