"""Benchmark: what the sandbox adds to a pre-merge command and to starting the Claude Code CLI."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from scripts.orchestrator import checks, proc
from scripts.orchestrator.fakes.scripted_model import bundled_cli_path
from scripts.orchestrator.sandbox import Bwrap, Sandbox

COMMANDS = {
    "true": "true",
    "python -c pass": f"{sys.executable} -c pass",
}


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


async def main(repeats: int) -> None:
    sandbox = Sandbox(Bwrap(), read_paths=(Path(sys.prefix), Path(sys.base_prefix)))
    await sandbox.bwrap.check()
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        print(f"{'command':>16} {'plain ms':>9} {'sandbox ms':>11} {'overhead ms':>12}")
        for name, command in COMMANDS.items():
            plain = await measure(command, None, repeats, cwd)
            boxed = await measure(command, sandbox, repeats, cwd)
            print(f"{name:>16} {plain:9.1f} {boxed:11.1f} {boxed - plain:12.1f}")
        plain, boxed = await measure_cli(sandbox, repeats, cwd)
        print(f"{'claude --version':>16} {plain:9.1f} {boxed:11.1f} {boxed - plain:12.1f}")


async def measure_cli(sandbox: Sandbox, repeats: int, cwd: Path) -> tuple[float, float]:
    """Median ms of `claude --version`: run directly, and through the sandbox's CLI wrapper."""
    cli = str(bundled_cli_path())
    wrapper = sandbox.cli_wrapper(
        cli, workdir=cwd, read_only=True, directory=cwd, env_names=["ANTHROPIC_API_KEY"]
    )

    async def median(argv: list[str]) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            done = await proc.run(argv, cwd=cwd, timeout=60)
            times.append(time.perf_counter() - start)
            if not done.ok:
                raise RuntimeError(f"{argv} failed: {done.stderr}")
        return statistics.median(times) * 1e3

    return await median([cli, "--version"]), await median([str(wrapper), "--version"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=30)
    asyncio.run(main(parser.parse_args().repeats))
