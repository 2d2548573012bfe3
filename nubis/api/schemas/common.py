"""What every request and error body shares."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Input(BaseModel):
    """A request body: an unknown field is an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class Problem(BaseModel):
    """An error (RFC 9457): branch on `code`, show `detail`, mark fields from `errors`."""

    type: str
    title: str
    status: int
    code: str
    detail: str
    errors: dict[str, str] | None = None
