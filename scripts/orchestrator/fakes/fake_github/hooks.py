"""Repository webhooks: sign and POST each delivery from a thread of its own, and record it."""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass, replace

import httpx

from . import shapes_hooks
from .contract import Contract
from .model import Happening
from .shapes_base import Json
from .store import Store

# GitHub's Hookshot names a build in its User-Agent; any hex will do for a receiver.
USER_AGENT = "GitHub-Hookshot/f0e1d2c"
# GitHub gives up on a receiver after 10 seconds.
TIMEOUT = 10.0


@dataclass(frozen=True)
class Hook:
    id: int
    url: str
    secret: str
    events: frozenset[str]

    def wants(self, event: str) -> bool:
        return "*" in self.events or event in self.events


@dataclass(frozen=True)
class Delivery:
    """One POST to a hook; `status` is the receiver's answer, None until it came, 0 if none did
    (connection refused, timeout). A redelivery is a new record with the same `id`."""

    id: str
    hook_id: int
    event: str
    action: str | None
    body: bytes
    headers: dict[str, str]
    redelivery: bool = False
    status: int | None = None
    error: str | None = None


class Deliverer:
    """The fake's webhook sender: builds payloads under the store's lock, sends them later.

    Sending happens on a worker thread, so a request handler that causes a delivery never
    waits for (or deadlocks with) a receiver that calls the fake back.
    """

    def __init__(self, store: Store, contract: Contract) -> None:
        self._store = store
        self._contract = contract
        self._hooks: dict[int, Hook] = {}
        self._records: list[Delivery] = []
        self._changed = threading.Condition()
        self._queue: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    # -- test-facing ------------------------------------------------------------------------

    def add(self, url: str, secret: str, events: Collection[str]) -> int:
        """Register a hook and send it `ping`, as GitHub does on creation."""
        with self._store.lock:
            hook = Hook(self._store.next_id("hook"), url, secret, frozenset(events))
            self._hooks[hook.id] = hook
            self._store.emit = self.emit
            body = shapes_hooks.ping(self._store, hook.id, sorted(hook.events), url)
            self._check("ping", None, body)
            self._enqueue(hook, "ping", None, body)
            return hook.id

    @property
    def deliveries(self) -> list[Delivery]:
        with self._changed:
            return list(self._records)

    def redeliver(self, delivery_id: str) -> None:
        """Send a delivery again with the same ID and body, like GitHub's "Redeliver"."""
        with self._changed:
            first = next((d for d in self._records if d.id == delivery_id), None)
            if first is None:
                raise KeyError(f"no delivery {delivery_id!r}")
            again = replace(first, redelivery=True, status=None, error=None)
            self._records.append(again)
            self._start()
            self._queue.put(len(self._records) - 1)

    def wait(self, count: int | None = None, timeout: float = 10.0) -> list[Delivery]:
        """Wait until at least `count` deliveries exist (default: those made so far) and all of
        them have been answered or failed; AssertionError at the deadline."""
        deadline = time.monotonic() + timeout
        with self._changed:
            want = len(self._records) if count is None else count

            def done() -> bool:
                return len(self._records) >= want and all(
                    d.status is not None for d in self._records
                )

            if not self._changed.wait_for(done, timeout=max(0.0, deadline - time.monotonic())):
                pending = [d.id for d in self._records if d.status is None]
                raise AssertionError(
                    f"webhooks: {len(self._records)} of {want} deliveries made, "
                    f"unanswered after {timeout}s: {pending}"
                )
            return list(self._records)

    def stop(self) -> None:
        """Finish the queue and end the worker; deliveries made later start a new one."""
        thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(TIMEOUT + 5)
            self._thread = None

    # -- from the store ---------------------------------------------------------------------

    def emit(self, happening: Happening) -> None:
        """Called with the store's lock held, as the change happens."""
        hooks = [h for h in self._hooks.values() if h.wants(happening.event)]
        if not hooks:
            return
        body = shapes_hooks.payload(self._store, happening)
        self._check(happening.event, happening.action, body)
        for hook in hooks:
            self._enqueue(hook, happening.event, happening.action, body)

    # -- internals --------------------------------------------------------------------------

    def _check(self, event: str, action: str | None, body: Json) -> None:
        for problem in shapes_hooks.problems(event, action, body):
            self._contract.record(problem)

    def _enqueue(self, hook: Hook, event: str, action: str | None, payload: Json) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        delivery = str(uuid.uuid4())
        headers = {
            "Accept": "*/*",
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-GitHub-Delivery": delivery,
            "X-GitHub-Event": event,
            "X-GitHub-Hook-ID": str(hook.id),
            "X-GitHub-Hook-Installation-Target-ID": str(self._store.context().repo_id),
            "X-GitHub-Hook-Installation-Target-Type": "repository",
            "X-Hub-Signature": _sign(hook.secret, body, "sha1"),
            "X-Hub-Signature-256": _sign(hook.secret, body, "sha256"),
        }
        record = Delivery(delivery, hook.id, event, action, body, headers)
        with self._changed:
            self._records.append(record)
            self._start()
            self._queue.put(len(self._records) - 1)

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="fake-github-hooks", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        # One client, no proxies from the environment: deliveries go to loopback only.
        with httpx.Client(timeout=TIMEOUT, trust_env=False) as client:
            while (index := self._queue.get()) is not None:
                with self._changed:
                    record = self._records[index]
                url = self._hooks[record.hook_id].url
                try:
                    answer = client.post(url, content=record.body, headers=record.headers)
                    status, error = answer.status_code, None
                except httpx.HTTPError as failure:
                    status, error = 0, f"{type(failure).__name__}: {failure}"
                with self._changed:
                    self._records[index] = replace(record, status=status, error=error)
                    self._changed.notify_all()


def _sign(secret: str, body: bytes, method: str) -> str:
    digest = hmac.new(secret.encode(), body, getattr(hashlib, method)).hexdigest()
    return f"{method}={digest}"
