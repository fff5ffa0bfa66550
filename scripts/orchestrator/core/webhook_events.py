"""What a verified GitHub webhook delivery means: a reason to wake the daemon, or none."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, ValidationError

# The deliveries that can start or move work; the key is X-GitHub-Event, the value the actions.
WAKING: dict[str, frozenset[str]] = {
    "issues": frozenset({"labeled"}),
    "pull_request": frozenset({"opened", "synchronize", "reopened", "ready_for_review"}),
    "issue_comment": frozenset({"created"}),
    "pull_request_review": frozenset({"submitted"}),
}
PING = "ping"


@dataclass(frozen=True)
class Wake:
    """A delivery that should wake the daemon: what happened, to which issue or pull request."""

    event: str
    action: str
    number: int
    delivery: str


class _Strict(BaseModel):
    # Untrusted JSON: no coercion ("7" is not a number), and unknown fields are GitHub's.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class _Repository(_Strict):
    full_name: str


class _Numbered(_Strict):
    number: int


class _Login(_Strict):
    login: str


class _Label(_Strict):
    name: str


class _Envelope(_Strict):
    """The few fields every waking delivery has; the rest of the payload is not read."""

    action: str
    repository: _Repository
    issue: _Numbered | None = None
    pull_request: _Numbered | None = None
    sender: _Login | None = None
    label: _Label | None = None


# What the daemon itself does (its comments, labels and reviews) starts nothing of its own,
# so those deliveries wake nothing; the pull requests it opens are reviewed like any other.
_OWN_IGNORED = frozenset({"issues", "issue_comment", "pull_request_review"})


class _PingEnvelope(_Strict):
    repository: _Repository | None = None


def decide(
    event: str,
    delivery: str,
    payload: object,
    repo: str,
    *,
    own: str | None = None,
    ready_label: str | None = None,
) -> Wake | str:
    """The `Wake` for a delivery to `repo` (`owner/name`), or why it wakes nothing: also
    when the daemon's own account (`own`) did it, or an issue got a label other than
    `ready_label`."""
    if not delivery:
        return "no delivery id"
    if event == PING:
        return _ping(payload, repo)
    actions = WAKING.get(event)
    if actions is None:
        return f"event {event!r} is not one the daemon acts on"
    try:
        envelope = _Envelope.model_validate(payload)
    except ValidationError as error:
        return f"malformed {event} payload: {_first_problem(error)}"
    if envelope.repository.full_name.lower() != repo.lower():
        return f"for another repository ({envelope.repository.full_name})"
    if envelope.action not in actions:
        return f"{event}.{envelope.action} is not one the daemon acts on"
    sender = envelope.sender.login if envelope.sender else None
    if own and sender and sender.lower() == own.lower() and event in _OWN_IGNORED:
        return f"{event}.{envelope.action} by the daemon's own account"
    label = envelope.label.name if envelope.label else None
    if event == "issues" and ready_label and label is not None and label != ready_label:
        return f"the label {label!r} is not the ready label"
    # An issue comment on a pull request names the pull request as its `issue`, as GitHub does.
    target = envelope.issue if event in ("issues", "issue_comment") else envelope.pull_request
    if target is None:
        return f"malformed {event} payload: no {_target_name(event)}"
    return Wake(event=event, action=envelope.action, number=target.number, delivery=delivery)


def addressed_to(payload: object) -> str | None:
    """The `repository.full_name` a delivery names, or None (an organisation's ping has none;
    a malformed one is `decide`'s to refuse)."""
    if not isinstance(payload, dict):
        return None
    repository = payload.get("repository")
    name = repository.get("full_name") if isinstance(repository, dict) else None
    return name if isinstance(name, str) and name else None


def _ping(payload: object, repo: str) -> str:
    try:
        envelope = _PingEnvelope.model_validate(payload)
    except ValidationError as error:
        return f"malformed ping payload: {_first_problem(error)}"
    name = envelope.repository.full_name if envelope.repository else None
    if name is not None and name.lower() != repo.lower():
        return f"ping for another repository ({name})"
    return "ping"


def _target_name(event: str) -> str:
    return "issue" if event in ("issues", "issue_comment") else "pull_request"


def _first_problem(error: ValidationError) -> str:
    """One line naming the first bad field; never the value, which is untrusted text."""
    first = error.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "(the payload)"
    return f"{where}: {first['msg']}"
