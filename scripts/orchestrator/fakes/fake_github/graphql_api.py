"""GitHub's GraphQL endpoint, as far as the daemon reads it: every query is checked against
GitHub's published schema (`@octokit/graphql-schema`, kept in `graphql_schema/`) and answered
from the store.

Served: `repository(owner, name) { issue(number) { number title body lastEditedAt createdAt
updatedAt } }`, of whichever repository of the fake `owner` and `name` name. A query GitHub
would refuse is refused the way GitHub does (HTTP 200 with `errors`); a valid query for a
field the fake does not serve fails loudly, so a test notices.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from graphql import (
    GraphQLError,
    GraphQLSchema,
    build_ast_schema,
    execute_sync,
    parse,
    validate,
)

from .clock import iso
from .model import Issue
from .store import Store

SCHEMA_FILE = Path(__file__).parent / "graphql_schema" / "schema.graphql"
SCHEMA_VERSION = "@octokit/graphql-schema 15.26.1"


@functools.cache
def schema() -> GraphQLSchema:
    # GitHub's published schema breaks two of graphql-core's own rules (a field defined twice,
    # deprecations its interfaces do not share); GitHub serves it as it is, so it is taken as
    # valid rather than refused.
    document = parse(SCHEMA_FILE.read_text(encoding="utf-8"))
    return build_ast_schema(document, assume_valid=True, assume_valid_sdl=True)


Finder = Callable[[str, str], Store | None]


def answer(find: Finder, payload: Any) -> tuple[int, dict[str, Any], Store | None]:
    """The status and body GitHub answers to one POST /graphql, with the repository the query
    read (None if it read none); `find` gives the fake's repository of an owner and name."""
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
        return 400, {"message": "Problems parsing JSON"}, None
    variables = payload.get("variables") or {}
    if not isinstance(variables, dict):
        return 200, _errors([GraphQLError("Variables are invalid JSON.")]), None
    try:
        document = parse(payload["query"])
    except GraphQLError as exc:
        return 200, _errors([exc]), None
    problems = validate(schema(), document)
    if problems:
        return 200, _errors(problems), None
    root = _Root(find)
    result = execute_sync(schema(), document, root, variable_values=variables)
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        body.update(_errors(result.errors))
    return 200, body, root.touched


def _errors(errors: list[GraphQLError]) -> dict[str, Any]:
    return {"errors": [_error(e) for e in errors]}


def _error(error: GraphQLError) -> dict[str, Any]:
    shown: dict[str, Any] = {"message": error.message}
    if error.locations:
        shown["locations"] = [{"line": p.line, "column": p.column} for p in error.locations]
    if error.path:
        shown["path"] = list(error.path)
    if error.extensions:
        shown.update(error.extensions)
    return shown


class _Root:
    """The query root (graphql-core calls a callable attribute with `info` and the args)."""

    def __init__(self, find: Finder) -> None:
        self._find = find
        self.touched: Store | None = None

    # graphql-core passes the schema's defaulted arguments too (`followRenames`).
    def repository(self, _info: Any, owner: str, name: str, **_: Any) -> _Repository:
        store = self._find(owner, name)
        if store is None:
            raise GraphQLError(
                f"Could not resolve to a Repository with the name '{owner}/{name}'.",
                extensions={"type": "NOT_FOUND"},
            )
        self.touched = self.touched or store
        return _Repository(store)

    def __getattr__(self, name: str) -> Any:
        raise _unserved("Query", name)


class _Repository:
    def __init__(self, store: Store) -> None:
        self._store = store

    def issue(self, _info: Any, number: int, **_: Any) -> _Issue:
        found = self._store.issues.get(number)
        if found is None or found.pull is not None:  # a pull request is no Issue here
            raise GraphQLError(
                f"Could not resolve to an Issue with the number of {number}.",
                extensions={"type": "NOT_FOUND"},
            )
        return _Issue(found)

    def __getattr__(self, name: str) -> Any:
        raise _unserved("Repository", name)


class _Issue:
    def __init__(self, issue: Issue) -> None:
        self.number = issue.number
        self.title = issue.title
        self.body = issue.body or ""
        edited = issue.last_edited_at
        self.createdAt = iso(issue.created_at)  # GraphQL's names
        self.updatedAt = iso(issue.updated_at)
        self.lastEditedAt = iso(edited) if edited is not None else None

    def __getattr__(self, name: str) -> Any:
        raise _unserved("Issue", name)


def _unserved(kind: str, field: str) -> GraphQLError:
    return GraphQLError(f"the fake GitHub does not serve {kind}.{field} (valid on GitHub)")
