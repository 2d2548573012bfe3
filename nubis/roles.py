"""Roles in a project (kept apart from the models, so the CLI can use them cheaply)."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """A member's role in a project, weakest first."""

    VIEWER = "viewer"
    MEMBER = "member"
    ADMIN = "admin"
    OWNER = "owner"

    @property
    def rank(self) -> int:
        return list(Role).index(self)
