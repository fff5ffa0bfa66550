"""GitHub's REST description for the fake's routes, compiled once into cached validators."""

from __future__ import annotations

import copy
import functools
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from jsonschema import FormatChecker
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import extend
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from referencing import Registry
from referencing.jsonschema import DRAFT4

FOLDER = Path(__file__).parent / "openapi"
JSON = "application/json"
_AS_WRITTEN = "urn:github:rest"
# The same description where no object takes a property it does not document.
_CLOSED = "urn:github:rest:closed"


def description_path(version: str) -> Path:
    """The committed description of one API version, named as GitHub names its own."""
    return FOLDER / f"api.github.com.{version}.json"


def template_shape(template: str) -> str:
    """`/repos/{owner}/{repo}/issues/{issue_number}` -> `/repos/{}/{}/issues/{}`."""
    return re.sub(r"\{[^}]+\}", "{}", template)


@dataclass(frozen=True)
class Param:
    name: str
    location: str  # "path" or "query"
    required: bool
    schema: dict[str, Any]
    pointer: str  # of the schema, in the description
    multi_segment: bool  # GitHub's `x-multi-segment`: a path value that may hold slashes


@dataclass(frozen=True)
class Operation:
    version: str  # the API version whose description this is
    method: str
    template: str
    pattern: re.Pattern[str]
    params: dict[tuple[str, str], Param]  # by (location, name)
    body: str | None  # pointer of the JSON request body's schema
    body_required: bool
    responses: dict[str, str | None]  # status -> pointer of the JSON schema (None: no body)
    specificity: int  # literal segments: `/issues/comments` wins over `/issues/{issue_number}`

    @property
    def name(self) -> str:
        return f"{self.method} {self.template}"

    def query(self) -> dict[str, Param]:
        return {p.name: p for (where, _), p in self.params.items() if where == "query"}


