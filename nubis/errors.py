"""The error tree. Every error a user can see is one of these.

    NubisError                 500 internal          a bug or an outage; logged, not shown
    ├── MalformedRequest       400 malformed_request the body cannot even be parsed (not JSON)
    ├── InvalidInput           422 invalid_input     a request or argument that cannot be used
    │   └── ImageRefused       422 image_refused     an upload is not a self-contained qcow2
    ├── Unauthenticated        401 unauthenticated   no valid credentials
    │   └── SecondFactorRequired  401 totp_required  the password was right; a TOTP code is needed
    ├── Forbidden              403 forbidden         valid credentials, not allowed
    ├── NotFound               404 not_found         no such object (or not visible to the caller)
    ├── Conflict               409 conflict          the object's current state forbids the request
    │   └── NoCapacity         409 no_capacity       no host has room; `detail` says why
    ├── PayloadTooLarge        413 payload_too_large the request body is over the limit
    ├── TooManyRequests        429 too_many_requests slowed down (login attempts); retry later
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

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers that go with the problem document."""
        return {}

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


class MalformedRequest(NubisError):
    status = 400
    code = "malformed_request"
    title = "Malformed request"


class InvalidInput(NubisError):
    status = 422
    code = "invalid_input"
    title = "Invalid input"


class ImageRefused(InvalidInput):
    """An uploaded file is not an image nubis takes; the detail says why."""

    code = "image_refused"


class Unauthenticated(NubisError):
    status = 401
    code = "unauthenticated"
    title = "Authentication required"

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="nubis"'}


class SecondFactorRequired(Unauthenticated):
    code = "totp_required"
    title = "A TOTP code is required"


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


class NoCapacity(Conflict):
    code = "no_capacity"
    title = "No capacity"


class PayloadTooLarge(NubisError):
    status = 413
    code = "payload_too_large"
    title = "Payload too large"


class TooManyRequests(NubisError):
    status = 429
    code = "too_many_requests"
    title = "Too many requests"

    def __init__(
        self, detail: str, *, retry_after: int = 1, errors: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail, errors=errors)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class Unavailable(NubisError):
    status = 503
    code = "unavailable"
    title = "Service unavailable"


def _tree(root: type[NubisError]) -> list[type[NubisError]]:
    return [root, *(kind for sub in root.__subclasses__() for kind in _tree(sub))]


def from_problem(problem: dict[str, Any], status: int) -> NubisError:
    """The error a problem document from the API describes (for the API's clients)."""
    by_code = {kind.code: kind for kind in _tree(NubisError)}
    kind = by_code.get(str(problem.get("code")))
    detail = str(problem.get("detail") or problem.get("title") or f"HTTP {status}")
    errors = problem.get("errors")
    fields = {str(k): str(v) for k, v in errors.items()} if isinstance(errors, dict) else None
    if kind is None:
        return NubisError(detail, errors=fields)
    return kind(detail, errors=fields)
