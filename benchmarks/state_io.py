"""Benchmark: time to save and to load the state with 100, 1,000 and 10,000 work items."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from scripts.orchestrator.core.work import MergeFacts
from scripts.orchestrator.state import State, Status, WorkItem, WorkItemType

SIZES = (100, 1_000, 10_000)


def _item(n: int) -> WorkItem:
    kind = (WorkItemType.ISSUE, WorkItemType.PR_REVIEW, WorkItemType.MERGE)[n % 3]
    return WorkItem(
        type=kind,
        number=n,
        status=Status.DONE,
        attempts=1,
        head_sha=f"{n:040x}",
        pr_number=n + 1,
        cost_usd=0.1234,
        turns=12,
        duration_s=93.5,
        last_error=None,
        facts=MergeFacts(trigger_comment_id=10_000_000 + n) if kind is WorkItemType.MERGE else None,
    )


def measure(size: int, repeats: int) -> tuple[float, float, int]:
    """Median save and load times in milliseconds, and the file size in bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.json"
        state = State(path)
        with state.batch():
            for n in range(size):
                state.put(_item(n))
        saves = []
        for _ in range(repeats):
            start = time.perf_counter()
            state.save()
            saves.append(time.perf_counter() - start)
        state.close()
        loads = []
        for _ in range(repeats):
            start = time.perf_counter()
            State(path, lock=False)
            loads.append(time.perf_counter() - start)
        return statistics.median(saves) * 1e3, statistics.median(loads) * 1e3, path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    print(f"{'items':>7} {'save ms':>9} {'load ms':>9} {'file KiB':>9}")
    for size in SIZES:
        save_ms, load_ms, size_bytes = measure(size, args.repeats)
        print(f"{size:>7} {save_ms:>9.1f} {load_ms:>9.1f} {size_bytes / 1024:>9.0f}")


if __name__ == "__main__":
    main()
