"""GitHub's webhooks received: verify each delivery, drop repeats, and wake the daemon."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import anyio
from githubkit.webhooks import verify
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response

from .core.webhook_events import Wake, addressed_to, decide

log = logging.getLogger(__name__)

# GitHub caps a payload at 25 MB, but the events the daemon reads are small: an issue's or a
# pull request's text is at most 65,536 characters. The body is read before the signature can
# be checked, so every byte allowed is memory anyone can make the daemon hold.
MAX_BODY = 5 * 1024 * 1024
MAX_READING = 8  # bodies read at once; more get 503 (GitHub's deliveries come one by one)
READ_TIMEOUT = 10.0  # seconds to send a body: GitHub gives up on a delivery after 10
SIGNATURE = "X-Hub-Signature-256"
# GitHub's delivery IDs are UUIDs; anything much else is not GitHub, and would be logged.
_DELIVERY_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
_EVENT = re.compile(r"[a-z_]{1,64}")
REFUSED_UNSIGNED = "webhooks are refused: set WEBHOOK_SECRET to receive them\n"


@dataclass(frozen=True)
class Hook:
    """One repository's side of the webhooks: what a delivery for it wakes; `own` names the
    daemon's account once known (what it did itself wakes nothing), `ready_label` the label
    that makes an issue ready now (another label wakes nothing)."""

    repo: str  # owner/name
    wake: Callable[[Wake], None]
    own: Callable[[], str | None] = lambda: None
    ready_label: Callable[[], str | None] = lambda: None


Hooks = Callable[[str], "Hook | None"]  # a repository's name -> its hook, None if not worked here


def only(hook: Hook) -> Hooks:
    """The hooks of a daemon that watches one repository."""
    return lambda name: hook if name.lower() == hook.repo.lower() else None


class WebhookReceiver:
    """The webhook endpoint: only deliveries signed with `secret`, for a repository `hooks`
    knows, wake that repository's daemon (an organisation's webhook sends every repository's).

    Without a secret every delivery is refused (403): an unsigned webhook could be anyone's.
    `last_delivery` is the `clock` time of the last delivery whose signature was good, so the
    daemon can tell whether webhooks still arrive (`last_for` one repository's); `counts` feed
    the metrics.
    """

    def __init__(
        self,
        *,
        secret: str | None,
        hooks: Hooks,
        clock: Callable[[], float] = time.monotonic,
        remember: int = 10_000,
        observe: Callable[[str], None] | None = None,
    ) -> None:
        """`observe` hears each delivery's result (accepted, duplicate, ignored, rejected)."""
        if remember < 1:
            raise ValueError("remember must be at least 1")
        self._secret = secret or None
        self._hooks = hooks
        self._clock = clock
        self._remember = remember
        # Delivery IDs already handled, oldest first; GitHub redelivers with the same ID.
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._last: float | None = None
        self._last_for: dict[str, float] = {}  # by repository, in lower case
        self._observe = observe
        self._reading = 0  # bodies being read now
        self.counts: dict[str, int] = dict.fromkeys(
            ("accepted", "duplicate", "ignored", "rejected"), 0
        )

    @property
    def reading(self) -> int:
        """Bodies being read now."""
        return self._reading

    @property
    def last_delivery(self) -> float | None:
        return self._last

    def last_for(self, repo: str) -> float | None:
        """The `clock` time of the last good delivery that named `repo`."""
        return self._last_for.get(repo.lower())

    async def endpoint(self, request: Request) -> Response:
        if request.method != "POST":
            return self._reject(405, "only POST\n", {"Allow": "POST"})
        if self._secret is None:
            return self._reject(403, REFUSED_UNSIGNED)
        # Everything the headers can refuse is refused before a byte of the body is read.
        signature = request.headers.get(SIGNATURE, "")
        # verify() picks the digest from the prefix and compare_digest() refuses non-ASCII
        # text; only a well-formed SHA-256 signature may reach it.
        if not (signature.startswith("sha256=") and signature.isascii()):
            return self._reject(401, f"missing or malformed {SIGNATURE}\n")
        event = request.headers.get("X-GitHub-Event", "")
        delivery = request.headers.get("X-GitHub-Delivery", "")
        # The signature covers the body, not these headers: check their form before use.
        if not _EVENT.fullmatch(event) or not _DELIVERY_ID.fullmatch(delivery):
            return self._reject(400, "missing or malformed X-GitHub-Event or X-GitHub-Delivery\n")
        declared = request.headers.get("Content-Length")
        if declared is not None and not declared.isdigit():
            return self._reject(400, "bad Content-Length\n")
        if int(declared or 0) > MAX_BODY:
            return self._reject(413, f"a delivery is at most {MAX_BODY} bytes\n")
        if self._reading >= MAX_READING:
            return self._reject(503, "too many deliveries at once\n", {"Retry-After": "10"})
        self._reading += 1
        try:
            with anyio.fail_after(READ_TIMEOUT):
                body = await _read(request)
        except ClientDisconnect:
            return self._reject(400, "the body broke off\n")
        except TimeoutError:
            return self._reject(408, f"the body took more than {READ_TIMEOUT:g}s\n")
        finally:
            self._reading -= 1
        if body is None:
            return self._reject(413, f"a delivery is at most {MAX_BODY} bytes\n")
        if not verify(self._secret, body, signature):
            return self._reject(401, "bad signature\n")
        self._last = self._clock()
        return self._verified(event, delivery, body)

    def _verified(self, event: str, delivery: str, body: bytes) -> Response:
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            return self._reject(400, "the body is not JSON\n")
        # GitHub signs the body only: a body seen before under a new delivery id is a replay
        # (GitHub's own redelivery keeps the id); either way nothing new happened.
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if delivery in self._seen or digest in self._seen:
            self._count("duplicate")
            log.debug("webhook delivery %s again: ignored", delivery)
            return PlainTextResponse("duplicate\n", status_code=200)
        target = self._target(event, delivery, payload)
        if isinstance(target, str):
            self._note(delivery, digest)
            self._count("ignored")
            log.debug("webhook %s delivery %s ignored", event, delivery)
            return PlainTextResponse(f"ignored: {target}\n", status_code=200)
        hook, decision = target
        # Remembered only once woken: if waking fails, GitHub's redelivery may try again.
        hook.wake(decision)
        self._note(delivery, digest)
        self._count("accepted")
        log.info(
            "webhook %s %s.%s #%d (delivery %s)",
            hook.repo,
            decision.event,
            decision.action,
            decision.number,
            decision.delivery,
        )
        return PlainTextResponse("accepted\n", status_code=202)

    def _target(self, event: str, delivery: str, payload: object) -> tuple[Hook, Wake] | str:
        """The repository's hook and what wakes it, or why nothing does."""
        name = addressed_to(payload)
        hook = self._hooks(name) if name is not None else None
        if hook is None:  # a ping, a malformed payload, or a repository not worked on here
            decision = decide(event, delivery, payload, "")
            return decision if isinstance(decision, str) else "for a repository not watched here"
        self._last_for[hook.repo.lower()] = self._last or self._clock()
        decision = decide(event, delivery, payload, hook.repo, own=hook.own(),
                          ready_label=hook.ready_label())  # fmt: skip
        return decision if isinstance(decision, str) else (hook, decision)

    def _count(self, result: str) -> None:
        self.counts[result] += 1
        if self._observe is not None:
            self._observe(result)

    def _note(self, delivery: str, digest: str) -> None:
        self._seen[delivery] = None
        self._seen[digest] = None
        while len(self._seen) > 2 * self._remember:  # an id and a digest per delivery
            self._seen.popitem(last=False)

    def _reject(self, status: int, text: str, headers: dict[str, str] | None = None) -> Response:
        self._count("rejected")
        log.debug("webhook refused with %d", status)
        return PlainTextResponse(text, status_code=status, headers=headers)


async def _read(request: Request) -> bytes | None:
    """The raw body; None, without reading on, once it passes MAX_BODY."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
