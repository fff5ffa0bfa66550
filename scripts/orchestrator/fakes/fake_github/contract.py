"""The fake's contract with GitHub: refuse what GitHub refuses, and record every breach."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from jsonschema.exceptions import ValidationError

from . import errors
from .openapi import Description, Operation, Param
from .versions import VERSIONS, unsupported_message

# Statuses GitHub documents for the whole API rather than per operation, so a reply with one
# of them needs no entry in the operation's `responses` (its body is still checked if one
# is documented).
GITHUB_WIDE = {
    304: "conditional requests: every GET answers If-None-Match",
    400: "a body that is not JSON: 'Problems parsing JSON', on every route",
    401: "bad or missing credentials, on every route",
    403: "primary and secondary rate limits, on every route",
    404: "a resource that does not exist or that the token may not see, on every route",
    429: "secondary rate limits, on every route",
    500: "server errors",
    502: "server errors",
    503: "server errors",
}
# Answers GitHub gives that its description leaves out; the fake gives them too.
_NO_COMMIT = "an unknown ref: GitHub answers 422 'No commit found for SHA: <ref>'"
UNDOCUMENTED = {
    ("GET /repos/{owner}/{repo}/commits/{ref}/check-runs", 422): _NO_COMMIT,
    ("GET /repos/{owner}/{repo}/commits/{ref}/status", 422): _NO_COMMIT,
    # Creating a comment on an unknown commit is 422 (documented); listing one's is taken as
    # refused the same way, the stricter reading where GitHub does not say.
    ("GET /repos/{owner}/{repo}/commits/{commit_sha}/comments", 422): _NO_COMMIT,
    ("POST /repos/{owner}/{repo}/pulls/{pull_number}/comments/{comment_id}/replies", 422): (
        "a reply to a reply, which GitHub documents as not supported, or an empty body"
    ),
}


class Contract:
    """Checks each request and response against the description; keeps every violation.

    A request violation is the client's bug (GitHub would refuse it too); a response violation
    is the fake's. Either fails the test that caused it, unless the test declared it expected
    with `expect_violations()`.
    """

    def __init__(self) -> None:
        self._violations: list[str] = []
        self._lock = threading.Lock()

    @property
    def violations(self) -> list[str]:
        with self._lock:
            return list(self._violations)

    @contextmanager
    def expect_violations(self) -> Iterator[list[str]]:
        """Take the violations recorded inside the block out of the record (the test means
        them), into the list it yields; fails if there was none."""
        with self._lock:
            start = len(self._violations)
        seen: list[str] = []
        yield seen
        with self._lock:
            seen += self._violations[start:]
            del self._violations[start:]
        if not seen:
            raise AssertionError("expected a request or response against GitHub's description")

    def _record(self, message: str) -> None:
        with self._lock:
            self._violations.append(message)

    def record(self, message: str) -> None:
        """Record a breach found elsewhere (a webhook payload against GitHub's schema)."""
        self._record(message)

    # -- requests ---------------------------------------------------------------------------

    def check_request(
        self,
        version: str,
        method: str,
        raw_path: str,
        query: list[tuple[str, str]],
        payload: Any,
        *,
        unparsable: bool = False,
    ) -> tuple[Operation | None, errors.ApiError | None]:
        """The operation the request is for, and GitHub's refusal if it breaks the contract.

        `version` is the request's X-GitHub-Api-Version (GitHub's default if it sent none).
        """
        if version not in VERSIONS:
            self._record(f"{method} {raw_path}: API version {version!r} is not one GitHub serves")
            return None, errors.basic(400, unsupported_message(version))
        found = Description.load(version).find(method, raw_path)
        if found is None:
            self._record(
                f"{method} {raw_path}: no such operation in GitHub's description "
                "(of the routes the fake serves)"
            )
            return None, errors.not_found()
        op, values = found
        refusals = [
            *self._path_values(op, values),
            *self._query(op, query),
            *self._body(op, payload, unparsable),
        ]
        return op, refusals[0] if refusals else None

    def _path_values(self, op: Operation, values: dict[str, str]) -> Iterator[errors.ApiError]:
        for name, raw in values.items():
            param = op.params[("path", name)]
            for error in self._param_errors(op, param, raw):
                self._record(f"{op.name}: path parameter {name}={raw!r}: {error.message}")
                # GitHub routes on the path: a value of the wrong kind names nothing.
                yield errors.not_found()

    def _query(self, op: Operation, query: list[tuple[str, str]]) -> Iterator[errors.ApiError]:
        documented = op.query()
        seen: set[str] = set()
        for name, raw in query:
            param = documented.get(name)
            if param is None:
                # GitHub ignores most unknown parameters; a misspelt one then silently does
                # nothing, so the fake refuses it (stricter than GitHub, never kinder).
                self._record(f"{op.name}: query parameter {name!r} is not documented")
                yield errors.invalid_field("Query", name)
                continue
            if name in seen:
                self._record(f"{op.name}: query parameter {name!r} is given more than once")
                yield errors.invalid_field("Query", name)
            seen.add(name)
            for error in self._param_errors(op, param, raw):
                self._record(f"{op.name}: query parameter {name}={raw!r}: {error.message}")
                if param.schema.get("format") == "date-time":
                    message = f"The {name} parameter needs to be in ISO 8601 format"
                    yield errors.basic(422, message)
                else:
                    yield errors.invalid_field("Query", name)
        for name, param in documented.items():
            if param.required and name not in seen:
                self._record(f"{op.name}: required query parameter {name!r} is missing")
                yield errors.invalid_field("Query", name, "missing_field")

    def _body(self, op: Operation, payload: Any, unparsable: bool) -> Iterator[errors.ApiError]:
        if unparsable:
            self._record(f"{op.name}: the request body is not JSON")
            yield errors.basic(400, "Problems parsing JSON")
            return
        if payload is None:
            if op.body_required:
                self._record(f"{op.name}: the required request body is missing")
                # GitHub's words for a missing body where its schema wants an object.
                yield errors.basic(
                    422, "Invalid request.\n\nFor 'links/0/schema', nil is not an object."
                )
            return
        if op.body is None:
            self._record(f"{op.name}: takes no request body, got {_short(payload)}")
            yield errors.basic(422, "Invalid request.\n\nNo body is allowed.")
            return
        for error in Description.load(op.version).errors(op.body, payload, closed=True):
            where = _body_field(error)
            self._record(f"{op.name}: request body field {where}: {_explain(error)}")
            yield errors.basic(422, f"Invalid request.\n\n{_github_message(error)}")

    def _param_errors(self, op: Operation, param: Param, raw: str) -> list[ValidationError]:
        value = _read(raw, param.schema)
        return Description.load(op.version).errors(param.pointer, value, closed=False)

    # -- responses --------------------------------------------------------------------------

    def check_response(self, op: Operation, status: int, body: bytes) -> None:
        """Record how the fake's reply breaks what GitHub documents for `op` and `status`."""
        key = next(
            (k for k in (str(status), f"{status // 100}XX", "default") if k in op.responses), None
        )
        if key is None:
            if status not in GITHUB_WIDE and (op.name, status) not in UNDOCUMENTED:
                self._record(f"{op.name}: answered {status}, which GitHub does not document")
            return
        pointer = op.responses[key]
        if pointer is None:
            # An error documented without content still carries GitHub's error JSON.
            if body and status < 400:
                self._record(f"{op.name}: answered {status} with a body; GitHub documents none")
            return
        if not body:
            self._record(f"{op.name}: answered {status} without the body GitHub documents")
            return
        try:
            data = json.loads(body)
        except ValueError:
            self._record(f"{op.name}: answered {status} with a body that is not JSON")
            return
        # As written: GitHub sends fields before its description documents them (a label's
        # `archived_at`, in githubkit's newer models); unknown fields are
        # test_fake_github_schema's to catch, against those models.
        for error in Description.load(op.version).errors(pointer, data, closed=False):
            self._record(f"{op.name}: response {status} at {error.json_path}: {_explain(error)}")


def _read(raw: str, schema: dict[str, Any]) -> Any:
    """A query or path value as the type its schema names (on the wire every value is text)."""
    kind = schema.get("type")
    if kind == "integer" and re.fullmatch(r"-?[0-9]+", raw):
        return int(raw)
    if kind == "number" and re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", raw):
        return float(raw)
    if kind == "boolean" and raw in ("true", "false"):
        return raw == "true"
    return raw


def _body_field(error: ValidationError) -> str:
    """The field the error is about: its JSON path, or the missing or unexpected key."""
    path = error.json_path.removeprefix("$")
    key = _named_key(error)
    return (f"{path}.{key}" if key else path).lstrip(".") or "(the body)"


def _named_key(error: ValidationError) -> str | None:
    if error.validator == "required":
        found = re.match(r"'([^']+)' is a required property", error.message)
        return found.group(1) if found else None
    if error.validator == "additionalProperties":
        found = re.search(r"\('([^']+)' was unexpected\)", error.message)
        return found.group(1) if found else None
    return None


def _explain(error: ValidationError) -> str:
    """The message, with the reasons of each alternative of a failed `oneOf`/`anyOf`."""
    if not error.context:
        return error.message
    reasons = sorted({f"{e.json_path}: {e.message}" for e in error.context})
    return f"{error.message} ({'; '.join(reasons)})"


def _github_message(error: ValidationError) -> str:
    """GitHub's wording for a body that breaks its schema (`"x" wasn't supplied.`, ...)."""
    key = _named_key(error)
    if error.validator == "required" and key:
        return f'"{key}" wasn\'t supplied.'
    if error.validator == "additionalProperties" and key:
        return f'"{key}" is not a permitted key.'
    where = "/".join(f"properties/{p}" if isinstance(p, str) else str(p) for p in error.path)
    return f"For '{where}', {error.message}." if where else f"{error.message}."


def _short(payload: Any) -> str:
    text = json.dumps(payload)
    return text if len(text) <= 80 else text[:77] + "..."