class Description:
    """The committed description: operations by method and path, and schema validators."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.info: dict[str, Any] = doc["info"]
        self.version: str = self.info["x-source"]["api-version"]
        self.operations = [
            _operation(doc, self.version, method.upper(), template, item)
            for template, item in doc["paths"].items()
            for method in ("get", "put", "post", "patch", "delete")
            if method in item
        ]
        closed = _close_objects(copy.deepcopy(doc))
        self._registry: Registry[Any] = Registry().with_resources(
            [
                (_AS_WRITTEN, DRAFT4.create_resource(doc)),
                (_CLOSED, DRAFT4.create_resource(closed)),
            ]
        )
        self._formats = _format_checker()
        self._validators: dict[tuple[str, bool], Validator] = {}
        self._lock = threading.Lock()

    @staticmethod
    @functools.cache
    def load(version: str) -> Description:
        """One per version and process: its compiled validators serve every fake after it."""
        return Description(json.loads(description_path(version).read_text(encoding="utf-8")))

    def find(self, method: str, raw_path: str) -> tuple[Operation, dict[str, str]] | None:
        """The operation for a request path as sent (percent-encoded), with its path values."""
        best: tuple[Operation, dict[str, str]] | None = None
        for op in self.operations:
            if op.method != method:
                continue
            found = op.pattern.match(raw_path)
            if found and (best is None or op.specificity > best[0].specificity):
                best = op, {k: unquote(v) for k, v in found.groupdict().items()}
        return best

    def errors(self, pointer: str, instance: Any, *, closed: bool) -> list[ValidationError]:
        """Every way `instance` breaks the schema at `pointer`, best match first."""
        return sorted(
            self._validator(pointer, closed).iter_errors(instance),
            key=lambda e: (-len(e.absolute_path), e.message),
        )

    def _validator(self, pointer: str, closed: bool) -> Validator:
        key = pointer, closed
        found = self._validators.get(key)
        if found is None:
            with self._lock:
                found = self._validators.get(key)
                if found is None:
                    base = _CLOSED if closed else _AS_WRITTEN
                    found = NullableOAS30Validator(
                        {"$ref": f"{base}#{pointer}"},
                        registry=self._registry,
                        format_checker=self._formats,
                    )
                    self._validators[key] = found
        return found


def _null_allowed(keyword: Any) -> Any:
    def check(validator: Any, value: Any, instance: Any, schema: dict[str, Any]) -> Any:
        if instance is None and schema.get("nullable") is True:
            return
        yield from keyword(validator, value, instance, schema) or ()

    return check


def _discriminating_objects_only(keyword: Any) -> Any:
    def check(validator: Any, value: Any, instance: Any, schema: dict[str, Any]) -> Any:
        if "discriminator" in schema and not validator.is_type(instance, "object"):
            schema = {k: v for k, v in schema.items() if k != "discriminator"}
        yield from keyword(validator, value, instance, schema) or ()

    return check


# OpenAPI 3.0.3 says `nullable: true` "adds null to the allowed values". The OAS 3.0 validator
# honours it beside `type` only, but GitHub also writes it beside `enum` (`state_reason`) and
# `oneOf` (a commit's `author`), where GitHub sends null; so null passes every keyword of a
# schema that is nullable.
# A discriminator names a property, so it can only pick among objects; GitHub's description
# puts an array (a directory's contents) among the contents API's alternatives beside one,
# which are then matched as a plain `oneOf` (the validator would refuse every array).
NullableOAS30Validator: Any = extend(  # type: ignore[no-untyped-call]  # untyped in its stubs
    OAS30Validator,
    {
        name: _null_allowed(_discriminating_objects_only(k) if name == "oneOf" else k)
        for name, k in OAS30Validator.VALIDATORS.items()
    },
)


def _format_checker() -> FormatChecker:
    """jsonschema's checks (`date-time` through rfc3339-validator) and OpenAPI's own."""
    checker = FormatChecker()
    checker.checkers = {**checker.checkers, **oas30_format_checker.checkers}
    return checker


def _operation(
    doc: dict[str, Any], version: str, method: str, template: str, item: dict[str, Any]
) -> Operation:
    where = f"/paths/{_escape(template)}"
    op = item[method.lower()]
    params: dict[tuple[str, str], Param] = {}
    # Operation parameters override path-level ones of the same name and place.
    for level, raw in (
        ("", item.get("parameters", [])),
        (method.lower(), op.get("parameters", [])),
    ):
        for index, entry in enumerate(raw):
            pointer, param = _deref(
                doc, f"{where}/{level}/parameters/{index}".replace("//", "/"), entry
            )
            params[(param["in"], param["name"])] = Param(
                param["name"],
                param["in"],
                bool(param.get("required")),
                param["schema"],
                f"{pointer}/schema",
                bool(param.get("x-multi-segment")),
            )
    body: str | None = None
    body_required = False
    if "requestBody" in op:
        pointer, request = _deref(doc, f"{where}/{method.lower()}/requestBody", op["requestBody"])
        body_required = bool(request.get("required"))
        if JSON in request.get("content", {}):
            body = f"{pointer}/content/{_escape(JSON)}/schema"
    responses: dict[str, str | None] = {}
    for status, entry in op.get("responses", {}).items():
        pointer, response = _deref(doc, f"{where}/{method.lower()}/responses/{status}", entry)
        media = response.get("content", {})
        responses[status] = f"{pointer}/content/{_escape(JSON)}/schema" if JSON in media else None
    pattern, literals = _path_pattern(template, params)
    return Operation(
        version, method, template, pattern, params, body, body_required, responses, literals
    )


def _path_pattern(
    template: str, params: dict[tuple[str, str], Param]
) -> tuple[re.Pattern[str], int]:
    parts, literals = [], 0
    for segment in template.strip("/").split("/"):
        name = re.fullmatch(r"\{(\w+)\}", segment)
        if name is None:
            parts.append(re.escape(segment))
            literals += 1
            continue
        param = params.get(("path", name.group(1)))
        many = param is not None and param.multi_segment
        parts.append(f"(?P<{name.group(1)}>{'.+' if many else '[^/]+'})")
    return re.compile("^/" + "/".join(parts) + "$"), literals


def _deref(doc: dict[str, Any], pointer: str, node: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Follow a `$ref` between OpenAPI objects (parameters, bodies, responses)."""
    while "$ref" in node:
        pointer = node["$ref"].removeprefix("#")
        node = _resolve(doc, pointer)
    return pointer, node


def _resolve(doc: dict[str, Any], pointer: str) -> Any:
    node: Any = doc
    for part in pointer.strip("/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _escape(segment: str) -> str:
    return segment.replace("~", "~0").replace("/", "~1")


def _close_objects(node: Any, *, in_all_of: bool = False) -> Any:
    """Forbid undocumented properties: every object schema that lists its properties and says
    nothing of others gets `additionalProperties: false`. Not inside `allOf`, whose parts each
    describe only some of the properties of one object."""
    if isinstance(node, list):
        for item in node:
            _close_objects(item, in_all_of=in_all_of)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                for schema in value.values():
                    _close_objects(schema)
            else:
                _close_objects(value, in_all_of=key == "allOf")
        if "properties" in node and "additionalProperties" not in node and not in_all_of:
            node["additionalProperties"] = False
    return node
