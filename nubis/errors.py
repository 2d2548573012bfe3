"""The error tree. Every error a user can see is one of these.

    NubisError                 500 internal          a bug or an outage; logged, not shown
    ├── InvalidInput           422 invalid_input     a request or argument that cannot be used
    ├── Unauthenticated        401 unauthenticated   no valid credentials
    ├── Forbidden              403 forbidden         valid credentials, not allowed
    ├── NotFound               404 not_found         no such object (or not visible to the caller)
    ├── Conflict               409 conflict          the object's current state forbids the request
    └── Unavailable            503 unavailable       a dependency (the database) does not answer

Each class carries its HTTP status and a stable `code` that clients may branch on;
the API renders them as application/problem+json in one place and the CLI prints
`detail` and exits non-zero.
"""

from __future__ import annotations

from typing import Any, ClassVar


class NubisError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, *, errors: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or {}

    def problem(self) -> dict[str, Any]:
        """The RFC 9457 problem document for this error."""
        body: dict[str, Any] = {
            "type": f"https://nubis.dev/errors/{self.code}",
            "title": self.title,
            "status": self.status,
            "code": self.code,
            "detail": self.detail,
        }
        if self.errors:
            body["errors"] = self.errors
        return body


class InvalidInput(NubisError):
    status = 422
    code = "invalid_input"
    title = "Invalid input"


class Unauthenticated(NubisError):
    status = 401
    code = "unauthenticated"
    title = "Authentication required"


class Forbidden(NubisError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class NotFound(NubisError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(NubisError):
    status = 409
    code = "conflict"
    title = "Conflict"


class Unavailable(NubisError):
    status = 503
    code = "unavailable"
    title = "Service unavailable"
