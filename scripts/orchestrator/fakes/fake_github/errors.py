"""GitHub's error replies: the exception route handlers raise and the bodies GitHub sends."""

from __future__ import annotations

from typing import Any

DOCS = "https://docs.github.com/rest"


class ApiError(Exception):
    """An HTTP error reply, raised by store operations and turned into a response by the server."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(f"{status}: {body.get('message')}")
        self.status = status
        self.body = body
        self.headers = headers or {}


def error_body(status: int, message: str, doc: str = DOCS, **extra: Any) -> dict[str, Any]:
    """GitHub's BasicError shape; recent GitHub also echoes the status as a string."""
    return {"message": message, "documentation_url": doc, **extra, "status": str(status)}


def basic(status: int, message: str, doc: str = DOCS) -> ApiError:
    return ApiError(status, error_body(status, message, doc))


def not_found() -> ApiError:
    return basic(404, "Not Found")


def validation(errors: list[Any], doc: str = DOCS, message: str = "Validation Failed") -> ApiError:
    """422 with GitHub's `errors` list (objects for most endpoints, strings for reviews)."""
    return ApiError(422, error_body(422, message, doc, errors=errors))


def invalid_field(resource: str, field: str, code: str = "invalid", doc: str = DOCS) -> ApiError:
    return validation([{"resource": resource, "field": field, "code": code}], doc)


def custom(resource: str, message: str, doc: str = DOCS, field: str | None = None) -> ApiError:
    error: dict[str, Any] = {"resource": resource, "code": "custom", "message": message}
    if field is not None:
        error["field"] = field
    return validation([error], doc)
