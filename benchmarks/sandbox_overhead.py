"""Benchmark: what the sandbox adds to one pre-merge command (bubblewrap start and teardown)."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from scripts.orchestrator import checks
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=30)
    asyncio.run(main(parser.parse_args().repeats))
