"""What every request and error body shares."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator

from nubis.errors import InvalidInput
from nubis.names import check_email, name_problem


class Input(BaseModel):
    """A request body: an unknown field or a value of the wrong JSON type is an error,
    not silently dropped or converted."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _no_nul_characters(cls, data: Any) -> Any:
        # No store keeps a NUL in text (PostgreSQL refuses it); no name or key needs one.
        if _holds_nul(data):
            raise ValueError("text may not contain NUL (\\u0000) characters")
        return data


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(v) for v in value)
    return False


class Problem(BaseModel):
    """An error (RFC 9457): branch on `code`, show `detail`, mark fields from `errors`."""

    type: str
    title: str
    status: int
    code: str
    detail: str
    errors: dict[str, str] | None = None


def _name(text: str) -> str:
    problem = name_problem(text)
    if problem is not None:
        raise ValueError(problem)
    return text


def _email(text: str) -> str:
    try:
        return check_email(text)
    except InvalidInput as error:
        raise ValueError(error.detail) from None


Name = Annotated[str, AfterValidator(_name)]
"""A name field in a request body."""
Email = Annotated[str, AfterValidator(_email)]
"""An email address in a request body, lowercased."""
